"""The dense approach: a layer as an explicit ``|V| x |V|`` matrix per channel pair.

This is how a generic equivariant-layer library (EMLP-style) works: solve the
basis numerically at concrete sizes (here with qgen's independent numeric
solver, :func:`qgen.solver.numeric.solve_numeric`), keep it as dense matrices ``B_d``
and form ``M = sum_d theta_d (x) B_d`` at every forward pass, then
``y = M x``. Its cost grows with ``|V|^2`` times the basis size, which is what
generated layers avoid; it is benchmarked at small sizes only.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qgen.solver.basis import WeightSpaceBasis
from qgen.solver.numeric import solve_numeric
from qgen.solver.verify import axis_actions, generators_at

__all__ = ["DenseLayer"]


class DenseLayer(nn.Module):
    """The full equivariant affine layer of ``basis`` at ``sizes``, as dense matrices."""

    def __init__(
        self,
        basis: WeightSpaceBasis,
        sizes: dict[str, int],
        in_channels: int,
        out_channels: int,
    ) -> None:
        super().__init__()
        spec = basis.spec
        full = {**{t: d.size for t, d in spec.types.items() if d.size}, **sizes}
        self.shapes = {t.name: tuple(full[a.type] for a in t.axes) for t in spec.tensors}
        numel = {n: math.prod(s) for n, s in self.shapes.items()}
        offset, start = {}, 0
        for name in self.shapes:
            offset[name], start = start, start + numel[name]
        dim_v = start
        mats, bias_mats = [], []
        for (s, t), block in basis.blocks.items():
            sol = solve_numeric(axis_actions(block, full), generators_at(block, full))
            for row in sol.basis:
                m = torch.zeros(dim_v, dim_v, dtype=torch.float64)
                m[offset[s] : offset[s] + numel[s], offset[t] : offset[t] + numel[t]] = row.view(
                    numel[s], numel[t]
                )
                mats.append(m)
        for s, block in basis.bias.items():
            sol = solve_numeric(axis_actions(block, full), generators_at(block, full))
            for row in sol.basis:
                v = torch.zeros(dim_v, dtype=torch.float64)
                v[offset[s] : offset[s] + numel[s]] = row
                bias_mats.append(v)
        self.register_buffer("basis", torch.stack(mats).float())  # [D, |V|, |V|]
        self.register_buffer("bias_basis", torch.stack(bias_mats).float())  # [Db, |V|]
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, len(mats)) / math.sqrt(in_channels)
        )
        self.bias = nn.Parameter(torch.zeros(out_channels, len(bias_mats)))
        self.offset, self.numel = offset, numel

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        flat = torch.cat([x[n].flatten(2) for n in self.shapes], dim=-1)  # [B, C, |V|]
        matrix = torch.einsum("ocd,dvw->ovcw", self.weight, self.basis)  # [O, |V|, C, |V|]
        y = torch.einsum("bcw,ovcw->bov", flat, matrix) + self.bias @ self.bias_basis
        return {
            n: y[:, :, self.offset[n] : self.offset[n] + self.numel[n]].unflatten(
                -1, self.shapes[n]
            )
            for n in self.shapes
        }
