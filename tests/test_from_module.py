"""``qgen spec --from-model`` on wider models: every derived spec must be a symmetry of
the real network (a random element of its group, acted on the weights and loaded back,
leaves the function unchanged in float64 to 1e-10 relative) and a non-symmetry (an
element just outside the group) must change it; refusals name the user's code."""

from __future__ import annotations

import copy
import inspect
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

import qgen
from qgen.frommodel.reader import UnsupportedModel, spec_from_module, weight_space_from_module
from qgen.kinds.pointwise import POINTWISE, pointwise_kind, register_pointwise

RTOL = 1e-10


def act_and_load(model, ws, module, theta, g):
    moved = copy.deepcopy(model)
    moved.load_state_dict(ws.to_state_dicts(module.act(g, theta), model.state_dict())[0])
    return moved


def relative_change(model, moved, x) -> float:
    with torch.no_grad():
        a, b = model(x), moved(x)
    pairs = [(a[k], b[k]) for k in a] if isinstance(a, dict) else [(a, b)]  # transformers
    return max(((u - v).abs().max() / u.abs().max()).item() for u, v in pairs)


def check_identity(model, x, seed=0, io="fixed", example_input=None):
    """Act with a random group element: the function must stay the same."""
    model = model.double().eval()
    ws = weight_space_from_module(model, io=io, example_input=example_input)
    module = qgen.compile(ws.spec, budget=float("inf"))  # tiny transformers: dense embeddings
    theta = ws.to_weights([model.state_dict()])
    g = module.sample_group_element(module.sizes_of(theta), torch.Generator().manual_seed(seed))
    moved = act_and_load(model, ws, module, theta, g)
    assert relative_change(model, moved, x) < RTOL
    return ws, module, theta, g


def check_outside(model, x, ws, module, theta, g, t, change):
    """Replace the scales of type ``t`` in ``g`` by ``change(scales)``: the element leaves
    the group and the function must change."""
    index, scale = g[t]
    bad = dict(g)
    bad[t] = (index, change(scale))
    moved = act_and_load(model, ws, module, theta, bad)
    assert relative_change(model, moved, x) > 1e-4


def kind_of(ws, tensor: str, axis: int) -> tuple[str, str | None]:
    decl = ws.spec.types[ws.spec.tensor(tensor).axes[axis].type]
    return decl.kind, decl.within


def _env():
    """The environment for ``python -m qgen`` runs: this checkout's qgen first."""
    import os
    from pathlib import Path

    root = str(Path(qgen.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double()


# -- convolutions, pooling ------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_max_pooling_keeps_positive_scalings_not_signs(seed):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 3, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 2),
    )
    x = rand(3, 2, 8, 8, seed=seed)
    ws, *rest = check_identity(model, x, seed)
    assert kind_of(ws, "p0_weight", 0) == ("scaled", None)  # max pool alone: scalings
    assert kind_of(ws, "p2_weight", 0) == ("gl", None)  # average pool: any linear map
    check_outside(model.double(), x, ws, *rest, "h1", lambda s: -s)  # max(-z) = -min(z)


@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv3d])
def test_conv1d_and_conv3d_keep_their_function(conv):
    torch.manual_seed(0)
    pool = nn.AdaptiveAvgPool1d(1) if conv is nn.Conv1d else nn.AdaptiveAvgPool3d(1)
    model = nn.Sequential(
        conv(2, 3, 3), nn.ReLU(), conv(3, 4, 2), nn.Tanh(), pool, nn.Flatten(), nn.Linear(4, 2)
    )
    x = rand(2, 2, 7) if conv is nn.Conv1d else rand(2, 2, 5, 5, 5)
    ws, *rest = check_identity(model, x)
    assert [a.type for a in ws.spec.tensor("p2_weight").axes[2:]] == ["k2"] * (
        1 if conv is nn.Conv1d else 3
    )
    check_outside(model.double(), x, ws, *rest, "h1", lambda s: -s)
    check_outside(model.double(), x, ws, *rest, "h2", lambda s: 2 * s)  # tanh: signs only


