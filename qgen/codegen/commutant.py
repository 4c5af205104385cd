"""Fixed-axis symmetries in generated code (the escnn groups and grids of
:mod:`qgen.kinds.escnn`, or any other non-trivial :class:`FixedAxisKind`): exact
commutant bases baked into the module as literals, each mix that touches such an axis
formed from small coefficients and those bases, and how generated code samples the
symmetry (the kind's :meth:`~qgen.kinds.fixed.FixedAxisKind.generated_sampler`).

For an (output pattern, input pattern) pair of a term group, the block of the group's
weight restricted to those axes lies in the commutant ``span{B_b}`` of the symmetry on
them; the generated layer stores ``theta`` and the ``B_b`` (exact values) and forms
``sum_b theta_b (x) B_b`` (dense on the other fixed axes) at every forward pass, before
the group's one matmul. Plain fixed axes (the trivial kind) are dense and need none of
this. Used by :mod:`qgen.codegen.rendering`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from qgen.codegen.plan import LayerPlan
from qgen.codegen.pytext import int_tuple, lit
from qgen.errors import SpecError
from qgen.kinds import kind_of
from qgen.solver.basis import OUT, Block, GridFactor
from qgen.spec import Spec

__all__ = [
    "Bases",
    "CommutantMap",
    "commutant_context",
    "commutant_map",
    "plain_size",
    "string_pieces",
    "symmetry_axis_types",
]


def _symmetries(spec: Spec) -> list:
    """The declared types whose fixed-axis kind acts (non-trivially), in spec order."""
    return [d for d in spec.types.values() if d.fixed and not kind_of(d).trivial_action]


def symmetry_axis_types(spec: Spec) -> dict[str, str]:
    """Fixed type -> the symmetry type acting on its axes (itself, or the grid it is tied
    to)."""
    out = {}
    for d in _symmetries(spec):
        for t in d.tie or (d.name,):
            out[t] = d.name
    return out


def plain_size(spec: Spec, tensor: str) -> int:
    """Product of the sizes of ``tensor``'s fixed axes that no symmetry acts on."""
    acted = symmetry_axis_types(spec)
    sizes = [
        spec.types[a.type].size
        for a in spec.tensor(tensor).axes
        if spec.types[a.type].fixed and a.type not in acted
    ]
    out = 1
    for n in sizes:
        out *= n
    return out


def number_text(x: float) -> str:
    """An exact literal for a basis or matrix entry: an integer, a small fraction ``n/d``
    (the value the generated code computes, ``n / d``, is the same float), or the float's
    shortest repr."""
    if x == int(x):
        return str(int(x))
    f = Fraction(x).limit_denominator(64)
    if f.numerator / f.denominator == x:
        return f"{f.numerator}/{f.denominator}"
    return repr(float(x))


def sparse_text(array: np.ndarray) -> str:
    """``array`` (leading dim: elements) as text: elements separated by ``;``, each its
    nonzero entries ``flat`` (value 1) or ``flat:value`` in flat (C) order."""
    rows = []
    array = np.asarray(array, dtype=np.float64)
    for row in array.reshape(len(array), array[0].size if len(array) else 0):
        entries = [
            str(i) if v == 1 else f"{i}:{number_text(v)}" for i, v in enumerate(row) if v != 0
        ]
        rows.append(" ".join(entries))
    return "; ".join(rows)


def string_pieces(text: str, width: int) -> list[str]:
    """``text`` cut at spaces into string literals of at most ``width`` characters."""
    pieces, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) + 3 > width:
            pieces.append(current + " ")
            current = word
        else:
            current = candidate
    pieces.append(current)
    return [lit(p) for p in pieces]


@dataclass(frozen=True)
class BasisCode:
    """One baked commutant basis: ``(count, *axis sizes)``, a grid's cells as ``(k, k)``."""

    index: int
    shape: tuple[int, ...]
    text: str
    comment: str


class Bases:
    """The bases a module needs, numbered by first use (deterministic)."""

    def __init__(self) -> None:
        self.items: dict[tuple, BasisCode] = {}

    def add(self, factor, spec: Spec) -> int:
        key = (factor.type, factor.variances)
        if key not in self.items:
            array = factor.kind.basis(factor.variances)
            if isinstance(factor, GridFactor):
                k = factor.kind.rep.grid
                array = array.reshape(len(array), *[k] * (2 * len(factor.variances)))
            sides = {OUT: [], "in": []}
            for a in factor.axes:
                sides[a.side].append(spec.tensor(a.tensor).axes[a.position])
            where = "; ".join(
                f"{side} {', '.join(map(str, axes))}" for side, axes in sides.items() if axes
            )
            comment = f"{factor.type} ({factor.kind.describe()}), {where}: {len(array)} map(s)"
            index = len(self.items)
            self.items[key] = BasisCode(index, tuple(array.shape), sparse_text(array), comment)
        return self.items[key].index


