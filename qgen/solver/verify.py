"""Cross-checking the enumeration against the numeric solver at concrete sizes.

For a block at sizes ``n`` three numbers must agree:

* ``enumerated``: the exact count from the term enumeration (:mod:`qgen.solver.basis`);
* ``numeric``: the dimension of the nullspace of the generator constraints
  (:mod:`qgen.solver.numeric`, an independent code path);
* ``span``: the rank of the enumerated diagram terms materialized as dense
  tensors, each of which must also satisfy the constraints (``residual``).

Equal ``span`` and ``numeric`` with zero residual mean the enumerated terms
span exactly the space of equivariant maps: complete, and nothing extra.
Dense tensors are built here for checking only; layers never do this.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from qgen.kinds import Generator, kind_of
from qgen.solver.basis import Block, GridFactor, WeightSpaceBasis
from qgen.solver.numeric import AxisAction, constraint_residual, solve_numeric

__all__ = [
    "BlockCheck",
    "VerifyReport",
    "axis_actions",
    "check_block",
    "generators_at",
    "materialize",
    "solver_axes",
    "solver_view",
    "verify",
]

#: residual of a materialized term above which it counts as not equivariant
RESIDUAL_TOL = 1e-9
DEFAULT_MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class BlockCheck:
    block: Block
    sizes: Mapping[str, int]
    enumerated: int
    numeric: int | None = None
    span: int | None = None
    residual: float = 0.0
    skipped: str | None = None
    generic: bool = False  # whether the sizes reach every type's threshold
    level: Mapping[str, int] | None = None  # the size setting this check belongs to
    #: sizes the numeric solve and span ran at, when smaller than ``sizes`` on axes of a
    #: trivially acting type (blockwise check); ``numeric`` and ``span`` are then scaled
    #: back to ``sizes`` (exactly: the solution space is a tensor product, see
    #: :func:`check_block`)
    solved_at: Mapping[str, int] | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is not None or (
            self.enumerated == self.numeric == self.span and self.residual <= RESIDUAL_TOL
        )


@dataclass
class VerifyReport:
    checks: list[BlockCheck] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[BlockCheck]:
        return [c for c in self.checks if not c.ok]


def _sizes_of(block: Block, sizes: Mapping[str, int]) -> dict[str, int]:
    out = {}
    for a in block.axes:
        size = sizes.get(a.type) or block.spec.types[a.type].size
        if size is None:
            raise ValueError(f"no size for type {a.type!r}")
        out[a.type] = size
    return out


def solver_axes(block: Block) -> list[tuple[str, tuple[int, ...]]]:
    """The axes the numeric solver sees: ``(type, positions in block.axes)``. A grid's
    pair of axes is one axis of size ``k^2`` (the group acts on it jointly); the others
    are themselves."""
    grid_of = {}
    for f in block.fixed_factors:
        if isinstance(f, GridFactor):
            for first, second in f.pairs:
                grid_of[first] = (f.type, second)
    seconds = {v[1] for v in grid_of.values()}
    position = {a: i for i, a in enumerate(block.axes)}
    out = []
    for i, a in enumerate(block.axes):
        if a in grid_of:
            out.append((grid_of[a][0], (i, position[grid_of[a][1]])))
        elif a not in seconds:
            out.append((a.type, (i,)))
    return out


def solver_view(block: Block, maps: torch.Tensor) -> torch.Tensor:
    """Dense block maps ``(k, *block shape)`` reshaped onto :func:`solver_axes`."""
    axes = solver_axes(block)
    if all(len(m) == 1 for _, m in axes):
        return maps
    order = [i for _, m in axes for i in m]
    moved = maps.permute(0, *(1 + i for i in order))
    sizes = [math.prod(maps.shape[1 + i] for i in m) for _, m in axes]
    return moved.reshape(maps.shape[0], *sizes)


def axis_actions(block: Block, sizes: Mapping[str, int]) -> list[AxisAction]:
    """One action per solver axis (:func:`solver_axes`)."""
    types = block.spec.types
    actions = []
    for type_, members in solver_axes(block):
        a = block.axes[members[0]]
        owner = None
        if types[a.type].within is not None:
            owner = block.owner_of(a, block.axes)
        size = math.prod(sizes[block.axes[i].type] for i in members)
        actions.append(AxisAction(type_, size, a.variance, owner))
    return actions


def generators_at(block: Block, sizes: Mapping[str, int]) -> dict[str, list[Generator]]:
    """Each type's generators at its size; a nested type's once per index of its outer type."""
    gens: dict[str, list[Generator]] = {}
    for type_ in dict.fromkeys(t for t, _ in solver_axes(block)):
        decl = block.spec.types[type_]
        own = kind_of(decl).generators(sizes.get(type_) or decl.size)
        if decl.within is None:
            gens[type_] = own
        else:
            gens[type_] = [
                Generator(g.matrix, g.infinitesimal, outer=h)
                for h in range(sizes[decl.within])
                for g in own
            ]
    return gens


def materialize(block: Block, sizes: Mapping[str, int]) -> torch.Tensor:
    """The enumerated basis at ``sizes`` as dense tensors ``(terms * fixed, *shape)``.

    A term is the diagram tensor ``prod_parts [indices in the part are equal]``
    over group axes, tensored with every basis tensor over fixed axes: elementary
    tensors for plain fixed types, the commutant basis of an escnn type.
    """
    shape = [sizes[a.type] for a in block.axes]
    ndim = len(shape)

    def along(axis: int, values: torch.Tensor) -> torch.Tensor:
        return values.reshape([-1 if k == axis else 1 for k in range(ndim)])

    position = {a: i for i, a in enumerate(block.axes)}
    diagrams = []
    for term in block.terms():
        d = torch.ones([1] * ndim, dtype=torch.float64)
        for type_, axes in term.diagram():
            n = sizes[type_]
            first = along(position[axes[0]], torch.arange(n))
            for other in axes[1:]:
                d = d * (first == along(position[other], torch.arange(n)))
        diagrams.append(d.expand(shape))
    fixed = torch.ones([1] * (ndim + 1), dtype=torch.float64)
    for f in block.fixed_factors:
        fixed = (fixed[:, None] * _fixed_basis(f, position, shape)[None]).flatten(0, 1)
    if not diagrams:
        return torch.zeros(0, *shape, dtype=torch.float64)
    stacked = torch.stack(diagrams)  # (T, *shape)
    return (stacked[:, None] * fixed[None]).reshape(-1, *shape)


def _fixed_basis(factor, position: dict, shape: list[int]) -> torch.Tensor:
    """A fixed factor's basis ``(k, *shape)``, broadcast (size 1) off its own axes."""
    pos = [position[a] for a in factor.axes]
    sizes = [shape[i] for i in pos]
    if factor.kind.trivial_action:
        n = math.prod(sizes)
        b = torch.eye(n, dtype=torch.float64).reshape(n, *sizes)
    else:
        b = torch.from_numpy(factor.kind.basis(factor.variances)).reshape(-1, *sizes)
    order = sorted(range(len(pos)), key=lambda t: pos[t])
    b = b.permute(0, *(1 + t for t in order))
    view = [b.shape[0]] + [1] * len(shape)
    for t in order:
        view[1 + pos[t]] = shape[pos[t]]
    return b.reshape(view)


