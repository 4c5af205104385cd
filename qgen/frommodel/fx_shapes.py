"""Ranks of the tensors in a traced graph, by running it on a small input.

Whether ``h.mean(1)`` or ``h[:, 0]`` touches the features of a features-last tensor
depends on its rank: on ``[batch, tokens, features]`` they act on tokens, on
``[batch, features]`` on features. :func:`tensor_shapes` propagates shapes through the
graph (``torch.fx.passes.shape_prop``) for the user's example input, or else for
inputs of the size the first layer reads, trying ranks from the lowest up and keeping
the first that runs (a model that pools over tokens does not run on ``[batch,
features]``).
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

__all__ = ["tensor_shapes"]

_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


def tensor_shapes(
    model: nn.Module, graph: fx.Graph, example=None
) -> dict[fx.Node, tuple[int, ...]]:
    """``{node: shape}`` for every node that makes one tensor; empty when no input ran."""
    module = fx.GraphModule(model, graph)
    for x in [example] if example is not None else _candidates(model, graph):
        for node in graph.nodes:
            node.meta.pop("tensor_meta", None)
        try:
            with torch.no_grad():
                ShapeProp(module).propagate(x)
        except Exception:  # the wrong rank for this model: try the next
            continue
        return {
            n: tuple(n.meta["tensor_meta"].shape)
            for n in graph.nodes
            if isinstance(n.meta.get("tensor_meta"), TensorMetadata)
        }
    return {}


def _candidates(model: nn.Module, graph: fx.Graph) -> list[torch.Tensor]:
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if not placeholders:
        return []
    modules = dict(model.named_modules())
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    seen, queue = set(), [placeholders[0]]
    while queue:  # the first layer that says what it reads
        node = queue.pop(0)
        for user in node.users:
            if user in seen:
                continue
            seen.add(user)
            m = modules.get(user.target) if user.op == "call_module" else None
            if m is not None and (shapes := _reads(m)) is not None:
                if isinstance(m, nn.Embedding):
                    return [torch.randint(0, m.num_embeddings, s) for s in shapes]
                return [torch.randn(s, dtype=dtype) for s in shapes]
            queue.append(user)
    return []


def _reads(m: nn.Module) -> list[tuple[int, ...]] | None:
    if isinstance(m, nn.Linear):
        n = m.in_features
    elif isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
        n = m.normalized_shape[0]
    elif isinstance(m, nn.MultiheadAttention | nn.TransformerEncoder | nn.TransformerEncoderLayer):
        return [(2, 3, _width(m))]
    elif isinstance(m, nn.Embedding):
        return [(2, 5)]
    elif type(m) in _CONV_DIMS:
        d = _CONV_DIMS[type(m)]
        return [(2, m.in_channels) + (12 if d < 3 else 6,) * d]
    else:
        return None
    return [(2, 3, 4)[: r - 1] + (n,) for r in (2, 3, 4)]


def _width(m: nn.Module) -> int:
    if isinstance(m, nn.TransformerEncoder):
        m = m.layers[0]
    if isinstance(m, nn.TransformerEncoderLayer):
        m = m.self_attn
    return m.embed_dim
