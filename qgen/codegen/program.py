"""The layer program: a small frozen IR between the layer plan and Python text.

``plan_layer`` (groups of basis terms) -> :func:`lower` (a :class:`Program`: ops on named
tensors) -> :mod:`qgen.codegen.passes` (``Program -> Program``) -> :mod:`qgen.codegen.emit`
(Python).

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
Python identifiers. Ops have no effects except :class:`Accumulate` and :class:`MixInto`,
which rebind the running sum of an output tensor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from qgen.codegen.plan import BCAST, CARRY, FIXED, POOL, InPattern, LayerPlan, OutPattern

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
    "accumulator",
    "lower",
    "placement_order",
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
