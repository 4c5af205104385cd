"""Soundness regressions of the reader: patterns from real models (DeBERTa, MPT) where a
declared group was larger than the network's symmetry. Each test acts with a random
element of the derived group on the real weights and checks that the outputs do not
change (float64, ``RTOL``); each failed before its fix."""

from __future__ import annotations

import torch
from test_frommodel_ops import check_identity, kind, rand
from torch import nn


class ChunkInsideHeads(nn.Module):
    """DeBERTa's attention (``modeling_deberta.py``): one projection viewed as
    ``[.., heads, 3 * d]`` and cut by ``chunk(3, dim=-1)`` inside each head (q, k, v
    interleaved per head), then per-head biases ``q_bias``/``v_bias`` viewed into heads
    and added."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.inp = nn.Linear(d, d)
        self.in_proj = nn.Linear(d, 3 * d, bias=False)
        self.q_bias = nn.Parameter(torch.randn(d))
        self.v_bias = nn.Parameter(torch.randn(d))
        self.out = nn.Linear(d, d)

    def heads_of(self, x):
        return x.view(x.size()[:-1] + (self.heads, -1)).permute(0, 2, 1, 3)

    def forward(self, x):
        x = self.inp(x)
        q, k, v = self.heads_of(self.in_proj(x)).chunk(3, dim=-1)
        q = q + self.heads_of(self.q_bias[None, None, :])
        v = v + self.heads_of(self.v_bias[None, None, :])
        a = torch.softmax(q @ k.transpose(-1, -2), -1) @ v
        a = a.permute(0, 2, 1, 3).contiguous()
        return self.out(a.view(a.size()[:-2] + (-1,)))


def test_a_chunk_inside_heads_fixes_the_biases_added_to_its_pieces():
    # the pieces of a chunk inside a head keep no symmetry; a bias block added to one must
    # keep none either (it was declared gl per head: outputs changed 35%)
    ws = check_identity(ChunkInsideHeads(), rand(2, 3, 8))
    assert kind(ws, "v_bias", 1) == "fixed"
    assert kind(ws, "v_bias", 0) == kind(ws, "in_proj_weight", 0) == "perm"  # heads move
    assert kind(ws, "inp_weight") == "gl"  # what the chunk does not touch keeps its group


class Alibi(nn.Module):
    """MPT's attention: a fused ``Wqkv`` chunked into q, k, v, heads by ``reshape``, and
    ALiBi: a per-head slope times the key position added to the scores. The bias varies
    along the heads, so the heads cannot be permuted (each head keeps its own element
    inside)."""

    def __init__(self, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.inp = nn.Linear(d, d)
        self.Wqkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d)

    def forward(self, x):
        b, t, _ = x.shape
        x = self.inp(x)
        q, k, v = (
            p.reshape(b, t, self.heads, -1).transpose(1, 2) for p in self.Wqkv(x).chunk(3, dim=2)
        )
        n = torch.arange(1, self.heads + 1, dtype=torch.int64).to(x.dtype)
        slopes = 1.0 / torch.pow(2, n * (8 / self.heads))
        alibi = torch.arange(1 - t, 1, dtype=torch.int32).to(x.dtype).view(1, 1, t)
        scores = q @ k.transpose(-1, -2) + alibi * slopes.view(self.heads, 1, 1)
        a = torch.softmax(scores, -1) @ v
        return self.out(a.transpose(1, 2).reshape(b, t, -1))


def test_alibi_fixes_the_head_order():
    # the slopes' head axis is fixed; it met the queries' head blocks through a type that
    # was then refined into them, and the restriction was lost (heads declared perm:
    # outputs changed 3%)
    ws = check_identity(Alibi(), rand(2, 3, 8))
    assert "head1" not in ws.spec.types  # no permutable outer type
    assert kind(ws, "Wqkv_weight_0_0") == "gl"  # each head its own element


def rotate_half(x):
    """Llama's ``rotate_half``: the halves of the head dim swapped, the second negated."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


