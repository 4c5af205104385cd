"""The layer plan: how a generated layer computes every basis term without dense matrices.

A basis term of block ``s <- t`` is a diagram; per part of it:

* a part with only input axes is **pooled**: take the diagonal of those axes of
  ``x_t`` and average over it;
* a part with only output axes is **broadcast**: constant along (the diagonal
  of) those axes of ``y_s``;
* a part with both is **carried**: the input's diagonal index becomes the
  output's diagonal index.

So a term factors as an *input pattern* (how ``x_t`` is reduced, keeping one
axis per carried part), a channel mix, and an *output pattern* (how the
result is placed into ``y_s``). Terms are grouped by the types of their
carried parts (``carried``); inside a group, every input pattern is
compatible with every output pattern (checked here), so one matmul of the
concatenated reduced inputs with one weight matrix computes every term of
the group, across all tensor pairs. The group that carries nothing is the
pooled path: every tensor's fully pooled summary, one mix (with the
equivariant bias), broadcast once per output tensor. Its terms are the
products of the invariant terms of ``t`` and the bias terms of ``s``, for
every pair, which is why cost and code grow with tensors, not pairs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from qgen.kinds.partitions import TooLarge
from qgen.solver.basis import IN, OUT, Block, BlockAxis, Term, WeightSpaceBasis
from qgen.spec import Spec

__all__ = [
    "FixedMaps",
    "Group",
    "InPattern",
    "LayerPlan",
    "OutPattern",
    "group_block_counts",
    "plan_layer",
]

FIXED, POOL, CARRY, BCAST = "fixed", "pool", "carry", "bcast"


@dataclass(frozen=True)
class InPattern:
    """How a term reduces its input tensor.

    ``labels[i]`` says what happens to axis ``i``: ``(FIXED, 0)`` kept as a
    channel-like axis, ``(POOL, k)`` averaged over as part ``k`` (axes with the
    same ``k`` are first taken on their diagonal), ``(CARRY, k)`` kept as
    carried slot ``k``.
    """

    tensor: str
    labels: tuple[tuple[str, int], ...]
    slot_types: tuple[str, ...]  # type of each carried slot, in slot order
    pool_types: tuple[str, ...]  # type of each pooled part, in part order
    fixed_sizes: tuple[int, ...]  # sizes of the fixed axes, in axis order

    @property
    def fixed_size(self) -> int:
        return math.prod(self.fixed_sizes)


@dataclass(frozen=True)
class OutPattern:
    """How a term places its mixed result into the output tensor.

    ``labels[i]``: ``(FIXED, 0)``, ``(CARRY, k)`` receives carried slot ``k``
    (several axes with one ``k``: written on their diagonal), ``(BCAST, k)``
    constant along part ``k`` (several axes: on their diagonal).
    """

    tensor: str
    labels: tuple[tuple[str, int], ...]
    slot_types: tuple[str, ...]
    bcast_types: tuple[str, ...]
    fixed_sizes: tuple[int, ...]

    @property
    def fixed_size(self) -> int:
        return math.prod(self.fixed_sizes)


@dataclass
class Group:
    """Terms that share one channel mix: every input pattern times every output pattern."""

    name: str
    carried: tuple[str, ...]
    inputs: list[InPattern] = field(default_factory=list)
    outputs: list[OutPattern] = field(default_factory=list)
    bias: bool = False  # whether the equivariant bias rides on this group's mix
    #: whether a fixed axis of an input or output carries a symmetry (a fixed-axis kind
    #: that acts, such as an escnn group): then the mix between two patterns is restricted
    #: on those axes to the commutant (see codegen_commutant), and ``n_maps`` counts its
    #: basis elements per channel pair
    commutant: bool = False
    n_maps: int | None = None
    #: the group's stable name (its key in ``EquivariantLayer.mixes``, so in state dicts),
    #: set by :func:`plan_layer`; see :func:`_keys`
    key: str = ""

    def pairs(self) -> list[tuple[str, str]]:
        """The blocks ``(out, in)`` the group computes terms of."""
        outs = dict.fromkeys(q.tensor for q in self.outputs)
        ins = dict.fromkeys(p.tensor for p in self.inputs)
        return [(s, t) for s in outs for t in ins]

    @property
    def n_terms(self) -> int:
        """Basis elements per in/out channel pair (fixed axes counted)."""
        if self.n_maps is not None:
            return self.n_maps
        return sum(p.fixed_size for p in self.inputs) * sum(q.fixed_size for q in self.outputs)


@dataclass
class LayerPlan:
    spec: Spec
    groups: list[Group]
    #: dimension of every coupled block; any other block ``(s, t)`` is the product of the
    #: bias terms of ``s`` and the invariants of ``t`` (all in the pooled group)
    block_counts: dict[tuple[str, str], int]
    bias_counts: dict[str, int]
    invariant_counts: dict[str, int]
    generic_sizes: dict[str, int]  # per group type: the size from which every count is generic
    #: basis elements of one term per pair of tensors (see :class:`FixedMaps`)
    fixed_maps: FixedMaps | None = None

    @property
    def pooled(self) -> Group:
        return self.groups[0]

    @property
    def total(self) -> int:
        """Equivariant maps of all blocks together (one channel in and out)."""
        return WeightSpaceBasis.total(self.block_counts, self.bias_counts, self.invariant_counts)

    @cached_property
    def _fans(self) -> dict[str, tuple[int, int]]:
        fans: dict[str, list[int]] = {}
        for g in self.groups:
            kept = sum(1 for p in g.inputs if not p.pool_types)
            for tensor in {o.tensor for o in g.outputs}:
                entry = fans.setdefault(tensor, [0, 0])
                entry[0] += len(g.inputs)
                entry[1] += kept
        return {t: (a, b) for t, (a, b) in fans.items()}

    def fan_in(self, tensor: str, pooled: bool | None = None) -> int:
        """Input patterns that feed ``tensor``: all, or only the (un)pooled ones."""
        every, kept = self._fans.get(tensor, (0, 0))
        if pooled is None:
            return every
        return every - kept if pooled else kept


def _slot_order(term: Term) -> list[tuple[str, tuple[BlockAxis, ...]]]:
    """Carried parts of a term in canonical slot order: type order, then first input axis."""
    type_rank = {t: i for i, t in enumerate(term.block.spec.types)}
    carried = [
        (type_, axes)
        for type_, axes in term.diagram()
        if any(a.side == IN for a in axes) and any(a.side == OUT for a in axes)
    ]
    return sorted(
        carried,
        key=lambda p: (type_rank[p[0]], min(a.position for a in p[1] if a.side == IN)),
    )


def _patterns(term: Term) -> tuple[InPattern | None, OutPattern | None]:
    block = term.block
    slots = _slot_order(term)
    slot_of = {a: k for k, (_, axes) in enumerate(slots) for a in axes}
    slot_types = tuple(t for t, _ in slots)
    types = block.spec.types

    def side(tensor, which: str, only: str):
        if tensor is None:
            return None
        labels: list[tuple[str, int] | None] = [None] * len(tensor.axes)
        own_types: list[str] = []
        for type_, axes in term.diagram():
            mine = [a for a in axes if a.side == which]
            if not mine or mine[0] in slot_of:
                continue
            for a in mine:
                labels[a.position] = (only, len(own_types))
            own_types.append(type_)
        for a in block.axes:
            if a.side != which:
                continue
            if a in slot_of:
                labels[a.position] = (CARRY, slot_of[a])
            elif labels[a.position] is None:
                labels[a.position] = (FIXED, 0)
        fixed = tuple(
            types[ax.type].size
            for ax, lab in zip(tensor.axes, labels, strict=True)
            if lab[0] == FIXED
        )
        cls = InPattern if which == IN else OutPattern
        return cls(tensor.name, tuple(labels), slot_types, tuple(own_types), fixed)

    return side(block.in_, IN, POOL), side(block.out, OUT, BCAST)


def _renamed(pattern: InPattern | OutPattern, tensor: str, names: Mapping | tuple[str, ...]):
    """``pattern`` for ``tensor``, with each type ``t`` replaced by ``names[t]`` (a type
    name -> position map to store a shape's patterns, positions -> names to use them)."""
    cls = type(pattern)
    own = pattern.pool_types if cls is InPattern else pattern.bcast_types
    return cls(
        tensor,
        pattern.labels,
        tuple(names[i] for i in pattern.slot_types),
        tuple(names[i] for i in own),
        pattern.fixed_sizes,
    )


def _carried_terms(basis: WeightSpaceBasis) -> Iterator[tuple[InPattern, OutPattern]]:
    """Patterns of every term that carries a type, block by block.

    Only coupled blocks have such terms (an uncoupled block's terms are all pooled).
    Blocks of one shape (:meth:`WeightSpaceBasis.shape_key`, with the spec order of
    their types) have the same patterns up to renaming, so each shape is solved once:
    its patterns are stored with types as positions into the block's type names.
    """
    spec = basis.spec
    rank = {t: i for i, t in enumerate(spec.types)}
    shape_of = basis.shape_index({})
    orders: dict[tuple[str, ...], tuple[int, ...]] = {}  # names -> their spec order
    carries: dict[tuple, bool] = {}  # shape -> whether any of its terms carries a type
    cache: dict[tuple, list[tuple[InPattern, OutPattern]]] = {}
    made: dict[tuple, InPattern | OutPattern] = {}  # renamed patterns (their positional
    # forms stay alive in ``cache``, so their ids are not reused)
    for out, in_ in basis.coupled_pairs:
        shape = shape_of[out, in_]
        if carries.get(shape) is False:
            continue  # no term of this shape carries a type: nothing to rename
        names = basis.block_names(out, in_)
        order = orders.get(names)
        if order is None:
            order = orders[names] = tuple(sorted(range(len(names)), key=lambda i: rank[names[i]]))
        key = (shape, order)
        found = cache.get(key)
        if found is None:
            block = basis.blocks[out, in_]
            position = {n: i for i, n in enumerate(names)}
            found = cache[key] = [
                (_renamed(inp, "", position), _renamed(o, "", position))
                for inp, o in map(_patterns, block.terms())
                if inp.slot_types
            ]
            carries[shape] = carries.get(shape, False) or bool(found)
        for inp, o in found:
            yield _renamed_once(made, inp, in_, names), _renamed_once(made, o, out, names)


def _renamed_once(made: dict, pattern, tensor: str, names: tuple[str, ...]):
    """:func:`_renamed`, made once per pattern, tensor and the type names it uses: the same
    input pattern of a tensor recurs in the blocks of every tensor coupled to it."""
    cls = type(pattern)
    own = pattern.pool_types if cls is InPattern else pattern.bcast_types
    key = (
        id(pattern),
        tensor,
        tuple(map(names.__getitem__, pattern.slot_types)),
        tuple(map(names.__getitem__, own)),
    )
    found = made.get(key)
    if found is None:
        found = made[key] = cls(tensor, pattern.labels, key[2], key[3], pattern.fixed_sizes)
    return found


def _components(pairs: list[tuple[InPattern, OutPattern]]) -> list[tuple[list, list]]:
    """Connected components of the bipartite in/out compatibility graph, in first-seen order."""
    ids: dict[tuple[str, InPattern | OutPattern], int] = {}
    edges = [
        (ids.setdefault(("in", i), len(ids)), ids.setdefault(("out", o), len(ids)))
        for i, o in pairs
    ]
    parent = list(range(len(ids)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    members: dict[int, tuple[dict[int, InPattern], dict[int, OutPattern], set]] = {}
    for (i, o), (a, b) in zip(pairs, edges, strict=True):
        ins, outs, linked = members.setdefault(find(a), ({}, {}, set()))
        ins.setdefault(a, i)
        outs.setdefault(b, o)
        linked.add((a, b))
    out = []
    for ins, outs, linked in members.values():
        if len(linked) != len(ins) * len(outs):
            raise AssertionError(
                "layer plan: a group of terms is not every input pattern times every output "
                "pattern; this group kind needs masked mixing, which qgen does not generate"
            )
        out.append((list(ins.values()), list(outs.values())))
    return out


def _in_storage_order(group: Group) -> Group:
    """The group with its carried slots renumbered in the axis order of its largest input.

    Slots are numbered canonically (type order) to form groups; which order the mix uses
    is free, as long as every pattern of the group agrees. Taking the storage order of
    the input with the most axes (the identity-like term of the biggest tensor, say
    ``W2[h2, h1*] -> W2``) makes its reduction and placement plain views: no transpose
    copies of the largest tensors.
    """
    largest = max(group.inputs, key=lambda p: len(p.labels))
    order = list(dict.fromkeys(k for kind, k in largest.labels if kind == CARRY))
    if order == sorted(order):
        return group
    new = {old: i for i, old in enumerate(order)}

    def renumbered(p):
        labels = tuple((kind, new[k]) if kind == CARRY else (kind, k) for kind, k in p.labels)
        slots = tuple(p.slot_types[old] for old in order)
        return dataclasses.replace(p, labels=labels, slot_types=slots)

    return Group(
        group.name,
        group.carried,
        [renumbered(p) for p in group.inputs],
        [renumbered(q) for q in group.outputs],
        group.bias,
    )


#: the most generic basis terms a layer is planned with (a build's work is about linear in
#: them: 77,000 terms of a 24-block transformer took 1.3 s of CPU here, 37,000 terms of
#: three 4-axis perm tensors 1.7 s); past it :func:`plan_layer` refuses with the count.
#: ``qgen build --max-terms`` (``max_terms=`` of :func:`plan_layer` and the builds) moves it.
MAX_LAYER_TERMS = 200_000


def plan_layer(basis: WeightSpaceBasis, max_terms: int = MAX_LAYER_TERMS) -> LayerPlan:
    """Group the basis terms of every block into shared channel mixes (at most
    ``max_terms`` terms, counted first: :class:`TooLarge` past it; 0: no bound)."""
    spec = basis.spec
    terms = basis.term_count()
    if max_terms and terms > max_terms:
        raise TooLarge(
            f"{spec.source}: the layer has {terms:,} basis terms over "
            f"{len(spec.tensors)} tensors, more than the {max_terms:,} a build takes "
            "by default (seconds of CPU per 100,000); qgen build --max-terms N raises it"
        )
    pooled = Group("pooled", (), bias=True)
    for block in basis.invariant.values():
        pooled.inputs += [_patterns(t)[0] for t in block.terms()]
    for block in basis.bias.values():
        pooled.outputs += [_patterns(t)[1] for t in block.terms()]

    by_carried: dict[tuple[str, ...], list[tuple[InPattern, OutPattern]]] = {}
    for inp, out in _carried_terms(basis):
        by_carried.setdefault(inp.slot_types, []).append((inp, out))

    groups = [pooled]
    used = {"pooled"}
    type_rank = {t: i for i, t in enumerate(spec.types)}
    for carried in sorted(by_carried, key=lambda c: (len(c), [type_rank[t] for t in c])):
        for ins, outs in _components(by_carried[carried]):
            base = "carry_" + "_".join(carried)
            if len(base) > 24:  # keep generated lines short
                base = f"carry{len(carried)}_{len(groups)}"
            name, k = base, 1
            while name in used:
                k += 1
                name = f"{base}_v{k}"
            used.add(name)
            groups.append(_in_storage_order(Group(name, carried, ins, outs)))

    for g, key in zip(groups, _keys(groups), strict=True):
        g.key = key
    fixed = FixedMaps(spec)
    for g in groups:
        g.commutant = any(fixed.acted(p.tensor) for p in [*g.inputs, *g.outputs])
        if g.commutant:
            g.n_maps = sum(group_block_counts([g], g.pairs(), fixed).values())
    bias = {name: b.count() for name, b in basis.bias.items()}
    inv = {name: b.count() for name, b in basis.invariant.items()}
    plan = LayerPlan(
        spec=spec,
        groups=groups,
        block_counts=basis.coupled_counts(),
        bias_counts=bias,
        invariant_counts=inv,
        generic_sizes=basis.generic_sizes(),
        fixed_maps=fixed,
    )
    _check_counts(plan)
    return plan


def _keys(groups: list[Group]) -> list[str]:
    """Stable names of the groups: ``"pooled"``, else the carried types and the tensors the
    group writes, each sorted, ``"h1,h2:W2"`` (``"r:W1_1+10"``: ``W1_1`` and 10 more, when
    the list is long); groups that would share a name (same carried types and
    output tensors, other patterns) get ``#2``, ``#3``, ... in the order of their output
    patterns. A name depends only on the terms a group computes, not on the order in
    which the spec declares types and tensors or the planner formed the groups."""
    base = []
    for g in groups:
        outputs = sorted({q.tensor for q in g.outputs})
        written = ",".join(outputs)
        if len(written) > 24:  # the first tensor and how many more: keys stay short
            written = f"{outputs[0]}+{len(outputs) - 1}"
        base.append(",".join(sorted(g.carried)) + ":" + written if g.carried else "pooled")
    keys = list(base)
    for name in {b for b in base if base.count(b) > 1}:
        same = [i for i, b in enumerate(base) if b == name]
        same.sort(key=lambda i: sorted((q.tensor, q.labels) for q in groups[i].outputs))
        for k, i in enumerate(same[1:], start=2):
            keys[i] = f"{name}#{k}"
    return keys


class FixedMaps:
    """Basis elements of one term of block ``out <- in_`` (``None``: the bias or invariant
    side): the product over its fixed factors (:attr:`Block.fixed_multiplicity`), a plain
    fixed axis its size, a fixed-axis symmetry (such as an escnn group) the dimension of
    its commutant on the type's axes of both tensors.

    Every pattern of a tensor keeps all its fixed axes, so a pair of patterns of a group
    (a term of the block) is worth exactly this many maps per channel pair. Without
    symmetries on fixed axes it is ``out.fixed_size * in.fixed_size``.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._acted = {
            t.name: any(not f.kind.trivial_action for f in Block(spec, t, None).fixed_factors)
            for t in spec.tensors
        }
        self.any = any(self._acted.values())
        self._cache: dict[tuple[str | None, str | None], int] = {}

    def acted(self, tensor: str) -> bool:
        """Whether a fixed-axis symmetry acts on an axis of ``tensor`` (directly, or on a
        pair of its axes as a grid)."""
        return self._acted[tensor]

    def __call__(self, out: str | None, in_: str | None) -> int:
        key = (out, in_)
        if key not in self._cache:
            spec = self.spec
            block = Block(
                spec, spec.tensor(out) if out else None, spec.tensor(in_) if in_ else None
            )
            self._cache[key] = block.fixed_multiplicity
        return self._cache[key]


def group_block_counts(
    groups: list[Group],
    pairs: Iterable[tuple[str, str]],
    fixed_maps: FixedMaps | None = None,
) -> dict[tuple[str, str], int]:
    """Basis elements that the groups compute for each block in ``pairs``.

    A group pairs each input pattern with each output pattern, and a pair is
    ``in.fixed_size * out.fixed_size`` basis elements of block ``(out.tensor, in.tensor)``;
    with fixed-axis symmetries (``fixed_maps`` given and the spec has some) it is ``fixed_maps(out,
    in)``, the commutant on escnn axes times the other fixed sizes. (Generated modules
    derive ``BLOCK_COUNTS`` with this same sum.)
    """
    counts = dict.fromkeys(pairs, 0)
    if fixed_maps is not None and fixed_maps.any:
        for g in groups:
            n_in, n_out = _patterns_per_tensor(g.inputs), _patterns_per_tensor(g.outputs)
            for s, t in counts:
                if s in n_out and t in n_in:
                    counts[s, t] += n_out[s] * n_in[t] * fixed_maps(s, t)
        return counts
    for g in groups:
        widths_in, widths_out = _widths(g.inputs), _widths(g.outputs)
        if len(widths_in) * len(widths_out) <= len(counts):
            for s, wo in widths_out.items():
                for t, wi in widths_in.items():
                    if (s, t) in counts:
                        counts[s, t] += wo * wi
        else:  # the pooled group of a large space: visit only the pairs asked for
            for s, t in counts:
                counts[s, t] += widths_out.get(s, 0) * widths_in.get(t, 0)
    return counts


def _patterns_per_tensor(patterns: list[InPattern] | list[OutPattern]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in patterns:
        out[p.tensor] = out.get(p.tensor, 0) + 1
    return out


def _widths(patterns: list[InPattern] | list[OutPattern]) -> dict[str, int]:
    """Fixed positions per tensor over a group's input (or output) patterns."""
    widths: dict[str, int] = {}
    for p in patterns:
        widths[p.tensor] = widths.get(p.tensor, 0) + p.fixed_size
    return widths


def _check_counts(plan: LayerPlan) -> None:
    """The plan's terms must be exactly the solver's, block by block: none lost or doubled.

    Coupled blocks are compared one by one. Every other block gets only the pooled
    group's terms, ``out width x in width``, so those are right when the pooled group's
    widths are the bias and invariant counts, which is checked per tensor.
    """
    planned = group_block_counts(plan.groups, plan.block_counts, plan.fixed_maps)
    for (s, t), expected in plan.block_counts.items():
        if planned[s, t] != expected:
            raise AssertionError(
                f"layer plan has {planned[s, t]} terms for block {s} <- {t}, the solver {expected}"
            )
    bias, invariant = _widths(plan.pooled.outputs), _widths(plan.pooled.inputs)
    fixed = plan.fixed_maps
    if fixed is not None and fixed.any:  # widths on escnn axes: their invariants only
        bias, invariant = {}, {}
        for q in plan.pooled.outputs:
            bias[q.tensor] = bias.get(q.tensor, 0) + fixed(q.tensor, None)
        for p in plan.pooled.inputs:
            invariant[p.tensor] = invariant.get(p.tensor, 0) + fixed(None, p.tensor)
    for side, widths, counts in (
        ("bias", bias, plan.bias_counts),
        ("invariant", invariant, plan.invariant_counts),
    ):
        for tensor, expected in counts.items():
            if widths.get(tensor, 0) != expected:
                raise AssertionError(
                    f"layer plan has {widths.get(tensor, 0)} {side} terms for {tensor}, "
                    f"the solver {expected}"
                )
