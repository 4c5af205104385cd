"""bench/metanet_learn: its targets are invariant, its runner works, and the generated
MetaNetwork's defaults learn on a GL space and on a signed one (tiny configuration)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.metanet_learn.__main__ import CASES, ROOT, check_invariance, main, sample, target
from qgen.codegen.output import compile_spec


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_target_is_a_function_of_the_network_the_group_keeps(case):
    torch.set_num_threads(1)
    space = compile_spec(ROOT / case.spec)
    g = torch.Generator().manual_seed(0)
    probes = case.probes(g)
    w = sample(space, case, 8, g)
    assert check_invariance(space, case, w, probes, g) < 1e-9
    # and it is not invariant under changes of the weights the group does not make
    moved = {k: v * (1.3 if i == 0 else 1.0) for i, (k, v) in enumerate(w.items())}
    assert (target(case, moved, probes) - target(case, w, probes)).abs().max() > 1e-3


def test_quick_run_writes_every_case(tmp_path):
    out = tmp_path / "r.json"
    main(["--quick", "--models", "default,mlp", "--cases", "perm_mlp,gl_resmlp", "--out", str(out)])
    rows = json.loads(out.read_text())["cases"]
    assert set(rows) == {"perm_mlp", "gl_resmlp"}
    for row in rows.values():
        for runs in row["models"].values():
            assert runs[0]["steps"] == 3 and runs[0]["ms_per_step"] > 0


def test_the_defaults_learn_on_a_gl_stream_and_a_signed_inr():
    """Before the Gram invariants, the default MetaNetwork of the GL residual MLP learned
    nothing (normalized test MSE 0.99 at full size); a flat MLP is above 1 here."""
    results = main(
        [
            "--cases", "gl_resmlp,signed_inr",
            "--models", "default",
            "--train", "256", "--test", "128", "--steps", "100",
            "--hidden", "8", "--batch", "32",
        ]
    )  # fmt: skip
    scores = {k: r["models"]["default"][0]["test_nmse"] for k, r in results["cases"].items()}
    assert scores["gl_resmlp"] < 0.85, scores
    assert scores["signed_inr"] < 0.75, scores
