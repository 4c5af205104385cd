"""The generated layer as a torch module: parameter names, old state dicts, factory
arguments, contiguous outputs, and how it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import qgen
from qgen.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["mlp_relu", "cnn_small", "inr_sine_d4", "presets/transformer"]


def _module(name):
    return qgen.compile(load_spec(ROOT / "examples" / f"{name}.yaml"))


def _inputs(module, spec_sizes, batch=3, channels=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = {
        name: [spec_sizes[a.rstrip("*")] for a in axes] for name, axes in module.TENSORS.items()
    }
    return {
        n: torch.randn(batch, channels, *s, generator=g, dtype=torch.float64)
        for n, s in shapes.items()
    }


def _sizes(module):
    return {t: (fixed or 3) for t, (_, fixed) in module.TYPES.items()}


@pytest.mark.parametrize("name", SPECS)
def test_parameters_are_keyed_by_stable_names_and_v1_state_dicts_load(name):
    module = _module(name)
    layer = module.EquivariantLayer(2, 3).double()
    state = layer.state_dict()
    assert set(layer.mixes) == set(module._MIXES)
    assert all(k.startswith("mixes.") for k in state)
    # the same parameters under the names of version 1 (qgen 0.1): weight_<group>
    new_to_old = {new: old for old, new in module._RENAMED.items()}
    old_state = type(state)()
    for key, value in state.items():
        stem = next(n for n in new_to_old if key == n or key.startswith(n + "."))
        old_state[new_to_old[stem] + key[len(stem) :]] = value
    old_state._metadata = {"": {"version": 1}}
    fresh = module.EquivariantLayer(2, 3).double()
    fresh.load_state_dict(old_state)
    x = _inputs(module, _sizes(module))
    for t, y in layer(x).items():
        torch.testing.assert_close(fresh(x)[t], y, rtol=0, atol=0)


def test_keys_do_not_depend_on_the_order_groups_are_formed():
    # the same spec with its tensors declared in another order: the same mixes, same keys
    spec = load_spec(ROOT / "examples" / "mlp_relu.yaml")
    reordered = qgen.parse_spec(
        "name: mlp_relu\ntypes:\n"
        + "".join(
            f"  {t.name}: {{size: {t.size}}}\n" if t.fixed else f"  {t.name}: {{group: {t.kind}}}\n"
            for t in reversed(list(spec.types.values()))
        )
        + "tensors:\n"
        + "".join(f"  {t.name}: [{', '.join(map(str, t.axes))}]\n" for t in reversed(spec.tensors))
    )
    assert set(qgen.compile(reordered)._MIXES) == set(qgen.compile(spec)._MIXES)


def test_factory_arguments_create_parameters_in_that_dtype():
    module = _module("inr_sine_d4")
    layer = module.EquivariantLayer(2, 3, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in layer.parameters()} == {torch.float64}
    head = module.InvariantHead(2, 4, dtype=torch.float64)
    assert {p.dtype for p in head.parameters()} == {torch.float64}
    x = _inputs(module, _sizes(module), channels=2)
    assert layer(x)["W1"].dtype == torch.float64


@pytest.mark.parametrize("contiguous", [True, False])
def test_outputs_are_contiguous_unless_the_caller_opts_out(contiguous):
    module = _module("cnn_small")  # its kernels are mixed in a moved layout
    layer = module.EquivariantLayer(2, 3, contiguous=contiguous).double()
    y = layer(_inputs(module, _sizes(module)))
    if contiguous:
        assert all(t.is_contiguous() for t in y.values())
    else:
        assert not all(t.is_contiguous() for t in y.values())  # the copies it saves


def test_layers_print_what_they_hold():
    module = _module("mlp_relu")
    text = repr(module.EquivariantLayer(2, 3))
    assert "maps=21 per channel pair" in text
    assert "mixes" in text and "mix=" in text and "in_channels=2" in text


def test_metanetwork_takes_device_and_dtype_and_keeps_escnn_bases_exact():
    module = _module("inr_sine_d4")
    net = module.MetaNetwork(1, 4, 2, 3, dtype=torch.float64, device="cpu")
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    bases = [b for name, b in net.named_buffers() if "basis_" in name]
    assert bases and {b.dtype for b in bases} == {torch.float64}
    x = _inputs(module, _sizes(module), channels=1)
    assert net(x).dtype == torch.float64 and net(x).shape == (3, 3)
    single = module.MetaNetwork(1, 4, 2, 3, dtype=torch.float32)
    assert {p.dtype for p in single.parameters()} == {torch.float32}
    assert {b.dtype for n, b in single.named_buffers() if "basis_" in n} == {torch.float64}


def test_generated_bias_test_tells_biases_from_tensors_named_bias(tmp_path, monkeypatch):
    # tensors named like a model's state dict ("c1_bias") appear in mix keys: the
    # generated test must pick the mixes' own bias parameters, not every name with "bias"
    import importlib
    import sys

    text = """
name: named_bias
types: {x: {size: 2}, h: {group: scaled}, y: {size: 1}}
tensors: {c1_weight: [h, x*], c1_bias: [h], fc_weight: [y, h*], fc_bias: [y]}
"""
    (tmp_path / "spec.yaml").write_text(text)
    qgen.build(tmp_path / "spec.yaml", tmp_path, tests=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("named_bias", "test_named_bias"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    generated = importlib.import_module("test_named_bias")
    assert any("bias" in key for key in generated.space._MIXES)
    generated.test_bias_and_invariants_have_the_solved_dimensions()
