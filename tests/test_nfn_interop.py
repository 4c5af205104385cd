"""to_nfn / from_nfn: qgen's weight-space dict <-> NFN's WeightSpaceFeatures.

The round trip and the refusals run always; the checks against the ``nfn`` package
(its layers accept the converted batch, and a hidden-unit permutation acts the same way
on both sides, so NFN's layers are equivariant to qgen's group action) run when it is
installed (``pip install 'qgen[nfn]'``, done by scripts/setup.sh).
"""

from __future__ import annotations

import pytest
import torch

import qgen
from qgen.data.nfn_interop import Features, from_nfn, nfn_layers, to_nfn

MLP = "name: m\narch: mlp\nwidths: [3, 5, 4, 2]\nactivation: gelu\n"  # gelu: permutations
CNN = "name: c\narch: cnn\nchannels: [2, 3, 4]\nkernel: 3\nclasses: 5\nactivation: gelu\n"


@pytest.fixture(scope="module")
def spaces():
    return {k: qgen.compile(qgen.parse_spec(t)) for k, t in (("mlp", MLP), ("cnn", CNN))}


def _batch(space, b: int = 3, c: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    types = {t: (n if n is not None else 4) for t, (_, n) in space.TYPES.items()}
    sizes = {"h1": 5, "h2": 4, "c1": 3, "c2": 4, **{t: n for t, n in types.items() if n}}
    return {
        name: torch.randn(
            b, c, *(sizes[a.rstrip("*")] for a in axes), generator=gen, dtype=torch.float64
        )
        for name, axes in space.TENSORS.items()
    }


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_round_trip_keeps_every_tensor(spaces, kind):
    space = spaces[kind]
    x = _batch(space, c=2)
    feats = to_nfn(x, space)
    assert len(feats.weights) == len(feats.biases) == len(space.TENSORS) // 2
    back = from_nfn(feats, space)
    assert list(back) == list(x)
    assert all(back[k] is x[k] for k in x)  # a renaming: the very same tensors
    # NFN's layout: [B, C, out, in(, kh, kw)] and [B, C, out]
    assert feats.weights[0].shape == x[list(x)[0]].shape
    if kind == "cnn":
        assert feats.weights[0].dim() == 6 and feats.weights[-1].dim() == 4


def test_layers_read_from_the_spec_and_non_chains_refused(spaces):
    assert nfn_layers(spaces["mlp"]) == [("W1", "b1"), ("W2", "b2"), ("W3", "b3")]
    assert nfn_layers(qgen.parse_spec(CNN))[-1] == ("W", "b")
    with pytest.raises(ValueError, match="plain MLP/CNN chains only"):
        nfn_layers({"W1": ("h", "x*"), "W2": ("y", "h*")})
    with pytest.raises(ValueError, match="W2 takes h9"):
        nfn_layers({"W1": ("h", "x*"), "b1": ("h",), "W2": ("y", "h9*"), "b2": ("y",)})
    x = _batch(spaces["mlp"])
    with pytest.raises(ValueError, match="the dict has tensors"):
        to_nfn({k: v for k, v in x.items() if k != "b2"}, spaces["mlp"])
    with pytest.raises(ValueError, match="1 weights and 1 biases for 3 layers"):
        from_nfn(Features((x["W1"],), (x["b1"],)), spaces["mlp"])


def _nfn_permute(feats, perms):
    """Hidden-unit permutations applied in NFN's own layout: layer i's rows (and bias)
    by ``perms[i]``, layer i+1's columns by the same."""
    from nfn.common import WeightSpaceFeatures

    ws, bs = list(feats.weights), list(feats.biases)
    for i, p in enumerate(perms):
        ws[i], bs[i] = ws[i][:, :, p], bs[i][:, :, p]
        ws[i + 1] = ws[i + 1][:, :, :, p]
    return WeightSpaceFeatures(ws, bs)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("layer", ["NPLinear", "HNPLinear"])
def test_nfn_layers_take_the_batch_and_commute_with_our_permutations(spaces, kind, layer):
    nfn = pytest.importorskip("nfn")
    from nfn.common import WeightSpaceFeatures, network_spec_from_wsfeat

    space = spaces[kind]
    x = _batch(space, b=2, c=1, seed=1)
    feats = to_nfn(x, space)
    assert isinstance(feats, WeightSpaceFeatures)
    torch.manual_seed(0)
    f = getattr(nfn.layers, layer)(network_spec_from_wsfeat(feats), 1, 3).double()
    y = from_nfn(f(feats), space)
    assert y[list(x)[0]].shape[1] == 3
    assert space.sizes_of(y, channels=3)  # NFN's output is a valid qgen batch, 3 channels

    g = space.sample_group_element(space.sizes_of(x), torch.Generator().manual_seed(2))
    hidden = [t for t, (kind_, _) in space.TYPES.items() if kind_ == "perm"]
    perms = [g[t][0] for t in hidden]
    assert all(torch.all(g[t][1] == 1) for t in hidden)  # pure permutations
    # the same permutation on both sides
    moved = to_nfn(space.act(g, x), space)
    by_nfn = _nfn_permute(feats, perms)
    for a, b in zip(moved.weights + moved.biases, by_nfn.weights + by_nfn.biases, strict=True):
        assert torch.equal(a, b)
    # NFN's layer is equivariant to qgen's group action
    lhs = from_nfn(f(moved), space)
    rhs = space.act(g, y)
    for k in lhs:
        torch.testing.assert_close(lhs[k], rhs[k], rtol=1e-12, atol=1e-12)
