"""Capture: a model and its example input in, an aten-level graph out.

Takes an ``nn.Module`` and an example input (or finds one from the first layer the
model reads) and gives a :class:`Captured`: the graph that ``torch.export.export``
(``strict=False``, the tracer PyTorch recommends for whole-graph capture) records for
that input, with the shape of every tensor (``node.meta["val"]``), the state_dict key of
every parameter and buffer placeholder (from the graph signature), and the user's
source line of every operation (``node.meta["stack_trace"]``). Python control flow
runs on the example input, so ``if mask is not None`` and data-dependent branches in
``forward`` are followed the way that input takes them; Hugging Face models are
called as ``model(input_ids)``. The graph is not decomposed: operations stay at the
level of ``aten.linear``, ``aten.conv2d``, ``aten.layer_norm``,
``aten.scaled_dot_product_attention``, which the rules in :mod:`qgen.frommodel.ops`
read directly.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from qgen.frommodel.messages import UnsupportedModel, first_line

__all__ = ["Captured", "capture", "example_for", "parse_input_shape"]

_CONV_DIMS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}


@dataclass
class Captured:
    """The exported graph and what its placeholders are."""

    graph: fx.Graph
    #: placeholder name -> state_dict key (parameters and buffers)
    state: dict[str, str]
    #: placeholder names of the user's inputs, in order
    inputs: list[str]
    #: placeholder name -> the constant tensor it holds (lifted constants)
    constants: dict[str, torch.Tensor] = field(default_factory=dict)
    #: placeholders the graph never reads whose tensor is one the graph does read under
    #: another key (tied weights: BART's ``shared.weight``, ``encoder.embed_tokens.weight``
    #: and ``decoder.embed_tokens.weight`` are one tensor, lifted three times)
    unused_aliases: set[str] = field(default_factory=set)


def is_hf(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face ``transformers`` model."""
    return any(c.__module__.startswith("transformers.") for c in type(model).__mro__)


