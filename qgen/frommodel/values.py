"""The values flowing through the exported graph while it is read.

A tensor is a :class:`TV`: its shape and, per axis, the atoms of
:mod:`qgen.frommodel.axes` saying which index types the axis is; ``param`` when it is
computed from parameters and constants alone (a weight, ``gamma.view(1, -1, 1, 1)``),
not from the input. Multi-output operations give tuples of values; Python numbers,
shapes, ``None`` stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TV", "has_tensor", "tensors_in"]


@dataclass(frozen=True)
class TV:
    """A tensor of ``shape`` whose axis ``i`` is the product of the atoms ``dims[i]``."""

    dims: tuple
    shape: tuple[int, ...]
    param: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)


def tensors_in(v) -> list[TV]:
    """The tensors in a value (a tensor, or a tuple or list of values)."""
    if isinstance(v, TV):
        return [v]
    if isinstance(v, tuple | list):
        return [t for x in v for t in tensors_in(x)]
    if isinstance(v, dict):
        return [t for x in v.values() for t in tensors_in(x)]
    return []


def has_tensor(v) -> bool:
    return bool(tensors_in(v))
