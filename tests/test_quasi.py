"""Quasi-equivariant layers on real networks: the output weights keep their function.

F(theta) = alpha(theta) . beta(theta) with alpha(theta) in the group, so for any g the
networks built from F(g.theta) and from F(theta) differ by g' = alpha(g.theta) g
alpha(theta)^-1, an element of the group: they must compute the same function. This
catches an action applied on the wrong side or with a missing inverse.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import qgen
from qgen import parse_spec

RELU_MLP = """
name: relu_mlp
types:
  x: {size: 3}
  h1: {group: scaled}
  h2: {group: scaled}
  y: {size: 2}
tensors:
  W1: [h1, x*]
  b1: [h1]
  W2: [h2, h1*]
  b2: [h2]
  W3: [y, h2*]
  b3: [y]
"""

# One attention head: scores X Wq^T (X Wk^T)^T are unchanged by Wq -> M Wq,
# Wk -> M^-T Wk; the output X Wv^T Wo^T by Wv -> N Wv, Wo -> Wo N^-1.
ATTENTION_HEAD = """
name: attention_head
types:
  d: {size: 5}
  dk: {group: gl}
  dv: {group: gl}
tensors:
  Wq: [dk, d*]
  Wk: [dk*, d*]
  Wv: [dv, d*]
  Wo: [d, dv*]
