"""Architecture presets: expansion, counts, and errors."""

from __future__ import annotations

import pytest

from qgen import SpecError, parse_spec, solve
from qgen.cli import main
from qgen.spec import dump_spec


def mlp(widths, activation="relu", io="fixed"):
    return parse_spec(
        f"name: m\narch: mlp\nwidths: {list(widths)}\nactivation: {activation}\nio: {io}\n"
    )


@pytest.mark.parametrize(("activation", "total"), [("gelu", 164), ("relu", 21), ("tanh", 25)])
def test_mlp_preset_reference_counts(activation, total):
    assert solve(mlp([2, 3, 4, 3, 2], activation)).counts()["total"]["equivariant"] == total


@pytest.mark.parametrize("widths", [[5, 5, 5, 5, 5], [6, 9, 7, 8, 5]])
def test_mlp_preset_np_setting(widths):
    counts = solve(mlp(widths, "gelu", "perm")).counts()
    assert counts["total"]["equivariant"] == 100


def test_activation_groups():
    for activation, kind in [
        ("relu", "scaled"),
        ("leaky_relu", "scaled"),
        ("tanh", "signed"),
        ("sin", "signed"),
        ("linear", "gl"),
        ("gelu", "perm"),
        ("sigmoid", "perm"),
    ]:
        assert mlp([2, 3, 2], activation).types["h1"].kind == kind


def test_expand_round_trips(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: c\narch: cnn\nchannels: [1, 4, 4]\nkernel: [3, 5]\nclasses: 10\n")
    assert main(["expand", str(path)]) == 0
    text = capsys.readouterr().out
    spec = parse_spec(text)
    assert [str(a) for a in spec.tensor("K2").axes] == ["c2", "c1*", "k5", "k5"]
    assert dump_spec(spec) == text


def test_resnet_ties_the_stream_and_layernorm_restricts_it():
    base = "name: r\narch: resnet\nin_channels: 3\nwidth: 4\nblocks: 2\nclasses: 5\n"
    plain = parse_spec(base)
    normed = parse_spec(base + "norm: layer\n")
    assert plain.types["r"].kind == "scaled" and normed.types["r"].kind == "perm"
    assert normed.types["m1"].kind == "scaled"
    stream = [t.name for t in normed.tensors if any(a.type == "r" for a in t.axes)]
    assert {"K0", "K1b", "K2b", "K1a", "ln1_w", "ln2_b", "W"} <= set(stream)


def test_explicit_types_and_tensors_extend_a_preset():
    spec = parse_spec(
        "name: m\narch: mlp\nwidths: [2, 3, 2]\nactivation: relu\n"
        "types: {h1: {group: perm}}\ntensors: {extra: [h1, h1*]}\n"
    )
    assert spec.types["h1"].kind == "perm"
    assert spec.tensors[-1].name == "extra"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("name: m\narch: mlpp\n", 2, "unknown arch 'mlpp'"),
        ("name: m\narch: mlp\n", 2, "needs 'widths'"),
        ("name: m\narch: mlp\nwidths: [2]\n", 3, "at least 2 positive integers"),
        ("name: m\narch: mlp\nwidths: [2, 0, 1]\n", 3, "positive integers"),
        ("name: m\narch: mlp\nwidths: [2, 1]\nio: both\n", 4, "one of fixed, perm"),
        ("name: m\narch: mlp\nwidths: [2, 1]\ndepth: 3\n", 4, "unknown option 'depth'"),
        ("name: m\narch: cnn\nchannels: [1, 2]\nkernel: [3, 3]\nclasses: 2\n", 4, "list of 1"),
    ],
)
def test_preset_errors_name_the_place(text, line, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(text, source="p.yaml")
    assert fragment in info.value.message and info.value.line == line
