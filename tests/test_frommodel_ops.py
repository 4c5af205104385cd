"""The operations real architectures are made of, each read by ``torch.export`` and the
per-axis rules of :mod:`qgen.frommodel`, each checked the strongest way: a random
element of the derived group, acted on the weights, leaves the real network's function
unchanged (float64, 1e-10 relative), and the kinds are the largest that do."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import qgen
from qgen.frommodel import UnsupportedModel, spec_from_module, weight_space_from_module

RTOL = 1e-10


def _env():
    """The environment for ``python -m qgen`` runs: this checkout's qgen first."""
    import os
    from pathlib import Path

    root = str(Path(qgen.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).double()


def check_identity(model, x, seed=0):
    model = model.double().eval()
    ws = weight_space_from_module(model, example_input=x)
    # the tiny Hugging Face configs keep dense vocabulary and position axes, over the default
    # budget; what is tested here is the symmetry the reader derives, so the budget is lifted
    module = qgen.compile(ws.spec, budget=float("inf"))
    theta = ws.to_weights([model.state_dict()])
    g = module.sample_group_element(module.sizes_of(theta), torch.Generator().manual_seed(seed))
    moved = copy.deepcopy(model)
    moved.load_state_dict(ws.to_state_dicts(module.act(g, theta), model.state_dict())[0])
    kwargs = {}
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = x  # as the reader calls it
    with torch.no_grad():
        a, b = model(x, **kwargs), moved(x, **kwargs)
    if hasattr(a, "last_hidden_state"):
        a, b = a.last_hidden_state, b.last_hidden_state
    if isinstance(a, tuple):
        a, b = a[0], b[0]
    change = ((a - b).abs().max() / a.abs().max()).item()
    assert change < RTOL, change
    return ws


def kind(ws, tensor, axis=0):
    return ws.spec.types[ws.spec.tensor(tensor).axes[axis].type].kind


# -- vision -------------------------------------------------------------------------------


class TinyViT(nn.Module):
    """Patch embedding (conv, ``flatten(2).transpose(1, 2)``), a class token joined with
    ``torch.cat``, a learned position embedding added, attention by hand from one qkv
    Linear (``reshape(b, n, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)``), a GELU MLP,
    the class token read out with ``x[:, 0]``."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, 5, d))
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, 12), nn.Linear(12, d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        b, n, c = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        a = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
        a = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        x = x + self.proj(a)
        x = x + self.fc2(F.gelu(self.fc1(self.norm2(x))))
        return self.head(x[:, 0])


def test_vit_patches_class_token_position_embedding_and_hand_attention():
    ws = check_identity(TinyViT(), rand(2, 3, 8, 8))
    q = ws.spec.tensor("qkv_weight_0")
    outer, inner = (ws.spec.types[a.type] for a in q.axes[:2])
    assert (outer.kind, outer.size) == ("perm", 2) and (inner.kind, inner.within) == (
        "gl",
        outer.name,
    )
    assert ws.spec.tensor("qkv_weight_1").axes[1].dual  # keys: the dual of the queries
    assert kind(ws, "fc1_weight") == "perm"  # GELU
    assert kind(ws, "pos_embed", 2) == "perm"  # the residual stream (LayerNorm)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv inside a residual, channels-last ``permute`` around a
    LayerNorm and two Linears, layer scale ``gamma * x``."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 8), nn.Linear(8, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        x = self.stem(x)
        h = self.dw(x).permute(0, 2, 3, 1)
        h = self.gamma * self.pw2(F.gelu(self.pw1(self.norm(h))))
        x = x + h.permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


def test_convnext_channels_last_permute_depthwise_residual_layer_scale():
    ws = check_identity(ConvNeXtBlock(), rand(2, 3, 8, 8))
    assert kind(ws, "pw1_weight") == "perm"
    dw = ws.spec.tensor("dw_weight")  # one kernel per channel, moving with it
    assert dw.axes[0].type == ws.spec.tensor("stem_weight").axes[0].type
    assert [ws.spec.types[a.type].size for a in dw.axes] == [4, 1, 7, 7]


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's pattern: a BatchNorm subclass calling ``F.batch_norm`` then an activation."""

    def forward(self, x):
        x = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )
        return F.relu(x)


