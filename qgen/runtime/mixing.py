"""Channel mixing of a generated equivariant layer: init, the batched matmul, accumulation.

A layer computes each group of basis terms as reduce -> mix -> place; the mix is one
matmul of a weight ``[out_channels * out fixed, in_channels * in fixed]`` with the reduced
inputs ``r [batch, in_channels * in fixed, *carried]`` over dim 1. What is here is the
same for every spec; generated modules copy the definitions they use (torch only).
"""

from __future__ import annotations

import torch
from torch import nn

Weights = dict[str, torch.Tensor]


def _count(value: object, name: str) -> int:
    """A layer's count argument (channels, features) as an ``int``: a positive integer,
    else a message about the argument (not a torch error from deep inside)."""
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    n = value.__index__()
    if n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n}")
    return n


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    """The identity matrix of size ``n`` in ``like``'s dtype and device."""
    return torch.eye(n, dtype=like.dtype, device=like.device)


def _init_mix(
    weight: torch.Tensor,
    in_channels: int,
    in_widths: list[int],
    in_pooled: list[int],
    out_widths: list[int],
    fans: list[int],
    fans_kept: list[int],
) -> None:
    """Normal init with std ``1 / sqrt(in_channels * in_width * fan)`` per pattern block.

    Unpooled input patterns keep the variance of the input, pooled ones divide it by the
    width they average over. So ``fan`` is the number of unpooled patterns feeding the
    output tensor for unpooled inputs (``fans_kept``) and the number of all patterns for
    pooled inputs (``fans``): a unit-variance input gives an output variance between 1
    (i.i.d. entries, pooled summaries near zero) and 2 (fully correlated entries).
    """
    c_out = weight.shape[0] // sum(out_widths)
    col = torch.tensor(in_widths, dtype=torch.float64) * in_channels
    pooled = torch.tensor(in_pooled, dtype=torch.bool)
    kept = torch.tensor(fans_kept, dtype=torch.float64)[:, None]
    every = torch.tensor(fans, dtype=torch.float64)[:, None]
    var = 1 / (col[None, :] * torch.where(pooled[None, :], every, kept))
    var = var.repeat_interleave(torch.tensor(out_widths) * c_out, dim=0)
    var = var.repeat_interleave(torch.tensor(in_widths) * in_channels, dim=1)
    with torch.no_grad():
        weight.normal_()
        weight.mul_(var.sqrt().to(weight.dtype))


class _Mix(nn.Module):
    """One term group's channel mix: ``weight [out_channels * out fixed, in_channels * in
    fixed]`` (the fixed sizes summed over the group's output and input patterns) and, for
    the pooled group, the equivariant ``bias`` (one entry per output row).

    ``widths = (in_widths, in_pooled, out_widths, fans, fans_kept)`` per pattern, read by
    :func:`_init_mix`; ``split`` cuts the mix's output rows into the output patterns."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: tuple,
        bias: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.widths = in_channels, out_channels, widths
        rows, cols = out_channels * sum(widths[2]), in_channels * sum(widths[0])
        self.weight = nn.Parameter(torch.empty(rows, cols, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(rows, device=device, dtype=dtype)) if bias else None
        self.split = [out_channels * w for w in widths[2]]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The weight as :func:`_init_mix` says; the bias at zero."""
        _init_mix(self.weight, self.in_channels, *self.widths)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        """Channels, the mix's shape, and whether it carries the bias."""
        rows, cols = self.weight.shape
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"mix={rows}x{cols}, bias={self.bias is not None}"
        )


