"""The three task benchmarks of ``bench/tasks``: tiny end-to-end runs (seconds), and the
pieces whose correctness the tables rest on (batched CNN forward, rescaling keeps the
function, SIREN conventions, dilation, the editing wrapper's equivariance)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("sklearn")
pytest.importorskip("nfn")

from bench.tasks import cnn_generalization, common, inr_classify, inr_edit  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _check_results(path, expected_models, refused=()):
    results = json.loads(path.read_text())
    assert set(results["models"]) == set(expected_models)
    for name, rec in results["models"].items():
        if name in refused:
            assert "no continuous part" in rec["refused"]
            continue
        assert rec["params"] > 0
        (scores,) = rec["seeds"].values()
        assert scores["seconds"] >= 0
        assert all(isinstance(v, (int, float)) for v in scores.values())
    assert path.with_suffix(".md").is_file() and path.with_suffix(".png").is_file()
    return results


def test_inr_classify_tiny(cache):
    out = cache / "out"
    inr_classify.main(["--tiny", "--out", str(out)])
    (path,) = out.glob("inr_classify-*.json")
    results = _check_results(
        path,
        ["MLP", "MLP + augmentation", "StatNN", "NFN NP", "NFN HNP", "qgen perm", "qgen signed"]
        + ["qgen signed, quasi=True"],
        refused=["qgen signed, quasi=True"],
    )
    manifest = results["meta"]["zoo"]
    assert manifest["siren"]["w0"] == inr_classify.CHOSEN["w0"]
    assert manifest["copies_per_image"]["train"] == 2
    # the manifest is written next to the cached zoo
    (saved,) = (cache / "cache" / "tasks").glob("inr-classify-*.json")
    assert json.loads(saved.read_text())["key"] == manifest["key"]
    # a second run resumes: nothing retrained, same JSON
    before = path.read_text()
    inr_classify.main(["--tiny", "--out", str(out)])
    assert path.read_text() == before


def test_inr_split_by_image(cache):
    z = inr_classify.zoo(inr_classify.Config(images=30, copies=3, steps=2, resolution=8))
    sides = [set(z["image"][z["part"] == i].tolist()) for i in range(3)]
    assert not (sides[0] & sides[1]) and not (sides[0] & sides[2]) and not (sides[1] & sides[2])
    counts = torch.bincount(z["image"][z["part"] == 0])
    assert set(counts[counts > 0].tolist()) == {3}
    # independent inits: no two INRs start alike, so no two fits are alike
    w1 = z["weights"]["W1"].flatten(1)
    assert torch.cdist(w1, w1).add(torch.eye(len(w1)) * 1e9).min() > 1e-3


def test_inr_affine_copies_only(cache, monkeypatch):
    """``affine``: training copies after the first are fitted to moved images; the first
    copy, validation and test INRs to the images themselves."""
    seen = {}

    def fake_fit(weights, target, *args):
        seen["target"] = target.clone()
        return torch.zeros(len(target))

    monkeypatch.setattr(common, "fit_sirens", fake_fit)
    c = inr_classify.AffineConfig(images=30, copies=3, steps=1, resolution=8, affine=1.0)
    z = inr_classify.zoo(c)
    x, _ = common.digit_images(8)
    same = (seen["target"] - (x[z["image"]] * 2 - 1)).abs().amax(1) < 1e-6
    first = torch.arange(len(same)) % 3 == 0
    assert same[z["part"] > 0].all() and same[(z["part"] == 0) & first].all()
    assert not same[(z["part"] == 0) & ~first].any()
    assert "affine" in z["manifest"]["augmentation"]


def test_siren_init_bounds():
    w = common.siren_init(2000, 32, 30.0, torch.Generator().manual_seed(0))
    assert w["W1"].abs().max() <= 15.0 and w["W1"].abs().max() > 14.0  # w0 * 1/fan_in
    bound = (6 / 32) ** 0.5
    assert w["W2"].abs().max() <= bound and w["W2"].abs().max() > 0.99 * bound


def test_cnn_forward_matches_conv2d():
    torch.manual_seed(0)
    n = 3
    w = {}
    for name, shape in zip(cnn_generalization.NAMES[::2], cnn_generalization.SHAPES, strict=True):
        w[name] = torch.randn(n, *shape, dtype=torch.float64) * 0.3
        w["b" if name == "W" else "b" + name[1:]] = torch.randn(n, shape[0], dtype=torch.float64)
    w = {k: w[k] for k in cnn_generalization.NAMES}
    x = torch.randn(n, 5, 1, 8, 8, dtype=torch.float64)
    for act, fn in (("relu", torch.relu), ("tanh", torch.tanh)):
        out = cnn_generalization.forward(w, x, act)
        for i in range(n):
            h = x[i]
            for layer, stride in zip((1, 2, 3), cnn_generalization.STRIDES, strict=True):
                h = fn(F.conv2d(h, w[f"K{layer}"][i], w[f"b{layer}"][i], stride=stride, padding=1))
            ref = h.mean((2, 3)) @ w["W"][i].T + w["b"][i]
            torch.testing.assert_close(out[i], ref, rtol=1e-12, atol=1e-12)


def test_cnn_rescaling_keeps_the_function():
    torch.manual_seed(1)
    space = common.space_for(cnn_generalization.SHAPES, "relu", None, "t_cnn_relu")
    n = 4
    w = {}
    for name, shape in zip(cnn_generalization.NAMES[::2], cnn_generalization.SHAPES, strict=True):
        w[name] = torch.randn(n, 1, *shape, dtype=torch.float64) * 0.5
        w["b" if name == "W" else "b" + name[1:]] = torch.randn(n, 1, shape[0], dtype=torch.float64)
    w = {k: w[k] for k in cnn_generalization.NAMES}
    moved = cnn_generalization.rescale(space, w, 1e3)
    assert (moved["K1"] / w["K1"]).abs().max() > 10  # it did rescale
    x = torch.randn(n, 6, 1, 8, 8, dtype=torch.float64)
    a = cnn_generalization.forward({k: v[:, 0] for k, v in w.items()}, x, "relu")
    b = cnn_generalization.forward({k: v[:, 0] for k, v in moved.items()}, x, "relu")
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


CANONICAL = "qgen scaled, canonicalize=True, canonical_space=perm"


def test_cnn_generalization_tiny(cache):
    out = cache / "out"
    cnn_generalization.main(["--tiny", "--out", str(out)])
    (path,) = out.glob("cnn_generalization-relu-*.json")
    results = _check_results(
        path,
        ["MLP", "MLP + augmentation", "StatNN", "NFN NP", "NFN HNP", "qgen perm", "qgen scaled"]
        + ["qgen scaled, quasi=True", CANONICAL],
    )
    # the scale-invariant generated models score the same on rescaled test networks
    for name in ("qgen scaled", "qgen scaled, quasi=True", CANONICAL):
        (s,) = results["models"][name]["seeds"].values()
        assert abs(s["test"] - s["U[1,1e3]"]) < 1e-9, (name, s)
    assert "label_noise" in results["meta"]["zoo"]["varied"]


def test_dilate():
    img = torch.zeros(1, 25)
    img[0, 12] = 1.0  # the centre of a 5x5 image
    d = inr_edit.dilate(img).reshape(5, 5)
    assert d[1:4, 1:4].eq(1).all() and d.sum() == 9


def test_edit_wrapper_is_equivariant():
    torch.manual_seed(0)
    shapes = [(8, 2), (8, 8), (1, 8)]
    space = common.space_for(shapes, "sin", None, "t_inr_sine")
    x = {
        "W1": torch.randn(6, 1, 8, 2),
        "b1": torch.randn(6, 1, 8),
        "W2": torch.randn(6, 1, 8, 8),
        "b2": torch.randn(6, 1, 8),
        "W3": torch.randn(6, 1, 1, 8),
        "b3": torch.randn(6, 1, 1),
    }
    x = {k: v.double() for k, v in x.items()}
    model = inr_edit.Edit(
        common.QgenModel(space, x, 1, 4, 2, output="equivariant"), x, gain=0.5
    ).double()
    assert isinstance(model.model.net, space.MetaNetwork)
    g = space.sample_group_element(space.sizes_of(x), torch.Generator().manual_seed(3))
    a = space.act(g, model(x))
    b = model(space.act(g, x))
    for k in x:
        torch.testing.assert_close(a[k], b[k], rtol=1e-9, atol=1e-9)


def test_inr_edit_tiny(cache):
    out = cache / "out"
    inr_edit.main(["--tiny", "--out", str(out)])
    (path,) = out.glob("inr_edit-*.json")
    results = _check_results(
        path,
        ["MLP", "MLP + augmentation", "StatNN", "NFN NP", "NFN HNP", "qgen perm", "qgen signed"]
        + ["qgen signed, quasi=True"],
        refused=["qgen signed, quasi=True"],
    )
    assert results["meta"]["unedited_mse"]["test"] > 0


def test_parse_options_and_named_rows():
    assert common.parse_options("pool_hidden=32, degree2=True") == {
        "pool_hidden": 32,
        "degree2": True,
    }
    assert common.parse_options(None) == {}
    shapes = [(8, 2), (8, 8), (1, 8)]
    perm = common.space_for(shapes, "sin", "perm", "t_opt_perm")
    full = common.space_for(shapes, "sin", None, "t_opt_sine")
    x = {k: torch.randn(5, 1, *v.shape[2:]) for k, v in _inr_batch().items()}
    models = common.invariant_models(
        perm, full, x, 3, 2, 1, quasi=False, options={"pool_hidden": 4}
    )
    assert "qgen signed, pool_hidden=4" in models and "qgen perm, pool_hidden=4" in models
    model = models["qgen signed, pool_hidden=4"]()
    assert model.options == {"pool_hidden": 4} and model(x).shape == (5, 3)


def _inr_batch():
    return {
        "W1": torch.zeros(1, 1, 8, 2),
        "b1": torch.zeros(1, 1, 8),
        "W2": torch.zeros(1, 1, 8, 8),
        "b2": torch.zeros(1, 1, 8),
        "W3": torch.zeros(1, 1, 1, 8),
        "b3": torch.zeros(1, 1, 1),
    }


def test_cnn_sign_flips_keep_the_tanh_function():
    torch.manual_seed(2)
    space = common.space_for(cnn_generalization.SHAPES, "tanh", None, "t_cnn_tanh")
    n = 4
    w = {}
    for name, shape in zip(cnn_generalization.NAMES[::2], cnn_generalization.SHAPES, strict=True):
        w[name] = torch.randn(n, 1, *shape, dtype=torch.float64) * 0.5
        w["b" if name == "W" else "b" + name[1:]] = torch.randn(n, 1, shape[0], dtype=torch.float64)
    w = {k: w[k] for k in cnn_generalization.NAMES}
    moved = cnn_generalization.flip_signs(space, w)
    assert (moved["K2"] != w["K2"]).any()  # it did flip
    x = torch.randn(n, 6, 1, 8, 8, dtype=torch.float64)
    a = cnn_generalization.forward({k: v[:, 0] for k, v in w.items()}, x, "tanh")
    b = cnn_generalization.forward({k: v[:, 0] for k, v in moved.items()}, x, "tanh")
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
