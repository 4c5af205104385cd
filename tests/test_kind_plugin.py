"""A new group kind is one module plugged into the registry: parser, solver, code
generation (its sampler copied from its own module) and generated layers all take it."""

from __future__ import annotations

import pytest
import torch

import qgen
from qgen.spec import parse_spec

SPEC = """
name: plugin_{kind}
types:
  x: {{size: 2}}
  h: {{group: {kind}}}
  y: {{size: 1}}
tensors:
  W1: [h, x*]
  b1: [h]
  W2: [y, h*]
  b2: [y]
"""


@pytest.fixture
def flip_kind():
    """The plugin's kind, registered for one test (other tests list the built-in kinds)."""
    from kindplugin import flip

    from qgen import kinds

    flip.install()
    yield flip.KIND
    kinds._KINDS._items.pop(flip.KIND.name)


def test_a_kind_from_one_module_builds_equivariant_layers(flip_kind):
    spec = parse_spec(SPEC.format(kind="flip"))
    reference = parse_spec(SPEC.format(kind="signed"))
    assert qgen.solve(spec).coupled_counts() == qgen.solve(reference).coupled_counts()
    module = qgen.compile(spec)
    assert "def _sample_flip(" in module.__source__  # copied from the plugin module
    assert module.BLOCK_COUNTS == qgen.compile(reference).BLOCK_COUNTS
    layer = module.EquivariantLayer(2, 3).double()
    g = torch.Generator().manual_seed(0)
    sizes = {"x": 2, "h": 5, "y": 1}
    x = {
        t: torch.randn(4, 2, *(sizes[a.rstrip("*")] for a in axes), generator=g).double()
        for t, axes in module.TENSORS.items()
    }
    element = module.sample_group_element(module.sizes_of(x), g)
    moved = layer(module.act(element, x))
    expected = module.act(element, layer(x))
    for name in moved:
        torch.testing.assert_close(moved[name], expected[name], rtol=1e-10, atol=1e-10)
