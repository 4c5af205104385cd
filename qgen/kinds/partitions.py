"""Set partitions and pairings of a block's axes: the combinatorics of the solver.

A basis term of an equivariant map is described, per index type, by a set
partition of the block's axes of that type (output and input axes together):

* orbit basis: indices equal within a part, pairwise distinct across parts.
  These tensors have disjoint supports, so they are independent, and the
  ones with more than ``n`` parts vanish at size ``n``;
* diagram basis: indices equal within a part, unconstrained across parts.
  ``d_pi = sum over coarsenings sigma of pi of o_sigma``: the same span, and the
  operations it needs (diagonals, pooling, broadcasting) are what layers run.

Partitions are canonical tuples of parts, each part a sorted tuple of axis
positions, parts ordered by their smallest element.
"""

from __future__ import annotations

from functools import cache

from sympy.polys.domains import ZZ
from sympy.polys.matrices import DomainMatrix
from sympy.utilities.iterables import multiset_partitions

Part = tuple[int, ...]
Partition = tuple[Part, ...]

__all__ = ["Part", "Partition", "gram_rank", "loops", "pairings", "set_partitions"]


def _canonical(blocks) -> Partition:
    return tuple(sorted(tuple(sorted(b)) for b in blocks))


@cache
def set_partitions(m: int) -> tuple[Partition, ...]:
    """All set partitions of ``{0, ..., m-1}`` (Bell(m) of them; one, empty, for m = 0).

    With ``m = k + l`` these index the S_n-equivariant maps ``R^(n^k) -> R^(n^l)``
    (Maron et al. 2019, "Invariant and equivariant graph networks"; see
    :mod:`qgen.kinds.perm`). The Bell numbers:

    >>> [len(set_partitions(m)) for m in range(7)]
    [1, 1, 2, 5, 15, 52, 203]
    """
    if m == 0:
        return ((),)
    return tuple(sorted(_canonical(p) for p in multiset_partitions(list(range(m)))))


@cache
def pairings(m: int) -> tuple[Partition, ...]:
    """All perfect matchings of ``{0, ..., m-1}`` ((m-1)!! of them; none for odd m).

    >>> [len(pairings(m)) for m in range(7)]
    [1, 0, 1, 0, 3, 0, 15]
    """
    if m == 0:
        return ((),)
    if m % 2:
        return ()
    found = multiset_partitions(list(range(m)), m // 2)
    return tuple(sorted(_canonical(p) for p in found if all(len(b) == 2 for b in p)))


def loops(a: Partition, b: Partition) -> int:
    """Connected components of the union of two partitions of the same points.

    For diagram tensors ``D_a``, ``D_b`` over axes of size ``n`` the inner
    product is ``<D_a, D_b> = n ** loops(a, b)``.
    """
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for part in (*a, *b):
        for x in part:
            parent[find(x)] = find(part[0])
    return len({find(x) for x in parent})


def gram_rank(diagrams: tuple[Partition, ...], n: int) -> int:
    """Exact rank of the diagram tensors at size ``n``.

    The rank of the Gram matrix ``G[a, b] = n ** loops(a, b)``, computed over
    the integers with sympy's DomainMatrix (no floating point).
    """
    if not diagrams:
        return 0
    rows = [[ZZ(n ** loops(a, b)) for b in diagrams] for a in diagrams]
    return DomainMatrix(rows, (len(diagrams), len(diagrams)), ZZ).rank()
