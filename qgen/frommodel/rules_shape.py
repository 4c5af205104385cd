"""Rules for operations that move, split, merge, cut or join axes.

Takes the walk and an aten call; gives the value with its axes' atoms. The reasoning:

* ``view``/``reshape``/``flatten``/``unflatten``/``squeeze``/``unsqueeze`` and
  ``transpose``/``permute``/``expand``, ``contiguous``, ``clone``, ``to`` only move
  entries: a group acting on the *types* of the axes acts the same before and after, so
  they commute with every group as long as each type keeps its factors. Merging axes
  (``x.flatten(2)``, ``conv -> flatten(1)``) makes a product; cutting a type into
  ``a x b`` (``view(b, t, heads, d)``) makes a pending split
  (:mod:`qgen.frommodel.axes`); ``expand`` makes an axis the tensor is constant along.
* ``split``/``chunk``/``unbind``/``select``/``slice`` along an axis single out
  positions. Along a whole type they make it a sum of one type per piece (each piece
  then transforms by its own element: the q/k/v of a packed projection, the branches
  of Res2Net, a gated MLP's two halves); along an axis that is no type or a fixed one
  nothing changes; anything else (a slice inside one head) fixes the type.
* ``cat``/``stack`` join pieces: along the joined axis the result is the sum of the
  pieces' types (a class token joined to patch tokens, channel branches), along the
  others the pieces' axes are tied.
* ``index``, ``gather``, padding, pooling windows and interpolation are positional:
  they fix the types of the axes they index (spatial and token axes are fixed
  already).
"""

from __future__ import annotations

from qgen.decls import FIXED
from qgen.frommodel.axes import At
from qgen.frommodel.registry import rule
from qgen.frommodel.values import TV

_SAME = (
    "contiguous",
    "clone",
    "alias",
    "detach",
    "_to_copy",
    "to",
    "lift_fresh_copy",
    "_unsafe_view_copy",
    "type_as",
    "positive",
    "resolve_conj",
    "resolve_neg",
    "dropout_eval",
    "detach_",
    "copy",
    "clone_",
)


@rule(*_SAME)
def same(w, node, a):
    return _first(a)


@rule("dropout", "feature_dropout", "alpha_dropout", "native_dropout")
def dropout(w, node, a):
    x = _first(a)
    if a.get("train") and a.get("p", 0) > 0:
        raise w.refuse("is in training mode: call model.eval() first")
    return (x, None) if node.target.__name__.startswith("native_dropout") else x