class Rotary(nn.Module):
    """Llama's attention (``modeling_llama.py``): q/k/v projections viewed into heads,
    rotary embeddings ``q * cos + rotate_half(q) * sin`` with ``cos``/``sin`` computed from
    the positions and an ``inv_freq`` buffer, grouped key/value heads repeated by
    ``expand`` + ``reshape`` (``repeat_kv``) when ``kv < heads``."""

    def __init__(self, d=16, heads=4, kv=4):
        super().__init__()
        self.heads, self.kv, self.hd = heads, kv, d // heads
        self.inp = nn.Linear(d, d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, kv * self.hd)
        self.v = nn.Linear(d, kv * self.hd)
        self.o = nn.Linear(d, d, bias=False)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.hd, 2).float() / self.hd))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x):
        b, t, _ = x.shape
        x = self.inp(x)
        q, k, v = (p(x).view(b, t, -1, self.hd).transpose(1, 2) for p in (self.q, self.k, self.v))
        pos = torch.arange(t, dtype=x.dtype)[None, :]
        freqs = (self.inv_freq[None, :, None].to(x.dtype) @ pos[:, None, :]).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n = self.heads // self.kv
        k = k[:, :, None].expand(b, self.kv, n, t, self.hd).reshape(b, self.heads, t, self.hd)
        v = v[:, :, None].expand(b, self.kv, n, t, self.hd).reshape(b, self.heads, t, self.hd)
        a = torch.softmax(q @ k.transpose(-1, -2) * self.hd**-0.5, -1) @ v
        return self.o(a.transpose(1, 2).reshape(b, t, -1))


def test_rotary_embeddings_fix_the_query_key_head_dim_and_heads_still_move():
    ws = check_identity(Rotary(), rand(2, 3, 16))
    spec = ws.spec
    head, inner, _ = (spec.types[a.type] for a in spec.tensor("q_weight").axes)
    assert (head.kind, head.size) == ("perm", 4)  # heads permute as wholes
    assert (inner.kind, inner.size) == ("fixed", 4)  # cos/sin vary along the head dim
    assert spec.tensor("k_weight").axes[0].type == head.name
    v_inner = spec.types[spec.tensor("v_weight").axes[1].type]
    assert (v_inner.kind, v_inner.within) == ("gl", head.name)  # values: gl per head


def test_rotary_with_grouped_key_value_heads_is_sound():
    check_identity(Rotary(kv=2), rand(2, 3, 16))


class SinusoidalPositions(nn.Embedding):
    """Pegasus' / Marian's positions (``PegasusSinusoidalPositionalEmbedding``): an
    embedding table read under ``@torch.no_grad()`` at ``arange`` positions; ``torch.export``
    records the region as ``wrap_with_set_grad_enabled`` around a subgraph."""

    @torch.no_grad()
    def forward(self, t: int):
        return super().forward(torch.arange(t))


