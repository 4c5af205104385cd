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
    assert list(inr) == list(study.INR_ZOOS)
    for kind, models in inr.items():
        assert {"NFN NP", "NFN HNP", "qgen perm (entry-pool head)", "StatNN (GBT)"} <= set(models)
        assert ("Canonicalized + MLP" in models) == kind.startswith("shared"), kind
        for name, rec in models.items():
            assert all(0 <= a <= 1 for a in rec["scores"]["test"]), (kind, name)
    for name, rec in cls.items():
        assert set(rec["scores"]) == {"test", *(f"r={r}" for r in study.RANGES[1:])}, name
    # the scale-invariant models score the same on every rescaled copy of the test zoo
    for name in ("Equivariant, scaled", "Quasi-equivariant, scaled", "Canonicalized + perm (HNP)"):
        scores = [s[0] for s in cls[name]["scores"].values()]
        assert max(scores) - min(scores) < 1e-9, (name, scores)
    inr_files = [f"inr-{kind}.json" for kind in study.INR_ZOOS]
    for name in ("classifier.json", *inr_files, "results.md"):
        assert (tmp_path / name).is_file()
    metas = [json.loads((tmp_path / f).read_text())["meta"]["zoo"] for f in inr_files]
    assert [m["inrs"] for m in metas] == [40, 80, 80]  # shared zoos: 2 elements per fit
    assert "shared-signed: accuracy" in (tmp_path / "results.md").read_text()
    for png in ("scatter_accuracy.png", "robustness_rescaling.png", "inr_accuracy.png"):
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


# --- the shared-init INR zoos, their group moves, and the INR baselines ----------------


def _render(w: dict) -> torch.Tensor:
    return zoos.inr_forward({k: v.double() for k, v in w.items()}, zoos.grid().double())


@pytest.mark.parametrize("group", zoos.GROUPS)
def test_shared_zoo_moves_keep_each_function(cache, group):
    zoo = zoos.shared_inr_zoo(zoos.tiny_shared(group), progress=False)
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    unmoved = {k: v[zoo["image"]] for k, v in fits["weights"].items()}
    assert len(zoo["label"]) == 2 * len(fits["label"])  # copies=2 elements per fit
    # the moved INRs are different weights (every W2 changed) ...
    assert ((zoo["weights"]["W2"] - unmoved["W2"]).flatten(1).abs().amax(1) > 1e-3).all()
    if group == "signed":
        assert (zoo["element"]["s1"] < 0).any() and (zoo["element"]["s2"] < 0).any()
    else:
        assert (zoo["element"]["s1"] == 1).all() and (zoo["element"]["s2"] == 1).all()
    # ... that render the same image: float64 renderings of the stored float32 weights differ
    # only by summation order, float32 renderings by float32 rounding
    assert (_render(zoo["weights"]) - _render(unmoved)).abs().max() < 1e-12
    f32 = zoos.inr_forward(zoo["weights"], zoos.grid())
    assert (f32 - zoos.inr_forward(unmoved, zoos.grid())).abs().max() < 1e-6
    # every fit started from the one shared initialization
    assert all(v.shape[0] == 1 for v in zoo["template"].values())


@pytest.mark.parametrize("spec", ["inr_perm", "inr_sine"])
def test_zoo_move_is_the_spec_declared_action(cache, spec):
    """zoos.move and the generated ``act`` of the spec agree, and the spec's random group
    elements keep the rendering of a fitted SIREN (sign flips included, for inr_sine)."""
    space = qgen.compile(ZOO / "specs" / f"{spec}.yaml")
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    w = {k: v.double() for k, v in fits["weights"].items()}
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        g = space.sample_group_element(space.sizes_of(study.to_layout(w)), gen)
        moved = {k: v[:, 0] for k, v in space.act(g, {k: v[:, None] for k, v in w.items()}).items()}
        n = len(fits["label"])
        el = {
            "p1": g["h1"][0].expand(n, -1),
            "s1": g["h1"][1].expand(n, -1),
            "p2": g["h2"][0].expand(n, -1),
            "s2": g["h2"][1].expand(n, -1),
        }
        ours = zoos.move(w, el)
        assert all(torch.equal(ours[k], moved[k]) for k in w)
        assert (_render(moved) - _render(w)).abs().max() < 1e-12
        if spec == "inr_sine":
            assert (g["h1"][1] < 0).any()


def test_shared_zoo_is_deterministic(cache, tmp_path, monkeypatch):
    first = zoos.shared_inr_zoo(zoos.tiny_shared("signed"), progress=False)
    monkeypatch.setenv("QGEN_ZOO_CACHE", str(tmp_path))
    again = zoos.shared_inr_zoo(zoos.tiny_shared("signed"), progress=False)
    assert all(torch.equal(first["weights"][k], again["weights"][k]) for k in first["weights"])
    assert all(torch.equal(first["element"][k], again["element"][k]) for k in first["element"])
    with pytest.raises(ValueError, match="expected one of"):
        zoos.sample_element("scaled", 2, torch.Generator())