@dataclass(frozen=True)
class CommutantMap:
    """How one block of a mix (or a bias, or an invariant projection) is formed on fixed
    axes: coefficients ``[o, *out plain, i, *in plain, *counts]`` contracted with the
    bases of the symmetry factors (``equation``; None: the coefficients are the block)."""

    out_shape: tuple[int, ...]
    in_shape: tuple[int, ...]
    counts: tuple[int, ...]
    equation: str | None
    bases: tuple[int, ...]
    out_size: int  # product of the output's fixed sizes
    in_size: int
    maps: int  # basis elements per channel pair
    comment: str
    in_fixed: tuple[int, ...] = ()  # the input's fixed sizes, in axis order

    @property
    def projection(self) -> str | None:
        """For an invariant (no output): the einsum projecting ``[batch, in, *fixed]`` onto
        the coefficients ``[batch, in, *plain, *dims]`` (the block's equation turned around)."""
        if self.equation is None:
            return None
        lhs, result = self.equation.split("->")
        coef, *bases = lhs.split(",")
        return f"z{result},{','.join(bases)}->z{coef}"

    @property
    def in_fixed_literal(self) -> str:
        return int_tuple(self.in_fixed) if self.in_fixed else "()"

    @property
    def bases_literal(self) -> str:
        return int_tuple(self.bases) if self.bases else "()"

    @property
    def literal(self) -> str:
        """``(out plain, in plain, counts, equation, bases, out size, in size)``."""
        items = [
            int_tuple(self.out_shape) if self.out_shape else "()",
            int_tuple(self.in_shape) if self.in_shape else "()",
            int_tuple(self.counts) if self.counts else "()",
            lit(self.equation) if self.equation else "None",
            int_tuple(self.bases) if self.bases else "()",
            str(self.out_size),
            str(self.in_size),
        ]
        return f"({', '.join(items)})"


_AXIS_LETTERS = "abdefghjklmnpqrstuvwxy"  # not c, i, o, z: channels and batch
_BASIS_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXY"


def commutant_map(spec: Spec, out: str | None, in_: str | None, bases: Bases) -> CommutantMap:
    """The block of a mix between a pattern of ``out`` and one of ``in_`` (either None: a
    bias, or an invariant projection), restricted on symmetric fixed axes to their
    commutant."""
    block = Block(spec, spec.tensor(out) if out else None, spec.tensor(in_) if in_ else None)
    fixed = [a for a in block.axes if spec.types[a.type].fixed]
    factors = [f for f in block.fixed_factors if not f.kind.trivial_action]
    owned = {a for f in factors for a in f.axes}
    letter = dict(zip(fixed, _AXIS_LETTERS, strict=False))
    if len(fixed) > len(_AXIS_LETTERS) or len(factors) > len(_BASIS_LETTERS):
        raise SpecError("too many fixed axes in one block for generated code", spec.source)

    def sizes(side: str, plain: bool) -> tuple[int, ...]:
        return tuple(
            spec.types[a.type].size
            for a in fixed
            if a.side == side and (not plain or a not in owned)
        )

    def subscript(side: str, plain: bool) -> str:
        return "".join(letter[a] for a in fixed if a.side == side and (not plain or a not in owned))

    used = tuple(bases.add(f, spec) for f in factors)
    counts = tuple(f.count({}) for f in factors)
    equation = None
    if factors:
        uppers = _BASIS_LETTERS[: len(factors)]
        coef = ("o" + subscript(OUT, True) if out else "") + (
            "i" + subscript("in", True) if in_ else ""
        )
        operands = [coef + uppers] + [
            u + "".join(letter[a] for a in f.axes) for u, f in zip(uppers, factors, strict=True)
        ]
        result = ("o" + subscript(OUT, False) if out else "") + (
            "i" + subscript("in", False) if in_ else ""
        )
        equation = ",".join(operands) + "->" + result
    prod = 1
    for c in counts:
        prod *= c
    out_size, in_size = (_product(sizes(side, False)) for side in (OUT, "in"))
    names = " x ".join(f"{f.type} ({f.kind.describe()})" for f in factors) or "dense"
    return CommutantMap(
        out_shape=sizes(OUT, True),
        in_shape=sizes("in", True),
        counts=counts,
        equation=equation,
        bases=used,
        out_size=out_size,
        in_size=in_size,
        maps=block.fixed_multiplicity,
        comment=(
            f"{out} <- {in_}" if out and in_ else f"{out} bias" if out else f"{in_} invariants"
        )
        + f": {names}",
        in_fixed=sizes("in", False),
    )


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def commutant_context(spec: Spec, plan: LayerPlan, bases: Bases) -> dict:
    """Per symmetry type: how generated code samples it (its kind's sampler); tables for
    ``_block_counts``; the invariant projections of the head (all empty when no fixed axis
    carries a symmetry)."""
    symmetries = _symmetries(spec)
    if not symmetries:
        return {
            "symmetries": [],
            "symmetry_axes": {},
            "commutant_dims": {},
            "grids": {},
            "head_maps": [],
        }
    types = []
    for d in symmetries:
        kind = kind_of(d)
        try:
            function, args, table = kind.generated_sampler(d)
        except SpecError as error:
            raise SpecError(error.message, source=spec.source) from None
        entry = {"name": d.name, "describe": kind.describe(), "tie": d.tie, "elements": None}
        call = ", ".join([*(repr(a) for a in args), "generator"])
        if table is not None:
            table = np.asarray(table)
            entry["elements"] = sparse_text(table)
            entry["elements_shape"] = tuple(table.shape)
            call = f"_ELEMENTS_{d.name}, " + call
        entry["sample"] = f"{function}({call})"
        types.append(entry)
    dims = {}
    for d in symmetries:
        top = max(
            sum(a.type in (d.tie or (d.name,)) for a in t.axes) // (2 if d.tie else 1)
            for t in spec.tensors
        )
        kind = kind_of(d)
        dims[d.name] = [kind.count((1,) * m) for m in range(2 * top + 1)]
    head = [commutant_map(spec, None, p.tensor, bases) for p in plan.pooled.inputs]
    axes = {}
    for t in spec.tensors:
        mine = {}
        for d in symmetries:
            m = sum(a.type in (d.tie or (d.name,)) for a in t.axes) // (2 if d.tie else 1)
            if m:
                mine[d.name] = m
        axes[t.name] = mine
    return {
        "symmetry_axes": axes,
        "symmetries": types,
        "commutant_dims": dims,
        "grids": {d.name: d.tie for d in symmetries if d.tie},
        "head_maps": head if any(m.equation for m in head) else [],
    }
