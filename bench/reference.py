"""Hand-written layers to measure generated ones against.

:class:`HNPLayer` is the hidden-neuron-permutation (HNP) layer of *Permutation
Equivariant Neural Functionals* (Zhou et al., 2023) for MLPs and CNNs, written
from its formulas as a careful PyTorch user would: every term is mixed at the
smallest tensor it lives on and broadcast by addition. With ``W_i`` of shape
``[n_i, n_{i-1}, *spatial]``, ``b_i`` of shape ``[n_i]``, inputs and outputs of
the network fixed and hidden neurons permuted, its output for a hidden weight is

    W'_i[j, k] = A_i W_i[j, k]                               (identity)
               + R_i F_i[j] + C_i F_{i-1}[k] + G_i g          (broadcast terms)

where the *node features* ``F_l[j]`` of hidden neuron ``j`` in layer ``l``
stack what the paper pools onto that neuron: the mean of its row of ``W_l``
(over inputs), its bias ``b_l[j]``, the mean of its column of ``W_{l+1}``
(over outputs), and, at the first and last hidden layer, the full row of
``W_1`` / column of ``W_L`` (their other axis is fixed, so it stays a
feature); ``g`` stacks every tensor's mean over its hidden axes. Biases and
the fixed-axis weights are node tensors: ``b'_l = B_l F_l + G g``. Spatial
kernel axes are fixed, so they act as channels. ``A, R, C, G, B`` are
learned channel mixes.

This spans the HNP layer's terms (row, column and global pooling of the same
and adjacent layers), not necessarily every map of the equivariant basis that
qgen generates: it is the bar to beat, not an independent solver.

:class:`ChannelMixFloor` is the floor: one channel-mixing matmul per tensor,
the least any layer that reads its input and writes its output must do.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ChannelMixFloor", "HNPLayer"]


def _mix(c_in: int, c_out: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(c_out, c_in) / math.sqrt(c_in))


def _conv1x1(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight @ x`` over dim 1 of ``x: [B, in, n]``: a 1x1 convolution, as NFN computes
    its channel mixes. (Not a ``bmm`` with the weight broadcast over the batch: autograd
    forms that weight's gradient as ``[B, out, in]`` before summing it, 20 GB for the
    784-input MLP's node mix at batch 32 and 16 channels; the convolution's weight
    gradient is one reduction over batch and positions.)"""
    return nn.functional.conv1d(x, weight[:, :, None])


class HNPLayer(nn.Module):
    """NFN's HNP layer for ``layers = [(W name, b name), ...]`` of an MLP or a CNN.

    ``shapes`` gives each weight's ``(n_out, n_in, *spatial)``; the mixes depend on the
    fixed sizes (network inputs and outputs, kernel positions), not on hidden widths.
    """

    def __init__(
        self,
        layers: list[tuple[str, str]],
        shapes: dict[str, tuple[int, ...]],
        in_channels: int,
        out_channels: int,
    ) -> None:
        super().__init__()
        self.layers = layers
        self.c_in, self.c_out = in_channels, out_channels
        L = len(layers)
        self.spatial = [math.prod(shapes[w][2:]) for w, _ in layers]
        self.n_first_in = shapes[layers[0][0]][1]
        self.n_last_out = shapes[layers[-1][0]][0]
        c = in_channels
        # node features of hidden layer h (1..L-1): row mean of W_l, b_l, column mean of
        # W_{h+1}; the full row of W_1 at h = 1 and the full column of W_L at h = L-1
        self.node_width = {}
        for h in range(1, L):
            rows = self.n_first_in if h == 1 else 1  # W_1's full row, else a row mean of W_l
            cols = self.n_last_out if h == L - 1 else 1  # W_L's full column, else a mean
            self.node_width[h] = c + c * rows * self.spatial[h - 1] + c * cols * self.spatial[h]
        self.global_width = sum(self.node_width.values()) + c * self.n_last_out
        g = self.global_width
        self.identity = nn.ParameterDict()
        self.row = nn.ParameterDict()
        self.col = nn.ParameterDict()
        self.glob = nn.ParameterDict()
        o = out_channels
        for i in range(2, L):  # hidden-to-hidden weights: edge tensors
            s = self.spatial[i - 1]
            self.identity[f"{i}"] = _mix(c * s, o * s)
            self.row[f"{i}"] = _mix(self.node_width[i], o * s)
            self.col[f"{i}"] = _mix(self.node_width[i - 1], o * s)
            self.glob[f"{i}"] = _mix(g, o * s)
        # node tensors: W_1 (rows), b_l, W_L (columns), each from its layer's features
        self.node = nn.ParameterDict()
        for h in range(1, L):
            width = o + (o * self.spatial[0] * self.n_first_in if h == 1 else 0)
            width += o * self.n_last_out * self.spatial[L - 1] if h == L - 1 else 0
            self.node[f"{h}"] = _mix(self.node_width[h], width)
            self.glob[f"n{h}"] = _mix(g, width)
        self.glob["out"] = _mix(g, o * self.n_last_out)
        self.bias = nn.Parameter(torch.zeros(o * self.n_last_out))

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        L, o = len(self.layers), self.c_out
        W = [x[w] for w, _ in self.layers]
        b = [x[name] for _, name in self.layers]
        B = W[0].shape[0]
        edges = {i: _as_edge(W[i - 1]) for i in range(2, L)}  # [B, C*S, n_i, n_{i-1}]
        first = _as_nodes(W[0], axis=2)  # [B, C*n_0*S, n_1]
        last = _as_nodes(W[L - 1], axis=3)  # [B, C*n_L*S, n_{L-1}]
        feats = {}
        for h in range(1, L):
            parts = [b[h - 1], first if h == 1 else edges[h].mean(-1)]
            parts.append(last if h == L - 1 else edges[h + 1].mean(-2))
            feats[h] = torch.cat(parts, dim=1)
        g = torch.cat([f.mean(-1) for f in feats.values()] + [b[L - 1].flatten(1)], dim=1)
        out: dict[str, torch.Tensor] = {}
        for i in range(2, L):
            e = edges[i]
            n, m = e.shape[-2:]
            row = _conv1x1(self.row[f"{i}"], feats[i])  # [B, O*S, n]
            col = _conv1x1(self.col[f"{i}"], feats[i - 1]) + (g @ self.glob[f"{i}"].T)[..., None]
            y = col[..., None, :].expand(B, -1, n, m) + row[..., :, None]  # [B, O*S, n, m]
            # the identity term adds into the broadcast sum in place
            y.view(B, -1, n * m).add_(_conv1x1(self.identity[f"{i}"], e.flatten(2)))
            out[self.layers[i - 1][0]] = _from_edge(y, W[i - 1], o)
        for h in range(1, L):
            y = _conv1x1(self.node[f"{h}"], feats[h]) + (g @ self.glob[f"n{h}"].T)[..., None]
            sizes = [o]
            if h == 1:
                sizes.append(o * self.spatial[0] * self.n_first_in)
            if h == L - 1:
                sizes.append(o * self.n_last_out * self.spatial[L - 1])
            pieces = y.split(sizes, dim=1)
            out[self.layers[h - 1][1]] = pieces[0]
            if h == 1:
                out[self.layers[0][0]] = _from_nodes(pieces[1], W[0], axis=2, channels=o)
            if h == L - 1:
                out[self.layers[L - 1][0]] = _from_nodes(pieces[-1], W[L - 1], axis=3, channels=o)
        out[self.layers[L - 1][1]] = (g @ self.glob["out"].T + self.bias).view(B, o, -1)
        return out