class MobileBlock(nn.Module):
    """1x1 conv, grouped 3x3 conv, depthwise 3x3 conv (channel multiplier 2), 1x1 conv."""

    def __init__(self, groups: int = 2):
        super().__init__()
        self.expand = nn.Conv2d(2, 4, 1)
        self.grouped = nn.Conv2d(4, 6, 3, padding=1, groups=groups)
        self.squeeze = nn.Conv2d(6, 3, 1)
        self.depthwise = nn.Conv2d(3, 6, 3, padding=1, groups=3)
        self.head = nn.Linear(6, 2)
        # a live ReLU6 (some seeds, e.g. 45, draw a squeeze layer negative on every input:
        # then the function does not depend on the layers before it, and an element
        # outside the group cannot change it)
        nn.init.constant_(self.squeeze.bias, 1.0)

    def forward(self, x):
        h = torch.relu(self.grouped(torch.relu(self.expand(x))))
        h = torch.tanh(self.depthwise(F.relu6(self.squeeze(h))))
        return self.head(h.mean((2, 3)))


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 99))
def test_grouped_and_depthwise_convolutions_split_into_blocks(seed):
    torch.manual_seed(seed)
    model = MobileBlock()
    x = rand(2, 2, 5, 5, seed=seed)
    ws, *rest = check_identity(model, x, seed)
    # grouped: input and output types nested in one perm type of the 2 groups
    outer = ws.spec.tensor("grouped_weight").axes[0].type
    assert ws.spec.types[outer].kind == "perm" and ws.spec.types[outer].size == 2
    assert kind_of(ws, "grouped_weight", 1) == ("scaled", outer)
    assert kind_of(ws, "grouped_weight", 2) == ("scaled", outer)
    assert ws.spec.tensor("grouped_weight").axes[2].dual
    # depthwise: 3 blocks, one input channel and two output channels each
    dw = ws.spec.tensor("depthwise_weight")
    assert ws.spec.types[dw.axes[0].type].size == 3
    assert [ws.spec.types[a.type].size for a in dw.axes[1:3]] == [2, 1]
    assert ws.spec.types[dw.axes[2].type].kind == "perm"  # relu6: permutations only
    check_outside(model.double(), x, ws, *rest, ws.spec.tensor("grouped_weight").axes[1].type,
                  lambda s: -s)  # fmt: skip


def test_two_block_structures_on_one_type_are_refused():
    model = nn.Sequential(nn.Conv1d(2, 6, 1), nn.Conv1d(6, 6, 3, groups=2), nn.Conv1d(6, 6, 1))
    model2 = nn.Sequential(nn.Conv1d(2, 4, 1), nn.Conv1d(4, 4, 1, groups=2), nn.GroupNorm(4, 4))
    with pytest.raises(UnsupportedModel, match="split into 2 and into 4 blocks"):
        spec_from_module(model2)
    assert spec_from_module(model).types["g1"].size == 2


def test_group_norm_splits_its_channels():
    model = nn.Sequential(nn.Conv1d(2, 6, 3), nn.GroupNorm(3, 6), nn.ReLU(), nn.Conv1d(6, 2, 1))
    x = rand(2, 2, 6)
    ws, *_ = check_identity(model, x)
    assert ws.spec.types["g1"].size == 3 and ws.spec.types["h1"].within == "g1"


# -- pointwise functions ---------------------------------------------------------------------


def _instances():
    for target, _ in POINTWISE.items():
        if isinstance(target, type):
            yield target.__name__, target().double()
        elif target is F.dropout:
            yield "dropout", lambda z: F.dropout(z, 0.5, training=False)
        elif not isinstance(target, str):
            yield getattr(target, "__name__", str(target)), target


