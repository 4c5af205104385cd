"""Rules for the operations that contract axes: linear layers, matrix products,
convolutions, embeddings and attention.

Takes the walk and an aten call; gives the result's axes. The reasoning: a
contraction ``sum_i a[.., i] b[i, ..]`` is invariant when ``a``'s axis transforms by
``A`` and ``b``'s by ``A^-T``: the two axes are tied as duals and keep every invertible
``A`` (a weight's input axis is the dual of the features it reads; attention's keys
the dual of its queries, so ``q . k`` is invariant). Axes that are carried through
(the weight's output axis, batch axes one operand broadcasts along) keep their types;
a batch axis both operands have pairs entries up and allows permutations only.

* ``aten.linear(x, W, b)``: ``x``'s last axis and ``W``'s input axis are duals; the
  result's last axis is ``W``'s output axis, which ``b`` has too; a product input axis
  (``conv -> flatten(1) -> Linear``) makes ``W`` read as ``[out, channels, h, w]``.
  Subclasses of ``nn.Linear`` calling ``F.linear`` and hand-made layers reach the same
  aten call.
* ``aten.convolution`` (all ranks, transposed, grouped): channels contract as above;
  spatial axes and the kernel are positions, fixed (a convolution commutes with
  shifts, not with permutations of pixels); ``groups=G`` splits both channel types into
  ``G`` blocks that are permuted together, each block with its own element
  (depthwise: blocks of one channel).
* ``aten.embedding(W, ids)``: a row picked by a token id: the vocabulary axis is fixed.
* ``aten.scaled_dot_product_attention(q, k, v)``: ``q``'s and ``k``'s last axes are
  duals, the key and value token axes meet in the product with the softmax (which
  allows permutations), a causal mask fixes the token axes.
"""

from __future__ import annotations

from qgen.decls import FIXED
from qgen.frommodel.registry import rule
from qgen.frommodel.rules_pointwise import add
from qgen.frommodel.values import TV


def _contract(w, a: TV, b: TV, ia: int, ib: int) -> None:
    w.ax.tie(a.dims[ia], b.dims[ib], w.where(), dual=True)
    if a.param or b.param:
        w.ax.mark(a.dims[ia])
        w.ax.mark(b.dims[ib])


@rule("linear")
def linear(w, node, a):
    x, W, b = a["input"], a["weight"], a.get("bias")
    if W.ndim == 1:
        _contract(w, x, W, -1, 0)
        return TV(x.dims[:-1], w.shape(), x.param and W.param)
    _contract(w, x, W, -1, 1)
    w.ax.mark(W.dims[0])
    if isinstance(b, TV) and b.ndim:
        w.ax.tie(W.dims[0], b.dims[-1], w.where())
    return TV(x.dims[:-1] + (W.dims[0],), w.shape(), x.param and W.param)


@rule("matmul", "mm", "bmm", "addmm", "baddbmm", "addbmm", "mv", "dot", "vdot", "addmv")
def matmul(w, node, a):
    name = node.target.__name__.split(".")[0]
    if name in ("addmm", "baddbmm", "addmv"):
        x, y, bias = (
            a["mat1" if "mat1" in a else "batch1" if "batch1" in a else "mat"],
            None,
            a["self"],
        )
        y = a.get("mat2", a.get("batch2", a.get("vec")))
        if a.get("alpha", 1) != 1 or a.get("beta", 1) not in (0, 1):
            pass  # scalar multiples commute with every linear map
        prod = _matmul(w, x, y, _out(x, y))
        return add(w, node, {"self": bias, "other": prod})
    tensors = [v for v in a.values() if isinstance(v, TV)]
    x, y = tensors[0], tensors[1]
    return _matmul(w, x, y, w.shape())


def _out(x: TV, y: TV) -> tuple[int, ...]:
    if y.ndim == 1:
        return x.shape[:-1]
    batch = x.shape[:-2] if len(x.shape[:-2]) >= len(y.shape[:-2]) else y.shape[:-2]
    return tuple(batch) + (x.shape[-2], y.shape[-1])


