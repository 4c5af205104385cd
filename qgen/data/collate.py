"""Batching weight-space items: ``[(weights, target), ...]`` -> ``(batch_weights, targets)``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

__all__ = ["Item", "Weights", "collate", "stack_weights"]

Weights = dict[str, torch.Tensor]
#: one network: ``{tensor: Tensor[1, *axes]}`` and its target (None when there is none)
Item = tuple[Weights, object]


def stack_weights(items: Sequence[Mapping[str, torch.Tensor]]) -> Weights:
    """``{tensor: [batch, 1, *axes]}`` from one-network dicts ``{tensor: [1, *axes]}``.

    Every item must have the same tensor names and, per tensor, the same shape (one
    architecture per batch); a mismatch names the tensor and the items that differ.
    """
    if not items:
        raise ValueError("collate: empty batch")
    names = list(items[0])
    out = {}
    for i, item in enumerate(items[1:], start=1):
        if list(item) != names:
            raise ValueError(
                f"collate: item {i} has tensors {sorted(item)}, item 0 has {sorted(names)}"
            )
    for name in names:
        shapes = {tuple(item[name].shape) for item in items}
        if len(shapes) != 1:
            raise ValueError(
                f"collate: tensor {name} has shapes {sorted(shapes)} within one batch; "
                "batch networks of one architecture only (group a zoo by shape first)"
            )
        out[name] = torch.stack([item[name] for item in items])
    return out


def _stack_targets(targets: list[object]) -> object:
    if all(t is None for t in targets):
        return None
    if any(t is None for t in targets):
        raise ValueError("collate: some items have a target and some have none")
    if all(isinstance(t, torch.Tensor) for t in targets):
        return torch.stack(targets)  # type: ignore[arg-type]
    return torch.tensor(targets)


def collate(items: Sequence[Item]) -> tuple[Weights, object]:
    """A DataLoader ``collate_fn``: weights stacked to ``{tensor: [batch, 1, *axes]}``
    (the generated layers' input), targets stacked to ``[batch, ...]`` (or None)."""
    return stack_weights([w for w, _ in items]), _stack_targets([t for _, t in items])
