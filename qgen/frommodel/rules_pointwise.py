"""Rules for elementwise operations, reductions and softmax.

Takes the walk and an aten call; gives the result's axes. The reasoning, per axis type
``t`` and a group element ``A`` acting along it:

* a unary pointwise ``f`` commutes with ``A`` on *any* axis when ``f(A z) = A f(z)``:
  the group of :data:`qgen.kinds.pointwise.POINTWISE` (ReLU: positive scalings, tanh:
  sign flips, anything pointwise: permutations); linear ones (``neg``, a scalar
  multiple) commute with every ``A``;
* ``x + y``: where both have the axis it is tied (``A x + A y = A(x + y)``: residuals,
  biases, learned position embeddings moving with the features); where one operand is
  constant along it (broadcast, or a Python number) ``A`` must fix the all-ones vector:
  permutations only;
* ``x * y`` and ``x / y``: where both have the axis, ``(A x) * (A y) = A (x * y)`` for
  permutations only (gates, squeeze-excitation, layer scale ``gamma.view(1, -1, 1, 1)``,
  SwiGLU); where one is constant along it, it is a scalar there and commutes with every
  linear ``A`` (masks, ``1 / sqrt(d)``);
* any other elementwise function of several tensors (``where``, ``maximum``,
  ``masked_fill``): the axes are tied and permutations only;
* a sum or mean over an axis is invariant under permutations of it and linear in the
  others; a max over it commutes with positive scalings of the others; variance,
  norms and ``logsumexp`` with permutations of the others (a vector norm over an axis
  is invariant under its orthogonal maps);
* ``softmax`` along an axis is permutation-equivariant along it and acts row by row on
  the others: permutations.
"""

from __future__ import annotations

from qgen.decls import FIXED
from qgen.frommodel.registry import rule
from qgen.frommodel.values import TV
from qgen.kinds.pointwise import pointwise_kind

#: aten names of unary pointwise functions and the group they commute with
_UNARY = {
    "relu": "scaled",
    "leaky_relu": "scaled",
    "prelu": "perm",
    "abs": "scaled",
    "tanh": "signed",
    "sin": "signed",
    "atan": "signed",
    "asinh": "signed",
    "erf": "signed",
    "sign": "signed",
    "tan": "signed",
    "sinh": "signed",
    "asin": "signed",
    "atanh": "signed",
    "reciprocal": "signed",
    "softshrink": "signed",
    "hardshrink": "signed",
    "neg": "gl",
    "gelu": "perm",
    "silu": "perm",
    "sigmoid": "perm",
    "elu": "perm",
    "selu": "perm",
    "celu": "perm",
    "softplus": "perm",
    "mish": "perm",
    "hardswish": "perm",
    "hardsigmoid": "perm",
    "relu6": "perm",
    "hardtanh": "perm",
    "log_sigmoid": "perm",
    "exp": "perm",
    "log": "perm",
    "sqrt": "perm",
    "rsqrt": "perm",
    "cos": "perm",
    "pow": "perm",
    "square": "perm",
    "clamp": "perm",
    "clamp_min": "perm",
    "clamp_max": "perm",
    "floor": "perm",
    "ceil": "perm",
    "round": "perm",
    "logical_not": "perm",
    "bitwise_not": "perm",
    "isnan": "perm",
    "isinf": "perm",
    "nan_to_num": "perm",
    "erfinv": "perm",
    "log1p": "perm",
    "expm1": "perm",
    "cosh": "perm",
    "tanhshrink": "signed",
    "softsign": "signed",
    "sgn": "signed",
    "trunc": "signed",
    "frac": "signed",
}

_ADD = ("add", "sub", "rsub", "subtract")
_MUL = ("mul", "div", "true_divide", "multiply", "divide")  # (aliases: torch.multiply)
_OTHER = (
    "where", "maximum", "minimum", "masked_fill", "eq", "ne", "gt", "ge", "lt", "le",
    "logical_and", "logical_or", "bitwise_and", "bitwise_or", "fmod", "remainder", "atan2",
    "floor_divide", "lerp", "addcmul", "addcdiv", "copysign", "hypot", "xlogy", "logaddexp",
    "bitwise_xor", "logical_xor", "fmax", "fmin", "isclose", "heaviside",
)  # fmt: skip


