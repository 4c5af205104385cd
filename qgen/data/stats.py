"""Streaming per-tensor statistics of a weight-space dataset, as plain facts.

One pass over batches ``{tensor: [batch, channels, *axes]}``, in float64, merging each
batch into running per-entry means and sums of squared deviations (Chan et al.'s
parallel update), so a zoo larger than memory is summarized exactly once.

Which of these a normalizer may use depends on the group, and is not decided here:

* dividing a whole tensor by one positive number (e.g. its ``rms``) commutes with every
  linear group action, so it keeps any symmetry;
* subtracting one number (``mean``) from every entry commutes with permutations of
  entries, but not with scalings or sign flips (``g(x - m) != g(x) - m``);
* entry-wise ``entry_mean`` / ``entry_std`` (NFN's and DWSNets' normalization) are safe
  only where they are constant along every axis the group moves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from qgen.data.collate import collate

__all__ = ["TensorStatistics", "weight_statistics"]


@dataclass(frozen=True)
class TensorStatistics:
    """Statistics of one tensor over ``count`` networks.

    ``mean``, ``rms = sqrt(E[x^2])`` and ``std = sqrt(E[x^2] - E[x]^2)`` (population)
    pool every entry of every network; ``entry_mean`` and ``entry_std`` (shape
    ``[channels, *axes]``) are per entry, over networks (population std).
    """

    count: int
    mean: float
    rms: float
    std: float
    entry_mean: torch.Tensor
    entry_std: torch.Tensor


class _Running:
    def __init__(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def update(self, v: torch.Tensor) -> None:
        v = v.detach().to(torch.float64)
        b = v.shape[0]
        mean_b = v.mean(0)
        m2_b = (v - mean_b).square().sum(0)
        if self.mean is None:
            self.n, self.mean, self.m2 = b, mean_b, m2_b
            return
        if mean_b.shape != self.mean.shape:
            raise ValueError(f"shape {tuple(mean_b.shape)} after {tuple(self.mean.shape)}")
        n = self.n + b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (b / n)
        self.m2 = self.m2 + m2_b + delta.square() * (self.n * b / n)
        self.n = n

    def result(self) -> TensorStatistics:
        assert self.mean is not None and self.m2 is not None
        var_e = self.m2 / self.n
        mean = float(self.mean.mean())
        # law of total variance over entries: E[var_e] + Var[mean_e]
        var = float(var_e.mean() + (self.mean - mean).square().mean())
        return TensorStatistics(
            count=self.n,
            mean=mean,
            rms=math.sqrt(var + mean * mean),
            std=math.sqrt(max(var, 0.0)),
            entry_mean=self.mean,
            entry_std=var_e.sqrt(),
        )


def weight_statistics(
    data: Dataset | Iterable[object], batch_size: int = 256, num_workers: int = 0
) -> dict[str, TensorStatistics]:
    """``{tensor: TensorStatistics}`` over ``data``.

    ``data``: a weight-space Dataset (read through a DataLoader with :func:`collate`) or
    any iterable of batches, each ``{tensor: [batch, channels, *axes]}`` or a
    ``(weights, target)`` pair.
    """
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
    running: dict[str, _Running] = {}
    for batch in data:
        weights = batch[0] if isinstance(batch, tuple | list) else batch
        if not isinstance(weights, Mapping):
            raise TypeError(f"weight_statistics: a batch is {type(weights).__name__}, not a dict")
        for name, v in weights.items():
            running.setdefault(name, _Running()).update(v)
    if not running:
        raise ValueError("weight_statistics: no data")
    return {name: r.result() for name, r in running.items()}
