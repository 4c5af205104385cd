"""The cost lines of ``qgen count``: parameters per channel pair, the budget, and the
``fixed_axes:`` choices of the large fixed axes with their exact counts."""

from __future__ import annotations

from collections.abc import Mapping

from qgen.solver.basis import WeightSpaceBasis
from qgen.solver.cost import DEFAULT_BUDGET, fixed_axis_options, layer_cost

__all__ = ["cost_lines"]


def cost_lines(basis: WeightSpaceBasis, sizes: Mapping[str, int], budget: int) -> list[str]:
    """What building the layer costs, whether it fits ``budget``, and the large axes'
    options (each choice's maps for the whole layer, that axis alone changed)."""
    cost = layer_cost(basis, sizes)
    which = "the default budget" if budget == DEFAULT_BUDGET else "the budget"
    if cost.maps > budget:
        verdict = (
            f"budget: OVER {which} of {budget:,} parameters per channel pair: qgen build "
            "refuses it; declare large fixed axes (fixed_axes:) or raise it with --budget N"
        )
    else:
        verdict = f"budget: within {which} of {budget:,} parameters per channel pair"
    lines = [f"cost: {cost.statement()}", verdict]
    options = fixed_axis_options(basis.spec)
    if options:
        lines.append("large fixed axes (fixed_axes: choices; the layer's maps with each):")
        for name, counts in options.items():
            each = "; ".join(f"{c} {n:,}" for c, n in counts.items())
            lines.append(f"  {name} (size {basis.spec.types[name].size}): {each}")
    return lines