@rule(*_UNARY)
def unary(w, node, a):
    tensors = [v for v in a.values() if isinstance(v, TV)]
    name = node.target.__name__.split(".")[0]
    if name not in _UNARY and name.rstrip("_") in _UNARY:  # in place: the same function
        name = name.rstrip("_")
    if name not in _UNARY:  # an elementwise operation without its own entry
        name = "exp"
    if len(tensors) > 1:
        return elementwise(w, node, a)
    x = tensors[0]
    kind = _UNARY[name]
    if name == "hardtanh":
        kind = "signed" if a.get("min_val") == -a.get("max_val", 1.0) else "perm"
    if name == "leaky_relu":
        kind = "scaled"
    if name == "pow" and a.get("exponent") == 1:
        kind = "gl"
    if name in ("clamp", "clamp_min") and (a.get("min") == 0 and a.get("max") is None):
        kind = "scaled"  # relu written as clamp(min=0)
    _restrict(w, x, kind)
    return TV(x.dims, w.shape(), x.param)


def _restrict(w, x: TV, kind: str) -> None:
    for d in x.dims:
        w.ax.restrict(d, kind)


def _aligned(w, tensors: list[TV], out: tuple[int, ...]):
    """Per axis of the result (from the right): the operands' axes that have it
    (size > 1 and not constant along it) and whether some operand is constant along it."""
    rows = []
    for k in range(1, len(out) + 1):
        present, absent = [], False
        for t in tensors:
            if k > t.ndim:
                absent = True
            elif t.shape[-k] == 1 and out[-k] != 1:  # broadcast: a size-1 type is fixed
                w.ax.restrict(t.dims[-k], FIXED)
                absent = True
            elif not w.ax.norm(t.dims[-k]):
                absent = absent or out[-k] != 1
            else:
                present.append((t, t.dims[-k]))
        rows.append((len(out) - k, present, absent))
    return rows


def _result(w, tensors: list[TV], out, param: bool) -> TV:
    dims = []
    for k in range(1, len(out) + 1):
        d = ()
        for t in tensors:
            if k <= t.ndim and t.shape[-k] == out[-k] and w.ax.norm(t.dims[-k]):
                d = t.dims[-k]
                break
        dims.append(d)
    return TV(tuple(reversed(dims)), tuple(out), param)


@rule(*_ADD)
def add(w, node, a):
    tensors = [v for v in a.values() if isinstance(v, TV)]
    out = w.shape()
    scalar = len(tensors) < 2 and any(
        isinstance(v, int | float) and not isinstance(v, bool) and v != 0
        for k, v in a.items()
        if k in ("other", "self")
    )
    where = w.where()
    for _i, present, absent in _aligned(w, tensors, out):
        for _, d in present[1:]:
            w.ax.tie(present[0][1], d, where)
        if present and (absent or scalar):  # a constant along it: permutations
            w.ax.restrict(present[0][1], "perm")
    return _result(w, tensors, out, all(t.param for t in tensors))


@rule(*_MUL)
def mul(w, node, a):
    tensors = [v for v in a.values() if isinstance(v, TV)]
    out = w.shape()
    where = w.where()
    name = node.target.__name__.split(".")[0]
    divides = name in ("div", "true_divide", "divide")
    divisor = a.get("other") if divides else None
    if divides and a.get("rounding_mode") is not None:
        return elementwise(w, node, a)
    for _i, present, _absent in _aligned(w, tensors, out):
        for _, d in present[1:]:
            w.ax.tie(present[0][1], d, where)
        if len(present) > 1:  # an elementwise product: permutations
            w.ax.restrict(present[0][1], "perm")
        elif present and present[0][0] is divisor:  # 1 / y along an axis of y alone
            w.ax.restrict(present[0][1], "signed")
    if isinstance(a.get("other"), int | float) and a.get("other") == 0 and name == "mul":
        pass  # times zero: the result is zero, which every group fixes
    return _result(w, tensors, out, all(t.param for t in tensors))


