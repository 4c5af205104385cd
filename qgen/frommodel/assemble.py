"""Spec assembly: the walked graph in, a :class:`~qgen.data.adapters.WeightSpace` out.

Takes a finished :class:`~qgen.frommodel.walk.Walk` and gives the spec and, per spec
tensor, where it sits in the state_dict. The input's and output's feature types are
fixed (``io="fixed"``) or permuted (``io="perm"``); their other axes (batch, tokens,
pixels) are positions, fixed. Pending splits become nested types; a parameter axis on a
sum of types becomes one spec tensor per block (a slice of the state_dict tensor); an
axis on a product becomes several spec axes (the state_dict tensor reshaped); a fixed
type that no weight reads (a kernel offset, a position) is a fixed axis ``k<n>``.
"""

from __future__ import annotations

import re
from math import prod

from qgen.data.adapters import WeightSpace
from qgen.decls import FIXED, MAX_TENSORS
from qgen.frommodel.axes import At
from qgen.frommodel.messages import UnsupportedModel
from qgen.frommodel.typegraph import Ax

__all__ = ["assemble", "identifier"]


def assemble(walk, name: str, io: str, source: str, aliases: dict[str, list[str]]) -> WeightSpace:
    ax = walk.ax
    types = ax.types
    where = "the model's inputs and outputs"
    ends_in, ends_out = [], []
    for values, ends in ((walk.inputs, ends_in), (walk.outputs, ends_out)):
        for v in values:
            for d in v.dims:
                ax.commit(d, where)
                for r in ax.classes(d):
                    if not ax.is_feature(r):
                        types.restrict(r, FIXED)  # batch, tokens, pixels: positions
                    else:
                        ends.append(r)
    for r in ends_in + ends_out:
        types.restrict(r, FIXED if io == FIXED else "perm")
    for r in list(ax.pending):
        if r in ax.pending:
            ax.commit((At(r, "radix", False, ax.pending[r], 0),), "a split type")
    for r, (outer, _) in list(types.split.items()):
        if types.root(r) == r and types.kind[r] == FIXED and r not in types.fixed_inside:
            # fixed as a whole (a constant such as BEiT's zero key bias concatenated into
            # the qkv bias, an input, an output): its blocks cannot move either
            types.restrict(outer, FIXED)
    _unnest_fixed_blocks(ax)
    for _ in range(len(types.split) + 1):  # blocks a tensor mixes cannot be permuted
        expanded = {key: _expand(ax, tv) for key, tv in walk.state.items()}
        mixed = {o for alts in expanded.values() for axes, _, _ in alts for o in _mixed(ax, axes)}
        if not mixed:
            break
        for o in mixed:
            ax.fix_type(o, f"parameter {next(iter(walk.state))}", "mixes blocks of a type")
        _unnest_fixed_blocks(ax)
    if sum(len(v) for v in expanded.values()) > MAX_TENSORS and ax.unnested:
        # one spec tensor per block is more tensors than a spec may have (GCViT: 3,377):
        # the blocks that cannot be permuted keep no symmetry inside either (sound)
        _renest_fixed(ax)
        expanded = {key: _expand(ax, tv) for key, tv in walk.state.items()}
    while sum(len(v) for v in expanded.values()) > MAX_TENSORS and ax.sums:
        # still too many: the sums with the most blocks (DenseNet's concatenations, read
        # as one slice per block by every later layer) become one fixed type each
        _unsum(ax, max(ax.sums, key=lambda r: len(ax.sums[r])))
        expanded = {key: _expand(ax, tv) for key, tv in walk.state.items()}
    entries = [(key, e) for key in expanded for e in expanded[key]]
    for key in expanded:  # a packed projection: q weight, q bias, k weight, ...
        bias = key.replace("in_proj_weight", "in_proj_bias")
        if key.endswith("in_proj_weight") and bias in expanded:
            w = [x for x in entries if x[0] == key]
            b = [x for x in entries if x[0] == bias]
            if len(w) == len(b):
                rest = [x for x in entries if x[0] not in (key, bias)]
                at = entries.index(w[0])
                mixed = [x for pair in zip(w, b, strict=True) for x in pair]
                entries = rest[:at] + mixed + rest[at:]
    for key, (axes, index, suffix) in entries:
        for k in [key] + aliases.get(key, []):
            types.add_tensor(_name(k, suffix), axes, k, f"parameter {key}", None, index)
    if not types.tensors:
        raise UnsupportedModel("the model has no parameters")
    ws = types.weight_space(identifier(name), ends_in, ends_out, None, source)
    ws.notes = list(dict.fromkeys(ax.notes))
    return ws


