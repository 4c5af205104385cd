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

The partitions a kind allows are *built*, never filtered out of all Bell(m) of them
(:func:`ruled_partitions`): each point carries a *label* (a part holds at most one point
of each label: a degree-2 product's part takes at most one axis of each factor) and a
*charge* (an integer; a part is allowed when its charges sum to zero modulo the rule's
modulus: balance for scalings, parity for signs). Points are placed one at a time, each
joining an open part or opening a new one; a part that no later point can join is
closed and checked at once, and a branch is entered only when its number of
completions, counted by a dynamic programme over the multiset of open parts'
summaries (:func:`ruled_count`), is nonzero. Counting never enumerates, so the size of
a table is known, and bounded (:class:`TooLarge`), before any of it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

from sympy.polys.domains import ZZ
from sympy.polys.matrices import DomainMatrix
from sympy.utilities.iterables import multiset_partitions

from qgen.errors import QgenError

Part = tuple[int, ...]
Partition = tuple[Part, ...]
#: a point to partition: (label, charge)
Point = tuple[int, int]

__all__ = [
    "Part",
    "PartRule",
    "Partition",
    "Point",
    "TooLarge",
    "gram_rank",
    "loops",
    "pairings",
    "ruled_count",
    "ruled_partitions",
    "set_partitions",
]


class TooLarge(QgenError):
    """A table (basis terms, degree-2 products) whose size, counted before it is built,
    is past the stated bound: the CLI reports it on one line and exits with status 2."""


@dataclass(frozen=True)
class PartRule:
    """What every part of a partition must satisfy (besides one point per label).

    A part is allowed when the sum of its points' charges is 0 modulo ``modulus`` (0: in
    the integers; 1: always), it has between ``min_size`` and ``max_size`` points
    (``max_size`` 0: no upper bound), it holds a point with a label in ``needs`` (when
    ``needs`` is not empty), and ``accept`` (a kind's own test, over the part's point
    indices) says yes; ``accept`` is for kinds whose rule is not a charge, and is only
    checked on closed parts (counting then enumerates).
    """

    modulus: int = 1
    min_size: int = 1
    max_size: int = 0
    needs: frozenset[int] = frozenset()
    accept: Callable[[Part], bool] | None = None


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
    """All perfect matchings of ``{0, ..., m-1}`` ((m-1)!! of them; none for odd m), built
    as the partitions whose parts have exactly two points (:func:`ruled_partitions`).

    >>> [len(pairings(m)) for m in range(7)]
    [1, 0, 1, 0, 3, 0, 15]
    """
    return ruled_partitions(tuple((i, 0) for i in range(m)), PartRule(min_size=2, max_size=2))


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


# --------------------------------------------------------------------------------------
# Partitions built under a rule

#: an open part as the counting sees it: (its labels that later points carry, charge
#: reduced by the modulus, size capped where the size rule stops caring, holds a needed
#: label)
_Summary = tuple[tuple[int, ...], int, int, bool]


class _Search:
    """The dynamic programme and the enumeration over one tuple of points and a rule."""

    def __init__(self, points: tuple[Point, ...], rule: PartRule) -> None:
        self.points, self.rule = points, rule
        m = len(points)
        self.later = [frozenset(label for label, _ in points[i:]) for i in range(m + 1)]
        self.cap = max(rule.min_size, rule.max_size, 1)
        self.memo: dict[tuple[int, tuple[_Summary, ...]], tuple[int, ...]] = {}

    def _reduce(self, charge: int) -> int:
        return charge if self.rule.modulus == 0 else charge % self.rule.modulus

    def _join(self, summary: _Summary | None, i: int) -> _Summary:
        """``summary`` (None: a new part) with point ``i`` added."""
        label, charge = self.points[i]
        needed = label in self.rule.needs
        if summary is None:
            return ((label,), self._reduce(charge), 1, needed)
        labels, c, size, need = summary
        return (
            tuple(sorted((*labels, label))),
            self._reduce(c + charge),
            min(size + 1, self.cap),
            need or needed,
        )

    def _can_join(self, summary: _Summary, i: int) -> bool:
        rule = self.rule
        return self.points[i][0] not in summary[0] and (
            rule.max_size == 0 or summary[2] < rule.max_size
        )

    def _settle(self, summary: _Summary, i: int) -> tuple[_Summary | None, bool]:
        """The summary of an open part seen from point ``i`` on: (None, ok) when no later
        point can join it (closed: ``ok`` whether it is allowed), else (summary, True)."""
        labels, c, size, need = summary
        later = self.later[i]
        labels = tuple(x for x in labels if x in later)
        rule = self.rule
        full = rule.max_size != 0 and size >= rule.max_size
        if full or len(labels) == len(later):  # every later label is already in the part
            ok = c == 0 and size >= rule.min_size and (need or not rule.needs)
            return None, ok
        return (labels, c, size, need), True

    def _next(self, state: list[_Summary], i: int) -> tuple[tuple[_Summary, ...], int] | None:
        """``state`` after point ``i`` was placed: (the open parts from ``i + 1`` on, how
        many closed), or None when a closed part is not allowed."""
        out, closed = [], 0
        for summary in state:
            settled, ok = self._settle(summary, i + 1)
            if not ok:
                return None
            if settled is None:
                closed += 1
            else:
                out.append(settled)
        return tuple(sorted(out)), closed

    def count(self, i: int, state: tuple[_Summary, ...]) -> tuple[int, ...]:
        """Completions of ``state`` from point ``i`` on, by how many parts they close
        (index k: completions closing k parts)."""
        if i == len(self.points):
            return (1,) if not state else ()
        key = (i, state)
        found = self.memo.get(key)
        if found is not None:
            return found
        total: list[int] = []
        options = [(None, 1)] + [
            (s, state.count(s)) for s in dict.fromkeys(state) if self._can_join(s, i)
        ]
        for summary, ways in options:
            rest = list(state)
            if summary is not None:
                rest.remove(summary)
            nxt = self._next([*rest, self._join(summary, i)], i)
            if nxt is None:
                continue
            sub = self.count(i + 1, nxt[0])
            shift = nxt[1]
            if len(total) < len(sub) + shift:
                total += [0] * (len(sub) + shift - len(total))
            for k, v in enumerate(sub):
                total[k + shift] += ways * v
        result = tuple(total)
        self.memo[key] = result
        return result

    def enumerate(self) -> Iterator[Partition]:
        """Every allowed partition, entering only branches with a completion."""
        m = len(self.points)

        def walk(
            i: int, open_: list[tuple[list[int], _Summary]], closed: list[Part]
        ) -> Iterator[Partition]:
            if i == m:
                yield tuple(sorted(closed))
                return
            choices: list[int | None] = [None]
            choices += [j for j, (_, s) in enumerate(open_) if self._can_join(s, i)]
            for j in choices:
                if j is None:
                    parts = [*open_, ([i], self._join(None, i))]
                else:
                    members, s = open_[j]
                    parts = list(open_)
                    parts[j] = ([*members, i], self._join(s, i))
                nxt_open, nxt_closed, dead = [], list(closed), False
                for members, s in parts:
                    settled, ok = self._settle(s, i + 1)
                    if not ok:
                        dead = True
                        break
                    if settled is None:
                        nxt_closed.append(tuple(members))
                    else:
                        nxt_open.append((members, settled))
                if dead or not self.count(i + 1, tuple(sorted(s for _, s in nxt_open))):
                    continue
                yield from walk(i + 1, nxt_open, nxt_closed)

        yield from walk(0, [], [])


@cache
def _search(points: tuple[Point, ...], rule: PartRule) -> _Search:
    return _Search(points, rule)


def ruled_count(points: tuple[Point, ...], rule: PartRule) -> tuple[int, ...]:
    """How many partitions of ``points`` the rule allows, by number of parts (index k:
    those with k parts), without enumerating them (with ``rule.accept``: by enumerating).

    All partitions of 4 points (Bell numbers by parts are Stirling numbers), and the
    balanced ones of two plain and two dual axes of a scaled type:

    >>> ruled_count(tuple((i, 0) for i in range(4)), PartRule())
    (0, 1, 7, 6, 1)
    >>> ruled_count(((0, 1), (1, 1), (2, -1), (3, -1)), PartRule(modulus=0))
    (0, 1, 2)
    """
    if rule.accept is not None:
        counts: list[int] = []
        for p in ruled_partitions(points, rule):
            counts += [0] * (len(p) + 1 - len(counts))
            counts[len(p)] += 1
        return tuple(counts)
    search = _search(points, rule)
    return search.count(0, ())


@cache
def ruled_partitions(
    points: tuple[Point, ...], rule: PartRule, limit: int | None = None, what: str = "table"
) -> tuple[Partition, ...]:
    """The partitions of ``range(len(points))`` whose parts hold at most one point per
    label and satisfy ``rule``, in the canonical order of :func:`set_partitions`.

    Built under the rule (see the module docstring); with ``limit``, a number past it,
    counted first, raises :class:`TooLarge` naming ``what`` before anything is built.

    Balanced partitions of the axes of a map ``A[k, l] -> B[i, j]`` for a scaled type:
    the diagonal, the identity and the transpose (no part may hold ``i`` and ``j`` alone):

    >>> ruled_partitions(((0, 1), (1, 1), (2, -1), (3, -1)), PartRule(modulus=0))
    (((0, 1, 2, 3),), ((0, 2), (1, 3)), ((0, 3), (1, 2)))
    >>> ruled_partitions(((0, 1), (1, 1), (2, -1), (3, -1)), PartRule(modulus=0), 1)
    Traceback (most recent call last):
    ...
    qgen.kinds.partitions.TooLarge: table: 3 partitions, more than the 1 allowed
    """
    if limit is not None and rule.accept is None:
        total = sum(_search(points, rule).count(0, ()))
        if total > limit:
            raise TooLarge(f"{what}: {total:,} partitions, more than the {limit:,} allowed")
    found = _search(points, rule).enumerate()
    if rule.accept is not None:
        found = (p for p in found if all(rule.accept(part) for part in p))
    out = []
    for p in found:
        out.append(p)
        if limit is not None and len(out) > limit:
            raise TooLarge(f"{what}: more than the {limit:,} partitions allowed")
    return tuple(sorted(out))