@rule(*_OTHER)
def elementwise(w, node, a):
    tensors = [v for v in a.values() if isinstance(v, TV)]
    out = w.shape()
    where = w.where()
    for _i, present, _absent in _aligned(w, tensors, out):
        for _, d in present[1:]:
            w.ax.tie(present[0][1], d, where)
        if present:
            w.ax.restrict(present[0][1], "perm")
    return _result(w, tensors, out, all(t.param for t in tensors))


# -- reductions ------------------------------------------------------------------------------

_LINEAR_REDUCE = ("sum", "mean", "nansum", "nanmean")
_MAX_REDUCE = ("amax", "amin", "max", "min")
_OTHER_REDUCE = ("var", "std", "var_mean", "std_mean", "logsumexp", "prod", "any", "all")
_OTHER_REDUCE += ("argmax", "argmin", "linalg_vector_norm", "norm", "count_nonzero", "median")


@rule(*_LINEAR_REDUCE, *_MAX_REDUCE, *_OTHER_REDUCE)
def reduce(w, node, a):
    x = next(v for v in a.values() if isinstance(v, TV))
    name = node.target.__name__.split(".")[0]
    overload = node.target._overloadname if hasattr(node.target, "_overloadname") else ""
    if name in ("max", "min") and overload in ("other", "binary"):
        return elementwise(w, node, a)
    dims = a.get("dim")
    if dims is None and name in ("norm",):
        dims = a.get("dim")
    if isinstance(dims, int):
        dims = [dims]
    if dims is None or dims == [] and name not in ("sum", "mean"):
        dims = list(range(x.ndim))
    elif dims == []:
        dims = list(range(x.ndim))
    dims = sorted({d % x.ndim for d in dims}) if x.ndim else []
    keep = bool(a.get("keepdim"))
    for d in dims:
        if name in ("linalg_vector_norm", "norm") and a.get("ord", 2) == 2:
            w.ax.restrict(x.dims[d], "orthogonal")
        else:
            w.ax.restrict(x.dims[d], "perm")
    others = [i for i in range(x.ndim) if i not in dims]
    if name in _MAX_REDUCE or name in ("linalg_vector_norm", "norm"):
        kind = "scaled"
    elif name in _LINEAR_REDUCE:
        kind = None
    else:
        kind = "perm"
    for i in others:
        if kind:
            w.ax.restrict(x.dims[i], kind)
    dims_out = []
    shape_out = []
    for i in range(x.ndim):
        if i in dims:
            if keep:
                dims_out.append(())
                shape_out.append(1)
        else:
            dims_out.append(x.dims[i])
            shape_out.append(x.shape[i])
    v = TV(tuple(dims_out), tuple(shape_out), x.param)
    val = node.meta.get("val")
    if isinstance(val, tuple | list):  # (values, indices) or (var, mean)
        return tuple(v for _ in val)
    return v


@rule("softmax", "_softmax", "log_softmax", "_log_softmax", "_safe_softmax")
def softmax(w, node, a):
    x = next(v for v in a.values() if isinstance(v, TV))
    for d in x.dims:
        w.ax.restrict(d, "perm")
    return TV(x.dims, w.shape(), x.param)


@rule("cumsum", "cumprod", "sort", "topk", "argsort", "cummax")
def ordered(w, node, a):
    raise w.refuse("is not supported (it depends on the order of positions along an axis)")


def registered_kind(fn) -> str | None:
    """The kind a user registered for a function (``register_pointwise``)."""
    kind = pointwise_kind(fn)
    return None if kind in (None, "unsupported") else kind


__all__ = ["FIXED", "registered_kind"]