def parse_input_shape(text: str, dtype: str = "float") -> torch.Tensor:
    """The example input for ``--input-shape 1,3,32,32`` (``--input-dtype long``: token
    ids in ``[0, 2)``)."""
    try:
        shape = tuple(int(s) for s in text.replace("x", ",").split(",") if s.strip())
    except ValueError:
        raise UnsupportedModel(f"--input-shape takes sizes like 1,3,32,32, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise UnsupportedModel(f"--input-shape takes positive sizes like 1,3,32,32, got {text!r}")
    if dtype in ("long", "int", "int64", "ids"):
        return torch.randint(0, 2, shape)
    if dtype not in ("float", "float32", "double", "float64"):
        raise UnsupportedModel(f"--input-dtype takes float, double or long, got {dtype!r}")
    return torch.randn(shape, dtype=torch.float64 if dtype in ("double", "float64") else None)


def example_for(model: nn.Module) -> list[torch.Tensor]:
    """Inputs to try when the user gave none: of the size the first layer (in the order
    the modules are registered) reads, from the lowest rank up; ``[2, 8]`` token ids for
    Hugging Face and embedding models."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    if is_hf(model):
        config = model.config
        if getattr(model, "main_input_name", "input_ids") == "pixel_values":
            size = getattr(config, "image_size", 32)
            size = size[0] if isinstance(size, list | tuple) else size
            channels = getattr(config, "num_channels", 3)
            return [torch.randn(2, channels, size, size, dtype=dtype)]
        return [torch.randint(0, _vocab(model), (2, 8))]
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return [torch.randint(0, m.num_embeddings, (2, 5))]
        if isinstance(m, nn.Linear):
            n = m.in_features
            return [torch.randn(s, dtype=dtype) for s in ((2, n), (2, 3, n), (2, 3, 4, n))]
        if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) == 1:
            n = m.normalized_shape[0]
            return [torch.randn(s, dtype=dtype) for s in ((2, n), (2, 3, n))]
        if isinstance(m, nn.MultiheadAttention | nn.TransformerEncoderLayer):
            e = m.embed_dim if isinstance(m, nn.MultiheadAttention) else m.self_attn.embed_dim
            return [torch.randn(2, 3, e, dtype=dtype)]
        if type(m) in _CONV_DIMS or isinstance(m, nn.ConvTranspose2d):
            d = _CONV_DIMS.get(type(m), 2)
            size = (32 if d == 2 else 16) if d < 3 else 8
            return [torch.randn((2, m.in_channels) + (size,) * d, dtype=dtype)]
    return []


def _vocab(model: nn.Module) -> int:
    return min(int(getattr(model.config, "vocab_size", 2) or 2), 2)


def capture(model: nn.Module, example=None) -> tuple[Captured, torch.Tensor]:
    """The exported graph of ``model`` on ``example`` (or on inputs found by
    :func:`example_for`: the first that runs); a one-line refusal when none exports."""
    if not isinstance(model, nn.Module):
        raise UnsupportedModel(
            f"expected a torch.nn.Module, got {type(model).__name__}; the factory must "
            "return the model"
        )
    if is_hf(model) and getattr(getattr(model, "config", None), "use_cache", False):
        model.config.use_cache = False  # no key/value cache outputs
    tries = [example] if example is not None else example_for(model)
    if not tries:
        raise UnsupportedModel(
            f"cannot tell what input {type(model).__name__} reads: pass example_input= "
            "(or --input-shape on the command line)"
        )
    errors = []
    for x in tries:
        try:
            return _export(model, x), x
        except UnsupportedModel:
            raise
        except Exception as exc:  # torch.export raises many kinds of errors
            errors.append((x, exc))
    x, exc = errors[0] if example is not None else errors[-1]
    shape = "x".join(map(str, x.shape))
    hint = (
        "check the example input's shape and dtype"
        if example is not None
        else "pass example_input= (or --input-shape) with the shape the model reads"
    )
    raise UnsupportedModel(
        f"torch.export cannot run {type(model).__name__} on an input of shape {shape}: "
        f"{first_line(exc)} ({hint})"
    ) from exc


def _export(model: nn.Module, x) -> Captured:
    # structured tracing and fake-tensor error dumps: off while exporting (a failure
    # reaches the user as one line)
    logs = [logging.getLogger(n) for n in ("torch.__trace", "torch._subclasses.fake_tensor")]
    levels = [log.level for log in logs]
    for log in logs:
        log.setLevel(logging.CRITICAL)
    try:
        return _export_quietly(model, x)
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.setLevel(level)


def _all_ones_masks(model: nn.Module, x) -> dict:
    """``decoder_attention_mask`` of ones (no padding) for Hugging Face models whose
    forward takes one, when ``x`` is token ids.

    Without it, BART-style decoders (BART, mBART, Pegasus, Marian, BlenderbotSmall,
    M2M100) build their causal mask under ``torch.export`` for a static cache one
    position longer than the tokens (``target_length = seq + 1`` when no mask is given
    and dynamo is tracing), and adding it to the scores fails ("Attempting to broadcast a
    dimension of length 9"). A mask of ones masks nothing, so the graph computes what
    the call without a mask computes."""
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.ndim != 2:
        return {}
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    if "decoder_attention_mask" in params and getattr(model.config, "is_encoder_decoder", False):
        return {"decoder_attention_mask": torch.ones_like(x)}
    return {}


def _export_quietly(model: nn.Module, x) -> Captured:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # with gradients on: torch's fused inference fast paths (TransformerEncoderLayer,
        # MultiheadAttention) stay off, so the graph shows the operations themselves
        with torch.enable_grad():
            if is_hf(model):
                name = getattr(model, "main_input_name", "input_ids")
                kwargs = {name: x}
                if getattr(model.config, "is_encoder_decoder", False) and name == "input_ids":
                    kwargs["decoder_input_ids"] = x  # the decoder reads the same tokens
                kwargs.update(_all_ones_masks(model, x))
                ep = torch.export.export(model, (), kwargs, strict=False)
            else:
                ep = torch.export.export(model, (x,), strict=False)
    sig = ep.graph_signature
    state = dict(sig.inputs_to_parameters)
    state.update(sig.inputs_to_buffers)
    constants = {}
    for name, key in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
        constants[name] = ep.constants[key]
    inputs = [s.arg.name for s in sig.input_specs if s.kind.name == "USER_INPUT"]
    return Captured(ep.graph, state, inputs, constants, _unused_aliases(ep, state))


def _unused_aliases(ep, state: dict[str, str]) -> set[str]:
    """Placeholders without users whose tensor a used placeholder holds too."""
    held = ep.state_dict
    used = {n.name for n in ep.graph.nodes if n.op == "placeholder" and n.users}
    read = {id(held[k]) for name, k in state.items() if name in used and k in held}
    return {
        name for name, k in state.items() if name not in used and k in held and id(held[k]) in read
    }