"""


def relu_mlp(w: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    h = torch.relu(inputs @ w["W1"].T + w["b1"])
    h = torch.relu(h @ w["W2"].T + w["b2"])
    return h @ w["W3"].T + w["b3"]


def attention(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    q, k, v = tokens @ w["Wq"].T, tokens @ w["Wk"].T, tokens @ w["Wv"].T
    scores = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1)
    return scores @ v @ w["Wo"].T


def quasi_map(module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layer = module.EquivariantLayer(1, 1, quasi=True).double()
    with torch.no_grad():
        layer.relaxation.rho.fill_(1.0)  # eps = 0.66: a strong relaxation
        for p in layer.relaxation.maps.parameters():
            p.normal_()
    return layer


def as_network(y: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v[0, 0] for k, v in y.items()}


def check_function_is_kept(spec_text, sizes, network, make_input, seed):
    module = qgen.compile(parse_spec(spec_text))
    gen = torch.Generator().manual_seed(seed)
    theta = {
        name: torch.randn(1, 1, *(sizes[a.rstrip("*")] for a in axes), generator=gen).double()
        for name, axes in module.TENSORS.items()
    }
    g = module.sample_group_element(sizes, gen)
    g_theta = module.act(g, theta)
    inputs = make_input(gen)
    # the declared action really is a symmetry of the network
    torch.testing.assert_close(
        network(as_network(g_theta), inputs), network(as_network(theta), inputs)
    )
    layer = quasi_map(module, seed)
    with torch.no_grad():
        f_theta, f_g_theta = as_network(layer(theta)), as_network(layer(g_theta))
    out = network(f_theta, inputs)
    torch.testing.assert_close(network(f_g_theta, inputs), out, rtol=1e-9, atol=1e-9)
    # and the layer is not strictly equivariant: the weights differ by a g' != g
    strict = as_network(module.act(g, {k: v[None, None] for k, v in f_theta.items()}))
    assert max((strict[k] - f_g_theta[k]).abs().max() for k in strict) > 1e-6
    return out


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_relu_mlp_function_is_kept(h1, h2, seed):
    sizes = {"x": 3, "h1": h1, "h2": h2, "y": 2}
    check_function_is_kept(
        RELU_MLP, sizes, relu_mlp, lambda gen: torch.randn(7, 3, generator=gen).double(), seed
    )


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_attention_head_function_is_kept(dk, dv, seed):
    sizes = {"d": 5, "dk": dk, "dv": dv}
    check_function_is_kept(
        ATTENTION_HEAD,
        sizes,
        attention,
        lambda gen: torch.randn(2, 6, 5, generator=gen).double(),
        seed,
    )


def test_a_wrong_action_is_caught():
    """Acting on Wo with N instead of N^-1 (the published pitfall) breaks the function."""
    module = qgen.compile(parse_spec(ATTENTION_HEAD))
    gen = torch.Generator().manual_seed(0)
    sizes = {"d": 5, "dk": 3, "dv": 3}
    theta = {
        name: torch.randn(*(sizes[a.rstrip("*")] for a in axes), generator=gen).double()
        for name, axes in module.TENSORS.items()
    }
    n = torch.linalg.qr(torch.randn(3, 3, generator=gen).double())[0] * 2
    right = {**theta, "Wv": n @ theta["Wv"], "Wo": theta["Wo"] @ torch.linalg.inv(n)}
    wrong = {**theta, "Wv": n @ theta["Wv"], "Wo": theta["Wo"] @ n}
    tokens = torch.randn(2, 6, 5, generator=gen).double()
    torch.testing.assert_close(attention(right, tokens), attention(theta, tokens))
    assert (attention(wrong, tokens) - attention(theta, tokens)).abs().max() > 1e-3
    g = {"dk": torch.eye(3, dtype=torch.float64), "dv": n}
    acted = module.act(g, {k: v[None, None] for k, v in theta.items()})
    torch.testing.assert_close(attention(as_network(acted), tokens), attention(theta, tokens))


@pytest.mark.parametrize("example", ["mlp_relu", "cnn_small", "linear_net"])
def test_quasi_adds_few_parameters(example):
    from pathlib import Path

    module = qgen.compile(Path(__file__).resolve().parents[1] / "examples" / f"{example}.yaml")
    strict = sum(p.numel() for p in module.EquivariantLayer(16, 16).parameters())
    quasi = sum(p.numel() for p in module.EquivariantLayer(16, 16, quasi=True).parameters())
    assert strict < quasi <= strict * 1.5 + 200


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_specs_quasi_property_and_permutation_equivariance(data):
    """Every continuous kind (scaled, gl, orthogonal) on random specs."""
    from strategies import sizes_for, specs

    from qgen.kinds import get_kind

    spec = data.draw(specs(nested=data.draw(st.booleans())))
    continuous = [t for t in spec.group_types if get_kind(spec.types[t].kind).continuous]
    if not any(a.type in continuous for t in spec.tensors for a in t.axes):
        return
    sizes = {**{t.name: t.size for t in spec.types.values() if t.fixed}}
    sizes.update(data.draw(sizes_for(spec)))
    seed = data.draw(st.integers(0, 2**31 - 1))
    module = qgen.compile(spec)
    layer = quasi_map(module, seed)
    gen = torch.Generator().manual_seed(seed)
    x = {
        name: torch.randn(2, 1, *(sizes[a.rstrip("*")] for a in axes), generator=gen).double()
        for name, axes in module.TENSORS.items()
    }
    g = module.sample_group_element(sizes, gen)
    with torch.no_grad():
        gx = module.act(g, x)
        alpha = layer.relaxation
        g_prime = module.compose(alpha(gx), module.compose(g, module.inverse(alpha(x))))
        lhs, rhs = layer(gx), module.act(g_prime, layer(x))
        for k in rhs:
            scale = rhs[k].abs().max().clamp_min(1e-30)
            assert (lhs[k] - rhs[k]).abs().max() / scale <= 1e-10, k
        # permutations only: strict equivariance
        p = {
            t: (e[0], torch.ones_like(e[1]))
            if isinstance(e, tuple)
            else torch.eye(e.shape[-1], dtype=e.dtype)[torch.randperm(e.shape[-1], generator=gen)]
            .expand(e.shape)
            .clone()
            for t, e in g.items()
        }
        lhs, rhs = layer(module.act(p, x)), module.act(p, layer(x))
        for k in rhs:
            scale = rhs[k].abs().max().clamp_min(1e-30)
            assert (lhs[k] - rhs[k]).abs().max() / scale <= 1e-10, k
        for t, e in alpha(x).items():
            if spec.types[t].kind == "orthogonal":
                eye = torch.eye(e.shape[-1], dtype=e.dtype)
                assert (e.mT @ e - eye).abs().max() < 1e-10
                assert torch.allclose(torch.linalg.det(e), torch.ones(()).double())


MULTIHEAD = """
name: multihead
types:
  d: {size: 6}
  head: {group: perm}
  dk: {group: gl, within: head}
  dv: {group: gl, within: head}
tensors:
  Wq: [head, dk, d*]
  Wk: [head, dk*, d*]
  Wv: [head, dv, d*]
  Wo: [d, head*, dv*]
"""


def multihead(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with per-head weights Wq[h], Wk[h], Wv[h] and Wo[:, h]."""
    q = torch.einsum("hkd,btd->bhtk", w["Wq"], tokens)
    k = torch.einsum("hkd,btd->bhtk", w["Wk"], tokens)
    v = torch.einsum("hvd,btd->bhtv", w["Wv"], tokens)
    scores = torch.softmax(q @ k.mT / q.shape[-1] ** 0.5, dim=-1)
    return torch.einsum("bhtv,ehv->bte", scores @ v, w["Wo"])


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_multihead_attention_function_is_kept(heads, dk, dv, seed):
    """Per-head GL (the wreath product): a quasi layer keeps the attention function."""
    sizes = {"d": 6, "head": heads, "dk": dk, "dv": dv}
    check_function_is_kept(
        MULTIHEAD,
        sizes,
        multihead,
        lambda gen: torch.randn(2, 5, 6, generator=gen).double(),
        seed,
    )
