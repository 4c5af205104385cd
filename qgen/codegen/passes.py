"""Optimization passes over a layer program (:mod:`qgen.codegen.program`): ``Program -> Program``.

Each rewrites structure, never text, and keeps the layer's function (tested alone, and on
random specs for every prefix of :data:`PASSES`):

* :func:`fuse_layouts`: terms of a tensor whose last op is a fused mix are summed in that
  mix's layout, so the sum is the matmul's addend as it is (in place when the build can
  prove it a fresh, full sum: ``MixInto.owned``);
* :func:`pool_from_carried`: invariant summaries read off the means of the inputs of the
  groups that carry one axis (one small mean per group instead of one reduction per tensor);
* :func:`move_inputs`: a tensor reduced several ways is read from one copy with its dims
  moved, when one of its reductions is such a copy anyway;
* :func:`share_means`: a mean over ``P`` starts from the mean over ``Q`` inside ``P``;
* :func:`drop_dead`: ops whose values nothing reads are removed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from qgen.codegen.plan import BCAST, CARRY, POOL, LayerPlan, OutPattern
from qgen.codegen.program import (
    Accumulate,
    Concat,
    Diagonal,
    Mean,
    Mix,
    MixInto,
    Op,
    Permute,
    Place,
    Program,
    Reduce,
    Rows,
    lower,
)

__all__ = [
    "PASSES",
    "compile_program",
    "drop_dead",
    "fuse_layouts",
    "head_program",
    "move_inputs",
    "pool_from_carried",
    "share_means",
]


def fuse_layouts(program: Program) -> Program:
    """Terms of a tensor whose last op is a fused mix that moves axes are placed in that
    mix's layout: their sum is then the matmul's addend as it is (in place when it is a
    fresh, full sum), and only the mix's result is a permuted view."""
    last: dict[str, Op] = {}
    for op in program.ops:
        if isinstance(op, Accumulate | MixInto):
            last[op.tensor] = op
    fused: dict[str, int] = {}  # tensor -> how many fused mixes write it (one pass)
    for op in program.ops:
        if isinstance(op, MixInto):
            fused[op.tensor] = fused.get(op.tensor, 0) + 1
    layouts = {}
    for tensor, op in last.items():
        once = fused.get(tensor, 0) == 1
        if isinstance(op, MixInto) and once and op.order != tuple(range(len(op.order))):
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
    mixed = {o.src for o in program.ops if isinstance(o, Mix | MixInto)}  # one pass
    for op in program.ops:
        if not isinstance(op, Concat) or op.out == "r:pooled":
            continue
        if op.out not in mixed:
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
