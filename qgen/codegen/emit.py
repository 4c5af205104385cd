"""Python text from a layer program (:mod:`qgen.codegen.program`).

Each op becomes an expression; a value read exactly once is written inline where it is
read, any other value gets a statement binding a Python identifier (its IR name with
``:`` turned into ``_``, made unique). Comments of the ops say what each reduction and
placement does on the spec's axes. Layout is left to ``ruff format`` (see
:func:`qgen.codegen.pytext.format_source`); names from the spec appear only as identifiers
validated by the parser or as string literals (:func:`qgen.codegen.pytext.lit`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qgen.codegen.plan import BCAST, CARRY, FIXED
from qgen.codegen.program import (
    LETTERS,
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
    Read,
    Reduce,
    Rows,
    Split,
)
from qgen.codegen.pytext import int_tuple, lit

__all__ = ["Emitted", "emit"]


@dataclass(frozen=True)
class Emitted:
    """Statements (one string each, comments as ``# `` lines before them) and what the
    program's free names are: whether it reads the sizes ``n`` and the channel count ``c``."""

    lines: tuple[str, ...]
    uses_sizes: bool
    uses_channels: bool

    def body(self, indent: int) -> str:
        pad = " " * indent
        return "\n".join(pad + line if line else "" for s in self.lines for line in s.split("\n"))


def _identifiers(program: Program) -> dict[str, str]:
    """A unique Python identifier per value name."""
    taken = {"x", "n", "c", "mixes", "self", "torch", "nn"}
    names: dict[str, str] = {}
    for op in program.ops:
        for v in op.defines():
            if v in names:
                continue
            stem = re.sub(r"\W", "_", v).strip("_") or "v"
            name, k = stem, 1
            while name in taken:
                k += 1
                name = f"{stem}_{k}"
            taken.add(name)
            names[v] = name
    return names


def _mean(dims: tuple[int, ...]) -> str:
    if not dims:
        return ""
    return f".mean({dims[0] if len(dims) == 1 else int_tuple(dims)})"


def _sizes(types: tuple[str, ...]) -> str:
    """``n["h1"] * n["h2"] ** 2`` for a product of type sizes."""
    counts: dict[str, int] = {}
    for t in types:
        counts[t] = counts.get(t, 0) + 1
    return " * ".join(f"n[{lit(t)}]" + (f" ** {k}" if k > 1 else "") for t, k in counts.items())


def _place(op: Place, src: str) -> str:
    """Chunk ``src`` of a mix placed into its output tensor (see :class:`Place`)."""
    q = op.pattern
    letters = iter(LETTERS)
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
    if op.layout is not None:
        per_axis = [per_axis[d - 2] for d in op.layout[2:]]
    out_sub = [letter for letter in per_axis if letter is not None]
    index = [":", ":"] + ["None" if letter is None else ":" for letter in per_axis]
    slots = "".join(first[CARRY, k] for k in range(len(q.slot_types)))
    subs = ["bc" + "".join(fixed) + slots, *(pair for pair, _ in eyes)]
    z = src
    if q.fixed_sizes:
        z = f"{src}.unflatten(1, (-1, {', '.join(map(str, q.fixed_sizes))}))"
    target = "bc" + "".join(out_sub)
    expr = z
    if eyes:  # onto a diagonal: einsum with identity matrices
        operands = [z, *(f"_eye(n[{lit(t)}], {src})" for _, t in eyes)]
        expr = f"torch.einsum({lit(','.join(subs) + '->' + target)}, {', '.join(operands)})"
    elif subs[0] != target:
        expr = f"{z}.permute({', '.join(str(subs[0].index(letter)) for letter in target)})"
    while index and index[-1] == ":":
        index.pop()
    if index:
        expr += "[" + ", ".join(index) + "]"
    return expr


def _times_c(k: int) -> str:
    """``k * c`` (``c``: the input channels), as short as it gets."""
    return "" if k == 0 else "c" if k == 1 else f"{k} * c"


def _key(key: str) -> str:
    return f"mixes[{lit(key)}]"


def emit(program: Program, names: dict[str, str] | None = None) -> Emitted:
    """The statements computing ``program`` (see the module docstring); ``names``: the
    identifiers of its values and of values defined outside it (default: its own)."""
    ids = names if names is not None else _identifiers(program)
    users = program.users()
    defining = {v: op for op in program.ops for v in op.defines()}
    results = {v for _, v in program.outputs if v is not None}
    inline = {
        v
        for v, op in defining.items()
        if users.get(v) == 1
        and v not in results
        and not isinstance(op, Split | Accumulate | MixInto)
    }
    uses_channels = False

    def ref(v: str) -> tuple[str, list[str]]:
        """The text for value ``v`` where it is read, and comments it brings along."""
        if v in inline:
            return expr(defining[v])
        return ids[v], []

    def expr(op: Op) -> tuple[str, list[str]]:
        nonlocal uses_channels
        notes = [op.comment] if op.comment and not isinstance(op, Concat) else []
        if isinstance(op, Read):
            return f"x[{lit(op.tensor)}]", notes
        if isinstance(op, Concat):
            items = [ref(s) for s in op.srcs]
            if not items:
                return "_no_features(x)", []
            if len(items) == 1:
                return items[0][0], items[0][1]
            lines = []
            for text, comments in items:
                lines += [f"    # {line}" for c in comments for line in c.split("\n")]
                lines.append(f"    {text},")
            return "torch.cat(\n[\n" + "\n".join(lines) + "\n],\ndim=1,\n)", []
        src, more = ref(op.uses()[0]) if op.uses() else ("", [])
        notes = more + notes
        if isinstance(op, Permute):
            return f"{src}.permute({', '.join(map(str, op.dims))}).contiguous()", notes
        if isinstance(op, Mean):
            return src + _mean(op.dims), notes
        if isinstance(op, Reduce):
            text = src + _mean(op.pool)
            if op.order != tuple(range(len(op.order))):
                text += f".permute({', '.join(map(str, op.order))})"
            if op.fixed:
                text += f".flatten(1, {1 + op.fixed})"
            return text, notes
        if isinstance(op, Diagonal):
            text = f"torch.einsum({lit(op.equation)}, {src})"
            if op.divide:
                sizes = _sizes(op.divide)
                text += f" / {sizes}" if len(op.divide) == 1 else f" / ({sizes})"
                if op.fixed:
                    text = f"({text})"
            if op.fixed:
                text += f".flatten(1, {1 + op.fixed})"
            return text, notes
        if isinstance(op, Rows):
            uses_channels = True
            return f"{src}[:, {_times_c(op.start)} : {_times_c(op.stop)}]", notes
        if isinstance(op, Mix):
            mix = _key(op.key)
            if op.bias:
                return f"nn.functional.linear({src}, {mix}.weight, {mix}.bias)", notes
            return f"_mix({mix}.weight, {src})", notes
        if isinstance(op, Place):
            return _place(op, src), notes
        raise TypeError(f"no expression for {type(op).__name__}")

    lines: list[str] = []

    def statement(target: str, text: str, notes: list[str]) -> None:
        comments = [f"# {line}" for c in notes for line in c.split("\n") if c]
        lines.append("\n".join([*comments, f"{target} = {text}"]))

    for op in program.ops:
        if op.out in inline or (op.defines() and all(v in inline for v in op.defines())):
            continue
        if isinstance(op, Split):
            src, notes = ref(op.src)
            targets = ", ".join(ids[p] for p in op.parts)
            statement(targets, f"{src}.split_with_sizes({_key(op.key)}.split, dim=1)", notes)
        elif isinstance(op, Accumulate):
            value, notes = ref(op.value)
            y = ids[op.out]
            statement(y, value if op.first else f"{y} + {value}", notes)
        elif isinstance(op, MixInto):
            src, notes = ref(op.src)
            acc = "None" if op.first else ids[op.out]
            identity = tuple(range(len(op.order)))
            if not op.first and not op.laid_out and op.order != identity:
                inverse = sorted(identity, key=op.order.__getitem__)
                acc += f".permute({', '.join(map(str, inverse))})"  # into the mix's layout
            args = [acc, f"{_key(op.key)}.weight", src]
            if op.fixed:
                args.append(f"fixed={int_tuple(op.fixed)}")
            if op.order != tuple(range(len(op.order))):
                args.append(f"order={int_tuple(op.order)}")
            if op.owned:
                args.append("owned=True")
            statement(ids[op.out], f"_mix_into({', '.join(args)})", [*notes, op.comment])
        else:
            text, notes = expr(op)
            statement(ids[op.out], text, notes)
    uses_sizes = any(re.search(r"\bn\[", line) for line in lines)
    return Emitted(tuple(lines), uses_sizes, uses_channels)


@dataclass(frozen=True)
class WithSummaries:
    """A layer program split in two: the summaries function (the ops the invariant head
    needs, a prefix of the layer's work: pure reductions) and the rest of the forward,
    which starts by calling it and unpacking ``returned``."""

    forward: Emitted
    summaries: Emitted
    #: what the summaries function returns, in order (the last: the pooled summaries)
    returned: tuple[str, ...]
    #: the forward's names for the returned values (``_`` where it does not use one)
    targets: tuple[str, ...]


def emit_with_summaries(program: Program, summaries: Program) -> WithSummaries:
    """``program`` emitted so that the ops of ``summaries`` (the invariant head's cut of it,
    :func:`qgen.codegen.passes.head_program`) are written once, as a function that both the layer's
    forward and the head call. Its ops only read ``x`` and each other, so hoisting them
    before the rest keeps every value's meaning."""
    ids = _identifiers(program)
    shared = set(summaries.ops)
    rest = tuple(op for op in program.ops if op not in shared)
    defined = [v for op in summaries.ops for v in op.defines()]
    later = {v for op in rest for v in op.uses()} | {v for _, v in program.outputs if v}
    pooled = "r:pooled"
    returned = [v for v in defined if v in later and v != pooled] + [pooled]
    head = emit(Program(summaries.ops, tuple(("", v) for v in returned)), ids)
    forward = emit(Program(rest, program.outputs), ids)
    targets = tuple(ids[v] if v in later else "_" for v in returned)
    return WithSummaries(forward, head, tuple(ids[v] for v in returned), targets)


def outputs(program: Program) -> str:
    """The ``{tensor: value}`` dict of the program's results (tensors no term writes are
    left out)."""
    ids = _identifiers(program)
    return "{" + ", ".join(f"{lit(t)}: {ids[v]}" for t, v in program.outputs if v) + "}"


__all__ += ["WithSummaries", "emit_with_summaries", "outputs"]
