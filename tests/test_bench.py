"""The benchmark runner works (tiny sizes); its timings are not tested (noisy machines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import run
from bench.reference import HNPLayer
from qgen.codegen.output import compile_spec
from qgen.solver.basis import solve
from qgen.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent


def test_quick_run_writes_every_figure(tmp_path, capsys):
    out = tmp_path / "results.json"
    # --allocator system: leave the test process's malloc settings alone
    args = ["--quick", "--rounds", "1", "--allocator", "system", "--out", str(out)]
    results = run.main(args)
    assert results["allocator"] == "system"
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    layers = {row["case"]: row for row in results["layers"]}
    assert set(layers) == {"inr_mlp", "cnn", "transformer"}
    for row in layers.values():
        for mode in ("forward", "forward_backward"):
            assert all(t > 0 for t in row[mode].values())
            assert {"generated", "floor"} <= set(row[mode])
        assert row["peak_memory_over_io"]["generated"] > 0
    # the dense layer spans the numerically solved basis: as many maps as the generator's
    params = layers["inr_mlp"]["params"]
    assert params["dense"] == params["generated"]
    assert [(r["family"], r["depth"]) for r in results["build"]] == [
        ("mlp", 2),
        ("mlp", 4),
        ("transformer", 1),
    ]
    assert all(r[k] > 0 for r in results["build"] for k in ("count_s", "build_command_s"))
    printed = capsys.readouterr().out
    assert "generated / hand-written HNP" in printed and "generated / floor" in printed


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_hnp_reference_is_permutation_equivariant(arch):
    """The reference must be a genuine HNP layer, or beating it means nothing."""
    if arch == "mlp":
        text = "name: m\narch: mlp\nwidths: [2, 5, 4, 3]\nactivation: gelu\n"
        layers = [("W1", "b1"), ("W2", "b2"), ("W3", "b3")]
    else:
        text = "name: c\narch: cnn\nchannels: [1, 4, 3]\nkernel: 3\nclasses: 2\nactivation: gelu\n"
        layers = [("K1", "b1"), ("K2", "b2"), ("W", "b")]
    module = compile_spec(parse_spec(text))
    gen = torch.Generator().manual_seed(0)
    sizes = {t: d.size for t, d in parse_spec(text).types.items()}
    x = {
        name: torch.randn(2, 3, *(sizes[a.rstrip("*")] for a in axes), generator=gen).double()
        for name, axes in module.TENSORS.items()
    }
    layer = HNPLayer(layers, {w: tuple(x[w].shape[2:]) for w, _ in layers}, 3, 4).double()
    g = module.sample_group_element(module.sizes_of(x), gen)
    y_of_gx, gy = layer(module.act(g, x)), module.act(g, layer(x))
    for name in x:
        torch.testing.assert_close(y_of_gx[name], gy[name], rtol=0, atol=1e-12)


def test_dense_layer_matches_solver_dimension():
    spec = parse_spec("name: m\narch: mlp\nwidths: [2, 3, 2]\nactivation: gelu\n")
    dense = run.DenseLayer(solve(spec), run._sizes(spec), 1, 1)
    assert dense.basis.shape[0] == solve(spec).counts()["total"]["equivariant"]


@pytest.mark.skipif(sys.platform != "linux", reason="mallopt is glibc's")
def test_the_runner_can_make_malloc_keep_freed_memory():
    code = "from bench.run import retain_freed_memory; assert retain_freed_memory()"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_versions_runner_compares_two_checkouts(tmp_path):
    # this checkout against itself: the runner renders, loads, compares and times both
    from bench import versions

    root = Path(__file__).resolve().parents[1]
    rows = versions.compare(str(root), quick=True, rounds=1, min_time=0.0)
    assert [r["case"] for r in rows] == [c.name for c in run.layer_cases(True)]
    for r in rows:
        assert r["lines_old"] == r["lines_new"] and r["max_relative_difference"] == 0.0
        assert r["forward_ratio"] > 0 and r["forward_backward_ratio"] > 0
