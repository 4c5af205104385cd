"""Specs from real torch models (``qgen spec --from-model``, :func:`spec_from_module`).

The model is traced with ``torch.fx`` (Hugging Face ``transformers`` models with
``transformers.utils.fx``). Every feature tensor in the graph carries an index type
for its feature dimension (the last one for linear layers, dim 1 for convolutions):

* the input gets the fixed type ``x``, each output's type becomes fixed (``y``); with
  ``io="perm"`` they are permuted instead;
* ``Linear``, ``Conv1d/2d/3d`` (and ``ConvTranspose`` without groups) and ``Embedding``
  create a new type for their output and the tensors ``weight: [out, in*(, k...)]``
  (``Embedding``: ``[vocabulary, out]``, the vocabulary fixed) and ``bias: [out]``;
* a convolution with ``groups=G`` splits its input and output types into ``G`` blocks:
  output block ``b`` reads input block ``b`` only, so the symmetry permutes the blocks of
  both together (one perm type of size ``G``) and acts inside each block with an element
  of its own (nested types). Its weight ``[G*m_out, m_in, k...]`` reads as
  ``[G, m_out, m_in*, k...]``; depthwise convolutions are the case ``m_in = 1``;
* a residual addition ties the types of its two operands into one type; an
  elementwise product ties them and keeps permutations only;
* every other operation restricts the group of the types it touches to what it
  commutes with: pointwise activations by :data:`qgen.kinds.pointwise.POINTWISE` (ReLU:
  positive scalings, tanh/sin: sign flips, GELU/ReLU6: permutations; extend it with
  :func:`qgen.kinds.pointwise.register_pointwise`), max pooling to positive scalings (a
  channel's max commutes with a positive scale, not with a sign), LayerNorm, BatchNorm,
  GroupNorm (per group of channels) and RMSNorm to permutations; average pooling,
  scalar multiples (``30 * x``, ``x / 2``) and dropout in eval mode commute with every
  linear map;
* attention (``nn.MultiheadAttention``, ``nn.TransformerEncoderLayer``,
  ``F.scaled_dot_product_attention`` and ``softmax(q @ k.transpose(-2, -1)) @ v`` on
  heads made with ``.view(..., heads, d_head)``): a perm type of heads, per head a GL
  type on the query/key dimension (queries ``M``, keys ``M^-T``) and one on the
  value/output dimension, as in the transformer preset.

A type touched by linear maps and additions only keeps GL(n). Anything else (an unknown
module, a function that could mix features) is refused with the user's source line and
the operation in their words, rather than guessed. Reductions and indexing on a
features-last tensor are read as acting on the leading (batch/token) dimensions when
they name a non-negative dimension and the rank is unknown (``h.mean(1)``, ``h[:, 0]``
on ``[batch, tokens, features]``); a negative index that reaches the features is refused.
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from qgen.data.adapters import WeightSpace
from qgen.frommodel.fx_shapes import tensor_shapes
from qgen.frommodel.typegraph import Ax, TypeGraph, UnsupportedModel
from qgen.kinds.pointwise import pointwise_kind
from qgen.spec import Spec

__all__ = [
    "UnsupportedModel",
    "model_from_factory",
    "spec_from_module",
    "weight_space_from_module",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_AVG_POOL = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
_MAX_POOL = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_BATCH_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_INSTANCE_NORM = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_AVG_FUNCS = {F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d}
_AVG_FUNCS |= {F.adaptive_avg_pool2d, F.adaptive_avg_pool3d}
_MAX_FUNCS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.adaptive_max_pool2d}
_LEAVES = (nn.TransformerEncoderLayer, nn.TransformerEncoder, nn.MultiheadAttention)
#: methods that only read metadata (sizes, device, dtype) or copy
_META_METHODS = {"size", "dim", "numel", "get_device"}
_SCALAR_OPS = {getattr, operator.getitem, operator.add, operator.sub, operator.mul}
_SCALAR_OPS |= {operator.truediv, operator.floordiv, operator.pow, operator.neg, operator.mod}
_SAME_METHODS = {"contiguous", "clone", "detach", "float", "double", "half", "to"}
_SYMBOLS = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.matmul: "@",
    operator.pow: "**",
    operator.mod: "%",
    operator.neg: "unary -",
}


# -- values flowing through the graph ------------------------------------------------------


@dataclass(frozen=True)
class Feat:
    """A tensor whose feature dimension has type ``t``: the last dim, or dim 1
    (``channels``: convolutions); ``rank`` when known."""

    t: str
    channels: bool | None = False
    rank: int | None = None


@dataclass(frozen=True)
class Heads:
    """Features of the split type ``t`` laid out as dims ``head`` (the blocks) and
    ``inner`` of a rank-``rank`` tensor."""

    t: str
    head: int
    inner: int
    rank: int


@dataclass(frozen=True)
class Scores:
    """Attention scores between tokens, per head of the perm type ``outer``: invariant."""

    outer: str


@dataclass(frozen=True)
class Meta:
    """No features: sizes, masks, token ids, constants; ``tail`` when it is a shape that
    ends in these integers; ``scalar`` when it is a Python number (a size, a constant),
    not a tensor."""

    tail: tuple[int, ...] = ()
    scalar: bool = False


@dataclass(frozen=True)
class Tup:
    items: tuple


@dataclass(frozen=True)
class Param:
    key: str


_FEATURE = (Feat, Heads, Scores, Param)


# -- where in the user's code ---------------------------------------------------------------

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n +(.*)')
_TORCH_DIR = os.path.dirname(torch.__file__)
_QGEN_DIR = os.path.dirname(__file__)


def user_line(node: fx.Node) -> str | None:
    """``file:line: code`` of the last frame of the user's code that made ``node``."""
    trace = node.stack_trace or node.meta.get("stack_trace")
    if not trace:
        return None
    frames = [
        f
        for f in _FRAME.findall(trace)
        if not f[0].startswith((_TORCH_DIR, _QGEN_DIR)) and not f[0].startswith("<")
    ]
    if not frames:
        return None
    file, line, _, code = frames[-1]
    rel = os.path.relpath(file)
    return f"{file if rel.startswith('..') else rel}:{line}: {code.strip()}"


