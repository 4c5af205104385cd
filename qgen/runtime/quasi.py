"""Quasi-equivariant relaxations: alpha(x) in the identity component of a continuous group.

A quasi-equivariant layer is ``F(x) = alpha(x) . beta(x)`` with ``beta`` strictly
equivariant; then ``F(g.x) = g'.F(x)`` with ``g' = alpha(g.x) g alpha(x)^-1``. Each class
here maps per-index features ``phi [batch, n, features]`` (permutation-equivariant in the
index) and a strength ``eps < 1`` to one element per sample of its kind's group, in the
form :mod:`qgen.runtime.group` acts with. Generated modules copy the ones they use.
"""

from __future__ import annotations

import torch
from torch import nn

Monomial = tuple[torch.Tensor, torch.Tensor]


class _RelaxScaled(nn.Module):
    """alpha for a ``scaled`` type: a positive scale per index, ``1 + eps * tanh(f(phi_i))``.

    ``f`` is a small per-index MLP on the index's features ``phi_i`` (the same weights for
    every index, so alpha is permutation-equivariant); ``eps < 1`` keeps every scale in
    ``(1 - eps, 1 + eps)``, positive.
    """

    def __init__(self, features: int, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, phi: torch.Tensor, eps: torch.Tensor) -> Monomial:
        scale = 1 + eps * torch.tanh(self.net(phi).squeeze(-1))
        return torch.arange(phi.shape[-2], device=phi.device), scale


class _RelaxGL(nn.Module):
    """alpha for a ``gl`` type: ``I + E`` with ``E = eps * M / (1 + |M|_F)``, ``M = u v^T / n``.

    ``u_i``, ``v_i`` come from the index features ``phi_i`` by shared linear maps, so
    ``M(P theta) = P M(theta) P^T``. The spectral norm of ``E`` is at most its Frobenius
    norm, which is below ``eps < 1``; so ``I + E`` is invertible (its eigenvalues lie in the
    disc of radius ``eps`` around 1) and in the identity component of GL(n).
    """

    def __init__(self, features: int, rank: int = 4) -> None:
        super().__init__()
        self.u = nn.Linear(features, rank)
        self.v = nn.Linear(features, rank)

    def forward(self, phi: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = phi.shape[-2]
        m = self.u(phi) @ self.v(phi).mT / n
        norm = torch.linalg.matrix_norm(m)[..., None, None]
        eye = torch.eye(n, dtype=phi.dtype, device=phi.device)
        return eye + eps * m / (1 + norm)


class _RelaxOrthogonal(nn.Module):
    """alpha for an ``orthogonal`` type: the Cayley transform ``(I + A)^-1 (I - A)`` in SO(n).

    ``A = eps * S / (1 + |S|_F)`` with ``S = M - M^T`` skew-symmetric and
    ``M = u v^T / n`` from the index features, as for ``gl``. ``I + A`` is invertible for
    any skew ``A`` (eigenvalues ``1 + i lambda``), and the result is orthogonal with
    determinant 1.
    """

    def __init__(self, features: int, rank: int = 4) -> None:
        super().__init__()
        self.u = nn.Linear(features, rank)
        self.v = nn.Linear(features, rank)

    def forward(self, phi: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = phi.shape[-2]
        m = self.u(phi) @ self.v(phi).mT / n
        s = m - m.mT
        a = eps * s / (1 + torch.linalg.matrix_norm(s)[..., None, None])
        eye = torch.eye(n, dtype=phi.dtype, device=phi.device)
        return torch.linalg.solve(eye + a, eye - a)


def _index_features(
    x: dict[str, torch.Tensor],
    tensors: dict[str, tuple[str, ...]],
    type_: str,
    nested: dict[str, str] | None = None,
    rms: bool = False,
) -> torch.Tensor:
    """Per-index features of ``type_``, ``[batch, n, axes of that type]`` (``[batch,
    outer, n, ...]`` for a type nested in ``nested[type_]``).

    For every axis of the type: the log of the mean absolute value of the slice an index
    selects (over channels and all other axes), or with ``rms`` its root mean square (in
    float64, so squares do not overflow: what stays invariant when an orthogonal element,
    an escnn group's, acts on other axes). Permuting the type's indices permutes the rows;
    the rest of the group changes nothing. Clamped, so huge or tiny weights give finite
    features."""
    feats = []
    for name, axes in tensors.items():
        for dim, axis in enumerate(axes, start=2):
            if axis.rstrip("*") != type_:
                continue
            magnitude = x[name].double().square() if rms else x[name].abs()
            if nested and type_ in nested:  # per outer index and index
                outer_dim = 2 + [a.rstrip("*") for a in axes].index(nested[type_])
                moved = magnitude.movedim((outer_dim, dim), (-2, -1))
                size = moved.flatten(1, -3).mean(1)
            else:
                size = magnitude.movedim(dim, -1).flatten(1, -2).mean(1)
            if rms:
                size = size.sqrt()
            feats.append(size.clamp_min(1e-30).log().clamp(-80.0, 80.0))
    return torch.stack(feats, dim=-1)
