"""Interop with NFN (Zhou et al. 2023, the ``nfn`` package): ``to_nfn`` / ``from_nfn``.

NFN's ``WeightSpaceFeatures`` holds a chain of layers as two tuples, ``weights[i]`` of
shape ``[B, C, out_i, in_i(, kh, kw)]`` and ``biases[i]`` of shape ``[B, C, out_i]``
(``nfn/common/data.py``) -- the same per-tensor layout as qgen's generated layers
(``{tensor: [batch, channels, *axes]}`` with a weight's axes ``[out, in*, ...]``). So the
adapters only rename: they pair the spec's tensors into layers and keep every tensor
as it is (no copy).

The pairing is read from the spec (a generated module's ``TENSORS``, a
:class:`~qgen.spec.Spec`, or an explicit ``[(weight, bias), ...]``): layer i's weight
has axes ``[t_i, t_{i-1}*, fixed...]``, its bias ``[t_i]``, and consecutive layers chain
``t_{i-1}``. Anything else (residual connections, attention, normalization) has no
WeightSpaceFeatures form and is refused.

``to_nfn`` returns ``nfn.common.WeightSpaceFeatures`` when the ``nfn`` package is
installed (extra ``nfn``), else :class:`Features`, a stand-in with the same
``weights``/``biases`` attributes that ``from_nfn`` also takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import NamedTuple

import torch

from qgen.spec import Spec

__all__ = ["Features", "from_nfn", "nfn_layers", "to_nfn"]

Layers = list[tuple[str, str]]


class Features(NamedTuple):
    """NFN's ``WeightSpaceFeatures`` fields, for when the ``nfn`` package is absent."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]


def _tensors(space: ModuleType | Spec | Mapping[str, Sequence[str]]) -> dict[str, tuple]:
    if isinstance(space, Spec):
        return {t.name: tuple(str(a) for a in t.axes) for t in space.tensors}
    if isinstance(space, ModuleType):
        return dict(space.TENSORS)
    return {k: tuple(v) for k, v in space.items()}


def nfn_layers(space: ModuleType | Spec | Mapping[str, Sequence[str]]) -> Layers:
    """``[(weight, bias), ...]`` in layer order, from a spec's tensors (see module doc)."""
    tensors = _tensors(space)
    names = list(tensors)
    if len(names) % 2:
        raise ValueError(f"{len(names)} tensors: NFN's chains have a weight and a bias per layer")
    layers: Layers = []
    prev = None
    for w, b in zip(names[::2], names[1::2], strict=True):
        wa, ba = tensors[w], tensors[b]
        ok = (
            len(wa) in (2, 4)
            and not wa[0].endswith("*")
            and wa[1].endswith("*")
            and all(not a.endswith("*") for a in wa[2:])
            and ba == (wa[0],)
        )
        if not ok:
            raise ValueError(
                f"tensors {w}: [{', '.join(wa)}] and {b}: [{', '.join(ba)}] are not a "
                "layer [out, in*(, kh, kw)] with bias [out]; NFN's WeightSpaceFeatures "
                "holds plain MLP/CNN chains only (spec order: weight, bias, weight, ...)"
            )
        if prev is not None and wa[1].rstrip("*") != prev:
            raise ValueError(f"{w} takes {wa[1].rstrip('*')}, the layer before outputs {prev}")
        prev = wa[0]
        layers.append((w, b))
    return layers


def to_nfn(x: Mapping[str, torch.Tensor], space: ModuleType | Spec | Layers):
    """``{tensor: [B, C, *axes]}`` -> NFN ``WeightSpaceFeatures`` (same tensors)."""
    layers = space if isinstance(space, list) else nfn_layers(space)
    names = {n for pair in layers for n in pair}
    if set(x) != names:
        raise ValueError(f"to_nfn: the dict has tensors {sorted(x)}, the layers {sorted(names)}")
    weights = tuple(x[w] for w, _ in layers)
    biases = tuple(x[b] for _, b in layers)
    for (w, b), wt, bt in zip(layers, weights, biases, strict=True):
        if wt.dim() not in (4, 6) or bt.dim() != 3 or wt.shape[:3] != bt.shape:
            raise ValueError(
                f"to_nfn: {w} {list(wt.shape)} / {b} {list(bt.shape)}: expected "
                "[B, C, out, in(, kh, kw)] and [B, C, out]"
            )
    try:
        from nfn.common import WeightSpaceFeatures
    except ImportError:
        return Features(weights, biases)
    return WeightSpaceFeatures(weights, biases)


def from_nfn(features, space: ModuleType | Spec | Layers) -> dict[str, torch.Tensor]:
    """NFN ``WeightSpaceFeatures`` (or :class:`Features`) -> ``{tensor: [B, C, *axes]}``."""
    layers = space if isinstance(space, list) else nfn_layers(space)
    weights, biases = tuple(features.weights), tuple(features.biases)
    if len(weights) != len(layers) or len(biases) != len(layers):
        raise ValueError(
            f"from_nfn: {len(weights)} weights and {len(biases)} biases for {len(layers)} layers"
        )
    out = {}
    for (w, b), wt, bt in zip(layers, weights, biases, strict=True):
        out[w], out[b] = wt, bt
    return out