@pytest.mark.parametrize("group", zoos.GROUPS)
def test_canonicalization_undoes_the_moves(cache, group):
    zoo = zoos.shared_inr_zoo(zoos.tiny_shared(group), progress=False)
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    signed = group == "signed"
    moved = metanets.align_to_template(zoo["weights"], zoo["template"], signed)
    plain = metanets.align_to_template(
        {k: v[zoo["image"]] for k, v in fits["weights"].items()}, zoo["template"], signed
    )
    assert all(torch.equal(moved[k], plain[k]) for k in moved)  # exactly invariant here
    assert (_render(moved) - _render(zoo["weights"])).abs().max() < 1e-12


def test_group_safe_normalizer_commutes_with_the_group(cache):
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    x = {k: v.double() for k, v in study.to_layout(fits["weights"]).items()}
    gen = torch.Generator().manual_seed(3)
    for spec, centred in (("inr_perm", set(x)), ("inr_sine", {"b3"})):
        space = qgen.compile(ZOO / "specs" / f"{spec}.yaml")
        assert {k for k in x if metanets.centrable(space, k)} == centred
        norm = metanets.GroupSafeNormalizer(space, x).double()
        assert float(norm.centre_b3) != 0.0
        g = space.sample_group_element(space.sizes_of(x), gen)
        a, b = norm(space.act(g, x)), space.act(g, norm(x))
        assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in x)
        out = norm(x)
        for k in x:  # unit RMS per tensor over the zoo, zero mean where centred
            assert abs(float(out[k].square().mean()) - 1) < 1e-9
            if k in centred:
                assert abs(float(out[k].mean())) < 1e-9


@pytest.mark.parametrize(
    "make, spec",
    [
        (lambda s, x: metanets.MetaNet(s, x, 10, channels=3, head="entrypool"), "inr_perm"),
        (lambda s, x: metanets.MetaNet(s, x, 10, channels=3), "inr_perm"),
        (
            lambda s, x: metanets.MetaNet(s, x, 10, channels=3, head="entrypool", skip=True),
            "inr_perm",
        ),
        (lambda s, x: metanets.NFNClassifier(s, x, 10, mode="HNP", channels=3), "inr_perm"),
        (lambda s, x: metanets.NFNClassifier(s, x, 10, mode="NP", channels=3), "inr_perm"),
        (
            lambda s, x: metanets.MetaNet(
                s, x, 10, channels=3, nonlinearity="tanh", head="entrypool"
            ),
            "inr_sine",
        ),
        (
            lambda s, x: metanets.MetaNet(
                s, x, 10, channels=3, nonlinearity="tanh", head="nonlinear"
            ),
            "inr_sine",
        ),
    ],
)
def test_inr_metanetworks_are_invariant(cache, make, spec):
    """qgen and NFN models give the same logits on every moved copy (float64, eval mode)."""
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    x = {k: v.double() for k, v in study.to_layout(fits["weights"]).items()}
    space = qgen.compile(ZOO / "specs" / f"{spec}.yaml")
    torch.manual_seed(0)
    model = make(space, x).double().eval()
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ref = model(x)
        for _ in range(2):
            g = space.sample_group_element(space.sizes_of(x), gen)
            assert torch.allclose(model(space.act(g, x)), ref, rtol=0, atol=1e-10)
    assert ref.std(0).max() > 1e-6  # not a constant function of the input


def test_sign_canonicalized_perm_model_is_sign_invariant(cache):
    """The generated sine ``canonicalize`` then a perm model: invariant under signed
    permutations (float64, eval mode), as the study's sign-canonicalized model is."""
    fits = zoos.shared_fits(zoos.TINY_SHARED_FIT, progress=False)
    x = {k: v.double() for k, v in study.to_layout(fits["weights"]).items()}
    sine = qgen.compile(ZOO / "specs" / "inr_sine.yaml")
    perm = qgen.compile(ZOO / "specs" / "inr_perm.yaml")
    torch.manual_seed(0)
    canon = sine.canonicalize(x)
    model = metanets.MetaNet(perm, canon, 10, channels=3, head="entrypool", skip=True)
    model = model.double().eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        ref = model(canon)
        for _ in range(2):
            g = sine.sample_group_element(sine.sizes_of(x), gen)
            out = model(sine.canonicalize(sine.act(g, x)))
            assert torch.allclose(out, ref, rtol=0, atol=1e-10)
    assert ref.std(0).max() > 1e-6


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_learning_rate_schedule(schedule):
    """``distributed.optimizer``: cosine warms up linearly, peaks at lr, ends at 0."""
    import distributed

    model = torch.nn.Linear(2, 1)
    opt, sched = distributed.optimizer(model, 100, 1e-3, schedule, warmup=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if schedule == "constant":
        assert lrs == [1e-3] * 100
    else:
        assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
        assert max(lrs) == pytest.approx(1e-3) and lrs[-1] < 1e-6
        assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    opt, _ = distributed.optimizer(model, 10, 1e-3, weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW)
