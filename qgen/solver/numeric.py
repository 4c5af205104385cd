"""The numeric solver: equivariant maps as the nullspace of generator constraints.

An independent code path from the combinatorial enumeration, used by
``qgen verify`` and the tests. For concrete sizes a block map is a tensor
``L`` with the block's output axes then input axes; ``g`` acts on it axis by
axis (input axes dualised, see :class:`~qgen.kinds.base.Generator`). ``L``
is equivariant iff ``g . L = L`` for every finite generator and
``X . L = 0`` for every Lie-algebra generator of every type.

Two stages keep this cheap:

1. Generators that are signed permutation matrices act on the entries of
   ``L`` by moving them with a sign, so ``g . L = L`` ties entries together (a
   nested generator moves only the entries whose owning outer index is its own).
   A union-find with signs over the flat entries gives the orbits; an orbit
   whose ties contradict themselves (an entry forced equal to minus itself)
   is zero. The indicator vectors of the others span the fixed space.
2. The remaining generators (Lie-algebra elements, non-monomial elements)
   are applied to that orbit basis; the nullspace of the stacked residuals,
   from an eigendecomposition of their Gram matrix in float64, is the
   solution space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from qgen.kinds import Generator

__all__ = ["AxisAction", "NumericSolution", "solve_numeric", "constraint_residual"]

RTOL = 1e-9


@dataclass(frozen=True)
class AxisAction:
    """One axis of a block for the numeric solver: its size, variance and type."""

    type: str
    size: int
    variance: int
    owner: int | None = None  # for a nested type: the index of its outer axis in the block


@dataclass(frozen=True)
class NumericSolution:
    """The solution space of a block at concrete sizes."""

    dim: int
    basis: torch.Tensor  # (dim, N) orthonormal rows, float64
    shape: tuple[int, ...]


def _apply_on_axis(t: torch.Tensor, m: torch.Tensor, axis: int) -> torch.Tensor:
    """``m`` applied along ``axis`` (1-based: axis 0 of ``t`` is the batch)."""
    moved = t.movedim(axis, -1)
    return (moved @ m.T).movedim(-1, axis)


def _act(t: torch.Tensor, axes: Sequence[AxisAction], type_: str, gen: Generator) -> torch.Tensor:
    """``g . t`` (finite) or ``X . t`` (infinitesimal) on a batch of block tensors.

    A nested generator (``gen.outer`` set) acts only where the axis's owning outer
    axis has index ``gen.outer``.
    """
    mats = {v: gen.on_axis(v) for v in (1, -1)}

    def mask(a: AxisAction) -> torch.Tensor | float:
        if gen.outer is None:
            return 1.0
        shape = [1] * t.dim()
        shape[a.owner + 1] = axes[a.owner].size
        m = torch.zeros(axes[a.owner].size, dtype=t.dtype)
        m[gen.outer] = 1.0
        return m.reshape(shape)

    if gen.infinitesimal:
        out = torch.zeros_like(t)
        for i, a in enumerate(axes):
            if a.type == type_:
                out += mask(a) * _apply_on_axis(t, mats[a.variance], i + 1)
        return out
    for i, a in enumerate(axes):
        if a.type == type_:
            moved = _apply_on_axis(t, mats[a.variance], i + 1)
            t = moved if gen.outer is None else t + mask(a) * (moved - t)
    return t


def _monomial(m: torch.Tensor) -> tuple[list[int], list[float]] | None:
    """``(perm, sign)`` with ``m[perm[j], j] = sign[j]``, if ``m`` is a signed permutation."""
    nz = m != 0
    if not (nz.sum(0) == 1).all() or not (nz.sum(1) == 1).all():
        return None
    perm = nz.to(torch.int64).argmax(0)
    sign = m[perm, torch.arange(m.shape[1])]
    if not ((sign == 1) | (sign == -1)).all():
        return None
    return perm.tolist(), sign.tolist()


def _orbit_basis(
    axes: Sequence[AxisAction], monomials: list[tuple[str, Generator]]
) -> torch.Tensor:
    """Stage 1: a basis (r, N) of the entries' fixed space under signed permutations."""
    shape = [a.size for a in axes]
    n_entries = math.prod(shape)
    index = torch.arange(n_entries).reshape(shape) if shape else torch.arange(1)
    parent = list(range(n_entries))
    parity = [1.0] * n_entries  # sign of an entry relative to its parent

    def find(x: int) -> tuple[int, float]:
        """Root of ``x`` and the sign with ``L[x] = sign * L[root]`` (compresses the path)."""
        path = []
        while parent[x] != x:
            path.append(x)
            x = parent[x]
        s = 1.0
        for node in reversed(path):
            s *= parity[node]
            parity[node], parent[node] = s, x
        return x, (parity[path[0]] if path else 1.0)

    def union(a: int, b: int, sign: float) -> None:
        """Record ``L[b] = sign * L[a]``."""
        ra, sa = find(a)
        rb, sb = find(b)
        if ra == rb:
            if sa * sign != sb:
                conflicted.add(ra)
            return
        parent[rb] = ra
        parity[rb] = sa * sign * sb  # L[rb] = L[b] / sb = sign * sa / sb * L[ra]
        if rb in conflicted:
            conflicted.add(ra)

    conflicted: set[int] = set()
    for type_, gen in monomials:
        moved = index
        sign_t = torch.ones(shape, dtype=torch.float64) if shape else torch.ones(1)
        for i, a in enumerate(axes):
            if a.type != type_:
                continue
            perm, sign = _monomial(gen.on_axis(a.variance))
            # entry with index j on this axis moves to perm[j] with factor sign[j]
            inv = torch.empty(len(perm), dtype=torch.int64)
            inv[torch.tensor(perm)] = torch.arange(len(perm))
            s = torch.tensor(sign, dtype=torch.float64)[inv]
            s = s.reshape([-1 if k == i else 1 for k in range(len(axes))])
            if gen.outer is None:
                moved, sign_t = moved.index_select(i, inv), sign_t * s
            else:  # a nested generator moves only entries whose owner index is ``outer``
                mine = torch.arange(axes[a.owner].size) == gen.outer
                mine = mine.reshape([-1 if k == a.owner else 1 for k in range(len(axes))])
                moved = torch.where(mine, moved.index_select(i, inv), moved)
                sign_t = sign_t * torch.where(mine, s, torch.ones_like(s))
        # invariance: L[k] = sign * L[source(k)] where moved[k] = source(k)
        sources = moved.reshape(-1).tolist()
        signs = sign_t.reshape(-1).tolist()
        for k, (src, s) in enumerate(zip(sources, signs, strict=True)):
            if src != k or s != 1.0:
                union(src, k, s)

    roots: dict[int, int] = {}
    rows, cols, vals = [], [], []
    for x in range(n_entries):
        r, s = find(x)
        if r in conflicted:
            continue
        col = roots.setdefault(r, len(roots))
        rows.append(col)
        cols.append(x)
        vals.append(s)
    basis = torch.zeros(len(roots), n_entries, dtype=torch.float64)
    if rows:
        basis[torch.tensor(rows), torch.tensor(cols)] = torch.tensor(vals, dtype=torch.float64)
    return basis