@pytest.mark.filterwarnings("ignore:dropout[23]d")  # eval-mode Dropout2d/3d on a 2-D input
@pytest.mark.parametrize(("name", "f"), list(_instances()), ids=[n for n, _ in _instances()])
def test_pointwise_table_states_true_symmetries(name, f):
    """Each entry's claim holds, and the next larger claim fails (the table is tight)."""
    if isinstance(f, nn.Module):
        f = f.eval()
        kind = pointwise_kind(type(f), f)
    else:
        kind = pointwise_kind(F.dropout if name == "dropout" else f)
    z = rand(64, 5) * 3
    s = rand(1, 5).abs() + 0.5

    def holds(claim: str) -> bool:
        if claim == "scaled":
            return torch.allclose(f(s * z), s * f(z), rtol=1e-12, atol=1e-12)
        if claim == "signed":
            return torch.allclose(f(-z), -f(z), rtol=1e-12, atol=1e-12)
        if claim == "gl":
            m = rand(5, 5, seed=3)
            return torch.allclose(f(z @ m.T), f(z) @ m.T, rtol=1e-12, atol=1e-12)
        return torch.allclose(f(z[:, [2, 0, 1, 4, 3]]), f(z)[:, [2, 0, 1, 4, 3]])

    assert holds(kind)
    bigger = {"perm": ["scaled", "signed"], "scaled": ["signed", "gl"], "signed": ["scaled"]}
    for claim in bigger.get(kind, []):
        assert not holds(claim), f"{name} also commutes with {claim}"


def test_users_extend_the_pointwise_table():
    class OddClamp(nn.Module):
        def forward(self, z):
            return torch.erfinv(z.clamp(-0.9, 0.9))  # odd

    model = nn.Sequential(nn.Linear(3, 4), OddClamp(), nn.Linear(4, 2))
    # elementwise: permutations at least (erfinv and clamp are pointwise aten ops)
    assert spec_from_module(model).types["h1"].kind == "perm"
    register_pointwise(OddClamp, "signed")
    try:
        x = rand(5, 3)
        ws, *rest = check_identity(model, x)
        assert ws.spec.types["h1"].kind == "signed"
        check_outside(model.double(), x, ws, *rest, "h1", lambda s: 3 * s)
    finally:
        del POINTWISE[OddClamp]
    with pytest.raises(ValueError, match="kind must be one of"):
        register_pointwise(OddClamp, "odd")


class Siren(nn.Module):
    def __init__(self, omega: float = 30.0):
        super().__init__()
        self.omega = omega
        self.a, self.b, self.c = nn.Linear(2, 6), nn.Linear(6, 6), nn.Linear(6, 1)

    def forward(self, x):
        h = torch.sin(self.omega * self.a(x))
        return self.c(torch.sin(self.b(h) * self.omega))


def test_scalar_multiple_inside_sin_keeps_sign_flips():
    model = Siren()
    x = rand(7, 2) * 0.1
    ws, *rest = check_identity(model, x, 3)
    assert ws.spec.types["h1"].kind == ws.spec.types["h2"].kind == "signed"
    check_outside(model.double(), x, ws, *rest, "h1", lambda s: 1.5 * s)


# -- token models ---------------------------------------------------------------------------


class TokenMean(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4)
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(5, 3)

    def forward(self, ids):
        h = torch.relu(self.a(self.emb(ids)))
        return self.b(h.mean(1))  # over the tokens


def test_embedding_and_mean_over_tokens():
    model = TokenMean()
    ids = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(0))
    ws, *rest = check_identity(model, ids)
    assert "x" not in ws.spec.types  # token ids have no feature type
    assert [a.type for a in ws.spec.tensor("emb_weight").axes] == ["k11", "h1"]
    assert ws.spec.types["h1"].kind == "gl"  # the embedding feeds a linear layer only
    check_outside(model.double(), ids, ws, *rest, "h2", lambda s: -s)


