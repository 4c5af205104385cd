"""What a layer costs before it is built, the budget it must fit, and the ways to fit it.

A generated ``EquivariantLayer(c_in, c_out)`` holds one weight per equivariant linear map
and pair of channels, and one bias per equivariant bias map and output channel::

    parameters = maps * c_in * c_out + bias maps * c_out

so its size is fixed by the *parameters per channel pair*, ``maps``, the total of
``qgen count``. Its forward work grows the same way: the dense maps between large fixed
axes (a vocabulary, positions, pixels) are both most of the parameters and most of the
multiply-adds.

The budget. ``qgen build``, ``qgen.build`` and ``qgen.compile`` refuse a spec whose
layer needs more than :data:`DEFAULT_BUDGET` parameters per channel pair, naming the
cost, the biggest blocks and the options (``fixed_axes:`` choices for its large fixed
axes, with the count each gives, or a higher budget: ``--budget N``, ``budget=N``).
2,000,000 per channel pair is 8 MB of float32 weights at one channel and 2 GB at 16:
the 784-input MLP of NFN's benchmarks (1,269,190) fits; a tiny BERT with dense
vocabulary and position axes (47,820,428) does not.

>>> from qgen.spec import parse_spec
>>> spec = parse_spec("{name: m, arch: mlp, widths: [784, 32, 32, 10], activation: gelu}")
>>> cost = layer_cost(spec)
>>> cost.maps, cost.biggest[0]
(1269190, ('W1 <- W1', 1229312))
>>> fixed_axis_options(spec)["x"]
{'dense': 1269190, 'set': 732, 'tied': 732, 'drop': 678}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qgen.decls import Spec
from qgen.errors import QgenError
from qgen.solver.basis import WeightSpaceBasis, solve
from qgen.spec.fixed_axes import CHOICES, apply_fixed_axes, choosable

__all__ = [
    "DEFAULT_BUDGET",
    "LARGE_AXIS",
    "BudgetError",
    "FixedAxesPlan",
    "LayerCost",
    "check_budget",
    "choose_fixed_axes",
    "fixed_axis_options",
    "layer_cost",
    "plan_fixed_axes",
]

#: parameters per channel pair (equivariant maps) a layer may have unless the user raises it
DEFAULT_BUDGET = 2_000_000
#: a fixed axis at least this long is *large*: ``qgen count`` lists its choices, and the
#: model-import default (:func:`choose_fixed_axes`) considers it
LARGE_AXIS = 64
#: how many of the biggest blocks a cost statement names
_SHOWN = 3


class BudgetError(QgenError):
    """A layer over the parameter budget (the CLI prints it on one line, exit status 2)."""


@dataclass(frozen=True)
class LayerCost:
    """The cost of a spec's layer, per channel pair."""

    name: str
    #: equivariant linear maps: the layer's parameters per pair of channels
    maps: int
    #: equivariant bias maps: parameters per output channel
    bias: int
    #: invariant linear functionals (what the invariant head reads, per channel)
    invariant: int
    #: blocks ``(out <- in, maps)``, largest first (the first few)
    biggest: tuple[tuple[str, int], ...]

    def parameters(self, in_channels: int, out_channels: int) -> int:
        """Parameters of ``EquivariantLayer(in_channels, out_channels)`` (with its bias)."""
        return self.maps * in_channels * out_channels + self.bias * out_channels

    def statement(self) -> str:
        """One line: maps, parameters per channel pair, the biggest blocks."""
        shown = ", ".join(
            f"{label} {n:,} ({n / max(self.maps, 1):.1%})" for label, n in self.biggest
        )
        return (
            f"{self.name}: {self.maps:,} parameters per channel pair ({self.maps:,} "
            f"equivariant maps, + {self.bias:,} bias per output channel); biggest blocks: "
            f"{shown or 'none'}"
        )


def _as_basis(spec: Spec | WeightSpaceBasis) -> WeightSpaceBasis:
    return spec if isinstance(spec, WeightSpaceBasis) else solve(spec)


def layer_cost(spec: Spec | WeightSpaceBasis, sizes: Mapping[str, int] | None = None) -> LayerCost:
    """The cost of ``spec``'s layer (at generic sizes of the group types, or ``sizes``)."""
    basis = _as_basis(spec)
    counts = basis.counts(sizes or {})
    blocks = [
        (f"{s} <- {t}", n) for s, row in counts["equivariant"].items() for t, n in row.items() if n
    ]
    blocks.sort(key=lambda b: -b[1])
    total = counts["total"]
    return LayerCost(
        basis.spec.name,
        total["equivariant"],
        total["bias"],
        total["invariant"],
        tuple(blocks[:_SHOWN]),
    )


