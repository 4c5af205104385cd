"""Rendering a layer plan into a standalone PyTorch module (jinja2 templates in ``templates/``).

The template lays out code; this module computes the pieces that need
thought: the einsum strings that reduce an input pattern (diagonals and
pooling) and place an output pattern (diagonal embedding and broadcasting),
and the literal tables. Names from the spec appear in generated code only as
validated identifiers (see :mod:`qgen.spec`) or as ``repr`` string literals.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

import jinja2

from qgen import __version__
from qgen.basis import solve
from qgen.blocks import template_context as blocks_context
from qgen.codegen_escnn import (
    Bases,
    EscnnMap,
    escnn_context,
    escnn_map,
    plain_size,
    string_pieces,
)
from qgen.groups import get_kind
from qgen.plan import (
    BCAST,
    CARRY,
    FIXED,
    POOL,
    Group,
    InPattern,
    LayerPlan,
    OutPattern,
    plan_layer,
)
from qgen.pytext import int_tuple, lit, wrap
from qgen.spec import Spec

__all__ = ["TEMPLATES", "lit", "wrap", "render_module", "render_tests"]


def _find_templates() -> Path:
    """templates/ of a source checkout, else the copy installed under <prefix>/share/qgen."""
    checkout = Path(__file__).resolve().parent.parent / "templates"
    if (checkout / "module.py.j2").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "qgen" / "templates"


TEMPLATES = _find_templates()
# einsum letters for axes: "b" (batch) and "c" (channels) are reserved.
_LETTERS = "ijklmnopqrstuvwxyzadefghABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["py"] = lit
    env.globals["wrap"] = wrap
    return env


def _size_expr(types: tuple[str, ...]) -> str:
    """``n["h1"] * n["h2"] ** 2`` for a product of type sizes."""
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    factors = [f"n[{lit(t)}]" + (f" ** {k}" if k > 1 else "") for t, k in counts.items()]
    return " * ".join(factors)


@dataclass(frozen=True)
class Reduction:
    """Code that turns ``x[tensor]`` into ``[batch, channels * fixed, *carried]``."""

    tensor: str
    expr: str
    comment: str
    #: for a plain reduction (no diagonal): what it reads (``x["W2"]``, or a moved copy
    #: ``m[...]``), the dims of that it averages over, the permutation of the kept dims
    #: after the mean, and the code after the mean; ``expr`` is the three joined
    source: str | None = None
    source_name: str = ""  # what ``source`` reads: "W2", or "K2 moved" for m["K2 moved"]
    pooled: tuple[int, ...] = ()
    order: tuple[int, ...] = ()
    suffix: str = ""

    @property
    def moves(self) -> bool:
        """Whether this is a plain copy of the tensor with its dims moved."""
        return (
            self.source is not None
            and not self.pooled
            and self.order != tuple(range(len(self.order)))
        )


@dataclass(frozen=True)
class Placement:
    """Code that turns a chunk ``z`` of the mix into a contribution to ``out[tensor]``."""

    tensor: str
    expr: str  # uses the name ``z``
    comment: str
    width: int  # fixed size (multiplies out_channels)
    full: bool  # whether the contribution has the tensor's full shape
    #: when the contribution is the chunk itself up to moving axes (no broadcast, no
    #: diagonal): the chunk's fixed sizes and the permutation from the chunk's
    #: ``[batch, channels, *fixed, *carried]`` to the tensor's axes; else None
    order: tuple[int, ...] | None = None
    fixed_sizes: tuple[int, ...] = ()


def _reduction(p: InPattern, axes_text: str, moved: SharedInput | None = None) -> Reduction:
    """The reduction of input pattern ``p``; from ``moved`` (a copy of the tensor with its
    dims in another order, made once per forward) rather than ``x[tensor]`` if given."""
    letters = iter(_LETTERS)
    pool = {}
    carry = {}
    sub_in, fixed = [], []
    for kind, k in p.labels:
        if kind == POOL:
            sub_in.append(pool.setdefault(k, next(letters)))
        elif kind == CARRY:
            sub_in.append(carry.setdefault(k, next(letters)))
        else:
            sub_in.append(next(letters))
            fixed.append(sub_in[-1])
    src = "bc" + "".join(sub_in)
    dst = "bc" + "".join(fixed) + "".join(carry[k] for k in range(len(p.slot_types)))
    diagonal = len(set(sub_in)) < len(sub_in)
    source, source_name = f"x[{lit(p.tensor)}]", p.tensor
    pooled: tuple[int, ...] = ()
    order: tuple[int, ...] = ()
    suffix = ""
    if diagonal:  # einsum takes diagonals; the mean divides by the pooled sizes after
        expr = f"torch.einsum({lit(f'{src}->{dst}')}, {source})"
        if p.pool_types:
            sizes = _size_expr(p.pool_types)
            expr += f" / {sizes}" if len(p.pool_types) == 1 else f" / ({sizes})"
            if fixed:
                expr = f"({expr})"
    else:  # plain means and a permutation: one kernel each, no einsum parsing
        if moved is not None:
            source, source_name = f"m[{lit(moved.key)}]", moved.key
            src = "".join(src[d] for d in moved.order)
        pooled = tuple(i for i, letter in enumerate(src) if letter not in dst)
        kept = [letter for letter in src if letter in dst]
        order = tuple(kept.index(letter) for letter in dst)
        if order != tuple(range(len(order))):
            suffix += f".permute({', '.join(map(str, order))})"
        expr = source + _mean(pooled)
    if fixed:
        suffix += f".flatten(1, {1 + len(fixed)})"
    expr += suffix
    what = []
    if p.pool_types:
        what.append("pool " + ", ".join(p.pool_types))
    if p.slot_types:
        what.append("carry " + ", ".join(p.slot_types))
    diag = [k for k in pool if sum(1 for lab in p.labels if lab == (POOL, k)) > 1]
    diag += [k for k in carry if sum(1 for lab in p.labels if lab == (CARRY, k)) > 1]
    if diag:
        what.append("diagonal")
    comment = f"{p.tensor}[{axes_text}]: {'; '.join(what) or 'as is'}"
    if diagonal:
        return Reduction(p.tensor, expr, comment)
    return Reduction(p.tensor, expr, comment, source, source_name, pooled, order, suffix)


def _mean(dims: tuple[int, ...]) -> str:
    """``.mean(dims)``, or nothing for no dims."""
    if not dims:
        return ""
    return f".mean({dims[0] if len(dims) == 1 else int_tuple(dims)})"


@dataclass(frozen=True)
class SharedInput:
    """A tensor that several reductions read, made once per forward as ``m[key]``: an
    input with its dims moved (``order``), or a mean of an input or of such a copy."""

    key: str  # "K2 moved", "W2.mean(2)": never an identifier, so no clash with a tensor
    expr: str
    order: tuple[int, ...] = ()  # for a moved copy: the permutation of the tensor's dims


def _move_inputs(groups: list[GroupCode], spec: Spec) -> tuple[list[GroupCode], list[SharedInput]]:
    """Read a tensor's plain reductions from one copy with its dims moved, when one of
    them is such a copy anyway (a kernel moved to ``[batch, channels, kx, ky, c2, c1]``
    for the mix that carries both neuron axes): the means then run along the copy's
    inner dims, and their results come out in the order the mix wants, uncopied."""
    moves: dict[str, tuple[int, ...]] = {}
    plain: dict[str, int] = {}
    for g in groups:
        for r in g.reductions:
            if r.source is not None:
                plain[r.tensor] = plain.get(r.tensor, 0) + 1
                if r.moves and r.tensor not in moves:
                    moves[r.tensor] = r.order  # x[tensor].permute(order): the copy
    shared = {}
    for tensor, order in moves.items():
        if plain[tensor] > 1:
            expr = f"x[{lit(tensor)}].permute({', '.join(map(str, order))}).contiguous()"
            shared[tensor] = SharedInput(f"{tensor} moved", expr, order)
    if not shared:
        return groups, []
    rewritten = [
        replace(
            g,
            reductions=[
                _reduction(p, _axes_text(spec, p.tensor), shared[p.tensor])
                if r.source is not None and p.tensor in shared
                else r
                for p, r in zip(g.group.inputs, g.reductions, strict=True)
            ],
        )
        if len(g.reductions) == len(g.group.inputs)  # else read off other groups' inputs
        else g
        for g in groups
    ]
    return rewritten, list(shared.values())


def _share_means(groups: list[GroupCode]) -> tuple[list[GroupCode], list[SharedInput]]:
    """Rewrite plain means over several axes as means of another reduction's mean.

    The mean over ``P`` is the mean over ``P - Q`` of the mean over ``Q`` for any
    ``Q`` inside ``P``, so when the reductions of a tensor average over nested sets of
    axes (a hidden weight's row means, column means and total mean), the larger sets
    start from a smaller one's result (the largest such ``Q``) instead of reading the
    tensor again. Each ``Q`` used so is computed once per forward, in ``_shared``.
    """
    means: dict[str, set[tuple[int, ...]]] = {}
    names: dict[str, str] = {}
    for g in groups:
        for r in g.reductions:
            if r.pooled:
                means.setdefault(r.source, set()).add(r.pooled)
                names[r.source] = r.source_name
    base: dict[tuple[str, tuple[int, ...]], tuple[int, ...]] = {}
    for source, sets in means.items():
        for p in sets:
            inner = [q for q in sets if set(q) < set(p)]
            if inner:  # the largest nested mean (ties: the first in axis order)
                base[source, p] = min(inner, key=lambda q: (-len(q), q))
    shared = {}
    for (source, _), q in sorted(base.items()):
        shared[source, q] = SharedInput(names[source] + _mean(q), source + _mean(q))

    def rewrite(r: Reduction) -> Reduction:
        if not r.pooled:
            return r
        if (r.source, r.pooled) in base:
            q = base[r.source, r.pooled]
            rest = tuple(d - sum(e < d for e in q) for d in r.pooled if d not in q)
        elif (r.source, r.pooled) in shared:
            q, rest = r.pooled, ()
        else:
            return r
        return replace(r, expr=f"m[{lit(shared[r.source, q].key)}]{_mean(rest)}{r.suffix}")

    rewritten = [replace(g, reductions=[rewrite(r) for r in g.reductions]) for g in groups]
    return rewritten, sorted(shared.values(), key=lambda m: m.key)


def _pool_from_carried(groups: list[GroupCode]) -> tuple[list[GroupCode], list[str]]:
    """Read the invariant summaries off the inputs of the groups that carry one axis.

    A plain input of such a group pools every group axis of its tensor but one, which it
    carries; its mean over that axis pools them all: it is the tensor's invariant
    summary, an input of the pooled group. So the pooled group takes the mean of each
    such group's whole input (small, computed for that group anyway), one reduction
    per group instead of one per tensor. Returns the groups, the pooled group's
    reductions rewritten, and the names of the groups whose inputs are computed first.
    """
    pooled = groups[0]
    if pooled.group.carried or not pooled.reductions:
        return groups, []
    sources: dict[tuple[str, tuple], tuple[str, int, int]] = {}  # -> (group, start, width)
    for g in groups:
        if len(g.group.carried) != 1 or not g.placements:
            continue
        start = 0
        for q, r in zip(g.group.inputs, g.reductions, strict=True):
            carry = [i for i, (kind, _) in enumerate(q.labels) if kind == CARRY]
            if r.source is not None and len(carry) == 1:
                labels = tuple(
                    (POOL, 0) if kind in (POOL, CARRY) else (kind, 0) for kind, _ in q.labels
                )
                sources.setdefault((q.tensor, labels), (g.name, start, q.fixed_size))
            start += q.fixed_size
    items: list[tuple[str, int, int] | None] = []
    for p, r in zip(pooled.group.inputs, pooled.reductions, strict=True):
        labels = tuple((POOL, 0) if kind == POOL else (kind, 0) for kind, _ in p.labels)
        plain = r.source is not None and r.pooled
        items.append(sources.get((p.tensor, labels)) if plain else None)
    if not any(items):
        return groups, []
    rewritten: list[Reduction] = []
    run: list = []  # [group, first row, end row, first tensor, comments] of a slice
    for p, r, item in zip(pooled.group.inputs, pooled.reductions, items, strict=True):
        if run and item is not None and item[0] == run[0] and item[1] == run[2]:
            run[2] += item[2]  # the next rows of the same group's means: one slice
            run[4].append(r.comment)
            continue
        if run:
            rewritten.append(_pooled_slice(*run))
        run = [item[0], item[1], item[1] + item[2], p.tensor, [r.comment]] if item else []
        if not item:
            rewritten.append(r)
    if run:
        rewritten.append(_pooled_slice(*run))
    used = sorted({item[0] for item in items if item}, key=[g.name for g in groups].index)
    pooled = replace(pooled, reductions=rewritten, uses_channels=True)
    return [pooled, *groups[1:]], used


def _pooled_slice(group: str, a: int, b: int, tensor: str, comments: list[str]) -> Reduction:
    """Rows ``a * c`` to ``b * c`` of the means of ``group``'s inputs (``c`` channels)."""
    lower, upper = (f"{_times(a)}c" if a else ""), f"{_times(b)}c"
    simple = lower in ("", "c") and upper == "c"  # ruff spaces a slice's complex bounds
    rows = f"{lower}:{upper}" if simple else f"{lower} : {upper}".lstrip()
    return Reduction(tensor, f"m[{lit(group + '.mean(2)')}][:, {rows}]", "\n".join(comments))


def _times(k: int) -> str:
    """``3 * `` (the start of ``3 * c``), nothing for 1."""
    return "" if k == 1 else f"{k} * "


def _placement(
    q: OutPattern, axes_text: str, var: str, layout: tuple[int, ...] | None = None
) -> Placement:
    """How chunk ``var`` of the mix becomes a contribution to ``out[q.tensor]``.

    ``layout`` (a permutation of the tensor's dims, batch and channels included) asks for
    the contribution with its dims in that order: the terms of a tensor whose last group
    is a fused mix are summed in that mix's layout, so the sum is its addend as it is.
    """
    letters = iter(_LETTERS)
    first: dict[tuple[str, int], str] = {}  # first output letter of each carried/broadcast part
    eyes: list[tuple[str, str]] = []  # (two letters, type) of each delta a diagonal needs
    fixed: list[str] = []
    per_axis: list[str | None] = []  # the letter of each tensor axis; None: broadcast, size 1
    for kind, k in q.labels:
        letter = next(letters)
        if kind == FIXED:
            fixed.append(letter)
        elif kind == BCAST and q.labels.count((BCAST, k)) == 1:
            per_axis.append(None)  # a size-1 axis that the sum broadcasts
            continue
        else:
            type_ = q.slot_types[k] if kind == CARRY else q.bcast_types[k]
            if (kind, k) in first:
                eyes.append((first[kind, k] + letter, type_))
            else:
                first[kind, k] = letter
        per_axis.append(letter)
    if layout is not None:
        per_axis = [per_axis[d - 2] for d in layout[2:]]
    out_sub = [letter for letter in per_axis if letter is not None]
    index = [":", ":"] + ["None" if letter is None else ":" for letter in per_axis]
    slots = "".join(first[CARRY, k] for k in range(len(q.slot_types)))
    subs = ["bc" + "".join(fixed) + slots, *(pair for pair, _ in eyes)]
    z = var
    if q.fixed_sizes:
        z = f"{var}.unflatten(1, (-1, {', '.join(map(str, q.fixed_sizes))}))"
    operands = [z, *(f"_eye(n[{lit(t)}], {var})" for _, t in eyes)]
    dst = "bc" + "".join(out_sub)
    expr = z
    if eyes:  # onto a diagonal: einsum with identity matrices
        expr = f"torch.einsum({lit(','.join(subs) + '->' + dst)}, {', '.join(operands)})"
    elif subs[0] != dst:
        expr = f"{z}.permute({', '.join(str(subs[0].index(letter)) for letter in dst)})"
    while index and index[-1] == ":":
        index.pop()
    if index:
        expr += "[" + ", ".join(index) + "]"
    what = []
    if q.bcast_types:
        what.append("broadcast " + ", ".join(q.bcast_types))
    if q.slot_types:
        what.append("carry " + ", ".join(q.slot_types))
    if eyes:
        what.append("onto a diagonal")
    if layout is not None:
        what.append("in the layout of its fused mix")
    comment = f"{q.tensor}[{axes_text}]: {'; '.join(what) or 'as is'}"
    full = "None" not in index
    order = None
    if full and not eyes and layout is None:
        chunk = subs[0]
        order = tuple(chunk.index(letter) for letter in dst)
    return Placement(q.tensor, expr, comment, q.fixed_size, full, order, q.fixed_sizes)


@dataclass(frozen=True)
class GroupCode:
    group: Group
    reductions: list[Reduction]
    placements: list[Placement]
    in_widths: list[int]
    in_pooled: list[int]  # per input pattern: 1 if it pools (its variance shrinks with width)
    out_fans: list[int]  # per placement: input patterns feeding its tensor
    out_fans_kept: list[int]  # per placement: unpooled ones among them (all, if there are none)
    in_tensor_widths: list[str]  # '"W1": 4' per input tensor: fixed positions it feeds the mix
    out_tensor_widths: list[str]  # the same per output tensor: fixed positions it receives
    #: for a group touching escnn axes: per output pattern (row), per input pattern, how
    #: the block of the mix is formed from coefficients and bases (``EscnnMap.literal``)
    pair_rows: list[list[EscnnMap]] = field(default_factory=list)
    #: for the pooled group of such a spec: per output pattern, its bias (``in_`` empty)
    bias_maps: list[EscnnMap] = field(default_factory=list)
    #: whether the reductions slice by the channel count ``c``
    uses_channels: bool = False

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def bias_rows(self) -> list[list[EscnnMap]]:
        """The bias as a mix from one constant input: one row per output pattern."""
        return [[m] for m in self.bias_maps]

    @property
    def fused(self) -> bool:
        """Whether the group writes one whole tensor, up to moving axes: then the terms
        already accumulated for that tensor are the matmul's addend (``baddbmm_``)."""
        return (
            bool(self.group.carried)
            and len(self.placements) == 1
            and self.placements[0].order is not None
        )

    @property
    def fused_args(self) -> list[str]:
        """Extra arguments of ``_mix_into``: the chunk's fixed sizes and axis order."""
        p = self.placements[0]
        args = []
        if p.fixed_sizes:
            args.append(f"fixed={int_tuple(p.fixed_sizes)}")
        if p.order != tuple(range(len(p.order))):
            args.append(f"order={int_tuple(p.order)}")
        return args


def _fused_layouts(groups: list[GroupCode]) -> dict[str, tuple[int, ...]]:
    """Per tensor whose last group is a fused mix with moved axes: that mix's layout
    ``[batch, channels, *fixed, *carried]`` as a permutation of the tensor's dims.

    Its other terms are then summed in that layout, so the sum is the matmul's addend
    as it is, and only the fused mix's result is a permuted view (one transposed pass
    over the tensor, its input's, instead of two)."""
    last: dict[str, GroupCode] = {}
    fused_into: dict[str, int] = {}
    for g in groups:
        for p in g.placements:
            last[p.tensor] = g
        if g.fused:
            tensor = g.placements[0].tensor
            fused_into[tensor] = fused_into.get(tensor, 0) + 1
    layouts = {}
    for tensor, g in last.items():
        if not g.fused or fused_into[tensor] != 1:
            continue
        order = g.placements[0].order
        assert order is not None  # fused groups have one full placement with an order
        if order != tuple(range(len(order))):
            layouts[tensor] = tuple(sorted(range(len(order)), key=order.__getitem__))
    return layouts


def _tuple_literal(items: list[str]) -> str:
    body = ", ".join(lit(i) for i in items)
    return f"({body},)" if len(items) == 1 else f"({body})"


def _axes_text(spec: Spec, tensor: str) -> str:
    return ", ".join(map(str, spec.tensor(tensor).axes))


def _group_code(
    plan: LayerPlan,
    group: Group,
    bases: Bases | None = None,
    layouts: dict[str, tuple[int, ...]] | None = None,
) -> GroupCode:
    spec = plan.spec
    pair_rows, bias_maps = [], []
    if group.escnn and bases is not None:
        pair_rows = [
            [escnn_map(spec, q.tensor, p.tensor, bases) for p in group.inputs]
            for q in group.outputs
        ]
        if group.bias:
            bias_maps = [escnn_map(spec, q.tensor, None, bases) for q in group.outputs]
    reductions = [_reduction(p, _axes_text(spec, p.tensor)) for p in group.inputs]
    layouts = layouts or {}
    placements = [
        _placement(q, _axes_text(spec, q.tensor), f"zs[{i}]", layouts.get(q.tensor))
        for i, q in enumerate(group.outputs)
    ]
    return GroupCode(
        group,
        reductions,
        placements,
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
    layouts = _fused_layouts(groups)
    if layouts:  # earlier terms of those tensors are summed in their fused mix's layout
        groups = [g if g.fused else _group_code(plan, g.group, bases, layouts) for g in groups]
    groups, carried_first = _pool_from_carried(groups)
    groups, moved = _move_inputs(groups, spec)
    groups, means = _share_means(groups)
    shared_inputs = moved + means
    escnn = (
        escnn_context(spec, plan, bases)
        if any(t.rep is not None for t in spec.types.values())
        else {
            "escnn_types": [],
            "commutant_dims": {},
            "escnn_axis_types": {},
            "grids": {},
            "head_maps": [],
        }
    )
    full = {
        t.name: any(p.full for g in groups for p in g.placements if p.tensor == t.name)
        for t in spec.tensors
    }
    return {
        "spec": spec,
        "version": __version__,
        "source": Path(spec.source).name,
        "sha256": spec.sha256,
        "plan": plan,
        "groups": groups,
        "shared_inputs": shared_inputs,
        "carried_first": carried_first,
        "kinds": kind_objs,
        "nested": {t.name: t.within for t in spec.types.values() if t.within},
        "nested_kinds": sorted(
            {get_kind(t.kind) for t in spec.types.values() if t.within}, key=lambda k: k.name
        ),
        "nested_actions": {get_kind(t.kind).action for t in spec.types.values() if t.within},
        "quasi_types": quasi_types,
        "relax_kinds": [k for k in kind_objs if any(q[1] is k for q in quasi_types)],
        "actions": sorted(
            {k.action for k in kind_objs} | ({"matrix"} if escnn["escnn_types"] else set())
        ),
        **escnn,
        "bases": sorted(bases.items.values(), key=lambda b: b.index),
        "string_pieces": string_pieces,
        "tensor_axes": {t.name: _tuple_literal([str(a) for a in t.axes]) for t in spec.tensors},
        "full": full,
        "total": plan.total,
        "n_blocks": len(spec.tensors) ** 2,
        "plain_fixed": _plain_fixed_types(spec),
        "blocks": blocks_context(spec, sum(plan.invariant_counts.values())),
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


def render_module(spec: Spec) -> str:
    """The generated module's source for ``spec`` (deterministic)."""
    plan = plan_layer(solve(spec))
    return _environment().get_template("module.py.j2").render(**_context(spec, plan))


def render_tests(spec: Spec) -> str:
    """The generated pytest + hypothesis file for ``spec``'s module."""
    plan = plan_layer(solve(spec))
    return _environment().get_template("test_module.py.j2").render(**_context(spec, plan))