class TimmLinear(nn.Linear):
    """timm's Linear: a subclass calling ``F.linear``."""

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class SEResBlock(nn.Module):
    """BatchNormAct2d, squeeze-excitation (a gate from pooled channels multiplies them),
    layer scale ``gamma.view(1, -1, 1, 1)``, a depthwise-separable branch in a residual."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = BatchNormAct2d(c)
        self.se_reduce, self.se_expand = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)
        self.dw, self.pw = nn.Conv2d(c, c, 3, padding=1, groups=c), nn.Conv2d(c, c, 1)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.head = TimmLinear(c, 3)
        with torch.no_grad():
            self.bn.running_mean.normal_()
            self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        x = self.bn(self.stem(x))
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(x.mean((2, 3), keepdim=True)))))
        x = x * s
        x = x + self.gamma.view(1, -1, 1, 1) * self.pw(F.relu(self.dw(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_functional_batch_norm_squeeze_excitation_layer_scale_depthwise_separable():
    ws = check_identity(SEResBlock(), rand(2, 3, 6, 6))
    assert kind(ws, "stem_weight") == "perm"  # batch norm, the SE gate, layer scale
    assert kind(ws, "se_reduce_weight") == "scaled"  # ReLU between the SE convolutions
    assert [a.type for a in ws.spec.tensor("bn_running_var").axes] == [
        ws.spec.tensor("stem_weight").axes[0].type
    ]


class Res2NetBlock(nn.Module):
    """``torch.split`` of channels into branches, each a conv fed the previous branch's
    output, ``torch.cat`` back, a 1x1 conv."""

    def __init__(self, c=6, scale=3):
        super().__init__()
        self.width = c // scale
        self.conv1 = nn.Conv2d(3, c, 1)
        self.convs = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=1) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(c, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        spx = torch.split(F.relu(self.conv1(x)), self.width, 1)
        out, sp = [], None
        for i, conv in enumerate(self.convs):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = F.relu(conv(sp))
            out.append(sp)
        out.append(spx[-1])
        h = self.conv3(torch.cat(out, 1))
        return self.head(h.mean((2, 3)))


def test_res2net_split_and_cat_of_channel_branches():
    ws = check_identity(Res2NetBlock(), rand(2, 3, 6, 6))
    blocks = [t.name for t in ws.spec.tensors if t.name.startswith("conv1_weight_")]
    assert len(blocks) == 3  # one type per branch
    assert all(kind(ws, b) == "scaled" for b in blocks)
    assert any(t.name.startswith("conv3_weight_") for t in ws.spec.tensors)


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 3, 3, padding=1)
        self.c = nn.Conv2d(5, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.cat([F.relu(self.a(x)), torch.tanh(self.b(x))], 1)
        return self.head(self.c(h).mean((2, 3)))


def test_cat_of_channel_branches_keeps_each_branch_group():
    ws = check_identity(Inception(), rand(2, 3, 5, 5))
    assert kind(ws, "a_weight") == "scaled" and kind(ws, "b_weight") == "signed"
    assert {t.name for t in ws.spec.tensors} >= {"c_weight_0", "c_weight_1"}


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 4 * 4, 5)
        self.out = nn.Linear(5, 2)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.out(F.relu(self.fc(torch.flatten(h, 1))))


def test_conv_flatten_linear_reads_the_weight_as_channels_by_pixels():
    ws = check_identity(LeNet(), rand(2, 1, 10, 10))
    fc = ws.spec.tensor("fc_weight")
    assert [ws.spec.types[a.type].size for a in fc.axes] == [5, 3, 4, 4]
    assert fc.axes[1].type == ws.spec.tensor("conv_weight").axes[0].type
    assert kind(ws, "conv_weight") == "scaled"


class StdConv(nn.Conv2d):
    """A weight-standardized convolution (BiT, NFNets): ``weight.reshape`` and
    statistics over each output channel's weights before ``F.conv2d``."""

    def forward(self, x):
        w = self.weight.reshape(self.out_channels, -1)
        w = (w - w.mean(1, keepdim=True)) / (w.std(1, keepdim=True) + 1e-5)
        return F.conv2d(x, w.reshape_as(self.weight), self.bias, self.stride, self.padding)


def test_weight_standardized_convolution():
    model = nn.Sequential(StdConv(3, 4, 3), nn.ReLU(), StdConv(4, 4, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))  # fmt: skip
    ws = check_identity(model, rand(2, 3, 7, 7))
    # the standardisation removes a channel's scale: permutations only
    assert kind(ws, "p0_weight") == "perm"


# -- language models --------------------------------------------------------------------


