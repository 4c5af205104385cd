"""An invariant head that is nonlinear: canonicalize each entry, embed, pool (torch only).

For weight spaces whose group moves each entry (one index tuple of one tensor, a vector
over channels) to another entry and multiplies it by one positive number (scaled axes) or
sign (signed axes): a linear invariant head sees little there (few linear functionals are
invariant). The tables are decided at build time from the kinds (``entry_factor``):
which tensors are divided by their channel norm, which are embedded evenly, and the fixed
sizes each tensor keeps. Generated modules copy this and bind it to their tables.
"""

from __future__ import annotations

import torch
from torch import nn

Weights = dict[str, torch.Tensor]

#: channel norms below this (times the dtype's tiny**0.5) are clamped: entries that small
#: are treated as zero and are the only place where invariance is not exact
HEAD_NORM_FLOOR = 1.0


class EntryPoolHead(nn.Module):
    """Invariant under the whole group, nonlinear: canonicalize each entry, embed, pool.

    Per entry ``v`` (a vector over channels) of a tensor:

    - ``normalized`` tensors (a positively scaled axis): ``v / |v|`` (channel norm),
      exactly scale-invariant; the magnitude of such an entry is not used (it is not
      invariant on its own);
    - ``even`` tensors (a signed axis): ``phi(u) + phi(-u)``, even, so sign-invariant;
      otherwise ``phi(u)``; ``phi(u) = relu(A u + b)`` with ``hidden`` features, one
      ``A, b`` per tensor;
    - mean over every group axis (``fixed[t]``: per axis its fixed size, None for a group
      axis; fixed axes are kept), then an MLP ``Linear -> ReLU -> Linear``.

    Exact for every entry whose channel norm is at least ``tiny(dtype) ** 0.5`` (about
    1e-19 in float32); smaller ones count as zero. Use it after equivariant layers with
    several channels: with one channel, ``v / |v|`` keeps only the sign of each entry.
    Pooling is the mean over all group axes of a tensor, so it does not read diagonals of
    tensors with a repeated type (the linear invariant head does).
    """

    def __init__(
        self,
        in_channels: int,
        out_features: int,
        fixed: dict[str, tuple[int | None, ...]],
        normalized: dict[str, bool],
        even: dict[str, bool],
        hidden: int = 32,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden = hidden
        self.fixed, self.normalized, self.even = fixed, normalized, even
        self.embed = nn.ModuleDict({n: nn.Linear(in_channels, hidden) for n in fixed})
        self.in_features = 0
        for sizes in fixed.values():
            width = hidden
            for size in sizes:
                width *= size or 1  # fixed axes are kept, group axes pooled
            self.in_features += width
        self.mlp = nn.Sequential(
            nn.Linear(self.in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_features, bias=bias),
        )

    def entry_features(self, x: Weights) -> torch.Tensor:
        """The pooled invariant features ``[batch, in_features]`` before the MLP."""
        feats = []
        for name, sizes in self.fixed.items():
            v = x[name]
            if v.shape[1] != self.in_channels:
                raise ValueError(f"{name}: expected {self.in_channels} channels, got {v.shape[1]}")
            if self.normalized[name]:
                # clamped before the square root: a finite gradient at all-zero entries
                floor = torch.finfo(v.dtype).tiny * HEAD_NORM_FLOOR**2
                v = v / v.square().sum(1, keepdim=True).clamp_min(floor).sqrt()
            v = v.movedim(1, -1).contiguous()  # [batch, *axes, channels]
            h = torch.relu(self.embed[name](v))
            if self.even[name]:
                h = h + torch.relu(self.embed[name](-v))
            pooled = [1 + i for i, size in enumerate(sizes) if size is None]
            if pooled:
                h = h.mean(dim=pooled)
            feats.append(h.flatten(1))
        return torch.cat(feats, dim=-1)

    def forward(self, x: Weights) -> torch.Tensor:
        """``[batch, out_features]``, unchanged by every group element."""
        return self.mlp(self.entry_features(x))