def _index_text(index) -> str:
    def one(i) -> str:
        if isinstance(i, slice):
            parts = ["" if v is None else _arg_text(v) for v in (i.start, i.stop, i.step)]
            return ":".join(parts[:2] if i.step is None else parts)
        return "..." if i is Ellipsis else _arg_text(i)

    return ", ".join(one(i) for i in (index if isinstance(index, tuple) else (index,)))


def _arg_text(a) -> str:
    return "i" if isinstance(a, fx.Node) else repr(a)


def _function_name(fn) -> str:
    name = getattr(fn, "__name__", str(fn))
    for mod, prefix in ((torch, "torch"), (F, "torch.nn.functional"), (torch.Tensor, "Tensor")):
        if getattr(mod, name, None) is fn:
            return f"{prefix}.{name}"
    return f"{getattr(fn, '__module__', '')}.{name}".lstrip(".")


def describe(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The operation of ``node`` in the user's words."""
    if node.op == "call_module":
        return f"module '{node.target}' ({type(modules[node.target]).__name__})"
    if node.op == "call_method":
        return f"x.{node.target}(...)"
    if node.op == "get_attr":
        return f"the parameter self.{node.target} used directly"
    target = node.target
    if target is operator.getitem:
        return f"x[{_index_text(node.args[1])}] (indexing)"
    if target is getattr:
        return f"attribute access .{node.args[1]}"
    if target in _SYMBOLS:
        return f"'{_SYMBOLS[target]}' ({_function_name(target).replace('_operator.', 'operator.')})"
    return _function_name(target)


# -- tracing ----------------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """torch.fx with stack traces, keeping the attention modules whole."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        known = pointwise_kind(type(m), m) is not None  # declared pointwise: kept whole
        return isinstance(m, _LEAVES) or known or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> tuple[fx.Graph, nn.Module]:
    if not isinstance(model, nn.Module):
        raise UnsupportedModel(
            f"expected a torch.nn.Module, got {type(model).__name__}; the factory must "
            "return the model"
        )
    if _is_hf(model):
        from qgen.frommodel.hf import trace_hf

        return trace_hf(model)
    try:
        return _Tracer().trace(model), model
    except Exception as exc:  # torch.fx raises many kinds of errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedModel(
            f"torch.fx cannot trace {type(model).__name__}: {first} (data-dependent control "
            "flow in forward cannot be traced)"
        ) from exc


def _is_hf_graph(model: nn.Module) -> bool:
    return type(model).__name__ == "GraphModule" and hasattr(model, "config")


def _is_hf(model: nn.Module) -> bool:
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


# -- the walk ---------------------------------------------------------------------------------


