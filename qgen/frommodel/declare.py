"""The ``fixed_axes:`` an imported model's spec declares (the reader's default for sizes).

A model read from torch has fixed axes: its input features and classes (``io="fixed"``),
a vocabulary, token positions, a patch-embedding kernel, and hidden channels whose
symmetry an operation gave up (a channel shuffle, a window reshape). Every linear map
between the indices of fixed axes is equivariant, so a layer over a few of them is
large: a tiny BERT has 22,769,932 maps per channel pair dense, over the build budget
of 2,000,000 (:data:`qgen.solver.cost.DEFAULT_BUDGET`).

With ``fixed_axes="auto"`` (the default of :func:`qgen.spec_from_module` and of
``qgen spec --from-model``), a spec over the budget gets the declaration that
:func:`qgen.solver.cost.plan_fixed_axes` chooses: fixed axes declared ``tied`` (the
layer shares its maps across the axis; the group does not move it, so no symmetry is
claimed on it), the biggest saving first, until the layer fits. The declaration is in
the spec's text, with comments that say for each axis its size, the operation that
fixed it and the layer's maps before and after; the user edits or removes entries
(``qgen count`` lists every choice's maps). A model that no such declaration fits is
refused, naming the operations that fixed its largest axes. ``fixed_axes="none"``
keeps the dense spec (``qgen build`` then refuses it over the budget); a mapping
declares the user's own choices.
"""

from __future__ import annotations

from collections.abc import Mapping

from qgen.data.adapters import WeightSpace
from qgen.decls import dump_spec
from qgen.errors import UsageError
from qgen.solver.cost import DEFAULT_BUDGET, BudgetError, layer_cost, plan_fixed_axes
from qgen.spec import Spec, parse_spec
from qgen.spec.fixed_axes import CHOICES, apply_fixed_axes

__all__ = ["declare_fixed_axes", "declared_text"]

#: what each choice keeps of the symmetry, for the comments above a declaration
_KEPT = {
    "tied": "on a tied axis none is claimed (as dense).",
    "set": "on a set axis, its permutations are declared a symmetry of the networks.",
    "drop": "the tensors of a dropped axis are left out (not read, not written).",
}
#: how many fixed axes a refusal names with the operation that fixed them
_NAMED = 2


def declare_fixed_axes(
    ws: WeightSpace,
    fixed_axes: str | Mapping[str, str],
    budget: int | float | None,
    origins: Mapping[str, str],
) -> WeightSpace:
    """``ws`` with its spec declaring ``fixed_axes`` (see the module docstring); sets
    ``ws.dense_spec``, ``ws.fixed_axes`` (``{type: choice}``), ``ws.fixed_axes_maps``
    (the maps dense and declared, or None), ``ws.fixed_origins`` (``{fixed type: the
    operation that fixed it}``) and ``ws.text`` (the spec's YAML)."""
    dense = ws.spec
    limit = DEFAULT_BUDGET if budget is None else budget
    ws.dense_spec, ws.fixed_origins, ws.fixed_axes = dense, dict(origins), {}
    #: the layer's maps dense and with the declaration (set when something is declared)
    ws.fixed_axes_maps = None
    text, choices = dump_spec(dense), {}
    if isinstance(fixed_axes, Mapping):
        choices = dict(fixed_axes)
        try:
            apply_fixed_axes(dense, choices)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        choices = {n: c for n, c in choices.items() if c != "dense"}
        if choices:
            steps = _steps(dense, choices)
            text = declared_text(dense, choices, origins, steps, limit, "user")
            ws.fixed_axes_maps = (steps[0][0], steps[-1][0])
    elif fixed_axes == "auto":
        plan = plan_fixed_axes(dense, limit)
        if plan.before > limit and not plan.fits:
            raise BudgetError(_refusal(dense, plan, origins, limit))
        choices = plan.choices
        if choices:
            steps = [(plan.before, None)] + [(n, name) for name, _, n in plan.steps]
            text = declared_text(dense, choices, origins, steps, limit, "auto")
            ws.fixed_axes_maps = (plan.before, plan.after)
    elif fixed_axes != "none":
        raise UsageError(
            f"fixed_axes must be 'auto', 'none' or a mapping {{type: choice}}, got {fixed_axes!r}"
        )
    spec = parse_spec(text, source=dense.source)
    ws.fixed_axes = choices
    ws.spec, ws.text = spec, text
    ws.sources = {t.name: ws.sources[t.name] for t in spec.tensors}  # dropped tensors go
    return ws


