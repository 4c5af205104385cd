"""Pointwise functions and the group of hidden neurons each one commutes with.

A pointwise ``f`` between two layers allows a change of basis ``A`` of the hidden
neurons (``W1 -> A W1``, ``b1 -> A b1``, ``W2 -> W2 A^-1``) when ``f(A z) = A f(z)``:

* ``scaled`` (permutations times positive diagonals): positively homogeneous ``f``,
  ``f(s z) = s f(z)`` for ``s > 0`` (ReLU, LeakyReLU, a one-slope PReLU, ``abs``);
* ``signed`` (permutations times sign flips): odd ``f``, ``f(-z) = -f(z)`` (tanh, sin,
  softsign, a symmetric Hardtanh, ``erf``, ``atan``);
* ``gl`` (any invertible ``A``): the identity (``nn.Identity``, dropout in eval mode);
* ``perm``: every other pointwise function (GELU, SiLU, sigmoid, ELU, softplus, ReLU6:
  ``relu6(2z) != 2 relu6(z)`` once ``z > 3``).

:data:`POINTWISE` maps module classes, functions and tensor method names to a group
kind, or to a callable that reads the kind off a module instance. Extend it with
:func:`register_pointwise` (``register_pointwise(MyAct, "perm")``) for activations of
your own; the kind must be one the statement above proves, and one the model reader
infers (:func:`qgen.kinds.lattice_kinds`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from qgen.kinds import lattice_kinds

__all__ = ["POINTWISE", "pointwise_kind", "register_pointwise"]

Kind = str | Callable[[nn.Module], str]


def _hardtanh(m: nn.Hardtanh) -> str:
    return "signed" if m.min_val == -m.max_val else "perm"


def _prelu(m: nn.PReLU) -> str:
    # one shared slope: positively homogeneous; a slope per channel would be a tensor on
    # the type that is invariant under scalings, which no declared group expresses
    return "scaled" if m.num_parameters == 1 else "unsupported"


#: module class / function / method name -> group kind of the features it acts on
POINTWISE: dict[object, Kind] = {
    nn.ReLU: "scaled",
    nn.LeakyReLU: "scaled",
    nn.PReLU: _prelu,
    nn.Tanh: "signed",
    nn.Softsign: "signed",
    nn.Tanhshrink: "signed",
    nn.Hardshrink: "signed",
    nn.Softshrink: "signed",
    nn.Hardtanh: _hardtanh,
    nn.ReLU6: "perm",
    nn.GELU: "perm",
    nn.SiLU: "perm",
    nn.Sigmoid: "perm",
    nn.ELU: "perm",
    nn.SELU: "perm",
    nn.CELU: "perm",
    nn.Softplus: "perm",
    nn.Mish: "perm",
    nn.Hardswish: "perm",
    nn.Hardsigmoid: "perm",
    nn.LogSigmoid: "perm",
    nn.Identity: "gl",
    nn.Dropout: "gl",
    nn.Dropout1d: "gl",
    nn.Dropout2d: "gl",
    nn.Dropout3d: "gl",
    nn.AlphaDropout: "gl",
    torch.relu: "scaled",
    F.relu: "scaled",
    F.leaky_relu: "scaled",
    torch.abs: "scaled",
    torch.tanh: "signed",
    F.tanh: "signed",
    torch.sin: "signed",
    torch.atan: "signed",
    torch.asinh: "signed",
    torch.erf: "signed",
    F.softsign: "signed",
    F.tanhshrink: "signed",
    F.gelu: "perm",
    F.silu: "perm",
    F.mish: "perm",
    F.elu: "perm",
    F.selu: "perm",
    F.softplus: "perm",
    F.relu6: "perm",
    F.hardswish: "perm",
    F.sigmoid: "perm",
    torch.sigmoid: "perm",
    torch.cos: "perm",
    torch.exp: "perm",
    F.dropout: "gl",
    "relu": "scaled",
    "abs": "scaled",
    "tanh": "signed",
    "sin": "signed",
    "sigmoid": "perm",
    "cos": "perm",
    "exp": "perm",
}


def register_pointwise(target: object, kind: Kind) -> None:
    """Declare that ``target`` (a module class, function or method name) acts pointwise
    and commutes with the group ``kind`` (a kind of the subgroup lattice: perm, signed,
    scaled, gl, orthogonal)."""
    kinds = lattice_kinds()
    if isinstance(kind, str) and kind not in kinds:
        raise ValueError(f"kind must be one of {', '.join(kinds)}, got {kind!r}")
    POINTWISE[target] = kind


def pointwise_kind(target: object, module: nn.Module | None = None) -> str | None:
    """The group kind ``target`` commutes with; None when it is not a known pointwise op
    ("unsupported" when it is known but no declared group fits this instance)."""
    try:
        kind = POINTWISE.get(target)
    except TypeError:  # unhashable
        return None
    if kind is None and module is not None:
        kind = next((k for cls, k in POINTWISE.items() if type(module) is cls), None)
    if callable(kind):
        return kind(module)
    return kind