class _Walk:
    """Reads a traced graph into a :class:`TypeGraph`."""

    def __init__(self, model: nn.Module, graph: fx.Graph, shapes: dict[fx.Node, tuple]) -> None:
        self.shapes = shapes
        self.hf = hasattr(model, "config") and _is_hf_graph(model)
        self.model = model
        self.graph = graph
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())
        self.types = TypeGraph()
        self.value: dict[fx.Node, object] = {}
        self.count = 0
        self.calls: dict[str, tuple[str | None, object]] = {}
        self.param_types: dict[str, str] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.node: fx.Node | None = None

    # errors name the user's line and the operation
    def where(self, node: fx.Node | None = None) -> str:
        node = node or self.node
        op = describe(node, self.modules)
        line = user_line(node)
        if line is None:  # made lazily (an attribute read when used): where its input is
            line = next((user_line(a) for a in node.all_input_nodes if user_line(a)), None)
        return f"{line}: {op}" if line else op

    def refuse(self, why: str = "is not supported") -> UnsupportedModel:
        return UnsupportedModel(f"{self.where()} {why}")

    def fresh(self, size: int | None = None) -> str:
        self.count += 1
        return self.types.new(f"_t{self.count}", size=size)

    def val(self, a):
        if isinstance(a, fx.Node):
            return self.value[a]
        if isinstance(a, tuple | list):
            vals = [self.val(x) for x in a]
            if all(isinstance(v, Meta) for v in vals):
                tail = []
                for x in reversed(a):
                    if not isinstance(x, int):
                        break
                    tail.append(x)
                return Meta(tuple(reversed(tail)), all(v.scalar for v in vals))
            return Tup(tuple(vals))
        return Meta(scalar=isinstance(a, int | float | bool | slice) or a is None)

    def feat(self, a, what: str = "its input") -> Feat:
        v = self.val(a)
        if not isinstance(v, Feat):
            raise self.refuse(f"needs a feature tensor as {what}, got {_kind_of(v)}")
        return v

    def run(self, io: str) -> None:
        for node in self.graph.nodes:
            self.node = node
            if node.op == "placeholder":
                meta = node.meta.get("tensor_meta")
                ids = meta is not None and not getattr(meta, "dtype", torch.float).is_floating_point
                if ids or self.hf:
                    self.value[node] = Meta()  # token ids: no feature type
                elif not self.inputs:
                    t = self.types.new("_x")
                    self.inputs.append(t)
                    self.value[node] = Feat(t, None)
                else:
                    self.value[node] = Meta()  # masks and other side inputs
            elif node.op == "get_attr":
                self.value[node] = Param(node.target) if node.target in self.params else Meta()
            elif node.op == "call_module":
                self.value[node] = self.call_module(node)
            elif node.op in ("call_function", "call_method"):
                try:
                    self.value[node] = self.call(node)
                except UnsupportedModel:
                    if not (io == "fixed" and self.reads_only_the_input(node)):
                        raise
                    self.value[node] = Meta()  # a function of the fixed input: invariant
            elif node.op == "output":
                self.output(node.args[0])
            v = self.value.get(node)
            if isinstance(v, Feat) and node in self.shapes:
                rank = len(self.shapes[node])
                self.value[node] = Feat(v.t, v.channels and rank > 2, rank)

    def reads_only_the_input(self, node: fx.Node) -> bool:
        """Whether every feature ``node`` reads has the input's (fixed) type."""
        vals = [self.value[a] for a in node.all_input_nodes]
        inputs = {self.types.root(t) for t in self.inputs}
        features = [v for v in vals if _has_feature(v)]
        return all(isinstance(v, Feat) and self.types.root(v.t) in inputs for v in features)

    def output(self, out) -> None:
        items = list(out.values()) if isinstance(out, dict) else [out]
        if isinstance(out, tuple | list):
            items = list(out)
        for item in items:
            if item is None:
                continue
            v = self.val(item)
            if isinstance(v, Tup):
                for sub in v.items:
                    self._output_value(sub)
            else:
                self._output_value(v)

    def _output_value(self, v) -> None:
        if isinstance(v, Meta):
            return
        if isinstance(v, Heads):
            raise UnsupportedModel("the model returns features split into heads")
        if not isinstance(v, Feat):
            raise UnsupportedModel(f"the model returns {_kind_of(v)}")
        self.outputs.append(v.t)

    # -- modules --------------------------------------------------------------------------

    def call_module(self, node: fx.Node):
        key = node.target
        module = self.modules[key]
        if isinstance(module, nn.Embedding):
            return self.embedding(module, key, node)
        src = self.val(node.args[0]) if node.args else Meta()
        if isinstance(module, nn.MultiheadAttention):
            return self.mha_call(node, module, key)
        if isinstance(module, nn.TransformerEncoder | nn.TransformerEncoderLayer):
            self.no_feature_args(node)
            h = self.feat(node.args[0])
            layers = module.layers if isinstance(module, nn.TransformerEncoder) else [module]
            t = h.t
            for i, layer in enumerate(layers):
                prefix = f"{key}.layers.{i}" if isinstance(module, nn.TransformerEncoder) else key
                t = self.encoder_layer(layer, prefix, t)
            if isinstance(module, nn.TransformerEncoder) and module.norm is not None:
                self.norm(module.norm, f"{key}.norm", Feat(t, False, h.rank))
            return Feat(t, False, h.rank)
        kind = pointwise_kind(type(module), module)
        if kind is not None:
            if module.training and "Dropout" in type(module).__name__ and module.p > 0:
                raise self.refuse("is in training mode: call model.eval() first")
            return self.pointwise(src, kind)
        if isinstance(src, Scores) and isinstance(module, nn.Softmax | nn.Dropout):
            return src
        if isinstance(module, _AVG_POOL + _MAX_POOL) and self.feat(node.args[0]).channels is False:
            raise self.refuse("pools a features-last tensor (over its features)")
        if isinstance(module, _AVG_POOL):
            return src
        if isinstance(module, _MAX_POOL):
            if getattr(module, "return_indices", False):
                raise self.refuse("with return_indices=True is not supported")
            return self.pointwise(src, "scaled")
        if isinstance(module, nn.Flatten):
            return self.flatten(src, module.start_dim)
        if isinstance(module, nn.Softmax):
            f = self.feat(node.args[0])
            if module.dim is None or not self.is_feature_dim(f, module.dim):
                raise self.refuse("over a dimension that is not the features is not supported")
            return self.pointwise(f, "perm")
        if key in self.calls:
            return self.reuse(key, node)
        f = self.feat(node.args[0])
        if isinstance(module, nn.Linear) and f.channels:
            raise self.refuse("reads the last spatial dim of a conv output, not its channels")
        if isinstance(module, _CONV + _CONV_T) and f.channels is False:
            raise self.refuse("reads dim 1 of a features-last tensor, not its features")
        if isinstance(module, _BATCH_NORM + _INSTANCE_NORM) and f.channels is False:
            if f.rank is None or f.rank > 2:
                raise self.refuse("normalises dim 1 of a features-last tensor")
        if isinstance(module, nn.Linear):
            out = self.linear(module, key, f.t)
            result = Feat(out, False, f.rank)
        elif isinstance(module, _CONV + _CONV_T):
            result = Feat(self.conv(module, key, f.t), True, f.rank)
        elif isinstance(module, nn.LayerNorm | nn.RMSNorm | nn.GroupNorm):
            self.norm(module, key, f)
            result = f
        elif isinstance(module, _BATCH_NORM + _INSTANCE_NORM):
            self.norm(module, key, f)
            result = f
        else:
            raise self.refuse()
        self.calls[key] = (f.t, result)
        return result

    def reuse(self, key: str, node: fx.Node):
        """A layer called again shares its weights: its inputs (and outputs) must be the
        same types at every call."""
        first_in, result = self.calls[key]
        f = self.feat(node.args[0])
        self.types.tie(first_in, f.t, f"{self.where()} (a layer called twice)")
        return result

    def no_feature_args(self, node: fx.Node) -> None:
        for a in list(node.args[1:]) + list(node.kwargs.values()):
            if isinstance(self.val(a), _FEATURE):
                raise self.refuse("with a feature tensor as mask is not supported")

    def linear(self, module: nn.Linear, key: str, src: str) -> str:
        where = self.where()
        out = self.fresh(module.out_features)
        self.types.set_size(src, module.in_features, where)
        self.add(f"{key}.weight", [Ax(out), Ax(src, True)])
        if module.bias is not None:
            self.add(f"{key}.bias", [Ax(out)])
        return out

    def conv(self, module: nn.Module, key: str, src: str) -> str:
        where = self.where()
        if module.padding_mode != "zeros" and module.padding_mode not in (
            "reflect",
            "replicate",
            "circular",
        ):  # pragma: no cover - torch validates
            raise self.refuse()
        transposed = isinstance(module, _CONV_T)
        groups = module.groups
        out = self.fresh(module.out_channels)
        self.types.set_size(src, module.in_channels, where)
        kernel = [self.types.fixed_axis(k) for k in module.kernel_size]
        if groups == 1:
            axes = [Ax(src, True), Ax(out)] if transposed else [Ax(out), Ax(src, True)]
        elif transposed:
            raise self.refuse("with groups > 1 is not supported")
        else:
            outer = self.types.split_into(src, groups, where)
            self.types.tie(self.types.split_into(out, groups, where), outer, where)
            axes = [Ax(out, part="outer"), Ax(out, part="inner"), Ax(src, True, "inner")]
        self.add(f"{key}.weight", axes + kernel)
        if module.bias is not None:
            self.add(f"{key}.bias", [Ax(out)])
        return out

    def norm(self, module: nn.Module, key: str, f: Feat) -> None:
        """Normalisations commute with permutations of their features (RMSNorm without
        a weight with every orthogonal map); their per-feature parameters and running
        statistics become tensors on the type."""
        where = self.where()
        if isinstance(module, nn.LayerNorm | nn.RMSNorm):
            shape = module.normalized_shape
            if len(shape) != 1 or f.channels:
                raise self.refuse("over more than the feature dimension is not supported")
            n = shape[0]
        elif isinstance(module, nn.GroupNorm):
            n = module.num_channels
        else:
            n = module.num_features
        self.types.set_size(f.t, n, where)
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.RMSNorm) and weight is None:
            self.types.restrict(f.t, "orthogonal")
        else:
            self.types.restrict(f.t, "perm")
        if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
            self.types.split_into(f.t, module.num_groups, where)
        for p in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, p, None) is not None:
                self.add(f"{key}.{p}", [Ax(f.t)])

    def embedding(self, module: nn.Embedding, key: str, node: fx.Node):
        if module.max_norm is not None:
            raise self.refuse("with max_norm is not supported (it renormalises rows)")
        if key in self.calls:
            return self.calls[key][1]
        ids = self.val(node.args[0])
        if isinstance(ids, Feat) and self.types.root(ids.t) in map(self.types.root, self.inputs):
            self.inputs.clear()  # token ids: the input has no feature type
        elif not isinstance(ids, Meta):
            raise self.refuse(f"needs token ids, got {_kind_of(ids)}")
        out = self.fresh(module.embedding_dim)
        self.add(f"{key}.weight", [self.types.fixed_axis(module.num_embeddings), Ax(out)])
        result = Feat(out, False, None)
        self.calls[key] = (None, result)
        return result

    def add(self, key: str, axes: list[Ax], rows=None, name: str | None = None) -> None:
        self.types.add_tensor(_identifier(name or key), axes, key, self.where(), rows)

    # -- attention ------------------------------------------------------------------------

    def mha_call(self, node: fx.Node, module: nn.MultiheadAttention, key: str):
        args = list(node.args) + [node.kwargs.get(k) for k in ("query", "key", "value")]
        query, key_arg, value = [a for a in args if a is not None][:3]
        if not (query is key_arg is value):
            raise self.refuse("is supported for self-attention only (query, key, value the same)")
        f = self.feat(query)
        if key in self.calls:
            first_in, result = self.calls[key]
            self.types.tie(first_in, f.t, f"{self.where()} (a layer called twice)")
            return result
        out = self.mha(module, key, f.t)
        result = Tup((Feat(out, False, f.rank), Meta()))  # weights averaged over heads
        self.calls[key] = (f.t, result)
        return result

    def mha(self, module: nn.MultiheadAttention, key: str, src: str) -> str:
        """``nn.MultiheadAttention``: rows ``h*dh:(h+1)*dh`` of each of Wq, Wk, Wv in
        ``in_proj_weight`` belong to head ``h``; queries and keys meet in ``q . k``, so
        the keys' type is the dual of the queries'."""
        where = self.where()
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise self.refuse("is supported with packed projections and no bias_k/zero_attn")
        e, h = module.embed_dim, module.num_heads
        self.types.set_size(src, e, where)
        q, k, v = (self.fresh(e) for _ in range(3))
        outer = self.types.split_into(q, h, where, prefix="head")
        for t in (k, v):
            self.types.tie(self.types.split_into(t, h, where, prefix="head"), outer, where)
        self.types.tie(k, q, where, dual=True)
        base = _identifier(key)
        for i, (name, t) in enumerate((("q", q), ("k", k), ("v", v))):
            rows = (i * e, (i + 1) * e)
            w, b = f"{key}.in_proj_weight", f"{key}.in_proj_bias"
            self.add(w, [Ax(t), Ax(src, True)], rows, f"{base}_W{name}")
            if module.in_proj_bias is not None:
                self.add(b, [Ax(t)], rows, f"{base}_b{name}")
        out = self.fresh(e)
        self.add(f"{key}.out_proj.weight", [Ax(out), Ax(v, True)], name=f"{base}_Wo")
        if module.out_proj.bias is not None:
            self.add(f"{key}.out_proj.bias", [Ax(out)], name=f"{base}_bo")
        return out

    def encoder_layer(self, layer: nn.TransformerEncoderLayer, key: str, r: str) -> str:
        """``nn.TransformerEncoderLayer``: ``r + MHA(LN(r))`` and ``r + W2 act(W1 LN(r))``
        (or LayerNorm after each residual with ``norm_first=False``); every block
        writes into the one residual type ``r``."""
        if layer.training and (layer.dropout.p > 0 or layer.dropout1.p > 0):
            raise self.refuse("is in training mode: call model.eval() first")
        act = layer.activation
        kind = pointwise_kind(act if not isinstance(act, nn.Module) else type(act), act)
        if kind in (None, "unsupported"):
            raise self.refuse(f"has an activation qgen does not know ({act})")
        f = Feat(r, False, None)
        self.norm(layer.norm1, f"{key}.norm1", f)
        r = self.types.tie(self.mha(layer.self_attn, f"{key}.self_attn", r), r, self.where())
        m = self.linear(layer.linear1, f"{key}.linear1", r)
        self.types.restrict(m, kind)
        r = self.types.tie(self.linear(layer.linear2, f"{key}.linear2", m), r, self.where())
        self.norm(layer.norm2, f"{key}.norm2", Feat(r, False, None))
        return r

    def sdpa(self, q, k, v) -> Heads:
        """``softmax(q k^T / sqrt(d) + mask) v`` per head: queries ``M``, keys ``M^-T``
        (their dot products are invariant), values and output share a type."""
        where = self.where()
        for name, h in (("query", q), ("key", k), ("value", v)):
            if not isinstance(h, Heads) or h.head != h.rank - 3 or h.inner != h.rank - 1:
                raise self.refuse(f"needs the {name} as [batch, heads, tokens, d_head]")
        self.types.tie(k.t, q.t, where, dual=True)
        qo = self.types.split[self.types.root(q.t)][0]
        vo = self.types.split[self.types.root(v.t)][0]
        self.types.tie(vo, qo, where)
        return v

    # -- functions and methods ------------------------------------------------------------

    def call(self, node: fx.Node):
        target = node.target
        args = node.args
        vals = [self.val(a) for a in args] + [self.val(a) for a in node.kwargs.values()]
        if not any(_has_feature(v) for v in vals):
            # Python arithmetic on sizes stays a number; torch functions make tensors
            scalar = (target in _SCALAR_OPS or target in _META_METHODS) and all(
                v.scalar for v in vals if isinstance(v, Meta)
            )
            if target is operator.add and isinstance(args[1], tuple):
                return Meta(tuple(x for x in args[1] if isinstance(x, int)), scalar)
            return Meta(scalar=scalar)
        x = vals[0] if vals else None
        if target in ("expand_as", "type_as", "new_zeros", "new_ones", "new_full"):
            if isinstance(x, Meta):  # a constant shaped like a feature tensor
                return Meta()
            if target == "type_as":
                return x
        if target in (torch.pow, operator.pow, "pow") and isinstance(x, Feat | Heads):
            if isinstance(self.val(args[1]), Meta) and self.val(args[1]).scalar:
                return self.pointwise(x, "perm")  # z -> z**p, pointwise
        if target is getattr:
            if args[1] in ("shape", "device", "dtype", "ndim", "is_cuda"):
                return Meta(scalar=True)
            raise self.refuse()
        if target in _META_METHODS:
            return Meta(scalar=True)
        if target is operator.getitem:
            return self.getitem(x, args[1])
        if target in _SAME_METHODS:
            return x
        if target == "to" or target is torch.Tensor.to:
            return x
        if target == "type" and len(args) > 1:
            return x
        if target in (operator.add, torch.add, "add", operator.sub, torch.sub, "sub"):
            return self.add_values(vals[0], vals[1] if len(vals) > 1 else Meta())
        if target in (operator.mul, torch.mul, "mul", operator.truediv, torch.div, "div"):
            return self.mul(target, args, vals)
        if target in (operator.neg, torch.neg, "neg"):
            return x
        if target in (torch.matmul, operator.matmul, "matmul", torch.bmm):
            return self.matmul(vals[0], vals[1])
        if target in (F.softmax, torch.softmax, "softmax", "masked_fill", torch.masked_fill):
            if isinstance(x, Scores) and not any(_has_feature(v) for v in vals[1:]):
                return x
        if target is F.scaled_dot_product_attention:
            if any(_has_feature(v) for v in vals[3:]):
                raise self.refuse("with a feature tensor as mask is not supported")
            return self.sdpa(*vals[:3])
        if target is F.dropout:
            p = node.kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            training = node.kwargs.get("training", args[2] if len(args) > 2 else True)
            if training and p > 0:
                raise self.refuse("is in training mode (training=True) and not the identity")
            return x
        kind = pointwise_kind(target)
        if kind is not None and kind != "unsupported" and target not in (F.dropout,):
            if any(_has_feature(v) for v in vals[1:]):
                raise self.refuse()
            return self.pointwise(x, kind)
        if target in _AVG_FUNCS | _MAX_FUNCS:
            if self.feat(args[0]).channels is False:
                raise self.refuse("pools a features-last tensor (over its features)")
            return x if target in _AVG_FUNCS else self.pointwise(x, "scaled")
        if target in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            return self.flatten(x, start)
        if target in (torch.mean, "mean", torch.sum, "sum", torch.amax, "amax"):
            dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
            return self.reduce(x, dims, target)
        if target in ("view", "reshape", torch.reshape):
            shape = args[1:] if target != torch.reshape else args[1]
            if len(shape) == 1 and isinstance(shape[0], tuple | list | fx.Node):
                shape = shape[0]
            return self.reshape(x, shape)
        if target in ("transpose", torch.transpose, "permute", torch.permute):
            return self.transpose(x, target, args[1:])
        raise self.refuse()

    def pointwise(self, x, kind: str):
        if kind == "unsupported":
            raise self.refuse("has no declared group for this configuration")
        if isinstance(x, Scores):
            return x
        if isinstance(x, Feat | Heads):
            self.types.restrict(x.t, kind)
            return x
        raise self.refuse(f"needs a feature tensor, got {_kind_of(x)}")

    def add_values(self, a, b):
        if isinstance(a, Scores) or isinstance(b, Scores):
            if isinstance(a, Scores | Meta) and isinstance(b, Scores | Meta):
                return a if isinstance(a, Scores) else b
            raise self.refuse()
        if isinstance(a, Meta) or isinstance(b, Meta):
            f, c = (a, 1) if isinstance(b, Meta) else (b, 0)
            if isinstance(f, Feat | Heads) and self.same_for_all_features(self.node.args[c], f):
                self.types.restrict(f.t, "perm")  # the same constant added to every feature
                return f
            raise self.refuse("adds a constant that differs between features")
        if isinstance(a, Param) or isinstance(b, Param):
            p, f = (a, b) if isinstance(a, Param) else (b, a)
            if not isinstance(f, Feat) or f.channels:
                raise self.refuse()
            shape = self.params[p.key].shape
            self.types.set_size(f.t, shape[-1], self.where())
            if p.key in self.param_types:  # the same parameter added again
                self.types.tie(self.param_types[p.key], f.t, self.where())
                return f
            self.param_types[p.key] = f.t
            axes = [self.types.fixed_axis(s) for s in shape[:-1]] + [Ax(f.t)]
            self.add(p.key, axes)  # a bias-like tensor: moves with the features it is added to
            return f
        if isinstance(a, Feat) and isinstance(b, Feat):
            if None not in (a.channels, b.channels) and a.channels != b.channels:
                raise self.refuse("adds conv channels to features-last tensors")
            t = self.types.tie(a.t, b.t, f"{self.where()} (a residual addition)")
            channels = a.channels if a.channels is not None else b.channels
            return Feat(t, channels, a.rank or b.rank)
        if isinstance(a, Heads) and isinstance(b, Heads) and (a.head, a.inner) == (b.head, b.inner):
            self.types.tie(a.t, b.t, self.where())
            return a
        raise self.refuse()

    def mul(self, target, args, vals):
        a, b = vals[0], vals[1]
        division = target in (operator.truediv, torch.div, "div")
        # a factor that is the same for every feature (a scalar, a per-token mask)
        # commutes with every linear map of the features
        if isinstance(b, Meta) and isinstance(a, Feat | Heads | Scores):
            if isinstance(args[1], int | float) and args[1] == 0:
                raise self.refuse("by zero is not supported")
            if isinstance(a, Scores) or self.same_for_all_features(args[1], a):
                return a
        if isinstance(a, Meta) and not division and isinstance(b, Feat | Heads | Scores):
            if isinstance(b, Scores) or self.same_for_all_features(args[0], b):
                return b
        if isinstance(a, Feat) and isinstance(b, Feat) and not division:
            if a.channels != b.channels:
                raise self.refuse()
            t = self.types.tie(a.t, b.t, f"{self.where()} (an elementwise product)")
            self.types.restrict(t, "perm")
            return a
        raise self.refuse()

    def same_for_all_features(self, arg, f) -> bool:
        """Whether the constant ``arg`` broadcasts along the feature dims of ``f``."""
        v = self.val(arg)
        if v.scalar:
            return True
        shape = self.shapes.get(arg) if isinstance(arg, fx.Node) else None
        if shape is None or f.rank is None:
            return False
        dims = [f.head, f.inner] if isinstance(f, Heads) else [1 if f.channels else f.rank - 1]
        from_right = [f.rank - d for d in dims]
        return all(len(shape) < k or shape[-k] == 1 for k in from_right)

    def matmul(self, a, b):
        if isinstance(a, Heads) and isinstance(b, Heads):
            if a.inner == a.rank - 1 and b.inner == b.rank - 2 and a.head == b.head == a.rank - 3:
                self.types.tie(b.t, a.t, self.where(), dual=True)
                return Scores(self.types.split[self.types.root(a.t)][0])
        if isinstance(a, Scores) and isinstance(b, Heads) and b.inner == b.rank - 1:
            if b.head == b.rank - 3:
                self.types.tie(self.types.split[self.types.root(b.t)][0], a.outer, self.where())
                return b
        raise self.refuse()

    def getitem(self, x, index):
        if isinstance(x, Tup):
            if not isinstance(index, int):
                raise self.refuse()
            return x.items[index]
        if isinstance(x, Meta):
            return Meta()
        if not isinstance(x, Feat):
            raise self.refuse()
        idx = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, fx.Node) and _has_feature(self.val(i)) for i in idx):
            raise self.refuse("(indexing by features) is not supported")
        if Ellipsis in idx:
            tail = idx[idx.index(Ellipsis) + 1 :]
            if tail:
                raise self.refuse("selects features, which is not supported")
            return x
        if x.channels:
            if len(idx) >= 2 and idx[1] != slice(None):
                raise self.refuse("selects channels, which is not supported")
            return Feat(x.t, True, None)
        if x.rank is None:
            raise self.refuse(
                "on a tensor of unknown rank may select features; pass example_input= to "
                "spec_from_module"
            )
        if len(idx) >= x.rank and idx[x.rank - 1] != slice(None):
            raise self.refuse("selects features, which is not supported")
        return Feat(x.t, False, None)

    def is_feature_dim(self, f: Feat, d: int) -> bool:
        """Whether dim ``d`` of ``f`` is its feature dim (refused when that depends on a
        rank that shape propagation could not find)."""
        if f.rank is not None:
            return d % f.rank == (1 if f.channels else f.rank - 1)
        if (f.channels and d >= 0) or (not f.channels and d < 0):
            return d in (1, -1)
        raise self.refuse(
            f"over dim {d} of a tensor of unknown rank may touch the features; pass "
            "example_input= to spec_from_module"
        )

    def reduce(self, x, dims, target):
        """A mean or sum over dimensions other than the features keeps the type; a max
        over them keeps positive scalings only. Over the features it is invariant under
        permutations of them: the type keeps permutations only and the result carries
        no features (a per-token statistic, as in an RMSNorm written out)."""
        if not isinstance(x, Feat):
            raise self.refuse()
        if dims is None:
            raise self.refuse("over all dimensions (including the features) is not supported")
        dims = (dims,) if isinstance(dims, int) else tuple(dims)
        if any(self.is_feature_dim(x, d) for d in dims):
            self.types.restrict(x.t, "perm")
            return Meta()
        if x.channels and any(d == 0 for d in dims):
            raise self.refuse("reduces over the batch, which is not supported")
        if target in (torch.amax, "amax"):
            self.types.restrict(x.t, "scaled")
        keep = self.node.kwargs.get("keepdim", False) or (
            len(self.node.args) > 2 and self.node.args[2]
        )
        # conv features pooled to [batch, channels] are features-last (ranks come from
        # shape propagation where it ran)
        return Feat(x.t, bool(x.channels and keep), None)

    def flatten(self, x, start: int):
        if isinstance(x, Heads) and (x.head, x.inner) == (x.rank - 2, x.rank - 1):
            if start % x.rank == x.rank - 2:  # the heads merge back
                return Feat(x.t, False, x.rank - 1)
        if not isinstance(x, Feat):
            raise self.refuse()
        if x.channels is None:  # the input: fixed anyway
            return Feat(x.t, False, None)
        out = self.shapes.get(self.node)
        n = self.types.size.get(self.types.root(x.t))
        if x.channels and start == 1 and (out is None or out[-1] == n):
            return Feat(x.t, False, 2)  # channels after global pooling (sizes are checked)
        if not x.channels and start == 0 and x.rank is None:
            return Feat(x.t, False, 1)
        raise self.refuse("merges the features with other dimensions, which is not supported")

    def reshape(self, x, shape):
        prefix_unknown = isinstance(shape, fx.Node)  # e.g. x.size()[:-2] + (d,)
        if prefix_unknown:
            v = self.val(shape)
            if not isinstance(v, Meta) or not v.tail:
                raise self.refuse("with a shape qgen cannot read is not supported")
            shape = [None, *v.tail]
        shape = list(shape)
        out = self.shapes.get(self.node)
        n = self.types.size.get(self.types.root(x.t)) if isinstance(x, Feat | Heads) else None
        if out is not None and n is not None:
            if isinstance(x, Feat) and not x.channels and len(out) >= 1:
                if out[-1] == n:  # the last dim stays as it is
                    return Feat(x.t, False, len(out))
                if len(out) >= 3 and out[-1] * out[-2] == n:
                    self.types.split_into(x.t, out[-2], self.where(), prefix="head")
                    return Heads(x.t, len(out) - 2, len(out) - 1, len(out))
            if isinstance(x, Heads) and (x.head, x.inner) == (x.rank - 2, x.rank - 1):
                if out and out[-1] == n:
                    return Feat(x.t, False, len(out))
            raise self.refuse("mixes the features with other dimensions, which is not supported")
        if isinstance(x, Feat) and not x.channels:
            pair = [s if isinstance(s, int) and s != -1 else None for s in shape[-2:]]
            if len(shape) >= 3 and n is not None and pair != [None, None]:
                heads, d = pair
                heads, d = (n // d, d) if heads is None else (heads, n // heads)
                if n is not None and heads * d == n and heads > 0:
                    self.types.split_into(x.t, heads, self.where(), prefix="head")
                    r = len(shape)
                    return Heads(x.t, r - 2, r - 1, r)
            if shape and shape[-1] == n and n is not None:
                return Feat(x.t, False, None)
        if isinstance(x, Heads) and (x.head, x.inner) == (x.rank - 2, x.rank - 1):
            # the heads merge back when the last size is theirs (or computed at run time)
            if prefix_unknown and shape[-1] == n and len(shape) == 2:
                return Feat(x.t, False, None)
            if len(shape) == x.rank - 1 and (shape[-1] in (n, -1) or _is_node(shape[-1])):
                return Feat(x.t, False, x.rank - 1)
        raise self.refuse("is not supported (qgen follows splitting the features into heads)")

    def transpose(self, x, target, dims):
        if isinstance(x, Heads):
            if target in ("permute", torch.permute):
                perm = list(dims[0]) if len(dims) == 1 else list(dims)
                perm = [p % x.rank for p in perm]
                if sorted(perm) != list(range(x.rank)):
                    raise self.refuse()
                return Heads(x.t, perm.index(x.head), perm.index(x.inner), x.rank)
            a, b = (d % x.rank for d in dims)
            swap = {a: b, b: a}
            return Heads(x.t, swap.get(x.head, x.head), swap.get(x.inner, x.inner), x.rank)
        if isinstance(x, Feat) and x.channels is False and target in ("transpose", torch.transpose):
            a, b = dims
            if not (self.is_feature_dim(x, a) or self.is_feature_dim(x, b)):
                return x
        raise self.refuse()


def _is_node(a) -> bool:
    return isinstance(a, fx.Node)


def _has_feature(v) -> bool:
    if isinstance(v, Tup):
        return any(_has_feature(x) for x in v.items)
    return isinstance(v, _FEATURE)


def _kind_of(v) -> str:
    return {
        Feat: "a feature tensor",
        Heads: "features split into heads",
        Scores: "attention scores",
        Meta: "a value without features (sizes, masks or ids)",
        Tup: "a tuple (unpack it, e.g. `a, _ = mha(h, h, h)`)",
        Param: "a parameter",
    }[type(v)]


def _identifier(text: str, limit: int = 60) -> str:
    """A tensor name from a state_dict key; long module paths keep their last parts whole
    and shorten the others to initials (``encoder.layer_groups.0.x`` -> ``e_l_0_x``)."""
    parts = [re.sub(r"\W", "_", p) for p in text.split(".")]
    for i in range(len(parts) - 2):
        if len("_".join(parts)) <= limit:
            break
        parts[i] = "".join(w[:1] for w in parts[i].split("_") if w) or parts[i]
    name = "_".join(parts)
    return name if name and not name[0].isdigit() else f"p{name}"


def model_from_factory(make, name: str) -> nn.Module:
    """``make()`` in eval mode, or a one-line error when it fails or is no ``nn.Module``."""
    try:
        model = make()
    except Exception as exc:
        raise UnsupportedModel(f"{name}() raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise UnsupportedModel(
            f"{name}() returned {type(model).__name__}, not a torch.nn.Module; the factory "
            "must return the model"
        )
    return model.eval()


def weight_space_from_module(
    model: nn.Module, name: str = "model", io: str = "fixed", example_input=None
) -> WeightSpace:
    """The weight space of ``model`` and where its tensors live in ``model.state_dict()``
    (see the module docstring for the rules). ``example_input`` (one input tensor) gives
    the ranks of the tensors in ``forward``; without it qgen tries small inputs of the
    sizes the first layer reads and uses the lowest rank that runs."""
    graph, traced = _trace(model)
    shapes = tensor_shapes(traced, graph, example_input)
    walk = _Walk(traced, graph, shapes)
    walk.run(io)
    if not walk.outputs:
        raise UnsupportedModel("the model returns no feature tensor")
    return walk.types.weight_space(
        _identifier(name), walk.inputs, walk.outputs, io, f"<{type(model).__name__}>"
    )


def spec_from_module(
    model: nn.Module, name: str = "model", io: str = "fixed", example_input=None
) -> Spec:
    """The spec of ``model``'s weight space (see the module docstring for the rules)."""
    return weight_space_from_module(model, name, io, example_input).spec