def _matmul(w, x: TV, y: TV, out) -> TV:
    if x.ndim == 1 and y.ndim == 1:
        _contract(w, x, y, 0, 0)
        return TV((), (), x.param and y.param)
    if y.ndim == 1:
        _contract(w, x, y, -1, 0)
        return TV(x.dims[:-1], tuple(out), x.param and y.param)
    if x.ndim == 1:
        _contract(w, x, y, 0, -2)
        return TV(y.dims[:-2] + (y.dims[-1],), tuple(out), x.param and y.param)
    _contract(w, x, y, -1, -2)
    # batch axes: tied; where both have one, the products pair entries up: permutations
    bx, by = x.dims[:-2], y.dims[:-2]
    sx, sy = x.shape[:-2], y.shape[:-2]
    batch = []
    for k in range(1, max(len(bx), len(by)) + 1):
        dx = bx[-k] if k <= len(bx) and sx[-k] != 1 else ()
        dy = by[-k] if k <= len(by) and sy[-k] != 1 else ()
        if w.ax.norm(dx) and w.ax.norm(dy):
            w.ax.tie(dx, dy, w.where())
            w.ax.restrict(dx, "perm")
        batch.append(dx if w.ax.norm(dx) else dy)
    dims = tuple(reversed(batch)) + (x.dims[-2], y.dims[-1])
    return TV(dims, tuple(out), x.param and y.param)


@rule("einsum")
def einsum(w, node, a):
    eq = a["equation"].replace(" ", "")
    ins, out = eq.split("->") if "->" in eq else (eq, None)
    specs = ins.split(",")
    ops = a["tensors"]
    if out is None or "." in eq or len(ops) != 2:
        raise w.refuse("is supported with two operands and an explicit output ('ij,jk->ik')")
    x, y = ops
    sx, sy = specs
    dims = []
    for c in set(sx) | set(sy):
        in_x, in_y, in_out = c in sx, c in sy, c in out
        dx = x.dims[sx.index(c)] if in_x else None
        dy = y.dims[sy.index(c)] if in_y else None
        if in_x and in_y and not in_out:
            w.ax.tie(dx, dy, w.where(), dual=True)
            if x.param or y.param:
                w.ax.mark(dx)
        elif in_x and in_y:
            w.ax.tie(dx, dy, w.where())
            w.ax.restrict(dx, "perm")
        elif not in_out:
            w.ax.restrict(dx if in_x else dy, "perm")
    for c in out:
        dims.append(x.dims[sx.index(c)] if c in sx else y.dims[sy.index(c)])
    return TV(tuple(dims), w.shape(), x.param and y.param)


@rule("conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d")
@rule("conv_transpose2d", "conv_transpose3d", "cudnn_convolution", "conv1d_padding")
@rule("conv2d_padding", "conv3d_padding")
def conv(w, node, a):
    x, W, b = a["input"], a["weight"], a.get("bias")
    name = node.target.__name__.split(".")[0]
    transposed = bool(a.get("transposed")) or name.startswith("conv_transpose")
    groups = a.get("groups", 1) or 1
    where = w.where()
    out = w.shape()
    for d in x.dims[2:]:  # pixels: positions
        w.ax.fix(d, where, "is read by a convolution window")
    for d in W.dims[2:]:
        w.ax.restrict(d, FIXED)
    w_in, w_out = (W.dims[0], W.dims[1]) if transposed else (W.dims[1], W.dims[0])
    if groups > 1 and not transposed and groups == x.shape[1] == out[1]:
        # depthwise, one output per channel: output channel c reads input channel c
        # alone, so the two are one type; a kernel per channel moves with it
        # (permutations: a scaling of the input would have to be undone per channel)
        w.ax.tie(x.dims[1], w_out, where)
        w.ax.restrict(x.dims[1], "perm")
        w.ax.restrict(w_in, FIXED)
        w.ax.mark(x.dims[1])
        if isinstance(b, TV) and b.ndim:
            w.ax.tie(w_out, b.dims[0], where)
        dims = (x.dims[0], x.dims[1]) + tuple(w.ax.dim(n, FIXED) for n in out[2:])
        return TV(dims, out, x.param and W.param)
    if groups == 1:
        w.ax.tie(x.dims[1], w_in, where, dual=True)
        w.ax.mark(x.dims[1])
        w.ax.mark(w_out)
        result = w_out
    elif transposed:
        raise w.refuse("with groups > 1 is not supported for transposed convolutions")
    elif _split_otherwise(w, x.dims[1], groups, where) or _split_otherwise(w, w_out, groups, where):
        # channels already split into another number of blocks (PiT's and FastViT's
        # grouped convolutions with 64 then 128 groups on one stream): the two block
        # structures have no common form qgen can declare (blocks within blocks), so
        # nothing acts on these channels: their types are fixed, their blocks too
        why = f"has {groups} groups on channels already split into other blocks"
        w.ax.fix(x.dims[1], where, why)
        w.ax.fix(w_out, where, why)
        w.ax.restrict(w_in, FIXED)
        result = w_out
    else:
        xr = _whole_type(w, x.dims[1], where)
        wr = _whole_type(w, w_out, where)
        types = w.ax.types
        outer = types.split_into(xr, groups, where)
        types.tie(types.split_into(wr, groups, where), outer, where)
        from qgen.frommodel.axes import At

        w.ax.tie((At(xr, "inner"),), w_in, where, dual=True)
        w.ax.features.update({types.root(xr), types.root(wr)})
        result = w_out
    if isinstance(b, TV) and b.ndim:
        w.ax.tie(result, b.dims[0], where)
    dims = (x.dims[0], result) + tuple(w.ax.dim(n, FIXED) for n in out[2:])
    return TV(dims, out, x.param and W.param)