class NoGradPositions(nn.Module):
    def __init__(self, vocab=11, d=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = SinusoidalPositions(16, d)
        self.fc1, self.fc2 = nn.Linear(d, 12), nn.Linear(12, 3)

    def forward(self, ids):
        x = self.emb(ids) + self.pos(ids.shape[1])
        return self.fc2(torch.relu(self.fc1(x)))


def test_a_no_grad_region_is_read_op_by_op():
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    ws = check_identity(NoGradPositions(), ids)
    # the table's feature axis is the embedding stream's (what the region computes)
    assert ws.spec.tensor("pos_weight").axes[1].type == ws.spec.tensor("emb_weight").axes[1].type
    assert kind(ws, "pos_weight", 0) == "fixed"  # positions
    assert kind(ws, "fc1_weight") == "scaled"  # ReLU


class KeyFirstAttention(nn.Module):
    """BART's attention: separate ``k_proj``, ``v_proj``, ``q_proj`` (declared in that
    order), each viewed into heads; and BART's tied embeddings: one tensor under the keys
    ``shared.weight`` (never read by the graph) and ``embed.weight``."""

    def __init__(self, vocab=11, d=8, heads=2):
        super().__init__()
        self.heads = heads
        self.shared = nn.Embedding(vocab, d)
        self.embed = self.shared
        self.k_proj, self.v_proj, self.q_proj = (nn.Linear(d, d) for _ in range(3))
        self.out_proj = nn.Linear(d, d)
        self.head = nn.Linear(d, 3)

    def forward(self, ids):
        x = self.embed(ids)
        b, t, d = x.shape
        q, k, v = (
            p(x).view(b, t, self.heads, -1).transpose(1, 2)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        a = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * 0.5, -1) @ v
        x = x + self.out_proj(a.transpose(1, 2).reshape(b, t, d))
        return self.head(x)


def test_keys_declared_before_queries_keep_their_heads():
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    ws = check_identity(KeyFirstAttention(), ids)
    spec = ws.spec
    head, inner = (spec.types[a.type] for a in spec.tensor("k_proj_weight").axes[:2])
    assert (head.kind, inner.kind, inner.within) == ("perm", "gl", head.name)
    assert spec.tensor("q_proj_weight").axes[1].dual  # queries: the dual of the keys
    # the tied table: both keys, the same axes (it was a free gl x gl tensor of its own)
    assert spec.tensor("shared_weight").axes == spec.tensor("embed_weight").axes


class BatchOneAttention(nn.Module):
    """torchvision's ``VisionTransformer`` encoder on a batch of one:
    ``nn.MultiheadAttention`` folds the batch (size 1) into its head reshapes, so an axis
    reads as tokens x a size-1 factor, and the residual adds it to the plain tokens axis
    (this made a type a product of itself: a RecursionError)."""

    def __init__(self, d=8):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 5, d))
        self.ln = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        x = x + self.pos
        y = self.ln(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        return self.head(x + y)


def test_a_size_one_factor_does_not_make_a_type_a_product_of_itself():
    ws = check_identity(BatchOneAttention(), rand(1, 5, 8))
    assert kind(ws, "attn_Wv", 1) == "gl"  # values: gl per head


class ShiftedWindows(nn.Module):
    """Swin's channels-last steps: ``torch.roll`` of the two spatial axes (shifted
    windows) and ``F.pad`` of H and W with ``(0, 0, 0, pw, 0, ph)``; the channels are
    untouched by both (they were fixed: every axis counted as touched)."""

    def __init__(self, c=4, value=0.0):
        super().__init__()
        self.value = value
        self.fc1, self.fc2 = nn.Linear(3, c), nn.Linear(c, 2)

    def forward(self, x):  # [B, H, W, 3]
        x = self.fc1(x)
        x = torch.roll(x, shifts=(-1, -1), dims=(1, 2))
        x = nn.functional.pad(x, (0, 0, 0, 1, 0, 1), value=self.value)
        return self.fc2(x.mean((1, 2)))


def test_roll_and_pad_touch_only_their_axes():
    ws = check_identity(ShiftedWindows(), rand(2, 3, 3, 3))
    assert kind(ws, "fc1_weight") == "gl"  # zero padding and rolls are linear per channel
    ws = check_identity(ShiftedWindows(value=1.0), rand(2, 3, 3, 3))
    assert kind(ws, "fc1_weight") == "perm"  # a nonzero pad value: permutations only


class TwoGroupings(nn.Module):
    """PiT's pooling convolutions: ``Conv2d(c, 2c, groups=c)`` and later, on the same
    stream, ``Conv2d(2c, 4c, groups=2c)``: one type split into c and into 2c blocks."""

    def __init__(self, c=2):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.pool1 = nn.Conv2d(c, 2 * c, 3, padding=1, groups=c)
        self.mix = nn.Conv2d(2 * c, 2 * c, 1)
        self.pool2 = nn.Conv2d(2 * c, 4 * c, 3, padding=1, groups=2 * c)
        self.head = nn.Linear(4 * c, 3)

    def forward(self, x):
        x = self.pool1(torch.relu(self.stem(x)))
        x = self.pool2(x + torch.relu(self.mix(x)))
        return self.head(x.mean((2, 3)))


def test_two_groupings_of_one_stream_are_read_soundly():
    ws = check_identity(TwoGroupings(), rand(2, 3, 5, 5))
    assert kind(ws, "pool2_weight") == "fixed"
    assert any("already split into other blocks" in n for n in ws.notes)  # said where


class MultiplyAndRepeat(nn.Module):
    """ConvBERT's ``torch.multiply`` (an alias of ``mul``) gating two projections, and
    GCViT's global query ``q.repeat_interleave(B, dim=0)`` over the batch."""

    def __init__(self, d=4):
        super().__init__()
        self.a, self.b = nn.Linear(3, d), nn.Linear(3, d)
        self.query = nn.Parameter(torch.randn(1, 5, d))
        self.out = nn.Linear(d, 2)

    def forward(self, x):  # [B, 5, 3]
        g = torch.multiply(self.a(x), torch.sigmoid(self.b(x)))
        q = self.query.repeat_interleave(x.shape[0], dim=0)
        return self.out(g + q)


def test_multiply_and_repeat_interleave():
    ws = check_identity(MultiplyAndRepeat(), rand(2, 5, 3))
    assert kind(ws, "a_weight") == "perm"  # an elementwise product: permutations
    assert ws.spec.tensor("query").axes[2].type == ws.spec.tensor("a_weight").axes[0].type


def test_too_many_blocks_for_sums_are_fixed_instead():
    # ALiBi fixes the head order: each head's types are a sum of one type per head, one
    # spec tensor per head of every projection; 24 layers of 16 heads would need 1,560
    # tensors, over the limit of 1,200: the heads' types are fixed instead
    from qgen.frommodel import weight_space_from_module

    model = nn.Sequential(*(Alibi(d=32, heads=16) for _ in range(24))).double()
    ws = weight_space_from_module(model, example_input=rand(1, 3, 32))
    assert len(ws.spec.tensors) < 1200
    assert any("one spec tensor each: too many" in n for n in ws.notes)


class UnrolledPositions(nn.Module):
    """Hiera's unroll: a learned position embedding on 256 tokens, the tokens viewed as
    eight factors of 2 and permuted (positions moved between scales), then flattened
    back: the position embedding reads as eight fixed factors and its channels."""

    def __init__(self, c=4):
        super().__init__()
        self.inp = nn.Linear(3, c)
        self.pos_embed = nn.Parameter(torch.randn(1, 256, c))
        self.fc = nn.Linear(c, 2)

    def forward(self, x):  # [B, 256, 3]
        x = self.inp(x)
        b, _, c = x.shape
        x = (x + self.pos_embed).view(b, *(2,) * 8, c)
        x = x.permute(0, 8, 7, 6, 5, 4, 3, 2, 1, 9).reshape(b, 256, c)
        return self.fc(torch.relu(x)).mean(1)


def test_adjacent_fixed_axes_merge_when_a_tensor_has_too_many():
    ws = check_identity(UnrolledPositions(), rand(2, 256, 3))
    axes = ws.spec.tensor("pos_embed").axes
    assert len(axes) <= 8
    assert kind(ws, "pos_embed", len(axes) - 1) == "scaled"  # channels: ReLU


class Recurrent(nn.Module):
    """Sequencer's ``nn.LSTM`` (bidirectional, batch first, two layers) between Linears;
    with ``state=True`` the final hidden state is read too."""

    def __init__(self, bidirectional=True, state=False, h0=False):
        super().__init__()
        self.state = state
        n = 4 if bidirectional else 2
        self.h0 = nn.Parameter(torch.randn(n, 1, 5)) if h0 else None
        self.inp = nn.Linear(3, 4)
        self.rnn = nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(10 if bidirectional else 5, 2)

    def forward(self, x):  # [B, T, 3]
        if self.h0 is None:
            y, (h, _) = self.rnn(self.inp(x))
        else:  # a learned initial state
            h0 = self.h0.expand(-1, x.shape[0], -1).contiguous()
            y, (h, _) = self.rnn(self.inp(x), (h0, torch.zeros_like(h0)))
        y = self.out(y)
        return y + h[-1].sum(-1)[:, None, None] if self.state else y


def test_lstm_hidden_units_permute():
    ws = check_identity(Recurrent(), rand(2, 6, 3))
    rows = ws.spec.tensor("rnn_weight_ih_l0").axes
    assert (kind(ws, "rnn_weight_ih_l0", 0), kind(ws, "rnn_weight_ih_l0", 1)) == ("fixed", "perm")
    assert rows[1].type == ws.spec.tensor("rnn_weight_hh_l0").axes[2].type  # the same units
    assert kind(ws, "inp_weight") == "gl"  # read by W_ih: a contraction
    ws = check_identity(Recurrent(bidirectional=False, state=True), rand(2, 6, 3))
    assert kind(ws, "rnn_weight_hh_l0", 1) == "fixed"  # h_n read: no symmetry
    ws = check_identity(Recurrent(h0=True), rand(2, 6, 3))
    assert kind(ws, "rnn_weight_hh_l0", 1) == "fixed"  # a learned initial state: none


class Dense(nn.Module):
    """DenseNet's pattern: every layer reads the concatenation of all earlier outputs (a
    sum of types, one slice of each later weight per block)."""

    def __init__(self, c=2, layers=4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 1)
        self.layers = nn.ModuleList(nn.Conv2d(c * (i + 1), c, 1) for i in range(layers))
        self.head = nn.Linear(c * (layers + 1), 2)

    def forward(self, x):
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(torch.relu(layer(torch.cat(feats, 1))))
        return self.head(torch.cat(feats, 1).mean((2, 3)))


def test_sums_too_many_for_the_spec_are_read_as_fixed_types(monkeypatch):
    from qgen.frommodel import assemble

    ws = check_identity(Dense(), rand(2, 3, 4, 4))
    full = len(ws.spec.tensors)
    monkeypatch.setattr(assemble, "MAX_TENSORS", full - 5)
    ws = check_identity(Dense(), rand(2, 3, 4, 4))
    assert len(ws.spec.tensors) <= full - 5
    assert any("one spec tensor per block: too many" in n for n in ws.notes)


class ZeroKeyBias(nn.Module):
    """BEiT's attention (timm ``beit.py``): the qkv bias is ``cat(q_bias, k_bias, v_bias)``
    with ``k_bias`` a zero buffer (a constant: the whole q/k/v axis keeps no symmetry),
    heads by ``reshape``, and a learned relative-position bias table ``[m, heads]``
    gathered by a fixed index and added to the scores."""

    def __init__(self, d=8, heads=2, t=3):
        super().__init__()
        self.heads, self.t = heads, t
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.q_bias = nn.Parameter(torch.randn(d))
        self.v_bias = nn.Parameter(torch.randn(d))
        self.register_buffer("k_bias", torch.zeros(d), persistent=False)
        self.table = nn.Parameter(torch.randn(2 * t - 1, heads))
        i = torch.arange(t)
        self.register_buffer("index", (i[:, None] - i[None, :] + t - 1).reshape(-1))
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, _ = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = nn.functional.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        rel = self.table[self.index].view(t, t, -1).permute(2, 0, 1)
        a = torch.softmax(q @ k.transpose(-1, -2) + rel, -1) @ v
        return self.proj(a.transpose(1, 2).reshape(b, t, -1))


def test_a_constant_along_the_whole_axis_fixes_its_heads_too():
    # the zero key bias fixes q, k and v as a whole; the heads of the output projection
    # and the bias table were declared perm from the table's head axis (BEiT, EVA-02:
    # outputs changed 3e-3 to 6e-3): a type fixed as a whole fixes its blocks' order
    ws = check_identity(ZeroKeyBias(), rand(2, 3, 8))
    assert kind(ws, "table", 1) == "fixed"
