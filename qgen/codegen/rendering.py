"""Rendering a layer plan into a standalone PyTorch module (jinja2 templates, package data).

The templates live in the repository's top-level ``templates/``; the package reaches them
as ``qgen/codegen/templates`` (a link in the source tree, copied into wheels as package data) and
loads them with jinja2's ``PackageLoader``, so any install (editable, wheel, ``--user``)
finds them.

The template lays out code; this module computes the pieces that need
thought: the einsum strings that reduce an input pattern (diagonals and
pooling) and place an output pattern (diagonal embedding and broadcasting),
and the literal tables. Names from the spec appear in generated code only as
validated identifiers (see :mod:`qgen.spec`) or as ``repr`` string literals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

from qgen.codegen.blocks import nonlinear_head
from qgen.codegen.blocks import template_context as blocks_context
from qgen.codegen.commutant import (
    Bases,
    CommutantMap,
    commutant_context,
    commutant_map,
    plain_size,
    string_pieces,
)
from qgen.codegen.emit import emit, emit_with_summaries
from qgen.codegen.emit import outputs as emit_outputs
from qgen.codegen.passes import compile_program, head_program
from qgen.codegen.plan import (
    MAX_LAYER_TERMS,
    Group,
    InPattern,
    LayerPlan,
    OutPattern,
    plan_layer,
)
from qgen.codegen.pytext import doc_text, format_source, lit, literal
from qgen.kinds import get_kind, kind_of
from qgen.runtime.source import RUNTIME_MODULES, runtime_for
from qgen.solver.basis import solve
from qgen.spec import Spec
from qgen.version import __version__

__all__ = ["Rendered", "render", "render_module", "render_tests"]


@cache
def _environment() -> jinja2.Environment:
    """The template environment (one per process: templates are compiled once)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qgen.codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["py"] = lit
    env.filters["tuple_literal"] = lambda values: literal(tuple(values))
    env.filters["literal"] = literal
    return env


@dataclass(frozen=True)
class GroupCode:
    """What the templates need of a group of terms: its mix's init tables and, on escnn
    axes, how the mix's blocks are formed (the computation itself is the program's)."""

    group: Group
    in_widths: list[int]
    in_pooled: list[int]  # per input pattern: 1 if it pools (its variance shrinks with width)
    out_fans: list[int]  # per output pattern: input patterns feeding its tensor
    out_fans_kept: list[int]  # per output pattern: unpooled ones among them (all, if none)
    in_tensor_widths: list[str]  # '"W1": 4' per input tensor: fixed positions it feeds the mix
    out_tensor_widths: list[str]  # the same per output tensor: fixed positions it receives
    #: for a group touching escnn axes: per output pattern (row), per input pattern, how
    #: the block of the mix is formed from coefficients and bases (``CommutantMap.literal``)
    pair_rows: list[list[CommutantMap]] = field(default_factory=list)
    #: for the pooled group of such a spec: per output pattern, its bias (``in_`` empty)
    bias_maps: list[CommutantMap] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def bias_rows(self) -> list[list[CommutantMap]]:
        """The bias as a mix from one constant input: one row per output pattern."""
        return [[m] for m in self.bias_maps]


def _axes_text(spec: Spec, tensor: str) -> str:
    return ", ".join(map(str, spec.tensor(tensor).axes))


def _group_code(plan: LayerPlan, group: Group, bases: Bases) -> GroupCode:
    spec = plan.spec
    pair_rows, bias_maps = [], []
    if group.commutant:
        pair_rows = [
            [commutant_map(spec, q.tensor, p.tensor, bases) for p in group.inputs]
            for q in group.outputs
        ]
        if group.bias:
            bias_maps = [commutant_map(spec, q.tensor, None, bases) for q in group.outputs]
    return GroupCode(
        group,
        in_widths=[p.fixed_size for p in group.inputs],
        in_pooled=[int(bool(p.pool_types)) for p in group.inputs],
        out_fans=[plan.fan_in(q.tensor) for q in group.outputs],
        out_fans_kept=[
            plan.fan_in(q.tensor, pooled=False) or plan.fan_in(q.tensor) for q in group.outputs
        ],
        in_tensor_widths=_tensor_widths(group.inputs, plan.spec),
        out_tensor_widths=_tensor_widths(group.outputs, plan.spec),
        pair_rows=pair_rows,
        bias_maps=bias_maps,
    )


