"""Registry of group kinds.

Each kind lives in its own module as a :class:`~qgen.groups.base.GroupKind`
subclass and is registered here by name. A new kind is a new module plus
one :func:`register` call; nothing else in qgen branches on kind names.
"""

from __future__ import annotations

from functools import cache

from qgen.groups.base import Generator, GroupKind, PairingKind, PartitionKind
from qgen.groups.escnn import EscnnKind
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
    "kind_of",
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


def kind_of(decl) -> GroupKind:
    """The kind acting on a declared type: the registered one, or for an escnn type an
    :class:`EscnnKind` configured with its group and representation."""
    if getattr(decl, "rep", None) is not None:
        return _escnn_kind(decl.rep)
    return _KINDS.get(decl.kind)


@cache
def _escnn_kind(rep) -> EscnnKind:
    return EscnnKind(rep)


for _kind in (Perm(), Signed(), Scaled(), GL(), Orthogonal(), Fixed(), EscnnKind()):
    register(_kind)
