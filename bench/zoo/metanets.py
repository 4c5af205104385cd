"""Metanetworks for the zoo study: generated equivariant layers, and the baselines.

Every model maps a weight-space dict ``{tensor: [batch, 1, *axes]}`` to ``[batch, out]``.

* :class:`EquivariantMetaNet`: ``depth`` generated ``EquivariantLayer`` blocks, each
  followed by a pointwise nonlinearity that commutes with the group (ReLU for permutations
  and positive scalings, since it is positively homogeneous; tanh, an odd function, for
  sign flips), then an invariant head: the generated ``NonlinearInvariantHead`` for
  scaled or signed groups, ``InvariantHead`` + MLP for permutations.
* :class:`BlocksMetaNet`: the generated ``MetaNetwork`` (layers, the group's own
  nonlinearity, normalization, optional degree-2 products and canonicalization, invariant
  head), its input normalizer fitted on the training zoo.
* :class:`FlatMLP`: the flattened weights, standardized per coordinate, into an MLP; with
  ``augment`` the training batches are moved by random group elements from the
  generated ``sample_group_element`` and ``act``.
* :class:`StatNN`: per-tensor statistics (mean, std, 5 quantiles) into an MLP; and
  :func:`statistics` for the gradient-boosting variant.
"""

from __future__ import annotations

import torch
from torch import nn

Weights = dict[str, torch.Tensor]


def tensor_scales(w: Weights) -> dict[str, float]:
    """One scalar per tensor (its RMS over the training zoo): dividing a whole tensor by a
    constant commutes with every linear group action, so it keeps any symmetry."""
    return {k: float(v.square().mean().sqrt().clamp_min(1e-8)) for k, v in w.items()}


class EquivariantMetaNet(nn.Module):
    def __init__(
        self,
        space,
        out: int,
        channels: int = 8,
        depth: int = 2,
        nonlinearity: str = "relu",
        head: str = "linear",
        quasi: bool = False,
        hidden: int = 64,
        scales: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        widths = [1] + [channels] * depth
        pairs = zip(widths, widths[1:], strict=False)
        self.layers = nn.ModuleList(space.EquivariantLayer(a, b, quasi=quasi) for a, b in pairs)
        self.nonlinearity = {"relu": torch.relu, "tanh": torch.tanh}[nonlinearity]
        if head == "nonlinear":
            self.head = space.NonlinearInvariantHead(channels, out, hidden=hidden)
        else:
            self.head = nn.Sequential(
                space.InvariantHead(channels, hidden), nn.ReLU(), nn.Linear(hidden, out)
            )
        self.scales = dict(scales or {})

    def forward(self, x: Weights) -> torch.Tensor:
        x = {k: v / self.scales.get(k, 1.0) for k, v in x.items()}
        for layer in self.layers:
            x = {k: self.nonlinearity(v) for k, v in layer(x).items()}
        return self.head(x)


class BlocksMetaNet(nn.Module):
    """``space.MetaNetwork(1, channels, depth, out, **options)`` with its input normalizer
    fitted on ``train`` (one scale per tensor; a mean only where the kinds allow it)."""

    def __init__(
        self, space, train: Weights, out: int, channels: int = 8, depth: int = 2, **options
    ) -> None:
        super().__init__()
        inputs = next(iter(train.values())).shape[1]
        self.net = space.MetaNetwork(inputs, channels, depth, out, **options)
        self.net.fit_normalizer(train)

    def forward(self, x: Weights) -> torch.Tensor:
        return self.net(x)


class WithCanonical(nn.Module):
    """``model`` on two input channels: the weights and ``space.canonicalize`` of them
    (permutation-equivariant, so a perm model stays perm-invariant; the second channel is
    invariant under ``space``'s scalings)."""

    def __init__(self, space, model: nn.Module) -> None:
        super().__init__()
        self.space = space
        self.model = model

    @staticmethod
    def stack(space, x: Weights) -> Weights:
        c = space.canonicalize(x)
        return {k: torch.cat([v, c[k]], dim=1) for k, v in x.items()}

    def forward(self, x: Weights) -> torch.Tensor:
        return self.model(self.stack(self.space, x))


def flatten(x: Weights) -> torch.Tensor:
    return torch.cat([v.flatten(1) for v in x.values()], dim=1)


class _Standardized(nn.Module):
    def __init__(self, features: torch.Tensor, out: int, hidden: int, layers: int = 2) -> None:
        super().__init__()
        self.register_buffer("mean", features.mean(0))
        self.register_buffer("std", features.std(0).clamp_min(1e-6))
        dims = [features.shape[1]] + [hidden] * layers
        mods: list[nn.Module] = []
        for a, b in zip(dims, dims[1:], strict=False):
            mods += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*mods, nn.Linear(hidden, out))

    def features(self, x: Weights) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: Weights) -> torch.Tensor:
        return self.mlp((self.features(x) - self.mean) / self.std)


class FlatMLP(_Standardized):
    """MLP on the flattened weights; ``augment`` is used by the training loop."""

    def __init__(self, train: Weights, out: int, hidden: int = 256, augment=None) -> None:
        super().__init__(flatten(train), out, hidden)
        self.augment = augment

    def features(self, x: Weights) -> torch.Tensor:
        return flatten(x)


QUANTILES = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])


def statistics(x: Weights) -> torch.Tensor:
    """Per tensor: mean, standard deviation and 5 quantiles: ``[batch, 7 * tensors]``."""
    feats = []
    for v in x.values():
        v = v.flatten(1)
        q = torch.quantile(v, QUANTILES.to(v.dtype), dim=1).T
        feats += [v.mean(1, keepdim=True), v.std(1, correction=0, keepdim=True), q]
    return torch.cat(feats, dim=1)


class StatNN(_Standardized):
    def __init__(self, train: Weights, out: int, hidden: int = 64) -> None:
        super().__init__(statistics(train), out, hidden)

    def features(self, x: Weights) -> torch.Tensor:
        return statistics(x)


def canonicalize_scales(space, x: Weights) -> Weights:
    """ScaleGMN-style canonicalization, now generated: ``space.canonicalize`` (each scaled
    hidden neuron's incoming weights and bias divided by their norm, its outgoing weights
    multiplied by it, type by type). Exactly invariant under positive scalings (up to
    rounding) and equivariant under permutations."""
    return space.canonicalize(x)


class Canonicalized(nn.Module):
    """A model applied to :func:`canonicalize_scales` of its input."""

    def __init__(self, space, model: nn.Module) -> None:
        super().__init__()
        self.space = space
        self.model = model

    def forward(self, x: Weights) -> torch.Tensor:
        return self.model(canonicalize_scales(self.space, x))
