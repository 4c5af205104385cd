"""The walk: an exported graph in, the index types of every tensor out.

Takes a :class:`~qgen.frommodel.capture.Captured` graph and runs it abstractly: every
parameter, buffer and input starts with a fresh index type per axis (the input's fixed
with ``io="fixed"``), every operation is read by the rule registered for it in
:data:`qgen.frommodel.registry.RULES`, which ties axes together and restricts each
type to the group the operation commutes with. What is left when the graph has run
is, per type, the largest group every operation on it commutes with; the parameters'
axes say which type each of their axes is. An operation without a rule is refused in
one line naming the user's code.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from qgen.decls import FIXED
from qgen.frommodel import rules_linear, rules_norm, rules_pointwise, rules_shape  # noqa: F401
from qgen.frommodel.axes import Axes
from qgen.frommodel.capture import Captured
from qgen.frommodel.messages import UnsupportedModel, where
from qgen.frommodel.registry import RULES, rule
from qgen.frommodel.values import TV, tensors_in
from qgen.kinds.pointwise import pointwise_kind

__all__ = ["Walk"]

#: operations that only check or annotate: no value
_IGNORED = {
    "_assert_tensor_metadata",
    "_assert_scalar",
    "sym_constrain_range_for_size",
    "_assert_async",
    "sym_constrain_range",
    "_print",
}


class Walk:
    """Reads a captured graph into :class:`~qgen.frommodel.axes.Axes`."""

    def __init__(self, cap: Captured, keys: set[str], io: str, modules=None) -> None:
        self.cap = cap
        #: module path -> group kind, for modules of the user's own classes declared
        #: pointwise with :func:`qgen.kinds.pointwise.register_pointwise`
        self.pointwise = {
            path: kind
            for path, m in (modules or {}).items()
            if not type(m).__module__.startswith("torch.")
            and (kind := pointwise_kind(type(m), m)) not in (None, "unsupported")
        }
        self.io = io
        self.ax = Axes()
        self.value: dict[fx.Node, object] = {}
        #: state_dict key -> its tensor value (the first placeholder that holds it)
        self.state: dict[str, TV] = {}
        self.keys = keys
        self.inputs: list[TV] = []
        self.outputs: list[TV] = []
        self.node: fx.Node | None = None

    # -- messages -------------------------------------------------------------------------

    def where(self) -> str:
        return where(self.node)

    def refuse(self, why: str = "is not supported") -> UnsupportedModel:
        return UnsupportedModel(f"{self.where()} {why}")

    # -- running --------------------------------------------------------------------------

    def run(self) -> None:
        for node in self.cap.graph.nodes:
            self.node = self.ax.types.here = node
            if node.op == "placeholder":
                self.value[node] = self.placeholder(node)
            elif node.op == "call_function":
                self.value[node] = self.call(node)
            elif node.op == "output":
                self.outputs = tensors_in(self.arg(node.args[0]))
            elif node.op == "get_attr":  # a subgraph of a higher-order op (vmap, cond)
                self.value[node] = getattr(node.graph.owning_module, node.target, None)

    def placeholder(self, node: fx.Node):
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            return val
        shape = tuple(val.shape)
        name = node.name
        if name in self.cap.unused_aliases:
            # a tied weight lifted twice: the key the graph reads stands for it (the
            # reader lists this key as its alias, with the same axes)
            return TV(tuple((self.ax.fresh(n),) for n in shape), shape, param=True)
        if name in self.cap.state and self.cap.state[name] in self.keys:
            # every axis its own type, size-1 ones too (a depthwise kernel's input axis)
            key = self.cap.state[name]
            v = TV(tuple((self.ax.fresh(n),) for n in shape), shape, param=True)
            if val.is_floating_point():
                self.state.setdefault(key, v)
            return v
        if name in self.cap.constants or name in self.cap.state:
            # a constant (or a buffer outside the state_dict) that varies along its axes
            return TV(tuple(self.ax.dim(n, FIXED) for n in shape), shape, param=True)
        kind = FIXED if self.io == FIXED or not val.is_floating_point() else "perm"
        v = TV(tuple(self.ax.dim(n, kind) for n in shape), shape)
        self.inputs.append(v)
        return v

    def arg(self, a):
        if isinstance(a, fx.Node):
            return self.value.get(a)
        if isinstance(a, tuple | list):
            return type(a)(self.arg(x) for x in a)
        if isinstance(a, dict):
            return {k: self.arg(x) for k, x in a.items()}
        return a

    def call(self, node: fx.Node):
        target = node.target
        if target is operator.getitem:
            seq, i = self.arg(node.args[0]), node.args[1]
            return seq[i] if isinstance(seq, tuple | list) else None
        name = _name(target)
        if name in _IGNORED:
            return None
        if self.pointwise and (owner := self.owner(node)) is not None:
            return self.inside_pointwise(node, *owner)
        args = [self.arg(a) for a in node.args]
        kwargs = {k: self.arg(v) for k, v in node.kwargs.items()}
        if not any(tensors_in(args) + tensors_in(kwargs)) and name not in _CREATORS:
            return self.out_like(node, param=True)  # sizes and constants
        if self.all_fixed(args, kwargs):  # a function of fixed things: invariant
            return self.out_like(node, FIXED, param=all(t.param for t in tensors_in(args)))
        fn = RULES.get(name)
        if fn is None and name.endswith("_") and not name.startswith("_"):
            fn = RULES.get(name[:-1])  # in place (relu_, hardswish_): the same function
        if fn is None and torch.Tag.pointwise in getattr(target, "tags", ()):
            n_tensors = len(tensors_in(args) + tensors_in(kwargs))
            fn = RULES["exp"] if n_tensors == 1 else RULES["where"]  # permutations
        if fn is None:
            raise self.refuse("is not supported (no symmetry rule for this operation)")
        return fn(self, node, bind(target, args, kwargs))

    def subgraph(self, gm, args: list):
        """The value of a subgraph (a higher-order operation's body, e.g. the graph of a
        ``torch.no_grad()`` region) called with ``args``: its operations read by their
        own rules, in the same walk (so its parameters tie to the outer graph's types)."""
        graph = getattr(gm, "graph", None)
        if graph is None:
            raise self.refuse("is not supported (its body is not a graph)")
        outer, given, out = self.node, iter(args), None
        try:
            for node in graph.nodes:
                self.node = node
                if node.op == "placeholder":
                    self.value[node] = next(given, None)
                elif node.op == "call_function":
                    self.value[node] = self.call(node)
                elif node.op == "get_attr":
                    self.value[node] = getattr(gm, node.target, None)
                elif node.op == "output":
                    out = self.arg(node.args[0])
        finally:
            self.node = outer
        return out

    def all_fixed(self, args, kwargs) -> bool:
        """Whether every axis of every tensor argument is fixed (or has no type): then the
        group acts on none of them, and whatever the operation computes (a mask from
        token ids, positions by ``cumsum``) is invariant."""
        kind = self.ax.types.kind
        root = self.ax.types.root
        for t in tensors_in(args) + tensors_in(kwargs):
            for d in t.dims:
                for a in self.ax.norm(d):
                    if a.part != "full" or kind[root(a.t)] != FIXED or root(a.t) in self.ax.sums:
                        return False
        return True

    def owner(self, node: fx.Node) -> tuple[str, str] | None:
        """The outermost module declared pointwise that ``node`` runs inside."""
        for path, _cls in (node.meta.get("nn_module_stack") or {}).values():
            if path in self.pointwise:
                return path, self.pointwise[path]
        return None

    def inside_pointwise(self, node: fx.Node, path: str, kind: str):
        """A node inside a module declared pointwise: the whole module acts entrywise on
        the tensor it was called with, so the group of every axis of that tensor is
        restricted to the declared kind and its value passes through unchanged."""
        inside = [self.owner(a) == (path, kind) for a in node.all_input_nodes]
        values = [self.value.get(a) for a in node.all_input_nodes]
        outer = [v for v, i in zip(values, inside, strict=True) if not i and isinstance(v, TV)]
        outer = [v for v in outer if not v.param] or outer
        if outer:
            x = outer[0]
            for d in x.dims:
                self.ax.restrict(d, kind)
        else:
            x = next((v for v in values if isinstance(v, TV)), None)
        if x is None or tuple(x.shape) != self.shape(node):
            raise self.refuse(f"changes the shape inside module '{path}' declared pointwise")
        return x

    def out_like(self, node: fx.Node, kind: str | None = FIXED, param=False):
        """A value shaped like ``node``'s result, with new types (fixed by default)."""
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor):
            shape = tuple(val.shape)
            return TV(tuple(self.ax.dim(n, kind) for n in shape), shape, param)
        if isinstance(val, tuple | list):
            return type(val)(
                TV(tuple(self.ax.dim(n, kind) for n in v.shape), tuple(v.shape), param)
                if isinstance(v, torch.Tensor)
                else v
                for v in val
            )
        return val

    def shape(self, node: fx.Node | None = None) -> tuple[int, ...]:
        val = (node or self.node).meta.get("val")
        return tuple(val.shape)