def _split_otherwise(w, d, groups: int, where) -> bool:
    """Whether axis ``d`` is one type already split into a number of blocks other than
    ``groups``."""
    atoms = w.ax.commit(d, where)
    if len(atoms) != 1 or atoms[0].part != "full":
        return False
    r = w.ax.types.root(atoms[0].t)
    return r in w.ax.types.split and w.ax.types.split[r][1] != groups


def _whole_type(w, d, where) -> str:
    """The one type an axis is (committing a pending split); refused otherwise."""
    atoms = w.ax.commit(d, where)
    if len(atoms) != 1 or atoms[0].part != "full" or w.ax.types.root(atoms[0].t) in w.ax.sums:
        raise w.refuse("with groups > 1 needs its channels to be one type")
    return w.ax.types.root(atoms[0].t)


@rule("embedding", "embedding_bag")
def embedding(w, node, a):
    W, ids = a["weight"], a["indices"]
    if a.get("max_norm") is not None:
        raise w.refuse("with max_norm is not supported (it renormalises rows)")
    w.ax.restrict(W.dims[0], FIXED)  # rows picked by id: the vocabulary is fixed
    w.ax.mark(W.dims[1])
    return TV(ids.dims + (W.dims[1],), w.shape(), ids.param)


@rule("scaled_dot_product_attention", "_scaled_dot_product_attention_math")
@rule("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention")
def sdpa(w, node, a):
    q, k, v = a["query"], a["key"], a["value"]
    where = w.where()
    if a.get("dropout_p", 0) and a.get("dropout_p") > 0:
        raise w.refuse("with dropout_p > 0 is in training mode: call model.eval() first")
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise w.refuse("needs query, key and value of the same rank")
    w.ax.tie(q.dims[-1], k.dims[-1], where, dual=True)  # q . k
    w.ax.tie(k.dims[-2], v.dims[-2], where)  # keys and values share tokens
    for d in (q.dims[-2], k.dims[-2]):
        w.ax.restrict(d, FIXED if a.get("is_causal") else "perm")
    for i in range(q.ndim - 2):  # batch and heads: all three meet
        present = [t.dims[i] for t in (q, k, v) if t.shape[i] != 1 and w.ax.norm(t.dims[i])]
        for d in present[1:]:
            w.ax.tie(present[0], d, where)
        if present:
            w.ax.restrict(present[0], "perm")
    mask = a.get("attn_mask")
    if isinstance(mask, TV):  # added to the scores [.., L, S]
        scores = TV(q.dims[:-1] + (k.dims[-2],), q.shape[:-1] + (k.shape[-2],))
        add(w, node, {"self": scores, "other": mask})
    out = w.shape()
    return TV(q.dims[:-1] + (v.dims[-1],), out, False)


@rule("_native_multi_head_attention", "_transformer_encoder_layer_fwd")
def fused(w, node, a):
    raise w.refuse(
        "(a fused fast path) is not supported: export the model with torch.no_grad() "
        "disabled or call it in a way that takes the regular path"
    )