class Unpacked(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 4)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=True)
        self.norm = nn.LayerNorm(4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.inp(x)
        a, _ = self.mha(h, h, h)
        return self.out(self.norm(h + a))


@pytest.mark.parametrize("seed", [0, 1])
def test_tuple_unpacked_multihead_attention(seed):
    model = Unpacked()
    x = rand(2, 5, 3, seed=seed)
    ws, *rest = check_identity(model, x, seed)
    assert kind_of(ws, "mha_Wq", 1) == ("gl", "head1")
    assert ws.spec.tensor("mha_Wk").axes[1].dual
    check_outside(model.double(), x, ws, *rest, "h1", lambda s: s * torch.linspace(1, 3, 4))


class SelfAttention(nn.Module):
    """Attention written out: heads by .view, F.scaled_dot_product_attention and the
    explicit softmax(q k^T / sqrt(d)) v, added."""

    def __init__(self, d=6, heads=3, causal=False):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.inp = nn.Linear(3, d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = self.inp(x)
        b, t, d = h.shape
        q = self.q(h).view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = self.k(h).view(b, t, self.heads, -1).transpose(1, 2)
        v = self.v(h).view(b, t, self.heads, d // self.heads).permute(0, 2, 1, 3)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        scores = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        a = a + scores @ v
        h = h + self.o(a.transpose(1, 2).reshape(b, t, d))
        return self.out(F.gelu(self.fc(self.norm(h))))


@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention(causal):
    model = SelfAttention(causal=causal)
    x = rand(2, 4, 3)
    ws, *rest = check_identity(model, x, 1)
    q, k = ws.spec.tensor("q_weight"), ws.spec.tensor("k_weight")
    assert ws.spec.types[q.axes[0].type].size == 3  # heads
    assert q.axes[1].type == k.axes[1].type and k.axes[1].dual and not q.axes[1].dual
    assert ws.spec.types[q.axes[1].type].kind == "gl"
    assert ws.spec.types[ws.spec.tensor("v_weight").axes[1].type].within == q.axes[0].type
    check_outside(model.double(), x, ws, *rest, "h1", lambda s: s * torch.linspace(1, 3, 6))


class Encoder(nn.Module):
    def __init__(self, norm_first=True, activation="gelu", depth=2):
        super().__init__()
        self.inp = nn.Linear(4, 6)
        layer = nn.TransformerEncoderLayer(
            6, 3, 5, dropout=0.1, activation=activation, batch_first=True, norm_first=norm_first
        )
        self.enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(self.enc(self.inp(x)))


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_transformer_encoder_layers(norm_first, activation):
    model = Encoder(norm_first, activation)
    x = rand(2, 5, 4)
    ws, *rest = check_identity(model, x, 2)
    hidden = ws.spec.tensor("enc_layers_0_linear1_weight").axes[0].type
    assert ws.spec.types[hidden].kind == ("perm" if activation == "gelu" else "scaled")
    stream = ws.spec.tensor("inp_weight").axes[0].type
    check_outside(model.double(), x, ws, *rest, stream, lambda s: s * torch.linspace(1, 3, 6))


def test_transformer_encoder_matches_the_transformer_preset():
    from qgen import parse_spec, solve

    from_model = solve(spec_from_module(Encoder(True, "gelu").eval())).counts()
    preset = (
        "arch: transformer\nd_model: 6\nheads: 3\nd_head: 2\nmlp: 5\ndepth: 2\n"
        "inputs: 4\noutputs: 3\nactivation: gelu"
    )
    from_preset = solve(parse_spec("name: p\n" + preset)).counts()
    rows = lambda c: sorted(sorted(r.values()) for r in c["equivariant"].values())  # noqa: E731
    assert rows(from_model) == rows(from_preset)
    assert from_model["total"] == from_preset["total"]


class FunctionalDropout(nn.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(F.dropout(torch.relu(self.a(x)), **self.kwargs))


def test_dropout_in_training_mode_is_refused():
    with pytest.raises(UnsupportedModel, match="call model.eval"):
        spec_from_module(Encoder().train())
    with pytest.raises(UnsupportedModel, match="training mode"):
        spec_from_module(FunctionalDropout(p=0.3))  # F.dropout trains by default
    assert spec_from_module(FunctionalDropout(p=0.3, training=False)).types["h1"].kind == "scaled"


# -- layers used twice, refusals in the user's words ----------------------------------------


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(3, 4)
        self.fc = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.fc(torch.relu(self.stem(x))))
        return self.head(torch.relu(self.fc(h)))  # the same weights again


def test_a_layer_used_twice_shares_its_types():
    model = Shared()
    x = rand(6, 3)
    ws, *rest = check_identity(model, x)
    assert [t.name for t in ws.spec.tensors].count("fc_weight") == 1
    w = ws.spec.tensor("fc_weight")
    assert w.axes[0].type == w.axes[1].type == ws.spec.tensor("stem_weight").axes[0].type
    check_outside(model.double(), x, ws, *rest, w.axes[0].type, lambda s: -s)


def _line_of(cls, text: str) -> int:
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if text in line)


class Sorts(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)

    def forward(self, x):
        h = self.a(x)
        return torch.sort(h, -1).values


class TopK(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)

    def forward(self, x):
        return self.a(x).topk(2).values


class Squares(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)

    def forward(self, x):
        return torch.cumsum(self.a(x), -1)


@pytest.mark.parametrize(
    ("cls", "code", "op"),
    [
        (Sorts, "return torch.sort(h, -1).values", "torch.sort"),
        (TopK, "return self.a(x).topk(2).values", "torch.topk"),
        (Squares, "return torch.cumsum(self.a(x), -1)", "torch.cumsum"),
    ],
)
def test_refusals_name_the_users_line_and_operation(cls, code, op):
    with pytest.raises(UnsupportedModel) as info:
        spec_from_module(cls())
    message = str(info.value)
    assert f"test_from_module.py:{_line_of(cls, code)}: {code}" in message
    assert op in message
    assert "getitem" not in message and "getattr_1" not in message and "\n" not in message


class Indexes(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h) * h[..., :1]  # one hidden neuron singled out


def test_singling_out_a_feature_splits_its_type():
    """A slice of a hidden layer cuts its type into a sum: the neuron singled out (used
    as a per-sample factor) is fixed, the other three keep their scalings and
    permutations among themselves; the rows of ``a`` and columns of ``b`` are read as
    one tensor per block."""
    torch.manual_seed(0)  # (a dead first neuron makes every output 0: a 0/0 change)
    model = Indexes()
    x = rand(6, 3)
    assert (torch.relu(model.a(x.float()))[:, 0] > 0).any()
    ws, *rest = check_identity(model, x)
    first, others = (ws.spec.tensor(f"a_weight_{i}").axes[0].type for i in (0, 1))
    assert (ws.spec.types[first].kind, ws.spec.types[first].size) == ("fixed", 1)
    assert (ws.spec.types[others].kind, ws.spec.types[others].size) == ("scaled", 3)
    assert [a.type for a in ws.spec.tensor("b_weight_1").axes] == ["y", others]
    check_outside(model.double(), x, ws, *rest, others, lambda s: -s)


class SlicesInsideAHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(2, 2)

    def forward(self, x):
        h = self.a(x).view(x.shape[0], 2, 2)
        return self.b(torch.relu(h[:, 0]))  # the first of two blocks, elementwise


def test_picking_one_block_of_a_view_makes_a_sum():
    """``view(b, 2, 2)[:, 0]``: the two blocks of ``a``'s output are types of their own;
    the block that is read keeps its scalings, the unread one every invertible map."""
    model = SlicesInsideAHead()
    x = rand(6, 3)
    ws, *_ = check_identity(model, x)
    kinds = [ws.spec.types[ws.spec.tensor(f"a_weight_{i}").axes[0].type].kind for i in (0, 1)]
    assert kinds == ["scaled", "gl"]


def test_cli_errors_are_one_line(tmp_path):
    (tmp_path / "user_models.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def number():\n    return 42\n"
        "def broken():\n    raise RuntimeError('no weights')\n"
        "class M(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.a = nn.Linear(3, 4)\n"
        "    def forward(self, x):\n        return torch.cumsum(self.a(x), -1) * 3\n"
        "def sliced():\n    return M()\n"
        "class T(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.a = nn.Linear(3, 4)\n"
        "        self.b = nn.Linear(4, 2)\n"
        "    def forward(self, x):\n        return self.b(torch.relu(self.a(x)).mean(1))\n"
        "def tokens():\n    return T()\n"
    )

    def run(factory):
        return subprocess.run(
            [sys.executable, "-m", "qgen", "spec", "--from-model", f"user_models:{factory}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=_env(),
        )

    for factory, expected in [
        ("number", "user_models:number() returned int, not a torch.nn.Module"),
        ("broken", "user_models:broken() raised RuntimeError: no weights"),
        ("sliced", "user_models.py:12: return torch.cumsum(self.a(x), -1) * 3: torch.cumsum"),
    ]:
        out = run(factory)
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = run("tokens")  # .mean(1) over the tokens of [batch, tokens, features]
    assert out.returncode == 0, out.stderr
    assert qgen.parse_spec(out.stdout).types["h1"].kind == "scaled"


# -- soundness: what must be refused, and what must not --------------------------------------


class PerTokenMask(nn.Module):
    """A per-token factor and a learned positional embedding (same for all features /
    moving with them), centring by a mean over the features, and an RMSNorm."""

    def __init__(self, affine=True):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.pos = nn.Parameter(torch.randn(1, 5, 4))
        self.norm = nn.RMSNorm(4, elementwise_affine=affine)
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        mask = (x[..., :1] > 0).double()  # [batch, tokens, 1]
        h = self.a(x) * mask + self.pos
        h = h - h.mean(-1, keepdim=True)
        return self.b(self.norm(h))


@pytest.mark.parametrize("affine", [True, False])
def test_constants_that_broadcast_over_features_are_kept(affine):
    model = PerTokenMask(affine).double()
    x = rand(2, 5, 3)
    with pytest.raises(UnsupportedModel, match="pass example_input"):  # no probe input runs
        spec_from_module(model)  # (5 tokens for the positional embedding)
    ws, *_ = check_identity(model, x, 5, example_input=x)
    assert ws.spec.types["h1"].kind == "perm"  # centring and RMSNorm
    assert [a.type for a in ws.spec.tensor("pos").axes] == ["k1", "k5", "h1"]


class PerFeatureConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.register_buffer("c", torch.arange(4.0))
        self.b = nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)) * self.c)


class MergesFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(20, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)).reshape(x.shape[0], -1))


class SlicesHidden(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.b = nn.Linear(2, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x))[:, :2])


class ConvThenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(2, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.c(x)))  # reads the width of a 4x4 image


@pytest.mark.parametrize(
    ("cls", "example", "tensor", "axis", "kind"),
    [
        # the buffer moves with the neurons it multiplies: permutations
        (PerFeatureConstant, rand(4, 3), "a_weight", 0, "perm"),
        # the Linear reads tokens x features: its weight reads as [2, 5, h1*]
        (MergesFeatures, rand(2, 5, 3), "b_weight", 2, "scaled"),
        # two neurons read on: a type of their own (the other two: another)
        (SlicesHidden, rand(4, 3), "a_weight_0", 0, "scaled"),
        # a Linear over the pixels of a row: its axes are positions, channels kept
        (ConvThenLinear, rand(2, 2, 4, 4), "c_weight", 0, "fixed"),
    ],
)
def test_operations_that_single_out_features_keep_the_function(cls, example, tensor, axis, kind):
    """What used to be refused is read exactly: a buffer that moves with the features, a
    product axis, a slice (a sum of two types), a Linear over pixels -- acting with the
    group keeps the function, and the kind is the largest that does."""
    ws, *_ = check_identity(cls(), example, example_input=example)
    assert ws.spec.types[ws.spec.tensor(tensor).axes[axis].type].kind == kind