def check_block(
    block: Block, sizes: Mapping[str, int], max_entries: int = DEFAULT_MAX_ENTRIES
) -> BlockCheck:
    """Compare enumeration, numeric nullspace and materialized span for one block.

    Blocks with axes of a trivially acting type (plain fixed axes) are checked blockwise:
    the constraints never mix those indices, so with ``a_t`` such axes of size ``n_t``
    the solution space is ``S (x) R^(prod n_t^a_t)`` for the space ``S`` of one slice.
    Solving at sizes ``m_t = min(n_t, 2)`` (or 1, if that is still over the limit) gives
    ``dim S * prod m_t^a_t``, which is scaled by ``prod (n_t / m_t)^a_t``; a result that
    does not scale to an integer is reported as a disagreement. Two indices per fixed
    axis keep the dense fixed-axis factor (maps between different indices) under test.
    """
    sizes = _sizes_of(block, sizes)
    enumerated = block.count(sizes)
    generic = all(sizes[t] >= th for t, th in block.thresholds().items())
    trivial = [f for f in block.fixed_factors if f.kind.trivial_action]
    solve_at = _solve_sizes(block, sizes, max_entries)
    if solve_at is None:
        entries = math.prod(sizes[a.type] for a in block.axes)
        return BlockCheck(
            block, sizes, enumerated, skipped=f"{entries} entries over the limit", generic=generic
        )
    numeric, span, residual = _solve_and_span(block, solve_at)
    if solve_at == sizes:
        return BlockCheck(block, sizes, enumerated, numeric, span, residual, generic=generic)
    full = math.prod(sizes[a.type] for f in trivial for a in f.axes)
    part = math.prod(solve_at[a.type] for f in trivial for a in f.axes)
    numeric, span = (v * full // part if v * full % part == 0 else -1 for v in (numeric, span))
    return BlockCheck(
        block, sizes, enumerated, numeric, span, residual, generic=generic, solved_at=solve_at
    )


def _solve_sizes(block: Block, sizes: Mapping[str, int], max_entries: int) -> dict[str, int] | None:
    """The sizes :func:`check_block` solves at: at most two indices per trivially acting
    axis, then one; None when even that is over the limit."""
    trivial = [f.type for f in block.fixed_factors if f.kind.trivial_action]
    for m in (2, 1):
        at = {**sizes, **{t: min(sizes[t], m) for t in trivial}}
        if not _over_limit(block, at, max_entries):
            return at
    return None


def _over_limit(block: Block, sizes: Mapping[str, int], max_entries: int) -> bool:
    entries = math.prod(sizes[a.type] for a in block.axes)
    return entries > max_entries or entries * max(block.count(sizes), 1) > 50 * max_entries


def _solve_and_span(block: Block, sizes: Mapping[str, int]) -> tuple[int, int, float]:
    """``(numeric dimension, span of the materialized terms, their constraint residual)``."""
    axes = axis_actions(block, sizes)
    gens = generators_at(block, sizes)
    numeric = solve_numeric(axes, gens).dim
    terms = solver_view(block, materialize(block, sizes))
    flat = terms.reshape(terms.shape[0], math.prod(terms.shape[1:]))
    span = int(torch.linalg.matrix_rank(flat).item()) if flat.shape[0] else 0
    residual = constraint_residual(terms, axes, gens) if flat.shape[0] else 0.0
    return numeric, span, residual


def size_levels(
    basis: WeightSpaceBasis, fixed: Mapping[str, int], up_to: int | None = None
) -> list[dict[str, int]]:
    """Size settings to check: ``fixed`` as given, every other group type at 1, 2, ..., up_to.

    ``up_to`` defaults to the largest generic threshold of any block (at least 3).
    """
    group_types = [t for t in basis.spec.group_types if t not in fixed]
    if not group_types:
        return [dict(fixed)]
    if up_to is None:
        up_to = max([3, *(th for b in basis.all_blocks() for th in b.thresholds().values())])
    return [{**{t: n for t in group_types}, **fixed} for n in range(1, up_to + 1)]


def verify(
    basis: WeightSpaceBasis,
    levels: Sequence[Mapping[str, int]],
    max_entries: int = DEFAULT_MAX_ENTRIES,
    progress: Callable[[int, Mapping[str, int]], None] | None = None,
) -> VerifyReport:
    """Check every block, bias and invariant at each size assignment in ``levels``;
    ``progress(levels done, level)`` is called after each level."""
    start = time.perf_counter()
    report = VerifyReport()
    for done, sizes in enumerate(levels, 1):
        for block in basis.all_blocks():
            check = check_block(block, sizes, max_entries)
            report.checks.append(dataclasses.replace(check, level=dict(sizes)))
        if progress is not None:
            progress(done, sizes)
    report.seconds = time.perf_counter() - start
    return report


def work_estimate(
    basis: WeightSpaceBasis,
    levels: Sequence[Mapping[str, int]],
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> int:
    """Map entries :func:`verify` would solve (blocks over the limit count as nothing):
    the cost up front, without solving anything."""
    total = 0
    for sizes in levels:
        for block in basis.all_blocks():
            full = _sizes_of(block, sizes)
            at = _solve_sizes(block, full, max_entries)
            if at is not None:
                total += math.prod(at[a.type] for a in block.axes)
    return total
