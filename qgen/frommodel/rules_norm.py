"""Rules for normalisations and pooling.

Takes the walk and an aten call; gives the result's axes. The reasoning:

* ``layer_norm`` over the last axes subtracts the mean and divides by the deviation of
  those axes: it commutes with permutations of them (not with scalings: the mean of a
  scaled vector is not the scaled mean plus a shift per entry) and acts row by row on
  the others (permutations); ``weight``/``bias`` move with the normalised axes.
  ``rms_norm`` without a weight commutes with every orthogonal map of its axis (the
  norm is invariant), with a weight with permutations.
* ``batch_norm`` in eval mode is ``(x - mean) / sqrt(var + eps) * w + b`` per channel:
  a per-channel affine map, which commutes with permutations of the channels (moving
  the four vectors with them); in training mode it is refused. ``instance_norm``:
  as layer norm over the pixels of each channel.
* ``group_norm`` normalises contiguous groups of channels together: the channels split
  into ``G`` blocks that may be permuted as wholes, permutations inside each block.
* average pooling is linear per channel: every group; max pooling commutes with
  positive scalings of a channel (``max(s z) = s max(z)`` for ``s > 0``). The pixels
  are positions (fixed).
"""

from __future__ import annotations

from qgen.decls import FIXED
from qgen.frommodel.registry import rule
from qgen.frommodel.values import TV


def _all(w, x: TV, kind: str) -> None:
    for d in x.dims:
        w.ax.restrict(d, kind)


@rule("layer_norm", "native_layer_norm")
def layer_norm(w, node, a):
    x = a["input"]
    k = len(a["normalized_shape"])
    _all(w, x, "perm")
    for p in (a.get("weight"), a.get("bias")):
        if isinstance(p, TV):
            for i in range(1, k + 1):
                if p.shape[-i] != 1:
                    w.ax.tie(x.dims[-i], p.dims[-i], w.where())
    v = TV(x.dims, x.shape, x.param)
    return (v, None, None) if node.target.__name__.startswith("native") else v


@rule("rms_norm", "_fused_rms_norm")
def rms_norm(w, node, a):
    x, weight = a["input"], a.get("weight")
    k = len(a["normalized_shape"])
    for d in x.dims[:-k]:
        w.ax.restrict(d, "perm")
    for i in range(1, k + 1):
        w.ax.restrict(x.dims[-i], "orthogonal" if weight is None else "perm")
        if isinstance(weight, TV):
            w.ax.tie(x.dims[-i], weight.dims[-i], w.where())
    v = TV(x.dims, x.shape, x.param)
    return (v, None) if node.target.__name__.startswith("_fused") else v


@rule("batch_norm", "_native_batch_norm_legit_no_training", "native_batch_norm")
@rule("_native_batch_norm_legit", "instance_norm", "_batch_norm_impl_index")
@rule("_native_batch_norm_legit_functional")
def batch_norm(w, node, a):
    x = a["input"]
    name = node.target.__name__.split(".")[0]
    training = a.get("training", a.get("use_input_stats", False))
    if name == "_native_batch_norm_legit_no_training":
        training = False
    if training and name != "instance_norm":
        raise w.refuse("is in training mode (it normalises by the batch): call model.eval() first")
    _all(w, x, "perm")
    for p in ("weight", "bias", "running_mean", "running_var"):
        t = a.get(p)
        if isinstance(t, TV):
            w.ax.tie(x.dims[1], t.dims[0], w.where())
    v = TV(x.dims, x.shape, x.param)
    val = node.meta.get("val")
    if isinstance(val, tuple | list):
        return (v,) + tuple(None for _ in val[1:])
    return v


@rule("group_norm", "native_group_norm")
def group_norm(w, node, a):
    x = a["input"]
    groups = a.get("num_groups", a.get("group"))
    where = w.where()
    _all(w, x, "perm")
    if groups and groups > 1:
        atoms = w.ax.commit(x.dims[1], where)
        if len(atoms) == 1 and atoms[0].part == "full":
            w.ax.types.split_into(atoms[0].t, groups, where)
        else:
            w.ax.fix(x.dims[1], where, "normalises groups of channels qgen cannot split")
    for p in ("weight", "bias"):
        t = a.get(p)
        if isinstance(t, TV):
            w.ax.tie(x.dims[1], t.dims[0], where)
    v = TV(x.dims, x.shape, x.param)
    return (v, None, None) if node.target.__name__.startswith("native") else v


_AVG = ("avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d")
_AVG += ("adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d")
_MAX = ("max_pool1d", "max_pool2d", "max_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d")
_MAX += ("max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_max_pool3d")
_MAX += ("max_pool1d_with_indices",)


@rule(*_AVG, *_MAX)
def pool(w, node, a):
    x = next(v for v in a.values() if isinstance(v, TV))
    name = node.target.__name__.split(".")[0]
    val = node.meta["val"]
    out = tuple((val[0] if isinstance(val, tuple | list) else val).shape)
    k = 1 if "1d" in name else 3 if "3d" in name else 2
    lead = x.ndim - k
    for d in x.dims[lead:]:  # windows over positions
        w.ax.fix(d, w.where(), "pools over an axis")
    if name in _MAX:
        for d in x.dims[:lead]:
            w.ax.restrict(d, "scaled")
        if "indices" in name or a.get("return_indices"):
            if len(node.users) > 1 or any(u.args[1] == 1 for u in node.users):
                raise w.refuse("with return_indices=True is not supported")
    dims = x.dims[:lead] + tuple(w.ax.dim(n, FIXED) for n in out[lead:])
    v = TV(dims, out, x.param)
    return (v, None) if isinstance(val, tuple | list) else v