class Rotary(nn.Module):
    """LLaMA's pattern: RMSNorm by hand, heads by ``view``, rotary embeddings
    (``x * cos + rotate_half(x) * sin``), ``F.scaled_dot_product_attention`` causal,
    SwiGLU from one Linear and ``chunk``; ``forward(self, x, mask=None)``."""

    def __init__(self, d=8, heads=2, vocab=11):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.emb = nn.Embedding(vocab, d)
        self.norm_w = nn.Parameter(torch.rand(d) + 0.5)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.w12 = nn.Linear(d, 12, bias=False)
        self.w3 = nn.Linear(6, d, bias=False)
        self.lm = nn.Linear(d, vocab, bias=False)

    def rms(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm_w

    @staticmethod
    def rotate_half(x):
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, ids, mask=None):
        x = self.emb(ids)
        b, t, d = x.shape
        pos = torch.arange(t, dtype=x.dtype)
        freqs = torch.outer(
            pos, 1.0 / 10000 ** (torch.arange(0, self.dh, 2, dtype=x.dtype) / self.dh)
        )
        cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
        h = self.rms(x)
        q, k, v = (
            f(h).view(b, t, self.heads, self.dh).transpose(1, 2) for f in (self.q, self.k, self.v)
        )
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=mask is None)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        g, u = self.w12(self.rms(x)).chunk(2, dim=-1)
        x = x + self.w3(F.silu(g) * u)
        return self.lm(x)


def test_rotary_rmsnorm_swiglu_and_causal_sdpa():
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    ws = check_identity(Rotary(), ids)
    # rotary embeddings rotate inside each head: nothing acts inside a query or key head,
    # but the heads (the same cos/sin for each) still move as wholes, with the values'
    # heads, each of which keeps every invertible map
    assert (kind(ws, "q_weight", 0), kind(ws, "q_weight", 1)) == ("perm", "fixed")
    head = ws.spec.tensor("q_weight").axes[0].type
    assert ws.spec.tensor("v_weight").axes[0].type == head
    assert (
        kind(ws, "v_weight", 1) == "gl"
        and ws.spec.types[ws.spec.tensor("v_weight").axes[1].type].within == head
    )
    assert kind(ws, "w12_weight_0") == "perm" and kind(ws, "w12_weight_1") == "perm"  # SwiGLU
    assert kind(ws, "norm_w") == "perm"  # RMSNorm


