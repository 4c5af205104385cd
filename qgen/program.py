"""The layer program: a small frozen IR between the layer plan and Python text.

``plan_layer`` (groups of basis terms) -> :func:`lower` (a :class:`Program`: ops on named
tensors) -> passes (``Program -> Program``) -> :mod:`qgen.emit` (Python).

A group of terms is computed as reduce -> mix -> place. Reducing an input pattern of
``x[t] : [batch, channels, *axes]`` takes diagonals and means and moves the kept axes to
``[batch, channels * fixed, *carried]`` (:class:`Reduce`, :class:`Diagonal`); the group's
reduced inputs are concatenated along dim 1 (:class:`Concat`), mixed by one matmul
(:class:`Mix`, or :class:`MixInto` when the group writes a single tensor whole), split
into output patterns (:class:`Split`) and placed into each output tensor by broadcasting
and diagonal embedding (:class:`Place`), where they are summed (:class:`Accumulate`).

Every op defines values from values defined before it. Value names are unique strings
built with ``:`` (never in a spec name), such as ``r:carry_h1`` (the reduced inputs of
group ``carry_h1``) or ``y:W2`` (the running sum of ``W2``); the emitter turns them into
Python identifiers. Ops have no
effects except :class:`Accumulate` and :class:`MixInto`, which rebind the running sum of
an output tensor (``y_<tensor>``). The passes rewrite structure, never text:

* :func:`fuse_layouts`: terms of a tensor whose last group is a fused mix are summed in
  that mix's layout, so the sum is the matmul's addend as it is;
* :func:`pool_from_carried`: invariant summaries read off the means of the inputs of the
  groups that carry one axis (one small mean per group instead of one reduction per tensor);
* :func:`move_inputs`: a tensor reduced several ways is read from one copy with its dims
  moved, when one of its reductions is such a copy anyway;
* :func:`share_means`: a mean over ``P`` starts from the mean over ``Q`` inside ``P``;
* :func:`drop_dead`: ops whose values nothing reads are removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from qgen.plan import BCAST, CARRY, FIXED, POOL, InPattern, LayerPlan, OutPattern

__all__ = [
    "Accumulate",
    "Concat",
    "Diagonal",
    "Mean",
    "Mix",
    "MixInto",
    "Op",
    "Permute",
    "Place",
    "Program",
    "Read",
    "Reduce",
    "Rows",
    "Split",
    "compile_program",
    "drop_dead",
    "fuse_layouts",
    "lower",
    "move_inputs",
    "pool_from_carried",
    "share_means",
]

#: einsum letters for axes: "b" (batch) and "c" (channels) are reserved
LETTERS = "ijklmnopqrstuvwxyzadefghABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True, kw_only=True)
class Op:
    """One step of a program: defines the value ``out`` from the values it uses."""

    out: str
    #: what the value is, for a comment next to it in generated code
    comment: str = ""

    def uses(self) -> tuple[str, ...]:
        """Values this op reads."""
        return ()

    def defines(self) -> tuple[str, ...]:
        """Values this op binds."""
        return (self.out,)


@dataclass(frozen=True, kw_only=True)
class Read(Op):
    """``x[tensor]``: an input tensor ``[batch, channels, *axes]``."""

    tensor: str


@dataclass(frozen=True, kw_only=True)
class Permute(Op):
    """``src.permute(dims)``, made contiguous (a moved copy read by several reductions)."""

    src: str
    dims: tuple[int, ...]
    #: the tensor it moves, for names and comments
    tensor: str

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Mean(Op):
    """``src.mean(dims)``, shared by reductions that average over more dims."""

    src: str
    dims: tuple[int, ...]

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Reduce(Op):
    """A plain reduction: ``src.mean(pool)``, the kept dims permuted by ``order``, then the
    channel and fixed dims flattened into dim 1 (``fixed`` of them)."""

    src: str
    pool: tuple[int, ...]
    order: tuple[int, ...]
    fixed: int
    #: the tensor whose input pattern this reduces, and the pattern (what passes match on)
    tensor: str
    pattern: InPattern

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Diagonal(Op):
    """``einsum(equation, src)`` taking diagonals (and sums over pooled parts), divided by
    the sizes of the pooled types ``divide``; then the fixed dims flattened into dim 1."""

    src: str
    equation: str
    divide: tuple[str, ...]
    fixed: int
    tensor: str
    pattern: InPattern

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Rows(Op):
    """Rows ``start * c`` to ``stop * c`` of ``src`` (``c`` input channels)."""

    src: str
    start: int
    stop: int

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Concat(Op):
    """``torch.cat(srcs, dim=1)``: a group's reduced inputs, one per input pattern."""

    srcs: tuple[str, ...]

    def uses(self) -> tuple[str, ...]:
        return self.srcs


