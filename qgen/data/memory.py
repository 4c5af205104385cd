"""Weights already in memory (e.g. the zoo study's tensors) as a weight-space dataset."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.utils.data import Dataset

from qgen.data.collate import Item

__all__ = ["InMemoryWeights"]


class InMemoryWeights(Dataset):
    """Items ``({tensor: x[tensor][i]}, y[i])`` of ``x = {tensor: [n, 1, *axes]}``."""

    def __init__(self, x: Mapping[str, torch.Tensor], y: torch.Tensor | None = None) -> None:
        sizes = {k: v.shape[0] for k, v in x.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors hold different numbers of networks: {sizes}")
        bad = [k for k, v in x.items() if v.dim() < 2 or v.shape[1] != 1]
        if bad:
            raise ValueError(f"tensors {bad}: expected [networks, 1, *axes]")
        self.x, self.y = dict(x), y
        self.n = next(iter(sizes.values()))
        if y is not None and len(y) != self.n:
            raise ValueError(f"{len(y)} targets for {self.n} networks")

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Item:
        return {k: v[index] for k, v in self.x.items()}, None if self.y is None else self.y[index]
