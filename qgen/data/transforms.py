"""Augmentation by random group elements of a generated weight space.

A generated module (``qgen.compile(spec)`` or ``generated/<name>.py``) provides
``sizes_of(x)``, ``sample_group_element(sizes, generator)`` and ``act(g, x)``; acting by a
random ``g`` maps a network to one that computes the same function (for a spec that
describes the network's true symmetry), so it is a label-preserving augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import torch
from torch.utils.data import Dataset

from qgen.data.collate import Item, Weights

__all__ = ["RandomGroupAction", "Transformed"]


class RandomGroupAction:
    """``weights -> act(g, weights)`` for a fresh random ``g`` at each call.

    Called on one network ``{tensor: [1, *axes]}`` (a dataset item's weights). With
    ``generator=None`` torch's global generator is used, which a ``DataLoader`` seeds
    differently in each worker; a fixed ``torch.Generator`` gives a reproducible stream
    (but is copied, hence repeated, across DataLoader workers).
    """

    def __init__(self, space: ModuleType, generator: torch.Generator | None = None) -> None:
        for name in ("sizes_of", "sample_group_element", "act"):
            if not hasattr(space, name):
                raise TypeError(f"{space!r} has no {name}(): pass a generated qgen module")
        self.space = space
        self.generator = generator

    def sample(self, weights: Weights) -> dict[str, object]:
        """A random group element at the sizes of ``weights`` (one network)."""
        sizes = self.space.sizes_of({k: v[None] for k, v in weights.items()})
        return self.space.sample_group_element(sizes, self.generator)

    def __call__(self, weights: Weights) -> Weights:
        return self.space.act(self.sample(weights), weights)

    def batch(self, x: Weights) -> Weights:
        """A batch ``{tensor: [batch, 1, *axes]}``, each network moved by its own ``g``."""
        n = next(iter(x.values())).shape[0]
        parts = [self({k: v[i] for k, v in x.items()}) for i in range(n)]
        return {k: torch.stack([p[k] for p in parts]) for k in x}


class Transformed(Dataset):
    """``dataset`` with ``transform`` applied to each item's weights (targets kept)."""

    def __init__(self, dataset: Dataset, transform: Callable[[Weights], Weights]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Item:
        weights, target = self.dataset[index]
        return self.transform(weights), target
