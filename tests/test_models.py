"""Specs from real torch models, state_dict adapters, and the functional identity test:
acting with a random element of the declared group on a real model's weights must leave
its function unchanged, and an element outside the group must not."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import qgen
from qgen import parse_spec, solve
from qgen.frommodel.reader import UnsupportedModel, spec_from_module, weight_space_from_module

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "linear": nn.Identity}


def mlp(widths, act="relu"):
    layers = []
    for i in range(1, len(widths)):
        layers.append(nn.Linear(widths[i - 1], widths[i]))
        if i < len(widths) - 1:
            layers.append(ACTS[act]())
    return nn.Sequential(*layers).double()


def cnn(channels, classes, act="relu"):
    layers = []
    for i in range(1, len(channels)):
        layers += [nn.Conv2d(channels[i - 1], channels[i], 3, padding=1), ACTS[act]()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], classes)]
    return nn.Sequential(*layers).double()


class Block(nn.Module):
    def __init__(self, width, hidden, norm):
        super().__init__()
        self.norm = nn.LayerNorm(width) if norm else None
        self.a = nn.Linear(width, hidden)
        self.b = nn.Linear(hidden, width)

    def forward(self, h):
        z = self.norm(h) if self.norm is not None else h
        return h + self.b(torch.relu(self.a(z)))


class ResMLP(nn.Module):
    """A residual MLP (the resnet structure with linear layers)."""

    def __init__(self, inputs, width, hidden, blocks, classes, norm):
        super().__init__()
        self.stem = nn.Linear(inputs, width)
        self.blocks = nn.Sequential(*(Block(width, hidden, norm) for _ in range(blocks)))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.blocks(torch.relu(self.stem(x))))


class ConvBlock(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.a = nn.Conv2d(width, hidden, 3, padding=1)
        self.b = nn.Conv2d(hidden, width, 3, padding=1)

    def forward(self, h):
        return h + self.b(torch.relu(self.a(h)))


class ResNet(nn.Module):
    """The structure of the resnet preset (norm: none)."""

    def __init__(self, cin=3, width=4, hidden=5, blocks=2, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(cin, width, 3, padding=1)
        self.blocks = nn.Sequential(*(ConvBlock(width, hidden) for _ in range(blocks)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        h = self.blocks(torch.relu(self.stem(x)))
        return self.head(torch.flatten(self.pool(h), 1))


def check_symmetry(model, make_input, seed, negative_scale=False):
    ws = weight_space_from_module(model)
    module = qgen.compile(ws.spec)
    state = model.state_dict()
    theta = ws.to_weights([state])
    sizes = module.sizes_of(theta)
    gen = torch.Generator().manual_seed(seed)
    g = module.sample_group_element(sizes, gen)
    moved = copy.deepcopy(model)
    moved.load_state_dict(ws.to_state_dicts(module.act(g, theta), state)[0])
    inputs = make_input(gen)
    with torch.no_grad():
        torch.testing.assert_close(moved(inputs), model(inputs), rtol=1e-9, atol=1e-9)
    return ws, module, theta, sizes


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.integers(1, 6), min_size=3, max_size=5),
    st.sampled_from(list(ACTS)),
    st.integers(0, 99),
)
def test_mlp_function_is_kept_under_its_group(widths, act, seed):
    model = mlp(widths, act)
    check_symmetry(model, lambda g: torch.randn(5, widths[0], generator=g).double(), seed)


@settings(max_examples=6, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=2, max_size=4),
    st.sampled_from(["relu", "tanh"]),
    st.integers(0, 99),
)
def test_cnn_function_is_kept_under_its_group(channels, act, seed):
    model = cnn([2, *channels], 3, act)
    check_symmetry(model, lambda g: torch.randn(2, 2, 6, 6, generator=g).double(), seed)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_function_is_kept_and_stream_is_tied(norm, seed):
    model = ResMLP(3, 5, 7, 2, 2, norm).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    ws, *_ = check_symmetry(model, lambda g: torch.randn(4, 3, generator=g).double(), seed)
    stream = ws.spec.tensor("stem_weight").axes[0].type
    assert ws.spec.tensor("blocks_1_b_weight").axes[0].type == stream
    assert ws.spec.types[stream].kind == ("perm" if norm else "scaled")


@pytest.mark.parametrize("seed", [0, 1])
def test_resnet_function_is_kept(seed):
    torch.manual_seed(seed)
    model = ResNet().double()
    check_symmetry(model, lambda g: torch.randn(2, 3, 5, 5, generator=g).double(), seed)


def test_a_negative_scale_on_a_relu_layer_changes_the_function():
    model = mlp([3, 4, 4, 2], "relu")
    ws = weight_space_from_module(model)
    module = qgen.compile(ws.spec)
    state = model.state_dict()
    theta = ws.to_weights([state])
    g = module.sample_group_element(module.sizes_of(theta), torch.Generator().manual_seed(0))
    index, scale = g["h1"]
    g["h1"] = (index, -scale)  # outside the group: ReLU is not odd
    moved = copy.deepcopy(model)
    moved.load_state_dict(ws.to_state_dicts(module.act(g, theta), state)[0])
    x = torch.randn(8, 3).double()
    assert (moved(x) - model(x)).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("model", "preset"),
    [
        (
            lambda: mlp([2, 3, 4, 3, 2], "relu"),
            "arch: mlp\nwidths: [2, 3, 4, 3, 2]\nactivation: relu",
        ),
        (
            lambda: mlp([2, 3, 4, 3, 2], "gelu"),
            "arch: mlp\nwidths: [2, 3, 4, 3, 2]\nactivation: gelu",
        ),
        (
            lambda: mlp([2, 3, 4, 3, 2], "tanh"),
            "arch: mlp\nwidths: [2, 3, 4, 3, 2]\nactivation: tanh",
        ),
        (lambda: mlp([2, 3, 2], "linear"), "arch: mlp\nwidths: [2, 3, 2]\nactivation: linear"),
        (
            lambda: cnn([1, 4, 4], 10),
            "arch: cnn\nchannels: [1, 4, 4]\nkernel: 3\nclasses: 10\nactivation: relu",
        ),
        (
            lambda: ResNet().double(),
            "arch: resnet\nin_channels: 3\nwidth: 4\nhidden: 5\nblocks: 2\nclasses: 10",
        ),
    ],
)
def test_presets_match_the_models_they_describe(model, preset):
    """A preset and the torch model it describes give the same counts, block by block."""
    from_model = solve(spec_from_module(model())).counts()
    from_preset = solve(parse_spec("name: p\n" + preset)).counts()
    as_rows = lambda c: [list(row.values()) for row in c["equivariant"].values()]  # noqa: E731
    assert as_rows(from_model) == as_rows(from_preset)
    assert from_model["total"] == from_preset["total"]


def test_state_dict_round_trip_is_exact():
    models = [cnn([2, 3, 4], 5) for _ in range(3)]
    ws = weight_space_from_module(models[0])
    states = [m.state_dict() for m in models]
    weights = ws.to_weights(states)
    assert weights["p0_weight"].shape == (3, 1, 3, 2, 3, 3)
    back = ws.to_state_dicts(weights, states[0])
    for s, b in zip(states, back, strict=True):
        assert s.keys() == b.keys()
        assert all(torch.equal(s[k], b[k]) for k in s)


def test_unsupported_modules_are_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3)
            self.rnn = nn.GRU(3, 3)

        def forward(self, x):
            return self.rnn(self.lin(x))

    with pytest.raises(UnsupportedModel, match="module 'rnn' \\(GRU\\)"):
        spec_from_module(Odd())


def test_cli_spec_from_model(tmp_path):
    import subprocess
    import sys

    (tmp_path / "zoo_models.py").write_text(
        "from torch import nn\n"
        "def small():\n    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))\n"
        "def bad():\n    return nn.Sequential(nn.Linear(4, 8), nn.GRU(8, 3))\n"
    )
    ok = subprocess.run(
        [sys.executable, "-m", "qgen", "spec", "--from-model", "zoo_models:small"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    spec = parse_spec(ok.stdout)
    assert spec.types["h1"].kind == "scaled" and spec.types["y"].size == 3
    bad = subprocess.run(
        [sys.executable, "-m", "qgen", "spec", "--from-model", "zoo_models:bad"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "module '1' (GRU) is not supported" in bad.stderr


class AttentionBlock(nn.Module):
    def __init__(self, d, heads, mlp):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, mlp)
        self.fc2 = nn.Linear(mlp, d)

    def forward(self, x):
        z = self.ln1(x)
        x = x + self.attn(z, z, z, need_weights=False)[0]
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nn.Module):
    """The structure of the transformer preset, with torch's MultiheadAttention."""

    def __init__(self, inputs=4, d=6, heads=3, mlp=5, depth=2, outputs=3):
        super().__init__()
        self.inp = nn.Linear(inputs, d)
        self.blocks = nn.Sequential(*(AttentionBlock(d, heads, mlp) for _ in range(depth)))
        self.out = nn.Linear(d, outputs)

    def forward(self, x):
        return self.out(self.blocks(self.inp(x)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transformer_with_multihead_attention_keeps_its_function(seed):
    torch.manual_seed(seed)
    model = TinyTransformer().double().eval()
    ws, *_ = check_symmetry(model, lambda g: torch.randn(2, 5, 4, generator=g).double(), seed)
    head = ws.spec.tensor("blocks_0_attn_Wq").axes[0].type
    dk = ws.spec.tensor("blocks_0_attn_Wq").axes[1].type
    assert ws.spec.types[dk].within == head and ws.spec.types[dk].kind == "gl"


def test_transformer_preset_matches_a_torch_transformer():
    from_model = solve(spec_from_module(TinyTransformer().eval())).counts()
    preset = (
        "arch: transformer\nd_model: 6\nheads: 3\nd_head: 2\nmlp: 5\ndepth: 2\n"
        "inputs: 4\noutputs: 3"
    )
    from_preset = solve(parse_spec("name: p\n" + preset)).counts()
    rows = lambda c: [list(row.values()) for row in c["equivariant"].values()]  # noqa: E731
    assert rows(from_model) == rows(from_preset)


def test_attention_state_dict_round_trip_is_exact():
    models = [TinyTransformer().double() for _ in range(2)]
    ws = weight_space_from_module(models[0].eval())
    states = [m.state_dict() for m in models]
    back = ws.to_state_dicts(ws.to_weights(states), states[0])
    for s, b in zip(states, back, strict=True):
        assert all(torch.equal(s[k], b[k]) for k in s)
