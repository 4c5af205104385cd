"""Architecture presets: expansion, counts, and errors."""

from __future__ import annotations

import pytest

from qgen import SpecError, parse_spec, solve
from qgen.cli.main import main
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


def transformer_forward(w, x, depth):
    """The network the transformer preset describes, written directly on its tensors."""
    import torch
    from torch.nn import functional as F

    h = x @ w["W_in"].T + w["b_in"]
    for i in range(1, depth + 1):
        z = F.layer_norm(h, h.shape[-1:], w[f"ln{i}a_w"], w[f"ln{i}a_b"])
        q = torch.einsum("hkd,btd->bhtk", w[f"Wq{i}"], z) + w[f"bq{i}"][:, None]
        k = torch.einsum("hkd,btd->bhtk", w[f"Wk{i}"], z) + w[f"bk{i}"][:, None]
        v = torch.einsum("hvd,btd->bhtv", w[f"Wv{i}"], z) + w[f"bv{i}"][:, None]
        att = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1) @ v
        h = h + torch.einsum("bhtv,ehv->bte", att, w[f"Wo{i}"]) + w[f"bo{i}"]
        z = F.layer_norm(h, h.shape[-1:], w[f"ln{i}b_w"], w[f"ln{i}b_b"])
        h = h + F.gelu(z @ w[f"W1_{i}"].T + w[f"b1_{i}"]) @ w[f"W2_{i}"].T + w[f"b2_{i}"]
    return h @ w["W_out"].T + w["b_out"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transformer_preset_symmetry_keeps_the_function(seed):
    import torch

    import qgen

    depth = 2
    spec = parse_spec(
        f"name: t\narch: transformer\nd_model: 6\nheads: 3\nd_head: 2\nmlp: 5\ndepth: {depth}\n"
        "inputs: 4\noutputs: 3\n"
    )
    module = qgen.compile(spec)
    gen = torch.Generator().manual_seed(seed)
    sizes = {t.name: t.size for t in spec.types.values()}
    w = {
        t.name: torch.randn(1, 1, *(sizes[a.type] for a in t.axes), generator=gen).double()
        for t in spec.tensors
    }
    g = module.sample_group_element(sizes, gen)
    x = torch.randn(2, 5, 4, generator=gen).double()
    plain = {k: v[0, 0] for k, v in w.items()}
    moved = {k: v[0, 0] for k, v in module.act(g, w).items()}
    torch.testing.assert_close(
        transformer_forward(moved, x, depth), transformer_forward(plain, x, depth)
    )
    # an element outside the group: scaling one stream channel breaks LayerNorm
    index, scale = g["r"]
    g["r"] = (index, scale * torch.linspace(0.5, 2.0, scale.shape[-1]).double())
    broken = {k: v[0, 0] for k, v in module.act(g, w).items()}
    diff = transformer_forward(broken, x, depth) - transformer_forward(plain, x, depth)
    assert diff.abs().max() > 1e-3


def test_transformer_preset_counts_agree_with_verify():
    from qgen.solver.verify import size_levels, verify

    spec = parse_spec(
        "name: t\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 3\ndepth: 1\n"
    )
    basis = solve(spec)
    report = verify(basis, size_levels(basis, {}, up_to=2))
    assert report.ok and len(report.checks) > 0


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "transformer"])
def test_unknown_activation_is_an_error_naming_the_known_ones(arch):
    """A typo must not silently become perm (it would drop a symmetry the user declared)."""
    options = {
        "mlp": "widths: [2, 3, 2]",
        "cnn": "channels: [1, 4]\nclasses: 3",
        "resnet": "in_channels: 3\nwidth: 4\nblocks: 1\nclasses: 5",
        "transformer": "d_model: 4\nheads: 1\nd_head: 2\nmlp: 4\ndepth: 1",
    }[arch]
    text = f"name: m\narch: {arch}\n{options}\nactivation: rleu\n"
    with pytest.raises(SpecError) as exc:
        parse_spec(text, source="p.yaml")
    message = str(exc.value)
    assert message.startswith("p.yaml:") and "unknown activation 'rleu'" in message
    assert "relu" in message and "tanh" in message and "group:" in message


def test_group_option_overrides_the_activation():
    text = "name: m\narch: mlp\nwidths: [2, 3, 2]\nactivation: my_act\ngroup: signed\n"
    assert parse_spec(text).types["h1"].kind == "signed"
    with pytest.raises(SpecError, match="'group' must be one of perm, signed"):
        parse_spec(text.replace("signed", "bogus"))
