"""Counting and building cost the distinct block shapes, not the tensor pairs (issue 24).

Timings are not asserted (shared machines are noisy); what is asserted is what makes them
small: blocks are solved once per shape (a count that does not grow with depth), the
shape-cached answers equal the block-by-block ones on random specs, the summary of a
large count is short, and ``verify`` runs on the threads it is told.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from strategies import sizes_for, specs

from bench import scaling
from qgen.cli.main import DEFAULT_THREADS, main, torch_threads
from qgen.cli.report import SUMMARY_LINES, SUMMARY_TENSORS
from qgen.errors import UsageError
from qgen.solver import basis as basis_module
from qgen.solver.basis import WeightSpaceBasis
from qgen.spec import parse_spec


def _brute_rows(basis: WeightSpaceBasis, sizes: dict) -> list:
    """The threshold lines as qgen worked them out before: every block, one by one."""
    rows = []
    for block in basis.all_blocks():
        below = {t: c for t, c in block.counts_below_threshold().items() if t not in sizes}
        if below:
            th = block.thresholds()
            rows.append((block.label, block.count(sizes), {t: th[t] for t in below}, below))
    return rows


@settings(max_examples=40, deadline=None)
@given(data=specs(max_tensors=4, max_axes=3, nested=True).flatmap(
    lambda s: sizes_for(s).map(lambda z: (s, z))
))  # fmt: skip
def test_shape_cached_answers_equal_the_block_by_block_ones(data):
    spec, sizes = data
    sizes = dict(list(sizes.items())[:1])  # one type held, the others generic
    basis = WeightSpaceBasis(spec)
    total, rows = basis.threshold_rows(sizes)
    brute = _brute_rows(basis, sizes)
    assert rows == brute
    assert total == len(brute)
    assert basis.threshold_rows(sizes, limit=2) == (total, brute[:2])
    for (s, t), count in basis.coupled_counts(sizes).items():
        assert count == basis.blocks[s, t].count(sizes)
    generic = {t: 1 for t in spec.group_types}
    for block in basis.all_blocks():
        for t, n in block.thresholds().items():
            if t in generic:
                generic[t] = max(generic[t], n)
    assert basis.generic_sizes() == generic


def _transformer(depth: int):
    return parse_spec(scaling.spec_text("transformer", depth), source="<t>")


def test_blocks_are_solved_once_per_shape(monkeypatch):
    """Counting and planning a deeper transformer solves no more blocks: the work that
    grows with depth is bookkeeping per pair, not solving."""
    from qgen.codegen.plan import plan_layer

    solved = []
    original = basis_module.Block.count

    def counting(self, sizes=None):
        solved.append(self.label)
        return original(self, sizes)

    monkeypatch.setattr(basis_module.Block, "count", counting)
    calls = {}
    for depth in (3, 6):
        solved.clear()
        basis = WeightSpaceBasis(_transformer(depth))
        basis.coupled_counts()
        basis.coupled_counts({"r": 2})
        calls[depth] = len(solved)
        assert len(basis.coupled_pairs) > 4 * calls[depth]
    assert calls[3] == calls[6]
    plans = [plan_layer(WeightSpaceBasis(_transformer(d))) for d in (1, 2)]
    assert len(plans[1].groups) > len(plans[0].groups)


def test_a_large_count_prints_a_summary_and_full_prints_every_block(capsys):
    spec = _transformer(2)  # 36 tensors
    assert len(spec.tensors) > SUMMARY_TENSORS
    path = spec.source
    text = scaling.spec_text("transformer", 2)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t2.yaml"
        path.write_text(text)
        assert main(["count", str(path)]) == 0
        summary = capsys.readouterr().out.splitlines()
        assert main(["count", str(path), "--full"]) == 0
        full = capsys.readouterr().out.splitlines()
        assert main(["count", str(path), "--json"]) == 0
        counts = json.loads(capsys.readouterr().out)
    assert len(summary) < 2 * SUMMARY_LINES + 12
    assert any("--full" in line for line in summary)
    total = counts["total"]
    last = f"total: {total['equivariant']} equivariant, {total['bias']} bias, "
    assert any(line.startswith(last) for line in summary)
    assert any(line.startswith(last) for line in full)
    # the full table has a row per tensor and a line per block with counts below
    basis = WeightSpaceBasis(spec)
    rows, _ = basis.threshold_rows({})
    assert len(full) > len(spec.tensors) + rows
    assert f"{rows:,} blocks count less" in "\n".join(summary)


def test_verify_threads_default_env_and_flag(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("QGEN_THREADS", raising=False)
        assert torch_threads() == DEFAULT_THREADS == torch.get_num_threads()
        monkeypatch.setenv("QGEN_THREADS", "2")
        assert torch_threads() == 2 == torch.get_num_threads()
        assert torch_threads(1) == 1 == torch.get_num_threads()  # the flag wins
        monkeypatch.setenv("QGEN_THREADS", "many")
        with pytest.raises(UsageError, match="QGEN_THREADS must be a positive integer"):
            torch_threads()
        with pytest.raises(UsageError, match="positive integer, got 0"):
            torch_threads(0)
    finally:
        torch.set_num_threads(before)


def test_the_scaling_bench_runs_and_fits_its_exponent(tmp_path):
    assert scaling.exponent([4, 8, 16], [1.0, 2.0, 4.0]) == pytest.approx(1.0)
    assert scaling.exponent([1, 2], [1.0, 2.0]) is None  # only depths >= 4 are fitted
    out = tmp_path / "scaling.json"
    result = scaling.main(["--quick", "--archs", "mlp", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert {(r["depth"], r["command"]) for r in rows} == {
        (d, c) for d in (1, 2) for c in scaling.COMMANDS
    }
    assert all(r["cpu_s"] > 0 and r["tensors"] == 2 * r["depth"] for r in rows)


def test_a_layer_past_the_term_budget_is_refused_with_its_cost(tmp_path, capsys):
    """Ten 4-axis tensors of one perm type: 414,300 basis terms (100 blocks of Bell(8) =
    4,140), counted per shape in a moment and refused on one line; ``--max-terms`` is the
    stated budget (0: none)."""
    axes = "[p, p, p, p]"
    tensors = "".join(f"  T{i}: {axes}\n" for i in range(10))
    spec = tmp_path / "wide.yaml"
    spec.write_text(f"name: wide\ntypes:\n  p: {{group: perm}}\ntensors:\n{tensors}")
    basis = WeightSpaceBasis(parse_spec(spec.read_text()))
    # every pair coupled, plus each tensor's 15 bias and 15 invariant terms once
    assert basis.term_count() == 100 * 4140 + 10 * 15 + 10 * 15
    out = tmp_path / "out"
    assert main(["build", str(spec), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "the layer has 414,300 basis terms over 10 tensors, more than the 200,000" in err[0]
    assert not out.exists() or not any(out.iterdir())
    assert main(["build", str(spec), "-o", str(out), "--max-terms", "-1"]) == 2
    assert "--max-terms must be 0" in capsys.readouterr().err


def test_uncoupled_blocks_count_once_per_tensor_not_per_pair():
    """500 vectors of 500 different perm types: only a vector's block with itself is
    coupled (2 terms); the 249,500 bias x invariant maps between different vectors are
    one matmul of pooled summaries (the plan's pooled group), so the layer has 1,000
    coupled terms and 500 + 500 pooled ones to plan, within the default bound."""
    types = "".join(f"  p{i}: {{group: perm}}\n" for i in range(500))
    tensors = "".join(f"  v{i}: [p{i}]\n" for i in range(500))
    basis = WeightSpaceBasis(parse_spec(f"name: many\ntypes:\n{types}tensors:\n{tensors}"))
    assert basis.counts()["total"]["equivariant"] == 500 * 500 + 500  # maps: every pair
    assert basis.term_count() == 500 * 2 + 500 + 500