_CREATORS = {"arange", "full", "zeros", "ones", "empty", "scalar_tensor", "randn", "rand"}


@rule("wrap_with_set_grad_enabled")
def grad_mode_region(w: Walk, node: fx.Node, a: dict):
    """A region run under ``torch.no_grad()`` / ``torch.enable_grad()`` (a
    ``@torch.no_grad`` forward: the sinusoidal position tables of RoFormer, Pegasus,
    Marian). The grad mode changes no value, so the region computes what its operations
    compute: each is read by its own rule, and a region of constants (positions from
    ``arange``, a fixed table) gives constants."""
    args = [a[k] for k in sorted(a, key=lambda k: int(k[3:])) if k.startswith("arg")]
    if len(args) < 2:
        raise w.refuse("is not supported (no body)")
    return w.subgraph(args[1], args[2:])


def _name(target) -> str:
    name = getattr(target, "_opname", None)
    if name is None:
        name = getattr(target, "__name__", str(target))
    return name


def bind(target, args: list, kwargs: dict) -> dict:
    """The arguments of an aten call by name, defaults filled in."""
    schema = getattr(target, "_schema", None)
    if schema is None:
        out = {f"arg{i}": a for i, a in enumerate(args)}
        out.update(kwargs)
        return out
    out = {}
    for i, arg in enumerate(schema.arguments):
        if i < len(args) and not arg.kwarg_only:
            out[arg.name] = args[i]
        elif arg.name in kwargs:
            out[arg.name] = kwargs[arg.name]
        elif arg.has_default_value():
            out[arg.name] = arg.default_value
        else:
            out[arg.name] = None
    return out
