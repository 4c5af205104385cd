"""``perm``: the symmetric group S_n permuting the indices of a type.

Hidden neurons of an MLP with any pointwise activation:
``W_i -> P_i W_i P_{i-1}^T``. Every set partition of the block's axes is a
term, so a block with ``m`` axes of the type has ``sum_{j <= min(n, m)} S(m, j)``
maps at size ``n`` (Bell(m) from ``n >= m`` on).
"""

from __future__ import annotations

from qgen.groups.base import Generator, PartitionKind, Variances


class Perm(PartitionKind):
    name = "perm"
    summary = "S_n permutes the indices"
    action = "monomial"
    sampler = "groups/perm.py.j2"
    pointwise = "any"
    norm_invariant = True
    may_centre = True
    pool_invariant = True
    holds_nested = True
    subgroups = frozenset()
    nonlinear_head = True

    def allows(self, part_variances: Variances) -> bool:
        return True

    def generators(self, n: int) -> list[Generator]:
        return self.permutation_generators(n)