@rule("lstm")
def lstm(w, node, a):
    """``aten.lstm`` (``nn.LSTM``; Sequencer's row and column LSTMs). Per layer and
    direction, ``W_ih [4H, in]``, ``W_hh [4H, H]``, ``b_ih``, ``b_hh [4H]``: the ``4H``
    rows are four gates (input, forget, cell, output: a fixed index of 4) times the
    hidden units ``H``. The gates go through sigmoid and tanh and are multiplied
    elementwise (``c' = f * c + i * g``, ``h' = o * tanh(c')``), so the hidden units of
    one layer and direction may be permuted, the same permutation on every gate's rows,
    on ``W_hh``'s columns and on the output: ``H`` is a perm type. The input features
    are read by ``W_ih`` (a contraction: its dual). Time is read in order: the time axis
    is fixed; samples of the batch are independent: permutations. A bidirectional
    output joins the two directions' units (a sum); the next layer reads that. The final
    states ``h_n``, ``c_n`` stack every layer and direction along one axis: if the graph
    reads them, the hidden units keep no symmetry (their types are fixed)."""
    x, params = a["input"], a.get("params")
    where = w.where()
    if not isinstance(x, TV) or not isinstance(params, list | tuple):
        raise w.refuse("is supported as nn.LSTM's input form (input, hx, params)")
    if a.get("train") and a.get("dropout", 0):
        raise w.refuse("is in training mode: call model.eval() first")
    layers, bidi = a["num_layers"], bool(a["bidirectional"])
    dirs = 2 if bidi else 1
    per = 4 if a["has_biases"] else 2
    if len(params) != layers * dirs * per or not all(isinstance(p, TV) for p in params):
        raise w.refuse("with projections (proj_size) is not supported")
    batch_first = bool(a.get("batch_first"))
    if x.ndim == 3:
        t_axis, b_axis = (1, 0) if batch_first else (0, 1)
        w.ax.restrict(x.dims[t_axis], FIXED)  # time: in order
        w.ax.restrict(x.dims[b_axis], "perm")
    else:
        w.ax.restrict(x.dims[0], FIXED)
    feed = x.dims[-1]
    hiddens = []
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            ps = params[(layer * dirs + d) * per : (layer * dirs + d + 1) * per]
            w_ih, w_hh = ps[0], ps[1]
            n = w_hh.shape[1]
            h = w.ax.fresh(n, "perm")
            for p in ps:  # rows: gate (fixed 4) x hidden unit
                w.ax.tie(p.dims[0], (w.ax.fresh(4, FIXED), h), where)
            w.ax.tie(feed, w_ih.dims[1], where, dual=True)
            w.ax.tie((h,), w_hh.dims[1], where, dual=True)
            w.ax.mark(feed)
            w.ax.mark((h,))
            outs.append(h)
        hiddens += outs
        if dirs == 1:
            feed = (outs[0],)
        else:
            s = w.ax.fresh(sum(w.ax.types.size[w.ax.types.root(o.t)] for o in outs))
            w.ax.sums[s.t] = [o.t for o in outs]
            feed = (s,)
    read = [u.args[1] for u in node.users if len(u.args) > 1 and u.users]
    # an initial state other than zeros (nn.LSTM's default): its entries do not move
    # with the hidden units, so the units keep no symmetry
    hx_nodes = node.args[1] if len(node.args) > 1 and isinstance(node.args[1], list | tuple) else []
    zeros = ("zeros", "new_zeros", "zeros_like")
    given = any(
        getattr(n, "target", None) is None
        or getattr(n.target, "__name__", "").split(".")[0] not in zeros
        for n in hx_nodes
    )
    for t in a.get("hx") or ():  # the initial states themselves: read as given
        for d in t.dims if isinstance(t, TV) else ():
            w.ax.fix(d, where, "is an LSTM initial state")
    if given or any(i in (1, 2) for i in read):  # states stack every layer's units
        for h in hiddens:
            w.ax.fix((h,), where, "is an LSTM state read after the sequence")
    out = TV(x.dims[:-1] + (feed,), tuple(node.meta["val"][0].shape), False)
    states = [
        TV(tuple(w.ax.dim(k, FIXED) for k in v.shape), tuple(v.shape), False)
        for v in node.meta["val"][1:]
    ]
    return (out, *states)