def large_axes(spec: Spec, large: int = LARGE_AXIS) -> list[str]:
    """The plain fixed types of ``spec`` of size at least ``large``, largest first."""
    found = [
        d for d in spec.types.values() if choosable(d) and d.size is not None and d.size >= large
    ]
    tied = {t for d in spec.types.values() if d.tie for t in d.tie}
    return [d.name for d in sorted(found, key=lambda d: -d.size) if d.name not in tied]


def fixed_axis_options(
    spec: Spec, names: list[str] | None = None, large: int = LARGE_AXIS
) -> dict[str, dict[str, int]]:
    """Per large fixed type (or ``names``): the layer's maps under each ``fixed_axes:``
    choice for it alone (``dense`` is the spec as it is). Exact counts, from the solver."""
    out: dict[str, dict[str, int]] = {}
    for name in large_axes(spec, large) if names is None else names:
        counts = {}
        for choice in CHOICES:
            try:
                variant = apply_fixed_axes(spec, {name: choice})
            except ValueError:  # dropping it leaves nothing
                continue
            counts[choice] = solve(variant).counts()["total"]["equivariant"]
        out[name] = counts
    return out


def budget_refusal(cost: LayerCost, budget: int, spec: Spec) -> str:
    """The one-line refusal: the cost, the budget, and the options with their counts (for
    the largest plain fixed axes, however long: a tiny transformer's 50-token vocabulary
    and 32 positions already cost millions of maps)."""
    options = []
    for name, counts in fixed_axis_options(spec, large_axes(spec, 1)[:_SHOWN]).items():
        each = ", ".join(f"{c} {n:,}" for c, n in counts.items() if c != "dense")
        options.append(f"{{{name}: set|tied|drop}} ({each})")
    declare = (
        f"declare fixed_axes: {'; '.join(options)}"
        if options
        else "no large fixed axis to declare: smaller sizes or fewer tensors"
    )
    label, n = cost.biggest[0] if cost.biggest else ("none", 0)
    # the cost, the budget and how to raise it first: QgenError keeps one line of at most
    # a few hundred characters, so the longest part (the options) comes last
    return (
        f"{cost.name}: {cost.maps:,} parameters per channel pair, over the budget of "
        f"{budget:,} (biggest block {label} {n:,}); raise it (--budget N, or budget=N in "
        f"qgen.build / qgen.compile) or {declare}"
    )


def check_budget(spec: Spec, budget: int | float | None = None) -> LayerCost:
    """The cost of ``spec``'s layer; raises :class:`BudgetError` (one line: the cost and
    the options) when it needs more than ``budget`` parameters per channel pair
    (``None``: :data:`DEFAULT_BUDGET`; ``float("inf")``: no limit)."""
    budget = DEFAULT_BUDGET if budget is None else budget
    if budget <= 0:
        raise BudgetError(f"the budget must be a positive number of parameters, got {budget}")
    cost = layer_cost(spec)
    if cost.maps > budget:
        raise BudgetError(budget_refusal(cost, budget, spec))
    return cost


@dataclass(frozen=True)
class FixedAxesPlan:
    """What :func:`plan_fixed_axes` chose, with the exact counts (for the note the model
    reader writes above the ``fixed_axes:`` it declares)."""

    #: ``{type: choice}``, in the order chosen (the biggest saving first)
    choices: dict[str, str]
    #: the layer's maps with every axis dense (the spec as imported)
    before: int
    #: the layer's maps with ``choices``
    after: int
    #: ``(type, size, maps with it and the earlier choices)`` per choice, in order
    steps: tuple[tuple[str, int, int], ...]
    budget: int | float

    @property
    def fits(self) -> bool:
        return self.after <= self.budget


def _maps(spec: Spec) -> int:
    """The layer's total maps (what ``counts()["total"]["equivariant"]`` gives, without
    the per-block table)."""
    basis = solve(spec)
    bias = {name: b.count({}) for name, b in basis.bias.items()}
    inv = {name: b.count({}) for name, b in basis.invariant.items()}
    return basis.total(basis.coupled_counts({}), bias, inv)


@lru_cache(maxsize=256)
def _axis_factors(choice: str, n: int, top: int) -> tuple[int, ...]:
    """The maps on ``k`` axes (out and in together) of one type of size ``n`` declared
    ``choice``, for ``k = 0..top``: from the solver itself, on a spec of that type alone
    (for ``set`` and ``tied``, the partition diagrams on ``k`` points the layer uses)."""
    from qgen.spec import parse_spec

    tensors = ", ".join(f"T{j}: [{', '.join(['u'] + ['t'] * j)}]" for j in range(top + 1))
    probe = parse_spec(
        f"{{name: probe, types: {{t: {{size: {n}}}, u: {{size: 1}}}}, tensors: {{{tensors}}}}}"
    )
    eq = solve(apply_fixed_axes(probe, {"t": choice})).counts()["equivariant"]
    return tuple(eq[f"T{k // 2}"][f"T{k - k // 2}"] for k in range(top + 1))


