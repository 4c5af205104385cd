"""The model-zoo study (bench/zoo) end to end at a tiny scale, so that it cannot rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ZOO = Path(__file__).resolve().parent.parent / "bench" / "zoo"
sys.path.insert(0, str(ZOO))

import metanets  # noqa: E402
import study  # noqa: E402
import zoos  # noqa: E402

import qgen  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QGEN_ZOO_CACHE", str(path))
        yield path


def test_tiny_study_runs_end_to_end(cache, tmp_path):
    out = study.main(["--tiny", "--out", str(tmp_path)])
    cls, inr = out["results"]["classifier"], out["results"]["inr"]
    assert "Equivariant, scaled" in cls and "Quasi-equivariant, scaled" in cls
    assert "Equivariant, signed" in inr and "Equivariant, perm (HNP)" in inr
    for name, rec in cls.items():
        assert set(rec["scores"]) == {"test", *(f"r={r}" for r in study.RANGES[1:])}, name
    # the scale-invariant models score the same on every rescaled copy of the test zoo
    for name in ("Equivariant, scaled", "Quasi-equivariant, scaled", "Canonicalized + perm (HNP)"):
        scores = [s[0] for s in cls[name]["scores"].values()]
        assert max(scores) - min(scores) < 1e-9, (name, scores)
    for name in ("classifier.json", "inr.json", "results.md"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "inr.json").read_text())["meta"]["zoo"]["inrs"] == 40
    for png in ("scatter_accuracy.png", "robustness_rescaling.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_zoos_are_cached_and_deterministic(cache, tmp_path, monkeypatch):
    first = zoos.classifier_zoo(zoos.TINY_CLASSIFIER, progress=False)
    assert any(cache.glob("classifier-*.pt"))
    monkeypatch.setenv("QGEN_ZOO_CACHE", str(tmp_path))
    again = zoos.classifier_zoo(zoos.TINY_CLASSIFIER, progress=False)
    assert all(torch.equal(first["weights"][k], again["weights"][k]) for k in first["weights"])
    assert torch.equal(first["test_accuracy"], again["test_accuracy"])


def test_rescaling_keeps_the_function_and_canonicalization_removes_it(cache):
    zoo = zoos.classifier_zoo(zoos.TINY_CLASSIFIER, progress=False)
    relu = qgen.compile(ZOO / "specs" / "mlp_relu.yaml")
    x = {k: v.double() for k, v in study.to_layout(zoo["weights"]).items()}
    y = study.rescale(relu, x, 16.0)
    images, labels = zoos.digits()
    acc_x = zoos.mlp_accuracy({k: v[:, 0] for k, v in x.items()}, images.double(), labels)
    acc_y = zoos.mlp_accuracy({k: v[:, 0] for k, v in y.items()}, images.double(), labels)
    assert torch.equal(acc_x, acc_y)
    assert (y["W2"] - x["W2"]).abs().max() > 0.1
    cx, cy = metanets.canonicalize_scales(relu, x), metanets.canonicalize_scales(relu, y)
    assert all(torch.allclose(cx[k], cy[k], rtol=1e-10, atol=1e-12) for k in cx)
