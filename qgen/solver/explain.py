"""Basis terms in readable index notation (``qgen explain``).

A term is a diagram: per group type, a partition of the block's axes. Each
part gets a letter; repeated letters on one tensor mean its diagonal. Parts
with only input axes are pooled (``mean``), parts with only output axes are
broadcast, parts with both carry the input index to the output. Fixed axes
get capital letters and a dense weight ``w`` over them, summed over the
input ones; on the axes of an escnn type ``w`` lies in the group's commutant (a
combination of its exact basis maps).
"""

from __future__ import annotations

import string

from qgen.solver.basis import IN, OUT, Block, BlockAxis, Term

__all__ = ["describe_block", "describe_term"]


def _axes_phrase(axes: list[BlockAxis]) -> str:
    tensor = axes[0].tensor
    positions = ", ".join(str(a.position) for a in axes)
    if len(axes) == 1:
        return f"{tensor} axis {positions}"
    return f"the diagonal of {tensor} axes {positions}"


def describe_term(term: Term) -> tuple[str, list[str]]:
    """``(formula, [one line per part])`` for one term."""
    block = term.block
    letter: dict[BlockAxis, str] = {}
    notes: list[str] = []
    pooled: list[str] = []
    lower = iter(string.ascii_lowercase)
    order = {a: i for i, a in enumerate(block.axes)}
    for type_, axes in sorted(term.diagram(), key=lambda part: order[part[1][0]]):
        name = next(lower)
        for a in axes:
            letter[a] = name
        outs = [a for a in axes if a.side == OUT]
        ins = [a for a in axes if a.side == IN]
        if outs and ins:
            what = f"{_axes_phrase(ins)} -> {_axes_phrase(outs)}"
        elif ins:
            what = f"pool {_axes_phrase(ins)}"
            pooled.append(name)
        else:
            what = f"broadcast along {_axes_phrase(outs)}"
        notes.append(f"{name} ({type_}): {what}")

    upper = iter(string.ascii_uppercase)
    fixed_out, fixed_in = [], []
    for a in block.axes:
        if a not in letter:
            letter[a] = next(upper)
            (fixed_out if a.side == OUT else fixed_in).append(letter[a])

    def indexed(side: str) -> str:
        axes = [a for a in block.axes if a.side == side]
        tensor = axes[0].tensor
        return f"{tensor}[{', '.join(letter[a] for a in axes)}]"

    lhs = indexed(OUT) if block.out is not None else "R"
    rhs = indexed(IN) if block.in_ is not None else "1"
    if pooled:
        rhs = f"mean_{{{','.join(pooled)}}} {rhs}"
    weight = "w"
    if fixed_out or fixed_in:
        weight = f"w[{', '.join(fixed_out + fixed_in)}]"
    if fixed_in:
        weight = f"sum_{{{','.join(fixed_in)}}} {weight}"
    formula = f"{lhs} += {weight} * {rhs}" if block.in_ is not None else f"{lhs} += {weight}"
    return formula, notes


def describe_block(block: Block) -> list[str]:
    """The lines ``qgen explain`` prints for one block."""

    def signature(tensor) -> str:
        return f"{tensor.name}[{', '.join(map(str, tensor.axes))}]" if tensor else "R"

    terms = list(block.terms())
    mult = block.fixed_multiplicity
    fixed = ""
    acting = [f for f in block.fixed_factors if not f.kind.trivial_action]
    if acting:
        names = ", ".join(f"{f.type} ({f.kind.describe()}): {f.count({})}" for f in acting)
        rest = "; dense over the other fixed axes" if len(acting) < len(block.fixed_factors) else ""
        fixed = f" x {mult} (commutant on escnn axes, {names}{rest})"
    elif block.fixed_factors:
        fixed = f" x {mult} (dense over fixed axes)"
    lines = [
        f"{block.label}: {signature(block.out)} <- {signature(block.in_)}",
        f"  {len(terms)} term(s){fixed} = {block.count()} generic maps",
    ]
    for i, term in enumerate(terms, 1):
        formula, notes = describe_term(term)
        lines.append(f"  [{i}] {formula}")
        lines += [f"        {n}" for n in notes]
    if not terms:
        reasons = [
            f"{f.type} ({f.kind.name}) allows no term on axes with variances "
            + str(tuple(a.variance for a in f.axes))
            for f in block.group_factors
            if not f.terms
        ]
        lines += [f"  no equivariant map: {r}" for r in reasons]
    return lines
