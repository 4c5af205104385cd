"""Registry of architecture presets (``arch:`` in a spec).

Each preset lives in its own module as a :class:`~qgen.spec.presets.base.Preset` and is
registered here by name; the spec parser expands it into explicit types and tensors.
"""

from __future__ import annotations

from qgen.registry import Registry
from qgen.spec.presets.base import ACTIVATION_GROUPS, HIDDEN_KINDS, Expansion, Params, Preset
from qgen.spec.presets.cnn import CNN
from qgen.spec.presets.mlp import MLP
from qgen.spec.presets.resnet import ResNet
from qgen.spec.presets.transformer import Transformer

__all__ = [
    "ACTIVATION_GROUPS",
    "Expansion",
    "Params",
    "Preset",
    "HIDDEN_KINDS",
    "get_preset",
    "preset_names",
    "register_preset",
]

_PRESETS: Registry[Preset] = Registry("preset")


def register_preset(preset: Preset) -> Preset:
    """Make ``preset`` available to specs as ``arch: <preset.name>``."""
    return _PRESETS.register(preset)


def get_preset(name: str) -> Preset:
    return _PRESETS.get(name)


def preset_names() -> tuple[str, ...]:
    return _PRESETS.names()


for _preset in (MLP(), CNN(), ResNet(), Transformer()):
    register_preset(_preset)
