"""Hugging Face ``transformers`` models for :mod:`qgen.frommodel.reader`.

``transformers`` models branch on their configuration and inputs in ``forward``, which
plain ``torch.fx`` cannot trace; ``transformers.utils.fx.symbolic_trace`` (transformers
4.x; it was removed in 5.0) traces them with concrete metadata for the inputs. The model
is traced with ``input_ids`` as its only input (masks default to all ones), so the
weight space is that of the token-id -> outputs function.
"""

from __future__ import annotations

import warnings

from torch import fx, nn

from qgen.frommodel.typegraph import UnsupportedModel

__all__ = ["trace_hf"]


def trace_hf(model: nn.Module) -> tuple[fx.Graph, nn.Module]:
    """The fx graph of a ``transformers`` model called as ``model(input_ids)``."""
    try:
        from transformers.utils.fx import symbolic_trace
    except ImportError as exc:
        raise UnsupportedModel(
            "tracing a transformers model needs transformers.utils.fx (transformers>=4.40,<5; "
            "install the extra: pip install 'qgen[hf]')"
        ) from exc
    if getattr(model.config, "use_cache", False):
        model.config.use_cache = False  # no key/value cache outputs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = symbolic_trace(model, input_names=["input_ids"])
    except Exception as exc:  # the HF tracer raises many kinds of errors
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UnsupportedModel(
            f"transformers.utils.fx cannot trace {type(model).__name__}: {first[:300]}"
        ) from exc
    return traced.graph, traced
