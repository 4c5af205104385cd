"""Registry of group kinds.

Each kind lives in its own module as a :class:`~qgen.groups.base.GroupKind`
subclass and is registered here by name. A new kind is a new module plus
one :func:`register` call; nothing else in qgen branches on kind names.
"""

from __future__ import annotations

from qgen.groups.base import Generator, GroupKind, PairingKind, PartitionKind
from qgen.groups.fixed import Fixed
from qgen.groups.gl import GL
from qgen.groups.orthogonal import Orthogonal
from qgen.groups.perm import Perm
from qgen.groups.scaled import Scaled
from qgen.groups.signed import Signed
from qgen.registry import Registry

__all__ = [
    "Generator",
    "GroupKind",
    "PairingKind",
    "PartitionKind",
    "get_kind",
    "kind_names",
    "register",
]

_KINDS: Registry[GroupKind] = Registry("group kind")


def register(kind: GroupKind) -> GroupKind:
    """Make ``kind`` available to specs as ``group: <kind.name>``."""
    return _KINDS.register(kind)


def get_kind(name: str) -> GroupKind:
    """The registered kind called ``name``."""
    return _KINDS.get(name)


def kind_names() -> tuple[str, ...]:
    """Names of all registered kinds, in registration order."""
    return _KINDS.names()


for _kind in (Perm(), Signed(), Scaled(), GL(), Orthogonal(), Fixed()):
    register(_kind)