class _BatchMix(torch.autograd.Function):
    """``acc + weight @ r`` for ``r: [batch, in, n]``, one ``weight: [out, in]`` for the
    whole batch (``acc`` optional): one ``bmm`` (``baddbmm``) with the weight broadcast.

    The point is the backward: the weight's gradient ``sum_b grad_b r_b^T`` is one ``mm``
    with the batch folded into the contraction, where autograd through the broadcast
    weight forms a ``[batch, out, in]`` gradient and sums it (for a wide fixed axis,
    many times the size of ``r``). Forward and backward are plain differentiable torch
    ops, so torch.func (``grad``, ``vmap``, ``jacrev``) composes with it: its vmap rule
    runs them on the batched tensors (``generate_vmap_rule``). It has no ``jvp`` rule:
    dynamo cannot trace a Function that defines one (``torch.compile`` would break)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(weight: torch.Tensor, r: torch.Tensor, acc: torch.Tensor | None) -> torch.Tensor:
        shared = weight.expand(r.shape[0], -1, -1)
        return torch.bmm(shared, r) if acc is None else torch.baddbmm(acc, shared, r)

    @staticmethod
    def setup_context(
        ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor
    ) -> None:
        weight, r, acc = inputs
        ctx.save_for_backward(weight, r)
        ctx.acc_dtype = None if acc is None else acc.dtype

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        weight, r = ctx.saved_tensors
        grad_weight = grad_r = None
        # under autocast the product (and so ``grad``) has the lower precision: each
        # gradient is formed in, and returned with, its input's dtype
        if ctx.needs_input_grad[0]:
            grad_weight = torch.tensordot(grad.to(r.dtype), r, dims=([0, 2], [0, 2]))
        if ctx.needs_input_grad[1]:
            w = weight.t().expand(grad.shape[0], -1, -1)
            grad_r = torch.bmm(w, grad.to(weight.dtype))
        grad_acc = None if ctx.acc_dtype is None else grad.to(ctx.acc_dtype)
        return grad_weight, grad_r, grad_acc


def _batch_mix_pays(weight: torch.Tensor, flat: torch.Tensor, *others: torch.Tensor) -> bool:
    """Whether to go through :class:`_BatchMix`: when autograd will want gradients and
    the ``[batch, out, in]`` weight gradient it avoids is larger than the transposed
    copies of ``grad`` and ``flat: [batch, in, n]`` its ``mm`` makes (``out * in >
    n * (out + in)``: few entries ``n`` per row, as in the terms that carry one axis)."""
    out, in_ = weight.shape
    return (
        torch.is_grad_enabled()
        and any(t.requires_grad for t in (weight, flat, *others))
        and out * in_ > flat.shape[-1] * (out + in_)
    )


#: on CPU, ``weight @ flat`` with at most this many entries per row and at least
#: ``_FOLD_MIN_ROWS`` output rows runs as one ``mm`` with the batch folded into the rows:
#: 2-6x faster than ``bmm`` there (measured on this project's CPU benchmarks). Other
#: devices always take ``bmm``: the fold was never measured faster there.
_FOLD_MAX_ENTRIES = 8
_FOLD_MIN_ROWS = 32


def _route(weight: torch.Tensor, flat: torch.Tensor, *others: torch.Tensor) -> str:
    """How ``weight @ flat`` (``flat: [batch, in, n]``) runs: the one choice a generated
    layer makes at run time, since it depends on sizes, device and autograd state.
    ``"fold"``: one ``mm`` with the batch folded into the rows (CPU only, see
    ``_FOLD_MAX_ENTRIES``); ``"batch"``: :class:`_BatchMix` (see ``_batch_mix_pays``);
    ``"bmm"``: a ``bmm`` with the weight broadcast over the batch."""
    if (
        flat.device.type == "cpu"
        and flat.shape[-1] <= _FOLD_MAX_ENTRIES
        and weight.shape[0] >= _FOLD_MIN_ROWS
    ):
        return "fold"
    if _batch_mix_pays(weight, flat, *others):
        return "batch"
    return "bmm"


def _product(weight: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    """``weight @ flat`` for ``flat: [batch, in, n]`` (a transposed view when it folds)."""
    route = _route(weight, flat)
    if route == "fold":
        return torch.matmul(flat.transpose(1, 2), weight.t()).transpose(1, 2)
    if route == "batch":
        return _BatchMix.apply(weight, flat, None)
    return torch.bmm(weight.expand(flat.shape[0], -1, -1), flat)


def _mix(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``weight @ r`` over dim 1 of ``r: [batch, in, *carried]``, contiguous (a copy of
    the small product when it is a transposed view): an elementwise sum lays its result
    out like its operands, so the sums of its chunks come out contiguous too."""
    return _product(weight, r.flatten(2)).contiguous().unflatten(-1, r.shape[2:])


def _mix_into(
    acc: torch.Tensor | None,
    weight: torch.Tensor,
    r: torch.Tensor,
    fixed: tuple[int, ...] = (),
    order: tuple[int, ...] | None = None,
    owned: bool = False,
) -> torch.Tensor:
    """``acc + weight @ r``, the matmul accumulating into ``acc`` in place (``baddbmm_``):
    the terms added so far are read once, with no separate add pass over the result.

    The product has the layout ``[batch, out, *fixed, *carried]``, and ``acc`` (the
    terms so far, broadcastable) was summed in that layout; ``order`` permutes the result
    to the tensor's axes as a view (no transposed copy). ``owned``: the build proved
    ``acc`` a fresh sum that no other value shares, so it may be written in place (when it
    also has the product's shape and is contiguous); else the sum starts from a copy.
    """
    batch, channels = r.shape[0], weight.shape[0]
    for size in fixed:
        channels //= size
    shape = (batch, channels, *fixed, *r.shape[2:])
    order = order or tuple(range(len(shape)))
    if acc is None:
        return _mix(weight, r).view(shape).permute(order)
    if acc.dtype != r.dtype or weight.dtype != r.dtype:
        # mixed precision (autocast casts matmuls, not in-place accumulation): out of place
        return (acc + _mix(weight, r).view(shape)).permute(order)
    if not owned or acc.shape != shape or not acc.is_contiguous():
        acc = acc.expand(shape).clone(memory_format=torch.contiguous_format)
    flat, inputs = acc.view(batch, weight.shape[0], -1), r.flatten(2)
    route = _route(weight, inputs, flat)
    if route == "fold":
        flat.add_(_product(weight, inputs))
    elif route == "batch":  # out of place: see _BatchMix
        return _BatchMix.apply(weight, inputs, flat).view(shape).permute(order)
    else:
        flat.baddbmm_(weight.expand(batch, -1, -1), inputs)
    return acc.permute(order)


def _no_features(x: Weights) -> torch.Tensor:
    """``[batch, 0]``: the summaries of a weight space without invariant functionals."""
    t = next(iter(x.values()))
    return t.new_zeros(t.shape[0], 0)


def _add(out: Weights, name: str, value: torch.Tensor) -> None:
    """``out[name] += value`` (out of place, broadcasting: terms that broadcast along
    different axes sum to a larger tensor)."""
    acc = out.get(name)
    out[name] = value if acc is None else acc + value


def _complete(out: Weights, x: Weights, channels: int) -> Weights:
    """Every tensor at full shape: broadcast-only sums expanded, missing tensors zero."""
    result = {}
    for name, t in x.items():
        shape = (t.shape[0], channels, *t.shape[2:])
        if name not in out:
            result[name] = t.new_zeros(shape)
        elif out[name].shape != shape:
            result[name] = out[name].expand(shape).contiguous()
        else:
            result[name] = out[name]
    return result
