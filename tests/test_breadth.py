"""The breadth benchmark's harness on its tiny configuration (torch and transformers only):
every model gets a record, each refusal is one line, the JSON is rewritten per model and
the tables render from it. Which models pass is the benchmark's result, not tested here,
except that the harness can carry one through every step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from bench.breadth import run, table  # noqa: E402
from bench.breadth.models import TINY  # noqa: E402
from bench.breadth.steps import REQUIRED, STEPS, one_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("breadth") / "results.json"
    assert run.main(["--tiny", "--out", str(out), "--timeout", "240"]) == 0
    return json.loads(out.read_text())


def test_every_tiny_model_gets_a_record_with_its_steps(tiny):
    results = tiny["results"]
    assert [r["name"] for r in results] == [a.name for a in TINY]
    assert tiny["meta"]["summary"] == {
        "models": len(TINY),
        "end_to_end": sum(r["end_to_end"] for r in results),
        "end_to_end_declared": sum(r["end_to_end_declared"] for r in results),
    }
    for r in results:
        assert set(r["steps"]) <= set(STEPS)
        assert r["end_to_end_declared"] or not r["end_to_end"]
        if r["end_to_end_declared"]:
            assert all(r["steps"][s]["ok"] for s in REQUIRED)
            assert r["steps"]["equivariance"]["rel_err"] <= r["steps"]["equivariance"]["tol"]
        else:  # stopped: the step and its reason, on one line
            assert r["refusal"].startswith(f"{r['failed_step']}: ")
            assert "\n" not in r["refusal"] and len(r["refusal"]) < 340


def test_the_harness_carries_a_model_through_every_step(tiny):
    bert = next(r for r in tiny["results"] if r["name"] == "BertModel")
    assert bert["end_to_end_declared"], bert["refusal"]  # maybe with its fixed axes declared
    assert bert["steps"]["count"]["maps"] > 0
    assert bert["steps"]["function"]["rel_change"] <= bert["steps"]["function"]["tol"]


def test_tables_render_from_the_json(tiny, tmp_path):
    text = table.render(tiny)
    for a in TINY:
        assert f"{a.source}:{a.name}" in text
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tiny))
    cmd = [sys.executable, "-m", "bench.breadth.table", str(path), "--reasons"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.startswith("| count | step | reason |")


def test_refusals_group_by_rule_not_by_model():
    a = "import: a/x.py:1: h = x.flatten(2): x.flatten(...) merges the features, not supported"
    b = "import: b/y.py:9: y = z.flatten(1): x.flatten(...) merges the features, not supported"
    assert table.reason_key(a) == table.reason_key(b)
    c = "import: torch.fx cannot trace ConViT: symbolically traced variables (data-dependent"
    d = "import: torch.fx cannot trace CrossVit: symbolically traced variables (data-dependent"
    assert table.reason_key(c) == table.reason_key(d)


def test_one_line_keeps_qgen_refusals_and_names_other_errors():
    from qgen.frommodel.reader import UnsupportedModel

    # qgen's own refusals are one line already (QgenError escapes newlines): kept whole
    assert one_line(UnsupportedModel("f.py:3: x: not supported")) == "f.py:3: x: not supported"
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(KeyError("w")) == "KeyError: 'w'"
    assert len(one_line(ValueError("v" * 1000))) == 300