def _steps(spec: Spec, choices: Mapping[str, str]) -> list[tuple[int, str | None]]:
    """The layer's maps dense, then after each choice in turn (exact, from the solver)."""
    out: list[tuple[int, str | None]] = [(layer_cost(spec).maps, None)]
    done: dict[str, str] = {}
    for name, choice in choices.items():
        done[name] = choice
        out.append((layer_cost(apply_fixed_axes(spec, done)).maps, name))
    return out


def declared_text(
    dense: Spec,
    choices: Mapping[str, str],
    origins: Mapping[str, str],
    steps: list[tuple[int, str | None]],
    budget: int | float,
    by: str,
) -> str:
    """The YAML of ``dense`` followed by its ``fixed_axes:`` entry, with comments: why,
    per axis its size, the operation that fixed it, the maps after it, and what each
    choice keeps."""
    before = steps[0][0]
    after = steps[-1][0]
    if by == "auto":
        why = [
            "fixed_axes: chosen by the model reader (fixed_axes='auto', the default of",
            f"qgen spec --from-model): with every axis dense the layer has {before:,}",
            f"parameters per channel pair, over the build budget of {budget:,}; with",
            f"these axes declared it has {after:,}.",
        ]
    else:
        why = [f"fixed_axes: declared by the user; {before:,} maps dense, {after:,} with them."]
    lines = ["", *why]
    for maps, name in steps[1:]:
        lines.append(
            f"  {name}: {choices[name]}, size {dense.types[name].size}: {maps:,} maps with it "
            "and the ones above"
        )
        lines.append(f"    fixed at {origins.get(name, 'an unknown operation')}")
    kept = sorted({c for c in choices.values()})
    lines += [f"{c}: {CHOICES[c]}." for c in kept]
    lines += ["Symmetry kept: the group of every other type, unchanged; " + _KEPT[c] for c in kept]
    lines += [
        "Change an entry to set, drop or dense, or remove it; qgen count lists each",
        "choice's maps; qgen spec --fixed-axes none writes the spec without it.",
    ]
    comment = "\n".join(f"# {line}".rstrip() for line in lines)
    entries = ", ".join(f"{n}: {c}" for n, c in choices.items())
    return f"{dump_spec(dense)}{comment}\nfixed_axes: {{{entries}}}\n"


def _refusal(dense: Spec, plan, origins: Mapping[str, str], budget: int | float) -> str:
    """Over the budget even with every fixed axis tied: the counts, the biggest block
    left, and the operations that fixed the largest fixed axes (the user's lines)."""
    left = layer_cost(apply_fixed_axes(dense, plan.choices)).biggest
    block = f"; biggest block left {left[0][0]} {left[0][1]:,}" if left else ""
    fixed = sorted(
        (d for d in dense.types.values() if d.fixed and d.size and d.size > 1),
        key=lambda d: (-d.size, origins.get(d.name, "").startswith("the model's")),
    )
    named = "; ".join(f"{d.name} ({d.size}) at {origins.get(d.name, '?')}" for d in fixed[:_NAMED])
    named = named or "none"
    return (
        f"{dense.name}: {plan.before:,} parameters per channel pair, {plan.after:,} with every "
        f"fixed axis that helps declared tied: over the budget of {budget:,}{block}; raise it "
        f"(--budget N) or keep it dense (--fixed-axes none); largest fixed axes: {named}"
    )