@rule("view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "unsqueeze")
@rule("view_copy", "_reshape_alias", "expand_dims", "reshape_as", "view_as")
def reshape(w, node, a):
    x = _first(a)
    shape = w.shape()
    if x.shape == shape:
        return x
    return TV(tuple(w.ax.reshape(list(x.dims), list(shape), w.where())), shape, x.param)


@rule("transpose", "swapaxes", "swapdims")
def transpose(w, node, a):
    x = _first(a)
    if x.ndim < 2:
        return x
    i, j = (d % x.ndim for d in (a["dim0"], a["dim1"]))
    order = list(range(x.ndim))
    order[i], order[j] = order[j], order[i]
    return _permuted(x, order)


@rule("t", "numpy_T")
def t(w, node, a):
    x = _first(a)
    return _permuted(x, list(reversed(range(x.ndim))))


@rule("permute")
def permute(w, node, a):
    x = _first(a)
    return _permuted(x, [d % x.ndim for d in a["dims"]])


@rule("movedim")
def movedim(w, node, a):
    x = _first(a)
    src = a["source"] if isinstance(a["source"], list | tuple) else [a["source"]]
    dst = a["destination"] if isinstance(a["destination"], list | tuple) else [a["destination"]]
    src, dst = [s % x.ndim for s in src], [d % x.ndim for d in dst]
    rest = iter(d for d in range(x.ndim) if d not in src)
    order = [src[dst.index(i)] if i in dst else next(rest) for i in range(x.ndim)]
    return _permuted(x, order)


def _permuted(x: TV, order: list[int]) -> TV:
    return TV(tuple(x.dims[i] for i in order), tuple(x.shape[i] for i in order), x.param)


@rule("expand", "expand_as", "broadcast_to", "expand_copy")
def expand(w, node, a):
    x = _first(a)
    shape = w.shape()
    lead = len(shape) - x.ndim
    dims = [()] * lead
    for d, n, m in zip(x.dims, x.shape, shape[lead:], strict=True):
        if n == 1 and m != 1:
            w.ax.fix(d, w.where(), "broadcasts a size-1 axis")
            dims.append(())
        else:
            dims.append(d)
    return TV(tuple(dims), shape, x.param)


@rule("repeat")
def repeat(w, node, a):
    x = _first(a)
    shape = w.shape()
    reps = list(a["repeats"])
    lead = len(shape) - x.ndim
    dims = [()] * lead
    for d, r, n in zip(x.dims, reps[lead:], shape[lead:], strict=True):
        if r == 1:
            dims.append(d)
        elif not w.ax.norm(d):
            dims.append(())
        else:  # tiled copies along an axis: positions repeat, the type is fixed
            w.ax.fix(d, w.where(), "repeats an axis")
            dims.append(w.ax.dim(n, FIXED))
    return TV(tuple(dims), shape, x.param)


@rule("repeat_interleave")
def repeat_interleave(w, node, a):
    """Each entry repeated along one axis (GCViT's global query, repeated over the
    batch): the repeated axis is fixed (its positions are copies; the result's axis is a
    new fixed one), the others keep their types. Without ``dim`` the tensor is
    flattened first: every axis is fixed."""
    x = a.get("self")
    shape = w.shape()
    if not isinstance(x, TV):  # repeat_interleave(repeats): indices from counts
        return TV(tuple(w.ax.dim(n, FIXED) for n in shape), shape, True)
    dim = a.get("dim")
    if dim is None or x.ndim != len(shape):
        for d in x.dims:
            w.ax.fix(d, w.where(), "repeats entries of a flattened tensor")
        return TV(tuple(w.ax.dim(n, FIXED) for n in shape), shape, x.param)
    dim %= x.ndim
    if w.ax.norm(x.dims[dim]):
        w.ax.fix(x.dims[dim], w.where(), "repeats the positions of an axis")
    return _with(x, dim, w.ax.dim(shape[dim], FIXED), shape[dim])


# -- cutting -------------------------------------------------------------------------------


def _pieces(w, x: TV, dim: int, sizes: list[int]) -> list[tuple]:
    """The atoms of axis ``dim`` of ``x`` cut into ``sizes``."""
    d = x.dims[dim]
    atoms = w.ax.norm(d)
    if not atoms:
        return [()] * len(sizes)
    if all(w.ax.types.kind[w.ax.types.root(t.t)] == FIXED for t in atoms):
        return [w.ax.dim(n, FIXED) for n in sizes]
    cut = w.ax.split_dim(d, sizes, w.where())
    if cut is None:
        w.ax.fix(d, w.where(), "singles out positions of an axis")
        return [w.ax.dim(n, FIXED) for n in sizes]
    return cut


def _with(x: TV, dim: int, d, n: int) -> TV:
    dims = list(x.dims)
    shape = list(x.shape)
    dims[dim], shape[dim] = d, n
    return TV(tuple(dims), tuple(shape), x.param)


@rule("split", "split_with_sizes", "chunk", "tensor_split", "unsafe_split")
@rule("split_with_sizes_copy", "unsafe_chunk")
def split(w, node, a):
    x = _first(a)
    dim = a.get("dim", 0) % x.ndim
    outs = node.meta["val"]
    sizes = [o.shape[dim] for o in outs]
    pieces = _pieces(w, x, dim, sizes)
    return [_with(x, dim, p, n) for p, n in zip(pieces, sizes, strict=True)]


@rule("unbind")
def unbind(w, node, a):
    x = _first(a)
    dim = a.get("dim", 0) % x.ndim
    n = x.shape[dim]
    return [_select(w, x, dim, i, n) for i in range(n)]


@rule("select")
def select(w, node, a):
    x = _first(a)
    dim = a["dim"] % x.ndim
    return _select(w, x, dim, a["index"] % x.shape[dim], x.shape[dim])


def _select(w, x: TV, dim: int, index: int, n: int) -> TV:
    """``x`` at position ``index`` of axis ``dim``: one block of a split type picked
    (``qkv[0]``), or a position of an axis that is fixed (``h[:, 0]``, the class token)."""
    atoms = w.ax.norm(x.dims[dim])
    rest = x.dims[:dim] + x.dims[dim + 1 :]
    shape = x.shape[:dim] + x.shape[dim + 1 :]
    if len(atoms) == 1 and atoms[0].part == "radix" and atoms[0].digit == 0:
        r = w.ax.types.root(atoms[0].t)
        if r not in w.ax._radix_blocks:
            w.ax.split_dim(x.dims[dim], [1] * n, w.where())
        if r in w.ax._radix_blocks:
            return TV(w.ax.block_of(rest, atoms[0], index), shape, x.param)
    if len(atoms) == 1 and atoms[0].part == "full":
        r = w.ax.types.root(atoms[0].t)
        blocks = w.ax._radix_blocks.get(r)
        if blocks is not None and len(blocks[1]) == n:
            return TV(w.ax.block_of(rest, atoms[0], index), shape, x.param)
    if atoms and not all(w.ax.types.kind[w.ax.types.root(t.t)] == FIXED for t in atoms):
        w.ax.fix(x.dims[dim], w.where(), "picks one position of an axis")
    return TV(rest, shape, x.param)


@rule("slice", "narrow", "slice_copy")
def slice_(w, node, a):
    x = _first(a)
    dim = a.get("dim", 0) % x.ndim
    n = x.shape[dim]
    start = a.get("start")
    start = 0 if start is None else start
    if a.get("length") is not None:  # narrow
        end = start + a["length"]
    else:
        end = a.get("end")
        end = n if end is None or end > n else end
    start, end = (v + n if v < 0 else v for v in (start, end))
    step = a.get("step") or 1
    if (start, end, step) == (0, n, 1):
        return x
    out = w.shape()[dim]
    if step != 1:
        if w.ax.norm(x.dims[dim]):
            w.ax.fix(x.dims[dim], w.where(), "takes every k-th position of an axis")
        return _with(x, dim, w.ax.dim(out, FIXED), out)
    sizes = [s for s in (start, end - start, n - end) if s > 0]
    pieces = _pieces(w, x, dim, sizes)
    return _with(x, dim, pieces[1 if start > 0 else 0], out)


# -- joining -------------------------------------------------------------------------------


@rule("cat", "concat", "concatenate")
def cat(w, node, a):
    parts = [p for p in a["tensors"] if isinstance(p, TV) and p.shape != (0,)]
    out = w.shape()
    dim = a.get("dim", 0) % len(out)
    where = w.where()
    for i in range(len(out)):  # the other axes meet
        if i != dim:
            _tie_all(w, [p for p in parts if p.shape[i] != 1], i)
    for p in parts:  # a single position joined to others (a class token): fixed
        if p.shape[dim] == 1 and not w.ax.is_feature(p.dims[dim][0].t if p.dims[dim] else ""):
            w.ax.restrict(p.dims[dim], FIXED)
    blocks = [w.ax.norm(p.dims[dim]) for p in parts]
    kinds = [w.ax.types.kind[w.ax.types.root(t.t)] for b in blocks for t in b]
    param = all(p.param for p in parts)
    if all(k == FIXED for k in kinds):
        return TV(_joined(parts, dim, w.ax.dim(out[dim], FIXED)), out, param)
    types = []
    for p, b in zip(parts, blocks, strict=True):
        if len(b) == 1 and b[0].part == "full" and not b[0].dual:
            types.append(b[0].t)
        else:  # a product or a block of a split type: its own type, refined to it
            t = w.ax.fresh(p.shape[dim]).t
            if b:
                w.ax.tie((At(t),), b, where)
            else:
                w.ax.types.restrict(t, FIXED)
            types.append(t)
    s = w.ax.fresh(out[dim])
    w.ax.sums[s.t] = types
    return TV(_joined(parts, dim, (s,)), out, param)


def _joined(parts, dim, d):
    dims = list(parts[0].dims)
    dims[dim] = d
    for i in range(len(dims)):
        if i != dim and not dims[i]:  # broadcast in the first piece: another's axis
            dims[i] = next((p.dims[i] for p in parts if p.dims[i]), dims[i])
    return tuple(dims)


@rule("stack")
def stack(w, node, a):
    parts = [p for p in a["tensors"] if isinstance(p, TV)]
    out = w.shape()
    dim = a.get("dim", 0) % len(out)
    for i in range(parts[0].ndim):
        _tie_all(w, [p for p in parts if p.shape[i] != 1], i)
    dims = list(parts[0].dims)
    for i in range(len(dims)):
        dims[i] = next((p.dims[i] for p in parts if p.dims[i]), dims[i])
    dims.insert(dim, w.ax.dim(out[dim], FIXED))
    return TV(tuple(dims), out, all(p.param for p in parts))


def _tie_all(w, parts: list[TV], i: int) -> None:
    for p in parts[1:]:
        w.ax.tie(parts[0].dims[i], p.dims[i], w.where())


# -- positional -----------------------------------------------------------------------------


@rule("index", "_unsafe_index", "index_select", "gather", "take_along_dim", "roll", "flip")
@rule("constant_pad_nd", "pad", "reflection_pad1d", "reflection_pad2d", "replication_pad2d")
@rule(
    "upsample_nearest2d", "upsample_bilinear2d", "upsample_nearest1d", "_upsample_nearest_exact2d"
)
@rule("upsample_bicubic2d", "grid_sampler", "tril", "triu", "im2col", "col2im", "pixel_shuffle")
def positional(w, node, a):
    """Indexing and windows: every axis whose size or order changes is fixed; axes
    kept whole (leading ones) keep their types."""
    x = _first(a)
    out = w.shape()
    index = a.get("indices")
    touched = set(range(x.ndim))
    name = node.target.__name__
    if name.split(".")[0] in ("index", "_unsafe_index") and index is not None:
        touched = {i for i, v in enumerate(index) if v is not None}
    elif "dim" in a and isinstance(a.get("dim"), int):
        touched = {a["dim"] % x.ndim}
    elif isinstance(a.get("dims"), list | tuple) and a["dims"]:
        # roll / flip along the listed axes only (Swin's shifted windows roll the two
        # spatial axes; the channels keep their types)
        touched = {d % x.ndim for d in a["dims"]}
    elif isinstance(a.get("pad"), list | tuple) and len(a["pad"]) % 2 == 0:
        # F.pad's (left, right) pairs run from the last axis backwards: only the axes
        # padded by a nonzero amount are touched (Swin pads H and W of a channels-last
        # tensor with (0, 0, 0, pw, 0, ph): the channels keep their types)
        p = list(a["pad"])
        touched = {x.ndim - 1 - i for i in range(len(p) // 2) if p[2 * i] or p[2 * i + 1]}
    elif "pad" in a or "output_size" in a or "scale_factors" in a or "pad" in node.target.__name__:
        touched = {i for i in range(x.ndim) if i >= 2}
    if name.startswith(("tril", "triu")):
        touched = {x.ndim - 2, x.ndim - 1}
    for i in touched:
        if i < x.ndim and w.ax.norm(x.dims[i]):
            w.ax.fix(x.dims[i], w.where(), "indexes positions of an axis")
    if isinstance(a.get("value"), int | float) and a.get("value") and "pad" in name:
        # padded with a nonzero constant: along every other axis the new entries are the
        # same constant, which only permutations keep
        for i in set(range(x.ndim)) - touched:
            w.ax.restrict(x.dims[i], "perm")
    if len(out) == x.ndim and all(out[i] == x.shape[i] for i in range(x.ndim) if i not in touched):
        dims = tuple(
            x.dims[i] if i not in touched else w.ax.dim(out[i], FIXED) for i in range(x.ndim)
        )
        if not name.startswith(("tril", "triu", "roll", "flip")):
            return TV(dims, out, x.param)
        return TV(tuple(x.dims), out, x.param)
    keep = min(touched) if touched else x.ndim
    dims = list(x.dims[:keep]) + [w.ax.dim(n, FIXED) for n in out[keep:]]
    tail = x.ndim - max(touched) - 1 if touched else 0
    if tail and len(out) >= keep + tail and out[-tail:] == x.shape[-tail:]:
        dims[-tail:] = x.dims[-tail:]
    return TV(tuple(dims), out, x.param)


@rule("arange", "randn", "rand", "randint", "randperm")
def varying(w, node, a):
    return w.out_like(node, FIXED, param=True)


@rule("full", "zeros", "ones", "empty", "scalar_tensor", "zeros_like", "ones_like", "full_like")
@rule("empty_like", "new_zeros", "new_ones", "new_full", "new_empty", "fill", "empty_strided")
def constant(w, node, a):
    """The same value everywhere: an axis it is constant along has no type."""
    shape = w.shape()
    return TV(tuple(() for _ in shape), shape, True)


def _first(a: dict):
    for v in a.values():
        if isinstance(v, TV):
            return v
    raise ValueError("no tensor argument")  # pragma: no cover - the walk checks
