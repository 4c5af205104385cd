"""``fixed``: no group. The axis keeps its order and needs a declared size.

Every linear map between fixed axes is allowed: one dense factor of
dimension ``size ** (number of axes)``; layers treat fixed axes as channels.
"""

from __future__ import annotations

from qgen.groups.base import Generator, GroupKind, Variances
from qgen.partitions import Partition


class Fixed(GroupKind):
    name = "fixed"
    summary = "no symmetry (input/output neurons, kernel positions); needs a size"
    needs_size = True
    trivial_action = True
    # no group: any function, centring per index and any contraction are allowed
    pointwise = "any"
    norm_invariant = True
    may_centre = True
    pool_invariant = True

    def terms(self, variances: Variances) -> tuple[Partition, ...]:
        # One dense factor over all the axes: represented by the all-singletons partition.
        return (tuple((i,) for i in range(len(variances))),)

    def count(self, variances: Variances, n: int | None) -> int:
        if n is None:
            raise ValueError("a fixed type has no generic size; pass its declared size")
        return n ** len(variances)

    def threshold(self, variances: Variances) -> int:
        return 1

    def generators(self, n: int) -> list[Generator]:
        return []