def _as_edge(w: torch.Tensor) -> torch.Tensor:
    """``[B, C, n, m, *S]`` -> ``[B, C*S, n, m]`` (spatial axes join the channels)."""
    if w.dim() == 4:
        return w
    return w.movedim((2, 3), (-2, -1)).flatten(1, -3)


def _from_edge(y: torch.Tensor, like: torch.Tensor, channels: int) -> torch.Tensor:
    if like.dim() == 4:
        return y
    B, _, n, m = y.shape
    return y.view(B, channels, *like.shape[4:], n, m).movedim((-2, -1), (2, 3))


def _as_nodes(w: torch.Tensor, axis: int) -> torch.Tensor:
    """A weight whose other neuron axis is fixed, as features of the neurons on ``axis``:
    ``[B, C * (the other axes), n]``."""
    return w.movedim(axis, -1).flatten(1, -2)


def _from_nodes(y: torch.Tensor, like: torch.Tensor, axis: int, channels: int) -> torch.Tensor:
    shape = list(like.shape)
    shape[1] = channels
    moved = [*shape[:axis], *shape[axis + 1 :], shape[axis]]
    return y.reshape(moved).movedim(-1, axis)


class ChannelMixFloor(nn.Module):
    """One ``out x in`` channel mix per tensor: ``y_t = A_t x_t``, as ``bmm`` with ``A_t``
    broadcast over the batch (the fastest of matmul, bmm and einsum here)."""

    def __init__(self, names: list[str], in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.ParameterDict({n: _mix(in_channels, out_channels) for n in names})

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            n: torch.bmm(self.weight[n].expand(t.shape[0], -1, -1), t.flatten(2)).view(
                t.shape[0], -1, *t.shape[2:]
            )
            for n, t in x.items()
        }


class FixedMixFloor(nn.Module):
    """The floor for a complete equivariant basis: one mix per tensor over its channels
    *and* its fixed axes (input/output neurons, kernel positions), which every complete
    layer contains (the identity-like term is dense over fixed axes). Fixed axes are moved
    next to the channels (a copy when they are not already there) and the result is
    returned as a permuted view, as generated layers do. The mix is a 1x1 convolution
    (see ``_conv1x1``: its weight gradient never expands over the batch).
    """

    def __init__(
        self, fixed_axes: dict[str, tuple[int, ...]], sizes: dict[str, int], c_in: int, c_out: int
    ) -> None:
        super().__init__()
        self.fixed_axes = fixed_axes  # tensor -> positions (0-based, after batch/channel) fixed
        self.weight = nn.ParameterDict(
            {
                n: _mix(c_in * sizes[n], c_out * sizes[n])
                for n in fixed_axes  # sizes[n]: product of the tensor's fixed axis sizes
            }
        )
        self.c_out = c_out

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for n, t in x.items():
            fixed = [2 + i for i in self.fixed_axes[n]]
            rest = [d for d in range(2, t.dim()) if d not in fixed]
            order = [0, 1, *fixed, *rest]
            moved = t.permute(order)
            flat = moved.reshape(t.shape[0], self.weight[n].shape[1], -1)
            y = _conv1x1(self.weight[n], flat)
            y = y.view(t.shape[0], self.c_out, *moved.shape[2:])
            out[n] = y.permute(sorted(range(len(order)), key=order.__getitem__))
        return out