class Branchy(nn.Module):
    """Python control flow on shapes and ``None``: torch.fx cannot trace it; torch.export
    runs it on the example input."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x, mask=None):
        h = torch.tanh(self.a(x))
        if x.shape[1] > 3 and mask is None:  # data-dependent for torch.fx
            h = h * 2
        for _ in range(int(x.shape[0] > 1) + 1):
            h = h + 0.5 * h
        return self.b(h)


def test_python_control_flow_and_an_optional_mask():
    ws = check_identity(Branchy(), rand(2, 5, 3))
    assert ws.spec.types["h1"].kind == "signed"


@pytest.mark.parametrize("top", ["layer", "encoder"])
def test_top_level_transformer_encoder(top):
    layer = nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, batch_first=True)
    model = layer if top == "layer" else nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    ws = check_identity(model, rand(2, 5, 8))
    assert any(d.within for d in ws.spec.types.values())


# -- Hugging Face models from configs (no downloads) ----------------------------------------


def _hf(name):
    transformers = pytest.importorskip("transformers")
    small = {"vocab_size": 40}
    configs = {
        "Llama": lambda: transformers.LlamaConfig(
            hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, max_position_embeddings=32, **small),
        "OPT": lambda: transformers.OPTConfig(
            hidden_size=16, ffn_dim=24, num_hidden_layers=2, num_attention_heads=2,
            word_embed_proj_dim=16, max_position_embeddings=32, **small),
        "T5Encoder": lambda: transformers.T5Config(
            d_model=16, d_kv=8, d_ff=24, num_layers=2, num_heads=2, **small),
        "T5": lambda: transformers.T5Config(
            d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2, **small),
        "Bart": lambda: transformers.BartConfig(
            d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=24, decoder_ffn_dim=24,
            max_position_embeddings=32, **small),
        "ViT": lambda: transformers.ViTConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            image_size=8, patch_size=4, num_channels=3),
    }  # fmt: skip
    config = configs[name]()
    config._attn_implementation = "eager"
    cls = getattr(transformers, f"{name}Model")
    torch.manual_seed(0)
    return cls(config).double().eval()


@pytest.mark.parametrize("name", ["Llama", "OPT", "T5Encoder", "T5", "ViT"])
def test_hugging_face_models_trace_with_torch_export(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _hf(name)
    if name == "ViT":
        x = rand(2, 3, 8, 8)
    else:
        x = torch.randint(3, 40, (2, 6), generator=torch.Generator().manual_seed(0))
    ws = check_identity(model, x)
    if name not in ("Llama", "OPT"):  # Llama: rotary embeddings fix the heads (see above)
        assert any(d.kind == "perm" and d.size == 2 for d in ws.spec.types.values())  # heads


# -- refusals and the command line ---------------------------------------------------------


class Sorted(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 4)

    def forward(self, x):
        return torch.sort(self.a(x), -1).values


def test_refusals_are_one_line_without_traceback(tmp_path, capfd):
    with pytest.raises(UnsupportedModel) as info:
        spec_from_module(Sorted(), example_input=torch.randn(2, 3))
    message = str(info.value)
    assert "test_frommodel_ops.py" in message and "torch.sort" in message
    assert "\n" not in message
    assert "Traceback" not in capfd.readouterr().err


def test_cli_input_shape(tmp_path):
    (tmp_path / "nets.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def lenet():\n"
        "    return nn.Sequential(\n"
        "        nn.Conv2d(1, 3, 5), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 24 * 24, 10))\n"
        "def gpt():\n"
        "    e = nn.Embedding(20, 8)\n"
        "    return nn.Sequential(e, nn.Linear(8, 20))\n"
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "qgen", "spec", "--from-model", *args],
            cwd=tmp_path, capture_output=True, text=True, env=_env(),
        )  # fmt: skip

    out = run("nets:lenet", "--input-shape", "1,1,28,28")
    assert out.returncode == 0, out.stderr
    spec = qgen.parse_spec(out.stdout)
    assert [spec.types[a.type].size for a in spec.tensor("p3_weight").axes] == [10, 3, 24, 24]
    out = run("nets:lenet", "--input-shape", "1,1,12,12")  # the wrong size: one line
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "1x1x12x12" in out.stderr and "Traceback" not in out.stderr
    out = run("nets:gpt", "--input-shape", "2,7", "--input-dtype", "long")
    assert out.returncode == 0, out.stderr


class TimmStdConv(nn.Conv2d):
    """timm's StdConv2d: each filter standardised with ``F.batch_norm`` in training mode
    on the weight itself (no running statistics); in-place activations (``relu_``)."""

    def forward(self, x):
        w = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1), None, None, training=True, eps=1e-6
        ).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class Hardswishes(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = TimmStdConv(3, 4, 3)
        self.act = nn.Hardswish(inplace=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(F.relu_(self.act(self.conv(x))).mean((2, 3)))


def test_batch_norm_on_a_weight_and_in_place_activations():
    ws = check_identity(Hardswishes(), rand(2, 3, 6, 6))
    assert kind(ws, "conv_weight") == "perm"
    with pytest.raises(UnsupportedModel, match="call model.eval"):
        spec_from_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train())


class SplitAttention(nn.Module):
    """ResNeSt/SK-ResNet's pattern: a grouped conv makes branches, a small fc reads all
    of them at once (mixing the groups), a softmax over branches weights them."""

    def __init__(self, c=4, radix=2):
        super().__init__()
        self.radix = radix
        self.conv = nn.Conv2d(3, c * radix, 3, padding=1, groups=1)
        self.grouped = nn.Conv2d(c * radix, c * radix, 3, padding=1, groups=radix)
        self.fc1 = nn.Conv2d(c * radix, 3, 1)
        self.fc2 = nn.Conv2d(3, c * radix, 1)
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        h = F.relu(self.grouped(F.relu(self.conv(x))))
        b, rc, hh, ww = h.shape
        gap = h.mean((2, 3), keepdim=True)
        attn = self.fc2(F.relu(self.fc1(gap))).view(b, self.radix, -1).softmax(1)
        split = h.view(b, self.radix, rc // self.radix, hh, ww)
        out = (split * attn.view(b, self.radix, -1, 1, 1)).sum(1)
        return self.head(out.mean((2, 3)))


def test_a_weight_that_mixes_groups_makes_them_a_sum():
    ws = check_identity(SplitAttention(), rand(2, 3, 5, 5))
    assert ws.notes  # the groups' permutation was given up, and where is said
