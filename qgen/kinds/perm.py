"""``perm``: the symmetric group S_n permuting the indices of a type.

Hidden neurons of an MLP with any pointwise activation:
``W_i -> P_i W_i P_{i-1}^T``. Every set partition of the block's axes is a
term, so a block with ``m`` axes of the type has ``sum_{j <= min(n, m)} S(m, j)``
maps at size ``n`` (Bell(m) from ``n >= m`` on).

Maron, Ben-Hamu, Shamir and Lipman, "Invariant and equivariant graph networks"
(ICLR 2019), found Bell(k + l) linear maps ``R^(n^k) -> R^(n^l)`` that commute with
S_n; for graphs (an ``n x n`` adjacency matrix to itself, four axes) that is
Bell(4) = 15. Pearce-Crump, "Connecting permutation equivariant neural networks and
partition diagrams" (2022), showed that the partition diagrams span these maps at
every ``n`` and are a basis exactly when ``n >= k + l``; below that the dimension is
the number of partitions with at most ``n`` parts (the orbit basis counted here), which
the numeric nullspace confirms (``qgen verify``):

>>> graph = (1, 1, -1, -1)   # output axes i, j; input axes k, l of A[k, l]
>>> [Perm().count(graph, n) for n in range(1, 6)]
[1, 8, 14, 15, 15]
>>> Perm().count(graph, None), Perm().threshold(graph)
(15, 4)
"""

from __future__ import annotations

from qgen.kinds.base import Generator, PartitionKind


class Perm(PartitionKind):
    name = "perm"
    summary = "S_n permutes the indices"
    action = "monomial"
    sampler = "_sample_perm"
    pointwise = "any"
    norm_invariant = True
    may_centre = True
    holds_nested = True
    subgroups = frozenset()
    self_dual = True
    nonlinear_head = True

    def generators(self, n: int) -> list[Generator]:
        return self.permutation_generators(n)