@dataclass(frozen=True, kw_only=True)
class Mix(Op):
    """The channel mix ``key`` applied to ``src [batch, in rows, *carried]`` over dim 1 (with
    the mix's bias: ``src`` is ``[batch, in rows]``, the pooled group)."""

    key: str
    src: str
    bias: bool = False

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Split(Op):
    """``src.split_with_sizes(mixes[key].split, dim=1)`` bound to ``parts``."""

    key: str
    src: str
    parts: tuple[str, ...]
    out: str = ""

    def uses(self) -> tuple[str, ...]:
        return (self.src,)

    def defines(self) -> tuple[str, ...]:
        return self.parts


@dataclass(frozen=True, kw_only=True)
class Place(Op):
    """A mixed chunk ``src [batch, channels * fixed, *carried]`` placed into its output
    tensor: fixed dims unflattened, carried slots onto (diagonals of) their axes, broadcast
    parts as size-1 dims; with ``layout`` (a permutation of the tensor's dims) the result
    has its dims in that order instead."""

    src: str
    pattern: OutPattern
    layout: tuple[int, ...] | None = None

    def uses(self) -> tuple[str, ...]:
        return (self.src,)


@dataclass(frozen=True, kw_only=True)
class Accumulate(Op):
    """``y = value`` (``first``) or ``y = y + value``: the running sum of an output tensor."""

    tensor: str
    value: str
    first: bool

    def uses(self) -> tuple[str, ...]:
        return (self.value,) if self.first else (self.out, self.value)


@dataclass(frozen=True, kw_only=True)
class MixInto(Op):
    """``y + mixes[key] @ src`` as one accumulating matmul (``first``: no ``y`` yet); the
    product has the layout ``[batch, channels, *fixed, *carried]`` and ``order`` permutes it
    to the tensor's dims. ``owned``: ``y`` is a fresh full-shaped sum in that layout, which
    the matmul may accumulate into in place."""

    key: str
    src: str
    tensor: str
    first: bool
    fixed: tuple[int, ...]
    order: tuple[int, ...]
    #: whether the terms so far were summed in the mix's layout (else in the tensor's:
    #: they are moved into the mix's layout first)
    laid_out: bool = False
    owned: bool = False

    def uses(self) -> tuple[str, ...]:
        return (self.src,) if self.first else (self.out, self.src)


@dataclass(frozen=True)
class Program:
    """A straight-line program computing the layer's outputs from ``x``.

    ``outputs``: per tensor of the spec, its accumulator (``None`` when no term writes it).
    """

    ops: tuple[Op, ...]
    outputs: tuple[tuple[str, str | None], ...]

    def users(self) -> dict[str, int]:
        """How many ops (and outputs) read each value."""
        count: dict[str, int] = {}
        for op in self.ops:
            for v in op.uses():
                count[v] = count.get(v, 0) + 1
        for _, acc in self.outputs:
            if acc is not None:
                count[acc] = count.get(acc, 0) + 1
        return count

    def defining(self) -> dict[str, Op]:
        """The op that (last) binds each value."""
        return {name: op for op in self.ops for name in op.defines()}

    def replace(self, ops: Iterable[Op]) -> Program:
        return Program(tuple(ops), self.outputs)


def accumulator(tensor: str) -> str:
    """The name of ``tensor``'s running sum."""
    return f"y:{tensor}"


# --------------------------------------------------------------------------------- lowering


def _axes_text(plan: LayerPlan, tensor: str) -> str:
    return ", ".join(map(str, plan.spec.tensor(tensor).axes))