def _mixed(ax, axes: list[Ax]) -> set[str]:
    """The outer (block) types a tensor's axes need exactly one axis of but have none or
    several: a weight that mixes the blocks of its features (a split-attention fc reading
    all branches at once). Their blocks cannot be permuted: the type becomes a sum."""
    types = ax.types

    def outer(r: str) -> str:
        return types.root(types.split[r][0])

    need, have = set(), []
    for a in axes:
        if a.part == "fixed":
            continue
        r = types.root(a.t)
        if a.part in ("full", "inner") and r in types.split and types.kind[r] != FIXED:
            # (nothing acts inside the blocks of a fixed type: a tensor on its inner index
            # alone, shared by every block like Qwen3's per-head q_norm, is invariant)
            need.add(outer(r))
        if a.part == "outer" or (a.part == "full" and r in types.split):
            have.append(outer(r))
        elif a.part == "full":
            have.append(r)  # a block type used directly
    return {o for o in need if have.count(o) != 1}


#: a split type with more blocks than this whose blocks cannot be permuted is fixed, not
#: made a sum of one type per block (attention heads: a sum; 64 convolution groups: fixed)
MAX_SUM_BLOCKS = 16


def _unnest_fixed_blocks(ax) -> None:
    """A split type whose blocks may not be permuted (their block index is tied to a fixed
    one: rotary embeddings fix the queries' heads, and the values' heads pair with
    them) is the direct sum of its blocks, each with an element of its own: a sum of
    one type per block. (Nested types need a permutable outer type.)"""
    types = ax.types
    for r, (outer, blocks) in list(types.split.items()):
        if types.root(r) != r or types.kind[types.root(outer)] != FIXED:
            continue
        if types.kind[r] == FIXED:
            continue
        if blocks > MAX_SUM_BLOCKS:
            # one spec tensor per block of every parameter on it: too many (a grouped
            # convolution's 64 groups); no symmetry inside the blocks either (sound)
            ax.fix_type(r, "a split type", f"has {blocks} blocks that cannot be permuted")
            continue
        n = types.size[r] // blocks
        parts = [ax.fresh(n, types.kind[r]).t for _ in range(blocks)]
        if ax.is_feature(r):
            ax.features.update(parts)
        del types.split[r]
        ax.sums[r] = parts
        ax.unnested[r] = (types.root(outer), blocks)


def _renest_fixed(ax) -> None:
    """Undo :func:`_unnest_fixed_blocks`: each of those types is split again, and fixed
    (its blocks do not move, nothing acts inside them)."""
    types = ax.types
    for r, (outer, blocks) in list(ax.unnested.items()):
        del ax.sums[r], ax.unnested[r]
        types.split[r] = (outer, blocks)
        ax.fix_type(r, "a split type", f"has {blocks} blocks, one spec tensor each: too many")


def _unsum(ax, r: str) -> None:
    """The sum ``r`` read as one fixed type: every block (and every block of a block)
    is fixed first, so that nothing it is made of moves."""
    ax.fix((At(r),), "a sum of types", "has one spec tensor per block: too many")
    ax.sums.pop(r, None)
    ax.types.restrict(r, FIXED)


def _expand(ax, tv) -> list[tuple[list[Ax], list[tuple[int, int, int]], str]]:
    """The spec tensors of a parameter: its axes, the slice of it each is, a suffix."""
    out = [([], [], "")]
    for i, d in enumerate(tv.dims):
        alts = _dim(ax, ax.commit(d, "a parameter"), tv.shape[i])
        new = []
        for axes, index, suffix in out:
            for a_axes, rng, s in alts:
                idx = index + ([(i, *rng)] if rng is not None else [])
                new.append((axes + a_axes, idx, suffix + s))
        out = new
    return out


