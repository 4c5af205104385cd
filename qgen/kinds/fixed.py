"""Fixed axes: symmetries of axes whose size is part of the type, and ``fixed``, no group.

A *fixed-axis symmetry* acts on the axes of a type of declared size through a
representation that the type's entry configures (the escnn groups and grids of
:mod:`qgen.kinds.escnn`); its commutant on a block is one factor over the block's axes
of the type, dense or not. The trivial case is ``fixed``: no group; the axis keeps its
order and needs a declared size, and every linear map between fixed axes is allowed:
one dense factor of dimension ``size ** (number of axes)``; layers treat fixed axes as
channels.

>>> Fixed().count((1, -1), 3)   # a 3 x 3 matrix between two fixed axes of size 3
9
"""

from __future__ import annotations

from qgen.decls import TypeDecl
from qgen.kinds.base import DeclEntry, Generator, GroupKind, Variances
from qgen.kinds.partitions import Partition

__all__ = ["Fixed", "FixedAxisKind"]


class FixedAxisKind(GroupKind):
    """The family of symmetries of fixed-size axes: configured per type by ``rep``
    (its representation); :class:`Fixed` is the trivial member."""

    needs_size = True
    #: the representation this instance acts by (None: as registered, unconfigured)
    rep: object = None

    def terms(self, variances: Variances) -> tuple[Partition, ...]:
        # One factor over all the axes: represented by the all-singletons partition.
        return (tuple((i,) for i in range(len(variances))),)

    def threshold(self, variances: Variances) -> int:
        return 1

    def generated_sampler(self, decl: TypeDecl) -> tuple[str, tuple, object] | None:
        """How generated code draws an element of ``decl``'s symmetry: the name of a
        runtime function (see :mod:`qgen.runtime.group`), its arguments before the
        generator (plain Python data), and a table of exact element matrices it reads
        (an array ``[elements, *matrix]``, or None); None for no element (``fixed``)."""
        return None


class Fixed(FixedAxisKind):
    name = "fixed"
    summary = "no symmetry (input/output neurons, kernel positions); needs a size"
    trivial_action = True
    # no group: any function, centring per index and any contraction are allowed
    pointwise = "any"
    norm_invariant = True
    may_centre = True
    nonlinear_head = True

    def count(self, variances: Variances, n: int | None) -> int:
        if n is None:
            raise ValueError("a fixed type has no generic size; pass its declared size")
        return n ** len(variances)

    def generators(self, n: int) -> list[Generator]:
        return []

    def parse_decl(self, entry: DeclEntry) -> TypeDecl:
        size = entry.size()
        if size is None:
            entry.fail(
                "a fixed type (no group) needs a size, e.g. {size: 3}; "
                "or give it a group such as {group: perm}"
            )
        return TypeDecl(entry.name, self.name, size)