def _reduction(p: InPattern, src: str, out: str, comment: str) -> Op:
    """The op reducing input pattern ``p`` of ``src`` (the tensor as read)."""
    letters = iter(LETTERS)
    pool: dict[int, str] = {}
    carry: dict[int, str] = {}
    sub_in, fixed = [], []
    for kind, k in p.labels:
        if kind == POOL:
            sub_in.append(pool.setdefault(k, next(letters)))
        elif kind == CARRY:
            sub_in.append(carry.setdefault(k, next(letters)))
        else:
            sub_in.append(next(letters))
            fixed.append(sub_in[-1])
    source = "bc" + "".join(sub_in)
    target = "bc" + "".join(fixed) + "".join(carry[k] for k in range(len(p.slot_types)))
    if len(set(sub_in)) < len(sub_in):  # a diagonal: einsum, divided by the pooled sizes
        return Diagonal(
            out=out,
            comment=comment,
            src=src,
            equation=f"{source}->{target}",
            divide=p.pool_types,
            fixed=len(fixed),
            tensor=p.tensor,
            pattern=p,
        )
    pooled = tuple(i for i, letter in enumerate(source) if letter not in target)
    kept = [letter for letter in source if letter in target]
    order = tuple(kept.index(letter) for letter in target)
    return Reduce(
        out=out,
        comment=comment,
        src=src,
        pool=pooled,
        order=order,
        fixed=len(fixed),
        tensor=p.tensor,
        pattern=p,
    )


def _describe_in(plan: LayerPlan, p: InPattern) -> str:
    what = []
    if p.pool_types:
        what.append("pool " + ", ".join(p.pool_types))
    if p.slot_types:
        what.append("carry " + ", ".join(p.slot_types))
    if any(p.labels.count(lab) > 1 for lab in p.labels if lab[0] != FIXED):
        what.append("diagonal")
    return f"{p.tensor}[{_axes_text(plan, p.tensor)}]: {'; '.join(what) or 'as is'}"


def _describe_out(plan: LayerPlan, q: OutPattern) -> str:
    what = []
    if q.bcast_types:
        what.append("broadcast " + ", ".join(q.bcast_types))
    if q.slot_types:
        what.append("carry " + ", ".join(q.slot_types))
    if any(q.labels.count(lab) > 1 for lab in q.labels if lab[0] != FIXED):
        what.append("onto a diagonal")
    return f"{q.tensor}[{_axes_text(plan, q.tensor)}]: {'; '.join(what) or 'as is'}"


def placement_order(q: OutPattern) -> tuple[int, ...] | None:
    """When placing ``q`` only moves axes (no broadcast, no diagonal): the permutation from
    the chunk's ``[batch, channels, *fixed, *carried]`` to the tensor's dims; else None."""
    seen: set = set()
    for lab in q.labels:
        if lab[0] == BCAST or (lab[0] == CARRY and lab in seen):
            return None
        seen.add(lab)
    fixed = [i for i, (kind, _) in enumerate(q.labels) if kind == FIXED]
    slot_axis = {k: i for i, (kind, k) in enumerate(q.labels) if kind == CARRY}
    chunk = fixed + [slot_axis[k] for k in range(len(q.slot_types))]  # tensor axis per dim
    return (0, 1, *(2 + chunk.index(axis) for axis in range(len(q.labels))))


def lower(plan: LayerPlan) -> Program:
    """The plan as a program in its plainest form: every group reduces its inputs from
    ``x``, mixes, and places each output pattern; a group writing one tensor whole (up to
    moving axes) accumulates into it in the matmul (:class:`MixInto`)."""
    ops: list[Op] = []
    reads: dict[str, str] = {}
    written: set[str] = set()
    for g in plan.groups:
        if not g.outputs:
            continue
        name = g.name
        srcs = []
        for i, p in enumerate(g.inputs):
            if p.tensor not in reads:
                reads[p.tensor] = f"x:{p.tensor}"
                ops.append(Read(out=reads[p.tensor], tensor=p.tensor))
            out = f"r:{name}:{i}"
            ops.append(_reduction(p, reads[p.tensor], out, _describe_in(plan, p)))
            srcs.append(out)
        reduced = f"r:{name}"
        ops.append(Concat(out=reduced, srcs=tuple(srcs), comment=f"inputs of {g.key}"))
        order = placement_order(g.outputs[0]) if g.carried and len(g.outputs) == 1 else None
        if order is not None:
            q = g.outputs[0]
            ops.append(
                MixInto(
                    out=accumulator(q.tensor),
                    comment=_describe_out(plan, q) + "; the terms so far ride in the matmul",
                    key=g.key,
                    src=reduced,
                    tensor=q.tensor,
                    first=q.tensor not in written,
                    fixed=q.fixed_sizes,
                    order=order,
                )
            )
            written.add(q.tensor)
            continue
        mixed = f"z:{name}"
        ops.append(Mix(out=mixed, key=g.key, src=reduced, bias=g.bias))
        parts = (mixed,)
        if len(g.outputs) > 1:
            parts = tuple(f"{mixed}:{i}" for i in range(len(g.outputs)))
            ops.append(Split(key=g.key, src=mixed, parts=parts))
        for part, q in zip(parts, g.outputs, strict=True):
            placed = "p" + part[1:]
            ops.append(Place(out=placed, src=part, pattern=q, comment=_describe_out(plan, q)))
            ops.append(
                Accumulate(
                    out=accumulator(q.tensor),
                    tensor=q.tensor,
                    value=placed,
                    first=q.tensor not in written,
                )
            )
            written.add(q.tensor)
    outputs = tuple(
        (t.name, accumulator(t.name) if t.name in written else None) for t in plan.spec.tensors
    )
    return Program(tuple(ops), outputs)


