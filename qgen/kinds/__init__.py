"""Registry of group kinds.

Each kind lives in its own module as a :class:`~qgen.kinds.base.GroupKind`
subclass and is registered here by name. A new kind is a new module plus
one :func:`register` call: what the parser, the solver, the model reader and
the building blocks need to know about it are attributes and methods of the
kind (how a type of it is declared, its terms and counts, its place in the
subgroup lattice, what it permits between layers).

Kinds come in three families: partition kinds (:class:`PartitionKind`: perm,
signed, scaled), pairing kinds (:class:`PairingKind`: gl, orthogonal), and
fixed-axis symmetries (:class:`FixedAxisKind`: escnn groups and grids, with the
plain ``fixed`` axis, no group, as the trivial case). ``tied`` (:mod:`qgen.kinds.tied`)
is a fixed axis whose maps are shared across its indices: a partition kind whose group
acts by the identity.
"""

from __future__ import annotations

from qgen.kinds.base import DeclEntry, Generator, GroupKind, PairingKind, PartitionKind
from qgen.kinds.escnn import EscnnKind
from qgen.kinds.fixed import Fixed, FixedAxisKind
from qgen.kinds.gl import GL
from qgen.kinds.orthogonal import Orthogonal
from qgen.kinds.perm import Perm
from qgen.kinds.scaled import Scaled
from qgen.kinds.signed import Signed
from qgen.kinds.tied import Tied
from qgen.registry import Registry

__all__ = [
    "DeclEntry",
    "FixedAxisKind",
    "Generator",
    "GroupKind",
    "PairingKind",
    "PartitionKind",
    "get_kind",
    "kind_of",
    "kind_names",
    "lattice_kinds",
    "lattice_top",
    "meet",
    "register",
    "self_dual_part",
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
    """The kind acting on a declared type: the registered one, configured by the type's
    entry for a family (an escnn group and representation)."""
    return _KINDS.get(decl.kind).for_decl(decl)


def lattice_kinds() -> tuple[str, ...]:
    """Kinds with a place in the subgroup lattice (what the model reader infers)."""
    return tuple(n for n in _KINDS.names() if _KINDS.get(n).subgroups is not None)


def lattice_top() -> str:
    """The lattice kind that contains every other (the group a type starts from before
    the model reader restricts it).

    >>> lattice_top()
    'gl'
    """
    kinds = set(lattice_kinds())
    return next(k for k in lattice_kinds() if _contained(k) >= kinds)


def meet(a: str, b: str) -> str:
    """The largest kind contained in both ``a`` and ``b`` (by their ``subgroups``).

    >>> meet("gl", "orthogonal"), meet("scaled", "signed"), meet("orthogonal", "signed")
    ('orthogonal', 'perm', 'signed')
    """
    common = _contained(a) & _contained(b)
    return next(k for k in _KINDS.names() if k in common and _contained(k) >= common)


def self_dual_part(name: str) -> str:
    """The largest kind contained in ``name`` whose elements satisfy ``A^-T = A``.

    >>> self_dual_part("gl"), self_dual_part("scaled"), self_dual_part("signed")
    ('orthogonal', 'perm', 'signed')
    """
    dual = frozenset(k for k in _contained(name) if _KINDS.get(k).self_dual)
    return next(k for k in _KINDS.names() if k in dual and _contained(k) >= dual)


def _contained(name: str) -> frozenset[str]:
    subgroups = _KINDS.get(name).subgroups
    if subgroups is None:
        raise ValueError(f"group kind {name!r} has no place in the subgroup lattice")
    return subgroups | {name}


for _kind in (Perm(), Signed(), Scaled(), GL(), Orthogonal(), Fixed(), EscnnKind(), Tied()):
    register(_kind)