def _tensor_widths(patterns: list[InPattern] | list[OutPattern], spec: Spec) -> list[str]:
    """Per tensor: its patterns times the size of its plain fixed axes (escnn axes are
    counted by the commutant dimensions of ``_block_counts``, not here)."""
    widths: dict[str, int] = {}
    for p in patterns:
        widths[p.tensor] = widths.get(p.tensor, 0) + plain_size(spec, p.tensor)
    return [f"{lit(t)}: {w}" for t, w in widths.items()]


def _context(spec: Spec, plan: LayerPlan) -> dict:
    kinds = sorted({t.kind for t in spec.types.values() if not t.fixed})
    kind_objs = [get_kind(k) for k in kinds]
    uses = {
        name: sum(a.type == name for ts in spec.tensors for a in ts.axes) for name in spec.types
    }
    quasi_types = [
        (t.name, get_kind(t.kind), uses[t.name])
        for t in spec.types.values()
        if not t.fixed and get_kind(t.kind).continuous and uses[t.name]
    ]
    bases = Bases()
    groups = [_group_code(plan, g, bases) for g in plan.groups]
    program = compile_program(plan)
    head = head_program(program)
    symmetry = commutant_context(spec, plan, bases)
    return {
        "spec": spec,
        "version": __version__,
        "source": doc_text(Path(spec.source).name),
        "sha256": spec.sha256,
        "plan": plan,
        "groups": groups,
        **_forward_context(program, head),
        "samplers": {t.name: get_kind(t.kind).sampler for t in spec.types.values() if not t.fixed},
        "nested": {t.name: t.within for t in spec.types.values() if t.within},
        "quasi_types": quasi_types,
        **symmetry,
        "bases": sorted(bases.items.values(), key=lambda b: b.index),
        "string_pieces": string_pieces,
        "tensor_axes": {t.name: literal(tuple(str(a) for a in t.axes)) for t in spec.tensors},
        "total": plan.total,
        "n_blocks": len(spec.tensors) ** 2,
        "plain_fixed": _plain_fixed_types(spec),
        "blocks": blocks_context(spec, sum(plan.invariant_counts.values())),
        "nonlinear_head": nonlinear_head(spec),
        #: the per-entry factors the kinds allow ("positive" scales, "sign" flips)
        "entry_factors": {k.entry_factor for k in kind_objs},
        **_head_tables(spec),
        "element_tables": _element_tables(spec),
        "type_lines": {t.name: _type_line(t) for t in spec.types.values()},
    }


def _forward_context(program, head) -> dict:
    """The layer's forward as text, and the summaries function the forward and the
    invariant head share (when the space has invariant summaries at all)."""
    if not head.ops:
        return {"forward": emit(program), "forward_outputs": emit_outputs(program), "split": None}
    split = emit_with_summaries(program, head)
    return {"forward": split.forward, "forward_outputs": emit_outputs(program), "split": split}


def _type_line(decl) -> str:
    """What acts on a type, for the module docstring."""
    kind = kind_of(decl)
    if not decl.fixed:
        return decl.kind
    if kind.trivial_action:
        return f"fixed, size {decl.size}"
    if decl.tie:
        return f"{kind.describe()}, permuting the cells of {' x '.join(decl.tie)} jointly"
    return f"{kind.describe()}, size {decl.size}"


def _element_tables(spec: Spec) -> dict[str, str]:
    """Per group type (fixed-axis symmetries and grids included), the runtime functions that
    act with its elements along an axis, compose and invert them, as dict literals: the
    kind's ``action`` names them (``_act_monomial``, ``_act_matrix``, ...); a nested type
    acts per index of its outer type (``_act_..._nested``)."""
    tables: dict[str, dict[str, str]] = {"act": {}, "compose": {}, "inverse": {}}
    for t in spec.types.values():
        kind = kind_of(t)
        if kind.trivial_action:
            continue  # a plain fixed type: no element
        action = kind.action
        tables["act"][t.name] = f"_act_{action}" + ("_nested" if t.within else "")
        tables["compose"][t.name] = f"_compose_{action}"
        tables["inverse"][t.name] = f"_inverse_{action}"
    return {
        name: "{" + ", ".join(f"{lit(k)}: {v}" for k, v in table.items()) + "}"
        for name, table in tables.items()
    }