# ----------------------------------------------------------------------------------- passes


def fuse_layouts(program: Program) -> Program:
    """Terms of a tensor whose last op is a fused mix that moves axes are placed in that
    mix's layout: their sum is then the matmul's addend as it is (in place when it is a
    fresh, full sum), and only the mix's result is a permuted view."""
    last: dict[str, Op] = {}
    for op in program.ops:
        if isinstance(op, Accumulate | MixInto):
            last[op.tensor] = op
    layouts = {}
    for tensor, op in last.items():
        fused = [o for o in program.ops if isinstance(o, MixInto) and o.tensor == tensor]
        if isinstance(op, MixInto) and len(fused) == 1 and op.order != tuple(range(len(op.order))):
            layouts[tensor] = tuple(sorted(range(len(op.order)), key=op.order.__getitem__))
    ops = []
    for op in program.ops:
        if isinstance(op, Place) and op.pattern.tensor in layouts:
            op = dataclasses.replace(
                op,
                layout=layouts[op.pattern.tensor],
                comment=op.comment + "; in the layout of its fused mix",
            )
        elif isinstance(op, MixInto) and op.tensor in layouts:
            op = dataclasses.replace(op, laid_out=True)
        ops.append(op)
    return _mark_owned(program.replace(ops))


def _filled(q: OutPattern) -> list[bool]:
    """Per axis of the output tensor: whether placing ``q`` fills it (not broadcast)."""
    return [not (kind == BCAST and q.labels.count((kind, k)) == 1) for kind, k in q.labels]


def _mark_owned(program: Program) -> Program:
    """Each :class:`MixInto` whose addend is a fresh sum (an add of two or more terms, so no
    other value shares its storage) filling every axis, summed in the mix's own layout,
    may accumulate into it in place (``owned``)."""
    defining = program.defining()
    state: dict[str, tuple[list[bool], bool, bool]] = {}  # filled axes, fresh, in mix layout
    ops = []
    for op in program.ops:
        if isinstance(op, Accumulate):
            place = defining[op.value]
            assert isinstance(place, Place)
            filled, laid = _filled(place.pattern), place.layout is not None
            if op.first:
                state[op.tensor] = (filled, False, laid)
            else:
                before, _, was_laid = state[op.tensor]
                union = [a or b for a, b in zip(before, filled, strict=True)]
                state[op.tensor] = (union, True, was_laid and laid)
        elif isinstance(op, MixInto):
            if not op.first:
                filled, fresh, laid = state[op.tensor]
                in_layout = laid or op.order == tuple(range(len(op.order)))
                op = dataclasses.replace(op, owned=fresh and all(filled) and in_layout)
            state[op.tensor] = ([True] * (len(op.order) - 2), False, False)
        ops.append(op)
    return program.replace(ops)