def plan_fixed_axes(
    spec: Spec,
    budget: int | float | None = None,
    prefer: str = "tied",
    large: int = 2,
) -> FixedAxesPlan:
    """The choices of :func:`choose_fixed_axes` and the counts behind them.

    Greedy: each round takes the candidate axis whose choice leaves the fewest maps,
    until the layer fits. The counts come from the spec's own count table, solved once:
    a plain fixed type is a factor of its own in every block (the group acts on the
    other factors), so a block with ``k`` of its axes (out and in together) holds
    ``n ** k`` times the maps of the rest dense, and ``P(k, n)`` times as ``set`` or
    ``tied`` (set partitions of ``k`` into at most ``n`` blocks); ``drop`` removes its
    tensors' blocks. The plan's counts are exact integers, and the final one is checked
    against a fresh solve of the declared spec. A ShuffleNet with 38 fixed channel axes
    is planned in under a second this way, against a minute of one solve per candidate
    and round.
    """
    if prefer not in CHOICES or prefer == "dense":
        raise ValueError(f"prefer must be one of set, tied, drop, got {prefer!r}")
    budget = DEFAULT_BUDGET if budget is None else budget
    basis = solve(spec)
    counts = basis.counts()
    before = counts["total"]["equivariant"]
    if before <= budget:
        return FixedAxesPlan({}, before, before, (), budget)
    names = [t.name for t in spec.tensors]
    eq = counts["equivariant"]
    big = max((n for row in eq.values() for n in row.values()), default=0) >= 2**40
    table = np.array([[eq[s][t] for t in names] for s in names], dtype=object if big else np.int64)
    nested = {d.within for d in spec.types.values() if d.within}
    candidates = [
        n for n in large_axes(spec, large) if n not in nested and not spec.types[n].within
    ]
    # per candidate: how many of its axes each tensor has
    per = {
        c: np.array([sum(a.type == c for a in t.axes) for t in spec.tensors]) for c in candidates
    }
    if prefer == "drop":  # a choice that leaves no tensor is no choice
        candidates = [c for c in candidates if not per[c].all()]

    def factor(c: str, exact: bool):
        k = per[c][:, None] + per[c][None, :]
        if prefer == "drop":
            keep = (k == 0).astype(np.int64)
            return keep, None
        n = spec.types[c].size or 0
        top = int(k.max())
        num = np.array(_axis_factors(prefer, n, top), dtype=object)
        den = np.array([n**i for i in range(top + 1)], dtype=object)
        if not exact:
            return (num / den).astype(float)[k], None
        if not big:
            num, den = num.astype(np.int64), den.astype(np.int64)
        return num[k], den[k]

    current = table.astype(float)
    exact = table
    chosen: dict[str, str] = {}
    steps: list[tuple[str, int, int]] = []
    maps = before
    while maps > budget and candidates:
        totals = {c: float((current * factor(c, False)[0]).sum()) for c in candidates}
        best = min(candidates, key=lambda c: totals[c])  # ties: the larger axis (first)
        if totals[best] >= maps:
            break
        num, den = factor(best, True)
        exact = exact * num if den is None else exact // den * num
        current = current * factor(best, False)[0]
        maps = int(exact.sum())
        chosen[best] = prefer
        steps.append((best, spec.types[best].size or 0, maps))
        candidates.remove(best)
    if chosen and _maps(apply_fixed_axes(spec, chosen)) != maps:  # the factor rule broke
        raise QgenError(
            f"{spec.name}: the counts of fixed_axes {chosen} do not agree with the solver's; "
            "this is a bug in qgen.solver.cost, please report it"
        )
    return FixedAxesPlan(chosen, before, maps, tuple(steps), budget)


def choose_fixed_axes(
    spec: Spec,
    budget: int | float | None = None,
    prefer: str = "tied",
    large: int = 2,
) -> dict[str, str]:
    """A default ``fixed_axes:`` for ``spec``: plain fixed axes (size >= ``large``) turned
    to ``prefer`` (``tied`` by default: no symmetry claimed; ``set`` or ``drop`` also),
    the one that saves the most maps first, until the layer fits ``budget`` (default
    :data:`DEFAULT_BUDGET`). Axes that need no choice stay dense, and are not listed; a
    layer within the budget gets ``{}``. (:func:`plan_fixed_axes` has the counts.)

    The model reader (:func:`qgen.spec_from_module`, ``qgen spec --from-model``) applies
    it by default to a layer over the budget and writes the choices into the spec as
    ``fixed_axes:``, so the user sees and can change them.

    >>> from qgen.spec import parse_spec
    >>> spec = parse_spec("{name: m, arch: mlp, widths: [784, 32, 32, 10], activation: gelu}")
    >>> choose_fixed_axes(spec), choose_fixed_axes(spec, budget=1_000)
    ({}, {'x': 'tied'})
    """
    return plan_fixed_axes(spec, budget, prefer, large).choices