# -- Hugging Face transformers --------------------------------------------------------------


def _tiny(transformers, name):
    common = {"num_attention_heads": 2, "intermediate_size": 24, "vocab_size": 50}
    configs = {
        "Bert": lambda: transformers.BertConfig(
            hidden_size=16, num_hidden_layers=2, max_position_embeddings=32, **common
        ),
        "Roberta": lambda: transformers.RobertaConfig(
            hidden_size=16, num_hidden_layers=2, max_position_embeddings=40, **common
        ),
        "DistilBert": lambda: transformers.DistilBertConfig(
            dim=16, n_layers=2, n_heads=2, hidden_dim=24, vocab_size=50
        ),
        "Albert": lambda: transformers.AlbertConfig(
            hidden_size=16, embedding_size=8, num_hidden_layers=2, **common
        ),
        "Electra": lambda: transformers.ElectraConfig(
            hidden_size=16, embedding_size=8, num_hidden_layers=2, **common
        ),
    }
    return configs[name]()


@pytest.mark.parametrize(
    ("arch", "attention"),
    [("Roberta", "sdpa"), ("DistilBert", "eager"), ("Albert", "eager"), ("Electra", "eager")],
)
def test_tiny_transformers_keep_their_function(monkeypatch, arch, attention):
    """Random tiny configs built locally (no download): Albert shares one layer between
    its two layers, Electra and Albert project embeddings of size 8 to 16."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformers.utils.fx")
    config = _tiny(transformers, arch)
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = getattr(transformers, f"{arch}Model")(config).double().eval()
    ids = torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    ws, *_ = check_identity(model, ids, 6)
    heads = [d for d in ws.spec.types.values() if d.kind == "perm" and d.size == 2]
    assert heads and all(
        d.within in {h.name for h in heads} for d in ws.spec.types.values() if d.within
    )


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_gpt2_traces_without_the_hf_tracer(monkeypatch, attention):
    """GPT-2 (a causal decoder, its q/k/v packed in one Conv1D and split with
    ``torch.split``) reads through ``torch.export``: heads permuted, the causal mask
    fixing the token positions only."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=50, n_positions=16)
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = transformers.GPT2Model(config).double().eval()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    ws, *_ = check_identity(model, ids, 3, example_input=ids)
    heads = [d for d in ws.spec.types.values() if d.kind == "perm" and d.size == 2]
    assert heads and any(d.within for d in ws.spec.types.values())


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("head", ["BertModel", "BertForSequenceClassification"])
def test_tiny_bert_keeps_its_function(monkeypatch, attention, head):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("transformers.utils.fx")
    config = transformers.BertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        vocab_size=50,
        max_position_embeddings=32,
        attn_implementation=attention,
    )
    torch.manual_seed(0)
    model = getattr(transformers, head)(config).double().eval()
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    ws, *rest = check_identity(model, ids, 4)

    def tensor(suffix):
        return next(t for t in ws.spec.tensors if t.name.endswith(suffix))

    heads = tensor("encoder_layer_0_attention_self_query_weight").axes[0].type
    assert ws.spec.types[heads].kind == "perm" and ws.spec.types[heads].size == 2
    mlp = tensor("encoder_layer_1_intermediate_dense_weight").axes[0].type
    assert ws.spec.types[mlp].kind == "perm"  # GELU
    if head == "BertForSequenceClassification":
        pooled = tensor("pooler_dense_weight").axes[0].type
        assert ws.spec.types[pooled].kind == "signed"  # tanh
        check_outside(model, ids, ws, *rest, pooled, lambda s: 2 * s)
