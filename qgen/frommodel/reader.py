"""Specs from real torch models (``qgen spec --from-model``, :func:`spec_from_module`).

Takes an ``nn.Module`` and an example input; gives the spec of its weight space: the
largest symmetry group every operation of the model commutes with, and where each spec
tensor lives in the model's ``state_dict``. The pipeline, one module per concern:

1. :mod:`~qgen.frommodel.capture`: ``torch.export`` on the example input (an aten-level
   graph with every shape, parameter name and source line);
2. :mod:`~qgen.frommodel.walk` runs the graph abstractly, each operation read by a
   rule: :mod:`~qgen.frommodel.rules_shape` (moving, cutting and joining axes),
   :mod:`~qgen.frommodel.rules_pointwise` (elementwise functions, reductions, softmax),
   :mod:`~qgen.frommodel.rules_linear` (linear, matmul, convolution, embedding,
   attention), :mod:`~qgen.frommodel.rules_norm` (normalisations, pooling); the index
   types of the axes live in :mod:`~qgen.frommodel.axes` on the union-find of
   :mod:`~qgen.frommodel.typegraph`;
3. :mod:`~qgen.frommodel.assemble` turns the types into the spec and its sources;
4. :mod:`~qgen.frommodel.messages` words refusals: the user's file and line, the
   operation, what to do, in one line.

Because the rules work per axis, nothing needs to know which axis "is the features":
every axis has a type, and ``x.flatten(2).transpose(1, 2)``, ``permute(0, 2, 3, 1)``
around a norm, heads made with ``view``, position embeddings and class tokens follow
from the rules of the operations themselves. Where the only sound answer is no
symmetry on some axis (a slice inside a head, a constant that varies along features,
rotary embeddings inside a head), that type is fixed and a note says where
(``WeightSpace.notes``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import nn

from qgen.data.adapters import WeightSpace
from qgen.frommodel.assemble import assemble, identifier
from qgen.frommodel.capture import capture
from qgen.frommodel.declare import declare_fixed_axes
from qgen.frommodel.messages import UnsupportedModel, where
from qgen.frommodel.walk import Walk
from qgen.spec import Spec

__all__ = [
    "UnsupportedModel",
    "model_from_factory",
    "spec_from_module",
    "weight_space_from_module",
]


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
    model: nn.Module,
    name: str = "model",
    io: str = "fixed",
    example_input=None,
    fixed_axes: str | Mapping[str, str] = "auto",
    budget: int | None = None,
) -> WeightSpace:
    """The weight space of ``model`` and where its tensors live in ``model.state_dict()``
    (see the module docstring for the rules). ``example_input`` (one input tensor; token
    ids for language models) is what ``torch.export`` runs the model on; without it qgen
    tries an input of the size the first layer reads.

    ``fixed_axes``: ``"auto"`` (the default) declares large fixed axes ``tied`` when the
    layer as imported needs more than ``budget`` parameters per channel pair (default
    :data:`~qgen.solver.cost.DEFAULT_BUDGET`), as :func:`~qgen.solver.cost.choose_fixed_axes`
    picks them, and refuses a model that no such declaration fits; ``"none"`` keeps every
    fixed axis dense (``qgen build`` then refuses a layer over the budget); a mapping
    ``{type: choice}`` declares those choices. The declaration is part of the spec's text
    (``ws.spec.text``: a ``fixed_axes:`` entry with the counts in comments above it) and
    of ``ws.fixed_axes``; ``ws.dense_spec`` is the spec without it."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):  # spec_from_module(model, x): the input went to `name`
        raise TypeError(
            f"name must be a string (the spec's name), got {type(name).__name__}; pass the "
            "model's input as example_input=..."
        )
    if io not in ("fixed", "perm"):
        raise ValueError(f"io must be 'fixed' or 'perm', got {io!r}")
    cap, _ = capture(model, example_input)
    state = model.state_dict(keep_vars=True)
    walk = Walk(cap, set(state), io, dict(model.named_modules()))
    walk.run()
    if not walk.outputs:
        raise UnsupportedModel("the model returns no tensor")
    walk.ax.types.here = None  # what assembly fixes: the inputs, outputs and positions
    ws = assemble(walk, name, io, f"<{type(model).__name__}>", _aliases(state, walk))
    return declare_fixed_axes(ws, fixed_axes, budget, _fixed_origins(walk, ws.spec))


def _fixed_origins(walk, spec: Spec) -> dict[str, str]:
    """Per fixed type of the spec: the operation that made it fixed (the user's line)."""
    types = walk.ax.types
    out = {}
    for name, decl in spec.types.items():
        if not decl.fixed:
            continue
        root = types.spec_names.get(name)
        node = types.fixed_at.get(root if root is not None else name)
        if re.fullmatch(r"[xy]\d*", name):  # the names of the input and output features
            out[name] = "the model's inputs and outputs (io='fixed')"
        elif node is not None:
            out[name] = where(node)
        elif root is not None:
            out[name] = "the model's inputs and outputs, or a position axis"
        else:
            out[name] = "a parameter axis no operation gives a type (kernel offsets, positions)"
    return out


def _aliases(state, walk) -> dict[str, list[str]]:
    """Keys that hold the same tensor as a key the graph read (tied weights)."""
    read = {id(state[k]): k for k in walk.state if k in state}
    out: dict[str, list[str]] = {}
    for k, t in state.items():
        first = read.get(id(t))
        if first is not None and first != k and k not in walk.state:
            out.setdefault(first, []).append(k)
    return out


def spec_from_module(
    model: nn.Module,
    name: str = "model",
    io: str = "fixed",
    example_input=None,
    fixed_axes: str | Mapping[str, str] = "auto",
    budget: int | None = None,
) -> Spec:
    """The spec of ``model``'s weight space (see the module docstring for the rules, and
    :func:`weight_space_from_module` for ``fixed_axes`` and ``budget``)."""
    return weight_space_from_module(model, name, io, example_input, fixed_axes, budget).spec


_identifier = identifier