def pool_from_carried(program: Program) -> Program:
    """Read the invariant summaries off the inputs of the groups that carry one axis.

    A plain input of such a group pools every group axis of its tensor but one, which it
    carries; its mean over that axis pools them all: it is the tensor's invariant summary,
    an input of the pooled group (``r_pooled``). So the pooled group takes rows of the mean
    of each such group's whole input (small, computed for that group anyway): one mean per
    group instead of one reduction per tensor. Consecutive rows of one group are one slice.
    """
    defining = program.defining()
    pooled = defining.get("r:pooled")
    if not isinstance(pooled, Concat):
        return program
    sources: dict[tuple, tuple[str, int, int]] = {}  # summary labels -> (group input, rows)
    for op in program.ops:
        if not isinstance(op, Concat) or op.out == "r:pooled":
            continue
        mix = next(
            (o for o in program.ops if isinstance(o, Mix | MixInto) and o.src == op.out), None
        )
        if mix is None:
            continue
        reductions = [defining[s] for s in op.srcs]
        patterns = [r.pattern for r in reductions if isinstance(r, Reduce | Diagonal)]
        if len(patterns) != len(reductions) or len(patterns[0].slot_types) != 1:
            continue
        start = 0
        for r in reductions:
            q = r.pattern
            carry = [i for i, (kind, _) in enumerate(q.labels) if kind == CARRY]
            if isinstance(r, Reduce) and len(carry) == 1:
                labels = tuple(
                    (POOL, 0) if kind in (POOL, CARRY) else (kind, 0) for kind, _ in q.labels
                )
                sources.setdefault((q.tensor, labels), (op.out, start, q.fixed_size))
            start += q.fixed_size
    items: list[tuple[str, int, int] | None] = []
    for src in pooled.srcs:
        r = defining[src]
        if isinstance(r, Reduce) and r.pool:
            labels = tuple((POOL, 0) if kind == POOL else (kind, 0) for kind, _ in r.pattern.labels)
            items.append(sources.get((r.tensor, labels)))
        else:
            items.append(None)
    if not any(items):
        return program
    new_ops: list[Op] = []
    means: dict[str, str] = {}
    srcs: list[str] = []
    run: list = []  # [group input, first row, end row, comments]

    def close() -> None:
        source, a, b, comments = run
        out = f"{means[source]}:rows:{a}:{b}"
        new_ops.append(
            Rows(out=out, src=means[source], start=a, stop=b, comment="\n".join(comments))
        )
        srcs.append(out)

    for src, item in zip(pooled.srcs, items, strict=True):
        comment = defining[src].comment
        if item is not None and item[0] not in means:
            means[item[0]] = f"{item[0]}:mean"
            new_ops.append(
                Mean(
                    out=means[item[0]],
                    src=item[0],
                    dims=(2,),
                    comment=f"the inputs of {item[0][2:]} over their carried axis: summaries",
                )
            )
        if run and item is not None and item[0] == run[0] and item[1] == run[2]:
            run[2] += item[2]
            run[3].append(comment)
            continue
        if run:
            close()
        run = [item[0], item[1], item[1] + item[2], [comment]] if item else []
        if not item:
            srcs.append(src)
    if run:
        close()
    # r_pooled is rebuilt where it was; what it now reads is hoisted before it (pure ops)
    at = next(i for i, op in enumerate(program.ops) if op.out == "r:pooled")
    ops = [op for op in program.ops if op.out != "r:pooled"]
    new = [*new_ops, dataclasses.replace(pooled, srcs=tuple(srcs))]
    needed = {v for op in new for v in op.uses()} - {v for op in new for v in op.defines()}
    ops, at = _hoist(ops, at, needed)
    ops[at:at] = new
    return drop_dead(program.replace(ops))


def _hoist(ops: list[Op], at: int, needed: set[str]) -> tuple[list[Op], int]:
    """``ops`` with the ops defining ``needed`` (and what they read) that stand at or after
    ``at`` moved, in their order, to just before ``at``; and the index after them. Only
    pure ops move (values of reductions), so no result changes."""
    where = {v: i for i, op in enumerate(ops) for v in op.defines()}
    chosen: set[int] = set()
    stack = sorted(needed)
    while stack:
        i = where.get(stack.pop())
        if i is None or i < at or i in chosen:
            continue
        assert not isinstance(ops[i], Accumulate | MixInto), "hoisting an accumulation"
        chosen.add(i)
        stack += ops[i].uses()
    moved = [ops[i] for i in sorted(chosen)]
    rest = [op for i, op in enumerate(ops) if i not in chosen]
    return rest[:at] + moved + rest[at:], at + len(moved)


def move_inputs(program: Program) -> Program:
    """Read a tensor's plain reductions from one copy with its dims moved, when one of them
    is such a copy anyway (a kernel moved to ``[batch, channels, kx, ky, c2, c1]`` for the
    mix that carries both neuron axes): the means then run along the copy's inner dims,
    and their results come out in the order the mix wants, uncopied."""
    plain: dict[str, list[Reduce]] = {}
    for op in program.ops:
        if isinstance(op, Reduce) and op.src == f"x:{op.tensor}":
            plain.setdefault(op.tensor, []).append(op)
    moves = {}
    for tensor, reductions in plain.items():
        mover = next(
            (r for r in reductions if not r.pool and r.order != tuple(range(len(r.order)))), None
        )
        if mover is not None and len(reductions) > 1:
            moves[tensor] = mover.order
    if not moves:
        return program
    ops: list[Op] = []
    done: set[str] = set()
    for op in program.ops:
        if isinstance(op, Reduce) and op.tensor in moves and op.src == f"x:{op.tensor}":
            order = moves[op.tensor]
            copy = f"x:{op.tensor}:moved"
            if op.tensor not in done:
                ops.append(
                    Permute(
                        out=copy,
                        src=op.src,
                        dims=order,
                        tensor=op.tensor,
                        comment=f"{op.tensor} with its dims moved as its fused mix reads them",
                    )
                )
                done.add(op.tensor)
            op = _reduce_from_moved(op, copy, order)
        ops.append(op)
    return program.replace(ops)


