"""Weights in and out: batches of state_dicts <-> the generated layers' input dicts.

A :class:`WeightSpace` pairs a spec with where each of its tensors lives in a model's
``state_dict``. ``to_weights`` stacks a batch of state_dicts of one architecture into
``{tensor: Tensor[batch, 1, *axes]}`` (the layout generated layers take);
``to_state_dicts`` turns such a dict (one channel) back into state_dicts, copying every
entry that is not part of the weight space (buffers such as BatchNorm's step counter)
from a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from qgen.spec import Spec

__all__ = ["Source", "WeightSpace"]


@dataclass(frozen=True)
class Source:
    """Where a spec tensor lives: a state_dict key, optionally rows ``[start, stop)`` of it
    (and ``index``: ``(dim, start, stop)`` ranges along other dims) reshaped to ``shape``
    (e.g. the query block of a packed ``in_proj_weight``)."""

    key: str
    rows: tuple[int, int] | None = None
    shape: tuple[int, ...] | None = None
    index: tuple[tuple[int, int, int], ...] = ()

    def _block(self, t: torch.Tensor) -> torch.Tensor:
        if self.rows is not None:
            t = t[self.rows[0] : self.rows[1]]
        for dim, start, stop in self.index:
            t = t.narrow(dim, start, stop - start)
        return t

    def read(self, state: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = self._block(state[self.key])
        return t.reshape(self.shape) if self.shape is not None else t

    def write(self, state: dict[str, torch.Tensor], value: torch.Tensor) -> None:
        block = self._block(state[self.key])
        block.copy_(value.reshape(block.shape))


class WeightSpace:
    """A spec together with the location of each of its tensors in a state_dict."""

    def __init__(self, spec: Spec, sources: Mapping[str, Source]) -> None:
        missing = [t.name for t in spec.tensors if t.name not in sources]
        if missing:
            raise ValueError(f"no state_dict source for tensors {missing}")
        self.spec = spec
        self.sources = dict(sources)

    def to_weights(self, states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """``{tensor: [batch, 1, *axes]}`` from state_dicts of one architecture."""
        out = {}
        for t in self.spec.tensors:
            parts = [self.sources[t.name].read(s).detach() for s in states]
            out[t.name] = torch.stack(parts)[:, None]
        return out

    def to_state_dicts(
        self, weights: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor]
    ) -> list[dict[str, torch.Tensor]]:
        """State_dicts (one per batch item) with the weight-space entries from ``weights``
        (which must have one channel) and everything else cloned from ``template``."""
        batch = {v.shape[0] for v in weights.values()}
        if len(batch) != 1 or any(v.shape[1] != 1 for v in weights.values()):
            raise ValueError("weights must be [batch, 1, *axes] with one batch size")
        states = []
        for i in range(batch.pop()):
            state = {k: v.detach().clone() for k, v in template.items()}
            for name, source in self.sources.items():
                source.write(state, weights[name][i, 0])
            states.append(state)
        return states