def _head_tables(spec: Spec) -> dict:
    """``NonlinearInvariantHead``'s tables, from the kinds' per-entry factors: per tensor,
    its fixed sizes (None on group axes, which it pools), whether some axis scales entries
    by a positive factor (then entries are divided by their channel norm) or by a sign
    (then they are embedded evenly)."""
    factors = {
        t.name: {get_kind(spec.types[a.type].kind).entry_factor for a in t.axes}
        for t in spec.tensors
    }
    normalized = {t: "positive" in f for t, f in factors.items()}
    even = {t: "sign" in f for t, f in factors.items()}
    return {
        "head_fixed": {
            t.name: tuple(
                spec.types[a.type].size if spec.types[a.type].fixed else None for a in t.axes
            )
            for t in spec.tensors
        },
        "head_normalized_table": normalized,
        "head_even_table": even,
        "head_normalized": [t for t, v in normalized.items() if v],
        "head_even": [t for t, v in even.items() if v],
    }


def _plain_fixed_types(spec: Spec) -> dict[str, int]:
    """Types the group leaves alone (a trivially acting kind, not tied into an escnn grid),
    with their sizes: on their axes every linear map between indices is equivariant, so a
    block's maps are ``(group part) (x) Hom(R^F_in, R^F_out)`` over those indices."""
    tied = {name for t in spec.types.values() if t.tie for name in t.tie}
    return {
        t.name: t.size
        for t in spec.types.values()
        if get_kind(t.kind).trivial_action and t.name not in tied
    }


_RUNTIME_MARKER = "# @qgen-runtime@"
_RUNTIME_BANNER = """\
# --------------------------------------------------------------------------------------
# Runtime: the helpers this module uses, copied from qgen.runtime (torch only; the same
# text in every generated module)
"""


def _with_runtime(skeleton: str, spec: Spec) -> str:
    """``skeleton`` with its runtime pasted in place of the marker (see
    :func:`qgen.runtime.source.runtime_for`), from qgen's runtime modules and those the
    spec's kinds declare."""
    kinds = sorted({t.kind for t in spec.types.values() if not t.fixed})
    extra = [m for k in kinds for m in get_kind(k).runtime]
    modules = tuple(dict.fromkeys([*RUNTIME_MODULES, *extra]))
    head, marker, tail = skeleton.partition(_RUNTIME_MARKER)
    if not marker:
        raise AssertionError("module template has no runtime marker")
    runtime = runtime_for(head + tail, modules)
    return head + _RUNTIME_BANNER + "\n\n" + runtime + tail if runtime else head + tail.lstrip()


@dataclass(frozen=True)
class Rendered:
    """The files generated for one spec, from one solve and one plan."""

    module: str
    tests: str


def render(spec: Spec, max_terms: int = MAX_LAYER_TERMS) -> Rendered:
    """The generated module and its test file for ``spec`` (deterministic, ruff-formatted;
    a layer past ``max_terms`` basis terms is refused, see :func:`plan_layer`)."""
    plan = plan_layer(solve(spec), max_terms)
    context = _context(spec, plan)
    env = _environment()
    skeleton = env.get_template("module.py.j2").render(RUNTIME_MARKER=_RUNTIME_MARKER, **context)
    module = format_source(_with_runtime(skeleton, spec), f"{spec.name}.py")
    tests = env.get_template("test_module.py.j2").render(**context)
    return Rendered(module, format_source(tests, f"test_{spec.name}.py"))


def render_module(spec: Spec, max_terms: int = MAX_LAYER_TERMS) -> str:
    """The generated module's source for ``spec``."""
    return render(spec, max_terms).module


def render_tests(spec: Spec) -> str:
    """The generated pytest + hypothesis file for ``spec``'s module."""
    return render(spec).tests