def solve_numeric(
    axes: Sequence[AxisAction], generators: Mapping[str, Sequence[Generator]]
) -> NumericSolution:
    """The equivariant block maps over ``axes`` (output axes then input axes, dualised).

    ``generators`` maps each type to its generators at that type's size.
    """
    shape = tuple(a.size for a in axes)
    present = {a.type for a in axes}
    monomials, others = [], []
    for type_, gens in generators.items():
        if type_ not in present:
            continue
        for g in gens:
            is_monomial = not g.infinitesimal and _monomial(g.matrix) is not None
            (monomials if is_monomial else others).append((type_, g))

    basis = _orbit_basis(axes, monomials)
    r = basis.shape[0]
    if r == 0 or not others:
        return NumericSolution(r, _orthonormal(basis), shape)

    tensors = basis.reshape(r, *shape)
    gram = torch.zeros(r, r, dtype=torch.float64)
    for type_, g in others:
        res = _act(tensors, axes, type_, g)
        if not g.infinitesimal:
            res = res - tensors
        flat = res.reshape(r, -1)
        gram += flat @ flat.T
    evals, evecs = torch.linalg.eigh(gram)
    tol = RTOL * max(float(evals.abs().max()), 1.0)
    null = evecs[:, evals.abs() <= tol]
    return NumericSolution(null.shape[1], _orthonormal(null.T @ basis), shape)


def _orthonormal(rows: torch.Tensor) -> torch.Tensor:
    if rows.shape[0] == 0:
        return rows
    q, _ = torch.linalg.qr(rows.T)
    return q.T


def constraint_residual(
    maps: torch.Tensor, axes: Sequence[AxisAction], generators: Mapping[str, Sequence[Generator]]
) -> float:
    """Largest violation ``|g . L - L|`` or ``|X . L|`` over ``maps`` (k, *shape)."""
    worst = 0.0
    present = {a.type for a in axes}
    for type_, gens in generators.items():
        if type_ not in present:
            continue
        for g in gens:
            res = _act(maps, axes, type_, g)
            if not g.infinitesimal:
                res = res - maps
            if res.numel():
                worst = max(worst, float(res.abs().max()))
    return worst
