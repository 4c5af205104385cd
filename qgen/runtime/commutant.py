"""Mixes restricted to a commutant: escnn groups acting on fixed axes.

On the axes of an escnn type every block of a mix lies in the commutant of the group's
representation, spanned by exact basis maps baked into the generated module (reduced row
echelon form from escnn, or 0/1 orbit indicators for grids). A block is a coefficient
tensor ``[out, *out plain fixed, in, *in plain fixed, *dims]`` contracted with the bases
of its escnn factors; the dense mix is formed every forward (it is small) and applied by
the same single matmul as any other mix. Generated modules copy what they use.
"""

from __future__ import annotations

import torch
from torch import nn


def _register_bases(module: nn.Module, bases: tuple[torch.Tensor, ...]) -> None:
    """The bases as (non-persistent) buffers, in float64: they follow ``.to(device)`` and
    are cast to the coefficients' dtype where used (exact in float64, as built)."""
    for i, basis in enumerate(bases):
        module.register_buffer(f"basis_{i}", basis, persistent=False)


def _bases_of(module: nn.Module) -> list[torch.Tensor]:
    """The buffers ``_register_bases`` made, in order."""
    return [b for name, b in module.named_buffers(recurse=False) if name.startswith("basis_")]


def _coefficients(
    out_channels: int, in_channels: int, rows: tuple, device=None, dtype=None
) -> nn.ParameterList:
    """One coefficient tensor per block: ``[out, *out plain, in, *in plain, *dims]``; for a
    bias (``in_channels`` 0) ``[out, *out plain, *dims]``."""
    shapes = [
        (out_channels, *o, *((in_channels, *i) if in_channels else ()), *d)
        for row in rows
        for o, i, d, *_ in row
    ]
    return nn.ParameterList(
        [nn.Parameter(torch.empty(shape, device=device, dtype=dtype)) for shape in shapes]
    )


def _assemble(
    coefficients: nn.ParameterList,
    rows: tuple,
    bases: list[torch.Tensor],
    out_channels: int,
    in_channels: int,
) -> torch.Tensor:
    """The dense mix ``[out_channels * out fixed, in_channels * in fixed]`` of a group, block
    by block from its coefficients (a bias: ``in_channels`` 1, one column)."""
    theta = iter(coefficients)
    blocks = []
    for row in rows:
        parts = []
        for *_, equation, used, out_size, in_size in row:
            block = next(theta)
            if equation is not None:
                block = torch.einsum(equation, block, *(bases[i].to(block.dtype) for i in used))
            parts.append(block.reshape(out_channels * out_size, in_channels * in_size))
        blocks.append(torch.cat(parts, dim=1))
    return torch.cat(blocks, dim=0)


def _init_coefficients(
    coefficients: nn.ParameterList,
    rows: tuple,
    bases: list[torch.Tensor],
    in_channels: int,
    in_widths: list[int],
    in_pooled: list[int],
    fans: list[int],
    fans_kept: list[int],
) -> None:
    """``_init_mix`` for formed mixes: each block's entries get, on average over the block,
    the variance a dense block would, so a coefficient's variance is the dense one times
    the size of the escnn axes over the summed squared norms of their basis maps."""
    theta = iter(coefficients)
    for r, row in enumerate(rows):
        for c, (*_, used, _, _) in enumerate(row):
            fan = fans[r] if in_pooled[c] else fans_kept[r]
            var = 1 / (in_channels * in_widths[c] * fan)
            for i in used:
                if bases[i].numel():
                    var *= bases[i][0].numel() / float(bases[i].square().sum())
            with torch.no_grad():
                next(theta).normal_().mul_(var**0.5)


def _invariant_features(
    r: torch.Tensor, in_channels: int, bases: list[torch.Tensor], head: tuple
) -> torch.Tensor:
    """The pooled summaries ``[batch, in_channels * fixed]`` projected, pattern by pattern,
    onto the invariant functionals of their escnn axes: ``[batch, in_features]``. ``head``
    per pooled input pattern: (its fixed sizes, einsum projecting it onto the invariant
    functionals or None when it has no escnn axis, the bases that einsum uses)."""
    widths = [in_channels * _prod(shape) for shape, _, _ in head]
    feats = []
    for chunk, (shape, projection, used) in zip(r.split(widths, dim=1), head, strict=True):
        chunk = chunk.unflatten(1, (in_channels, *shape))
        if projection is not None:
            chunk = torch.einsum(projection, chunk, *(bases[i].to(chunk.dtype) for i in used))
        feats.append(chunk.flatten(1))
    return torch.cat(feats, dim=1)


def _prod(shape: tuple[int, ...]) -> int:
    """The product of ``shape``'s sizes (1 for an empty shape)."""
    out = 1
    for n in shape:
        out *= n
    return out


class _CommutantMix(nn.Module):
    """A term group's channel mix restricted, on escnn axes, to the commutant: one coefficient
    tensor per block (output pattern x input pattern, see :func:`_coefficients`), formed
    into the dense ``weight [out_channels * out fixed, in_channels * in fixed]`` by
    :func:`_assemble` when read (it is small). ``bias`` (``bias_rows`` given) is formed the
    same way from the invariant vectors. The bases are float64 non-persistent buffers, so
    they follow ``.to(device)`` and are cast where used. ``widths``: see ``_Mix``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: tuple,
        rows: tuple,
        bias_rows: tuple | None,
        bases: tuple[torch.Tensor, ...],
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.widths, self.rows, self.bias_rows = widths, rows, bias_rows
        self.split = [out_channels * w for w in widths[2]]
        _register_bases(self, tuple(b.to(device) for b in bases))
        self.coefficients = _coefficients(out_channels, in_channels, rows, device, dtype)
        self.bias_coefficients = (
            None if bias_rows is None else _coefficients(out_channels, 0, bias_rows, device, dtype)
        )
        self.reset_parameters()

    @property
    def weight(self) -> torch.Tensor:
        """The dense mix, formed from the coefficients and the bases."""
        return _assemble(
            self.coefficients, self.rows, _bases_of(self), self.out_channels, self.in_channels
        )

    @property
    def bias(self) -> torch.Tensor | None:
        """The equivariant bias: invariant on escnn axes (formed like the mix)."""
        if self.bias_coefficients is None:
            return None
        return _assemble(
            self.bias_coefficients, self.bias_rows, _bases_of(self), self.out_channels, 1
        ).flatten()

    def reset_parameters(self) -> None:
        """Each block's entries get, on average, the variance of a dense block (see
        :func:`_init_coefficients`); the bias starts at zero."""
        in_widths, in_pooled, _, fans, fans_kept = self.widths
        _init_coefficients(
            self.coefficients,
            self.rows,
            _bases_of(self),
            self.in_channels,
            in_widths,
            in_pooled,
            fans,
            fans_kept,
        )
        for p in self.bias_coefficients or []:
            nn.init.zeros_(p)

    def extra_repr(self) -> str:
        """Channels, the dense mix's shape, and the number of learnable coefficients."""
        coefficients = sum(p.numel() for p in self.coefficients)
        rows, cols = self.out_channels * sum(self.widths[2]), self.in_channels * sum(self.widths[0])
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"mix={rows}x{cols} from {coefficients} coefficients, "
            f"bias={self.bias_coefficients is not None}"
        )