def _dim(ax, atoms, size: int):
    """``[(axes, (start, stop) or None, suffix)]`` for one axis of a parameter."""
    types = ax.types
    if not atoms:
        return [([types.fixed_axis(size)], None, "")]
    atoms = _merge_parts(ax, atoms)
    head, rest = atoms[0], atoms[1:]
    r = types.root(head.t)
    if head.part == "full" and r in ax.sums:
        inner = prod(ax.size(a) for a in rest)
        alts, offset = [], 0
        for j, block in enumerate(ax.sums[r]):
            n = types.size[types.root(block)]
            sub = ax.commit((At(block, dual=head.dual),) + rest, "a parameter")
            for axes, rng, s in _dim(ax, sub, n * inner):
                lo, hi = rng if rng is not None else (0, n * inner)
                alts.append((axes, (offset * inner + lo, offset * inner + hi), f"_{j}{s}"))
            offset += n
        return alts
    axes = []
    for a in atoms:
        r = types.root(a.t)
        if a.part == "full" and r in ax.sums:  # a sum inside a product: no slice fits
            ax.fix((a,), "a parameter", "has a sum of types inside a product axis")
            axes.append(types.fixed_axis(ax.size(a)))
        elif a.part == "radix":
            ax.fix((a,), "a parameter", "is split into blocks in two ways")
            axes.append(types.fixed_axis(ax.size(a)))
        elif (
            a.part == "full"
            and not ax.is_feature(r)
            and (types.kind[r] == FIXED or types.size[r] == 1)
            and not (r in types.split and types.kind[types.root(types.split[r][0])] != FIXED)
        ):  # a position, a kernel offset, a size-1 axis: fixed (a fixed type whose blocks
            # are permuted, like heads of a rotary query, is [outer, k<n>]: the blocks move)
            types.restrict(r, FIXED)
            # the operation that fixed it, for the k<n> axis it becomes (messages)
            types.fixed_at.setdefault(f"k{ax.size(a)}", types.fixed_at.get(r))
            if r in types.split:
                axes += [
                    types.fixed_axis(types.split[r][1]),
                    types.fixed_axis(ax.size(a) // types.split[r][1]),
                ]
            else:
                axes.append(types.fixed_axis(ax.size(a)))
        else:
            axes.append(Ax(a.t, a.dual, a.part))
    return [(axes, None, "")]


_PACKED = {"in_proj_weight": "W", "in_proj_bias": "b"}


def _name(key: str, suffix: str) -> str:
    """The spec name of (a block of) a state_dict tensor; the q/k/v blocks of a packed
    attention projection are ``<attention>_Wq``, ``_Wk``, ``_Wv`` (``_bq``, ...)."""
    module, _, leaf = key.rpartition(".")
    if leaf in _PACKED and suffix[:2] in ("_0", "_1", "_2") and module:
        return identifier(module) + f"_{_PACKED[leaf]}{'qkv'[int(suffix[1])]}" + suffix[2:]
    if key.endswith("out_proj.weight") or key.endswith("out_proj.bias"):
        base = key.rsplit(".", 2)[0]
        return identifier(base) + ("_Wo" if key.endswith("weight") else "_bo") + suffix
    return identifier(key) + suffix


def _merge_parts(ax, atoms):
    """Block index and index within a block of a type that is no longer split (its blocks
    became a sum) read together as the whole type; a part alone is a fixed axis."""
    types = ax.types
    out = []
    for a in atoms:
        r = types.root(a.t)
        if a.part == "inner" and r in ax.unnested and out and out[-1].part == "outer":
            p = types.root(out[-1].t)
            prev_outer = types.root(types.split[p][0]) if p in types.split else None
            if p in ax.unnested:
                prev_outer = ax.unnested[p][0]
            if prev_outer == ax.unnested[r][0]:
                out[-1] = At(r, "full", a.dual)
                continue
        out.append(a)
    for i, a in enumerate(out):
        r = types.root(a.t)
        if a.part in ("outer", "inner") and r in ax.unnested:
            # one part of a type whose blocks became a sum: fix the type (every block)
            ax.fix((At(r),), "a parameter", "reads one part of a type whose blocks are a sum")
            outer, blocks = ax.unnested[r]
            n = blocks if a.part == "outer" else types.size[r] // blocks
            out[i] = ax.fresh(n, FIXED)
    return tuple(out)


def identifier(text: str, limit: int = 60) -> str:
    """A tensor name from a state_dict key; long module paths keep their last parts whole
    and shorten the others to initials (``encoder.layer_groups.0.x`` -> ``e_l_0_x``)."""
    parts = [re.sub(r"\W", "_", p) for p in text.split(".")]
    for i in range(len(parts) - 2):
        if len("_".join(parts)) <= limit:
            break
        parts[i] = "".join(w[:1] for w in parts[i].split("_") if w) or parts[i]
    name = "_".join(parts)
    return name if name and not name[0].isdigit() else f"p{name}"
