"""Specs from real torch models (``qgen spec --from-model``, :func:`spec_from_module`).

The model is traced with ``torch.fx``. Every value in the graph carries an index type
for its feature dimension (the last one for linear layers, dim 1 for convolutions):

* the input gets the fixed type ``x``, the output's type becomes the fixed type ``y``
  (with ``io="perm"`` both are permuted instead);
* ``Linear`` and ``Conv2d`` create a new type for their output and the tensors
  ``weight: [out, in*(, k, k)]`` and ``bias: [out]``;
* a residual addition ties the types of its two operands into one type;
* every operation that touches a type restricts its group: an activation to what it
  commutes with (ReLU: positive scalings, tanh: sign flips, GELU: permutations),
  LayerNorm and BatchNorm to permutations (their weight, bias and running statistics
  become tensors on the type). A type touched by linear maps and additions only keeps
  GL(n).

Anything else (an unknown module, a function that could mix features) is refused with
the name of the module or node, rather than guessed.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from qgen.adapters import Source, WeightSpace
from qgen.errors import QgenError
from qgen.presets import activation_group
from qgen.spec import Axis, Spec, TensorDecl, TypeDecl, dump_spec, parse_spec

__all__ = ["UnsupportedModel", "spec_from_module", "weight_space_from_module"]

#: modules that act pointwise, by the activation name that decides the group
_ACTIVATIONS = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
    nn.GELU: "gelu",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.ELU: "elu",
    nn.Softplus: "softplus",
    nn.Identity: "linear",
    nn.Dropout: "linear",
}
_FUNCTIONS = {
    torch.relu: "relu",
    nn.functional.relu: "relu",
    torch.tanh: "tanh",
    torch.sin: "sin",
    nn.functional.gelu: "gelu",
    torch.sigmoid: "sigmoid",
    nn.functional.silu: "silu",
}
_PASS_MODULES = (nn.Flatten, nn.AdaptiveAvgPool2d, nn.AvgPool2d)
#: group kinds ordered from largest; SUBGROUPS[k] lists the kinds contained in k
_ORDER = ("gl", "orthogonal", "scaled", "signed", "perm")
_SUBGROUPS = {
    "gl": {"gl", "orthogonal", "scaled", "signed", "perm"},
    "orthogonal": {"orthogonal", "signed", "perm"},
    "scaled": {"scaled", "perm"},
    "signed": {"signed", "perm"},
    "perm": {"perm"},
}


class UnsupportedModel(QgenError):
    """The model uses something qgen cannot map to a weight-space symmetry."""


def _meet(a: str, b: str) -> str:
    """The largest kind contained in both ``a`` and ``b``."""
    return next(k for k in _ORDER if k in _SUBGROUPS[a] and k in _SUBGROUPS[b])


@dataclass
class _Types:
    """Union-find over index types, with a size and a group restriction per class."""

    parent: dict[str, str] = field(default_factory=dict)
    size: dict[str, int] = field(default_factory=dict)
    kind: dict[str, str] = field(default_factory=dict)
    within: dict[str, str] = field(default_factory=dict)

    def new(self, name: str) -> str:
        self.parent[name] = name
        self.kind[name] = "gl"
        return name

    def find(self, t: str) -> str:
        while self.parent[t] != t:
            t = self.parent[t]
        return t

    def tie(self, a: str, b: str, where: str) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if ra in self.size and rb in self.size and self.size[ra] != self.size[rb]:
            raise UnsupportedModel(
                f"{where}: adds features of sizes {self.size[ra]} and {self.size[rb]}"
            )
        keep, drop = (ra, rb) if ra < rb else (rb, ra)
        self.parent[drop] = keep
        self.kind[keep] = _meet(self.kind[ra], self.kind[rb])
        if drop in self.size:
            self.size.setdefault(keep, self.size[drop])
        return keep

    def restrict(self, t: str, kind: str) -> None:
        r = self.find(t)
        self.kind[r] = _meet(self.kind[r], kind)

    def set_size(self, t: str, n: int, where: str) -> None:
        r = self.find(t)
        if self.size.setdefault(r, n) != n:
            raise UnsupportedModel(f"{where}: expects {n} features, the input has {self.size[r]}")


def _identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text)
    return name if name and not name[0].isdigit() else f"p{name}"


def weight_space_from_module(
    model: nn.Module, name: str = "model", io: str = "fixed"
) -> WeightSpace:
    """The weight space of ``model`` and where its tensors live in ``model.state_dict()``."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # torch.fx raises many kinds of errors
        raise UnsupportedModel(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    modules = dict(model.named_modules())
    types = _Types()
    value_type: dict[fx.Node, str] = {}
    tensors: list[tuple[str, list[str], str]] = []  # (name, axes, state_dict key)
    fixed_types: dict[str, int] = {}
    counter = iter(range(1, 10**6))

    def fixed(size: int) -> str:
        name_ = f"k{size}"
        fixed_types[name_] = size
        return name_

    def typed(node, where: str) -> str:
        if node not in value_type:
            raise UnsupportedModel(f"{where}: its input is not a feature tensor qgen can follow")
        return value_type[node]

    input_type = None
    for node in graph.nodes:
        where = f"{node.op} {node.target}"
        if node.op == "placeholder":
            if input_type is not None:
                raise UnsupportedModel("models with more than one input are not supported")
            input_type = value_type[node] = types.new("x")
        elif node.op == "call_module":
            module = modules[node.target]
            where = f"module '{node.target}' ({type(module).__name__})"
            src = typed(node.args[0], where)
            key = node.target
            if isinstance(module, nn.Linear | nn.Conv2d):
                if isinstance(module, nn.Conv2d) and module.groups != 1:
                    raise UnsupportedModel(f"{where}: grouped convolutions are not supported")
                out = types.new(f"h{next(counter)}")
                n_in = module.in_features if isinstance(module, nn.Linear) else module.in_channels
                n_out = (
                    module.out_features if isinstance(module, nn.Linear) else module.out_channels
                )
                types.set_size(src, n_in, where)
                types.set_size(out, n_out, where)
                axes = [out, src + "*"]
                if isinstance(module, nn.Conv2d):
                    axes += [fixed(module.kernel_size[0]), fixed(module.kernel_size[1])]
                tensors.append((_identifier(f"{key}.weight"), axes, f"{key}.weight"))
                if module.bias is not None:
                    tensors.append((_identifier(f"{key}.bias"), [out], f"{key}.bias"))
                value_type[node] = out
            elif isinstance(module, nn.MultiheadAttention):
                value_type[node] = _attention(
                    node, module, key, src, types, tensors, counter, where
                )
            elif type(module) in _ACTIVATIONS:
                act = _ACTIVATIONS[type(module)]
                if isinstance(module, nn.Dropout) and module.training:
                    raise UnsupportedModel(f"{where}: call model.eval() first (dropout)")
                types.restrict(src, activation_group(act))
                value_type[node] = src
            elif isinstance(module, nn.LayerNorm | nn.BatchNorm1d | nn.BatchNorm2d):
                if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
                    raise UnsupportedModel(f"{where}: LayerNorm over more than one dimension")
                n = (
                    module.normalized_shape[0]
                    if isinstance(module, nn.LayerNorm)
                    else module.num_features
                )
                types.set_size(src, n, where)
                types.restrict(src, "perm")
                for p in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(module, p, None) is not None:
                        tensors.append((_identifier(f"{key}.{p}"), [src], f"{key}.{p}"))
                value_type[node] = src
            elif isinstance(module, _PASS_MODULES):
                if isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size not in (
                    1,
                    (1, 1),
                ):
                    raise UnsupportedModel(f"{where}: only global average pooling is supported")
                value_type[node] = src
            else:
                raise UnsupportedModel(f"{where} is not supported")
        elif node.op in ("call_function", "call_method"):
            target = node.target
            if target is operator.getitem and node.args[1] == 0 and node.args[0] in value_type:
                value_type[node] = value_type[node.args[0]]  # attention output, not its weights
            elif target in (operator.add, torch.add, "add"):
                a, b = node.args[0], node.args[1]
                value_type[node] = types.tie(
                    typed(a, where), typed(b, where), f"residual {node.name}"
                )
            elif target in _FUNCTIONS:
                src = typed(node.args[0], where)
                types.restrict(src, activation_group(_FUNCTIONS[target]))
                value_type[node] = src
            elif target in (torch.flatten, "flatten") or (target == "mean" and _spatial_mean(node)):
                value_type[node] = typed(node.args[0], where)
            else:
                raise UnsupportedModel(f"function {node.name} ({target}) is not supported")
        elif node.op == "output":
            out = typed(node.args[0], "the model's output")
            root_in, root_out = types.find(input_type), types.find(out)
            if root_in == root_out:
                raise UnsupportedModel(
                    "the output is tied to the input (a residual around everything)"
                )
            if io == "fixed":
                types.kind[root_in] = "fixed"
                types.kind[root_out] = "fixed"
            else:
                types.kind[root_in] = types.kind[root_out] = "perm"
            y = root_out
        elif node.op == "get_attr":
            raise UnsupportedModel(
                f"{where}: a parameter used directly in forward is not supported"
            )

    names = {types.find(input_type): "x", y: "y"}
    for t in types.parent:
        r = types.find(t)
        if r not in names:
            names[r] = f"h{len(names) - 1}"
    decls: dict[str, TypeDecl] = {}
    for r, n in sorted(names.items(), key=lambda kv: (kv[1] != "x", kv[1] == "y")):
        if r not in types.size:
            raise UnsupportedModel(f"cannot tell the size of type {n}")
        kind = types.kind[r]
        within = types.within.get(r)
        decls[n] = TypeDecl(n, kind, types.size[r], names[types.find(within)] if within else None)
    for k, size in sorted(fixed_types.items()):
        decls[k] = TypeDecl(k, "fixed", size)

    def axis(a: str) -> Axis:
        base, dual = a.rstrip("*"), a.endswith("*")
        if base in fixed_types:
            return Axis(base, dual)
        return Axis(names[types.find(base)], dual)

    decl_tensors = tuple(TensorDecl(n, tuple(axis(a) for a in axes)) for n, axes, _ in tensors)
    spec = Spec(name=_identifier(name), types=decls, tensors=decl_tensors, source="<module>")
    spec = parse_spec(dump_spec(spec), source=f"<{type(model).__name__}>")  # validate
    return WeightSpace(
        spec, {n: key if isinstance(key, Source) else Source(key) for n, _, key in tensors}
    )


def _attention(node, module, key, src, types, tensors, counter, where) -> str:
    """Self-attention ``nn.MultiheadAttention``: a head type with per-head GL types.

    ``in_proj_weight`` rows hold Wq, Wk, Wv; head ``h`` uses rows ``h*dh:(h+1)*dh`` of
    each, so Wq reads as ``[head, dk, in*]``; ``out_proj.weight`` reads as
    ``[out, head*, dv*]``.
    """
    query, key_arg, value = (list(node.args) + [node.kwargs.get(k) for k in ("key", "value")])[:3]
    if not (query is key_arg is value):
        raise UnsupportedModel(f"{where}: only self-attention (query, key and value the same)")
    if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
        raise UnsupportedModel(f"{where}: only packed projections without bias_k/zero_attn")
    e, h = module.embed_dim, module.num_heads
    dh = e // h
    types.set_size(src, e, where)
    head = types.new(f"h{next(counter)}")
    types.kind[head] = "perm"
    types.size[head] = h
    nested = {}
    for role in ("dk", "dv"):
        t = types.new(f"h{next(counter)}")
        types.size[t] = dh
        types.within[t] = head
        nested[role] = t
    out = types.new(f"h{next(counter)}")
    types.size[out] = e
    w, b = f"{key}.in_proj_weight", f"{key}.in_proj_bias"
    base = _identifier(key)
    for i, (name, inner) in enumerate((("q", "dk"), ("k", "dk*"), ("v", "dv"))):
        axis = nested[inner.rstrip("*")] + ("*" if inner.endswith("*") else "")
        rows = (i * e, (i + 1) * e)
        tensors.append((f"{base}_W{name}", [head, axis, src + "*"], Source(w, rows, (h, dh, e))))
        if module.in_proj_bias is not None:
            tensors.append((f"{base}_b{name}", [head, axis], Source(b, rows, (h, dh))))
    o = f"{key}.out_proj"
    wo = Source(f"{o}.weight", None, (e, h, dh))
    tensors.append((f"{base}_Wo", [out, head + "*", nested["dv"] + "*"], wo))
    if module.out_proj.bias is not None:
        tensors.append((f"{base}_bo", [out], Source(f"{o}.bias")))
    return out


def _spatial_mean(node: fx.Node) -> bool:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return tuple(dims) in ((2, 3), (-2, -1), (-1, -2), (3, 2)) if dims is not None else False


def spec_from_module(model: nn.Module, name: str = "model", io: str = "fixed") -> Spec:
    """The spec of ``model``'s weight space (see the module docstring for the rules)."""
    return weight_space_from_module(model, name, io).spec