def _reduce_from_moved(op: Reduce, copy: str, order: tuple[int, ...]) -> Reduce:
    """``op`` reading ``copy = src.permute(order)`` instead of ``src``."""
    position = {d: i for i, d in enumerate(order)}  # source dim -> dim of the copy
    kept_src = [d for d in range(len(order)) if d not in op.pool]
    target = [kept_src[i] for i in op.order]  # source dims in the reduction's output order
    pool = tuple(sorted(position[d] for d in op.pool))
    kept_copy = [position[d] for d in range(len(order)) if d not in op.pool]
    kept_copy.sort()
    new_order = tuple(kept_copy.index(position[d]) for d in target)
    return dataclasses.replace(op, src=copy, pool=pool, order=new_order)


def share_means(program: Program) -> Program:
    """Rewrite plain means over several dims as means of another reduction's mean.

    The mean over ``P`` is the mean over ``P - Q`` of the mean over ``Q`` for any ``Q``
    inside ``P``, so when the reductions of a tensor average over nested sets of dims (a
    hidden weight's row, column and total means), the larger sets start from a smaller
    one's result (the largest such ``Q``) instead of reading the tensor again. Each ``Q``
    used so is computed once (a :class:`Mean`), right after the tensor is read.
    """
    means: dict[str, set[tuple[int, ...]]] = {}
    for op in program.ops:
        if isinstance(op, Reduce) and op.pool:
            means.setdefault(op.src, set()).add(op.pool)
    base: dict[tuple[str, tuple[int, ...]], tuple[int, ...]] = {}
    for src, sets in means.items():
        for p in sets:
            inner = [q for q in sets if set(q) < set(p)]
            if inner:  # the largest nested mean (ties: the first in dim order)
                base[src, p] = min(inner, key=lambda q: (-len(q), q))
    shared = {(src, q) for (src, _), q in base.items()}
    if not shared:
        return program
    names = {(src, q): f"{src}:mean:{'_'.join(map(str, q))}" for src, q in shared}
    ops: list[Op] = []
    for op in program.ops:
        if isinstance(op, Reduce) and (op.src, op.pool) in base:
            q = base[op.src, op.pool]
            rest = tuple(d - sum(e < d for e in q) for d in op.pool if d not in q)
            op = dataclasses.replace(op, src=names[op.src, q], pool=rest)
        elif isinstance(op, Reduce) and (op.src, op.pool) in shared:
            op = dataclasses.replace(op, src=names[op.src, op.pool], pool=())
        ops.append(op)
        for src, q in sorted(shared):
            if src in op.defines():
                ops.append(Mean(out=names[src, q], src=src, dims=q))
    return program.replace(ops)


def drop_dead(program: Program) -> Program:
    """Without the ops whose values no later op nor output reads (accumulators stay)."""
    ops = list(program.ops)
    while True:
        used = Program(tuple(ops), program.outputs).users()
        keep = [
            op
            for op in ops
            if isinstance(op, Accumulate | MixInto) or any(used.get(v) for v in op.defines())
        ]
        if len(keep) == len(ops):
            return program.replace(ops)
        ops = keep


#: the passes of :func:`compile_program`, in order
PASSES: tuple[Callable[[Program], Program], ...] = (
    fuse_layouts,
    pool_from_carried,
    move_inputs,
    share_means,
    drop_dead,
)


def compile_program(plan: LayerPlan) -> Program:
    """The plan lowered and optimized by :data:`PASSES`."""
    program = lower(plan)
    for step in PASSES:
        program = step(program)
    return program


def head_program(program: Program) -> Program:
    """What the invariant head needs: the ops that compute ``r_pooled`` (no outputs)."""
    target = Program(program.ops, (("", "r:pooled"),))
    ops = [op for op in drop_dead(target).ops if not isinstance(op, Accumulate | MixInto)]
    return drop_dead(Program(tuple(ops), (("", "r:pooled"),)))
