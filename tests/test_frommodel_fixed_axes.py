"""The reader's default for sizes: an imported layer over the build budget declares its
large fixed axes ``tied`` (``fixed_axes="auto"``), written into the spec with the counts;
``"none"`` keeps the dense spec; a model that no declaration fits is refused naming the
operation that fixed its largest axis. Real torch modules, no extra packages."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import qgen
from qgen.frommodel.reader import weight_space_from_module
from qgen.solver.basis import solve
from qgen.solver.cost import DEFAULT_BUDGET, BudgetError, plan_fixed_axes
from qgen.spec import parse_spec
from qgen.spec.fixed_axes import apply_fixed_axes

VOCAB = 2000


class Text(nn.Module):
    """Embedding + mean over tokens + Linear: the vocabulary axis is fixed (rows picked
    by id); dense, its block alone is VOCAB ** 2 = 4,000,000 maps."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 16)
        self.fc = nn.Linear(16, 4)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


class Shifted(nn.Module):
    """A hidden channel axis fixed by a constant that varies along it (a non-persistent
    buffer added to the features): its Linear layers read and write a fixed axis."""

    def __init__(self, n=24):
        super().__init__()
        self.a = nn.Linear(3, n)
        self.b = nn.Linear(n, n)
        self.register_buffer("shift", torch.linspace(0, 1, n), persistent=False)

    def forward(self, x):
        return self.b(torch.relu(self.a(x) + self.shift))


def _maps(spec) -> int:
    return solve(spec).counts()["total"]["equivariant"]


def _ids():
    return torch.randint(0, VOCAB, (1, 8), generator=torch.Generator().manual_seed(0))


def test_a_vocabulary_over_the_budget_is_declared_tied_with_its_counts():
    torch.manual_seed(0)
    model = Text().eval()
    ws = weight_space_from_module(model, "text", example_input=_ids())
    dense = ws.dense_spec
    assert _maps(dense) == 4_000_032 > DEFAULT_BUDGET
    assert ws.fixed_axes == {f"k{VOCAB}": "tied"}
    assert ws.fixed_axes_maps == (4_000_032, 34)
    assert ws.spec.types[f"k{VOCAB}"].kind == "tied" and _maps(ws.spec) == 34
    # the declaration is in the spec's text, with the counts and the user's line
    assert ws.text.endswith(f"fixed_axes: {{k{VOCAB}: tied}}\n")
    assert "4,000,032" in ws.text and "it has 34." in ws.text
    assert "test_frommodel_fixed_axes.py" in ws.text and "torch.embedding" in ws.text
    assert parse_spec(ws.text).types == ws.spec.types  # what the CLI writes is the spec
    # the layer builds under the default budget, and acting with its group keeps the
    # network's function (the tied axis is not moved)
    module = qgen.compile(ws.spec)
    theta = ws.to_weights([model.state_dict()])
    g = module.sample_group_element(module.sizes_of(theta), torch.Generator().manual_seed(1))
    moved = Text().eval()
    moved.load_state_dict(ws.to_state_dicts(module.act(g, theta), model.state_dict())[0])
    x = _ids()
    with torch.no_grad():
        assert torch.allclose(model(x), moved(x), atol=1e-5)


def test_fixed_axes_none_keeps_the_dense_import_and_build_refuses_it():
    ws = weight_space_from_module(Text().eval(), example_input=_ids(), fixed_axes="none")
    assert ws.fixed_axes == {} and ws.spec.types[f"k{VOCAB}"].fixed
    assert "fixed_axes" not in ws.text
    with pytest.raises(BudgetError, match="over the budget of 2,000,000"):
        qgen.compile(ws.spec)


def test_a_mapping_declares_the_users_own_choice():
    ws = weight_space_from_module(
        Text().eval(), example_input=_ids(), fixed_axes={f"k{VOCAB}": "set"}
    )
    assert ws.spec.types[f"k{VOCAB}"].kind == "perm"
    assert "declared by the user" in ws.text and ws.fixed_axes == {f"k{VOCAB}": "set"}
    with pytest.raises(qgen.errors.UsageError, match="not a declared type"):
        weight_space_from_module(Text().eval(), example_input=_ids(), fixed_axes={"zz": "tied"})


def test_within_the_budget_nothing_is_declared():
    spec = qgen.spec_from_module(Shifted().eval(), example_input=torch.randn(2, 3))
    assert "fixed_axes" not in spec.text and all(d.kind != "tied" for d in spec.types.values())


def test_a_model_no_declaration_fits_is_refused_naming_the_operation():
    # the hidden axis (24) is fixed by `+ self.shift`; under a budget of 5 maps nothing fits
    with pytest.raises(BudgetError) as err:
        weight_space_from_module(Shifted().eval(), example_input=torch.randn(2, 3), budget=5)
    text = str(err.value)
    assert "over the budget of 5" in text and "with every fixed axis that helps declared" in text
    assert "h2 (24) at " in text and "test_frommodel_fixed_axes.py:" in text
    assert "self.a(x) + self.shift" in text and "--fixed-axes none" in text
    assert "\n" not in text


def test_the_fixed_hidden_axis_origin_is_recorded_and_can_be_tied():
    ws = weight_space_from_module(Shifted().eval(), example_input=torch.randn(2, 3), budget=100)
    name = "h1"  # the Linear's output, before the add
    assert ws.dense_spec.types[name].fixed and ws.dense_spec.types[name].size == 24
    assert "self.a(x) + self.shift" in ws.fixed_origins[name]
    assert ws.fixed_axes.get(name) == "tied" and _maps(ws.spec) <= 100


def _greedy_by_solves(spec, budget):
    """The plan the slow way: one solve per candidate and round."""
    from qgen.solver.cost import large_axes

    chosen, maps, steps = {}, _maps(spec), []
    candidates = large_axes(spec, 2)
    while maps > budget and candidates:
        counts = {c: _maps(apply_fixed_axes(spec, {**chosen, c: "tied"})) for c in candidates}
        best = min(candidates, key=lambda c: counts[c])
        if counts[best] >= maps:
            break
        chosen[best], maps = "tied", counts[best]
        steps.append((best, spec.types[best].size, maps))
        candidates.remove(best)
    return chosen, tuple(steps)


@pytest.mark.parametrize("budget", [10_000, 500, 60])
def test_the_fast_plan_is_the_greedy_of_one_solve_per_candidate(budget):
    # a kernel axis of size 3 read 4 times in one block (fewer indices than points: the
    # partition count the solver uses, not the one for n >= k), a vocabulary, positions
    spec = parse_spec(
        """
name: mixed
types:
  x: {size: 3}
  k3: {size: 3}
  h: {group: perm}
  vocab: {size: 40}
  pos: {size: 7}
  y: {size: 5}
tensors:
  C: [h, x, k3, k3]
  E: [vocab, h]
  P: [pos, h]
  W: [h, h]
  U: [y, h, pos]
"""
    )
    plan = plan_fixed_axes(spec, budget)
    assert (plan.choices, plan.steps) == _greedy_by_solves(spec, budget)
    assert plan.after == _maps(apply_fixed_axes(spec, plan.choices))
    assert plan.fits == (plan.after <= budget)


def test_the_cli_writes_the_declaration_and_none_keeps_it_dense(tmp_path):
    source = Path(__file__).read_text()
    start, end = source.index("class Text("), source.index("class Shifted(")
    (tmp_path / "user_text.py").write_text(
        f"import torch\nfrom torch import nn\nVOCAB = {VOCAB}\n\n\n"
        + source[start:end]
        + "def text():\n    return Text()\n"
    )
    root = str(Path(qgen.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}

    def run(*extra):
        cmd = [sys.executable, "-m", "qgen", "spec", "--from-model", "user_text:text"]
        cmd += ["--input-shape", "1,8", "--input-dtype", "long", *extra]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)

    out = run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith(f"fixed_axes: {{k{VOCAB}: tied}}\n")
    assert f"declared fixed_axes {{k{VOCAB}: tied}}" in out.stderr
    assert parse_spec(out.stdout).types[f"k{VOCAB}"].kind == "tied"
    dense = run("--fixed-axes", "none")
    assert dense.returncode == 0 and "fixed_axes" not in dense.stdout
    over = run("--budget", "1")
    assert over.returncode == 2 and "over the budget of 1;" in over.stderr


def test_the_example_input_passed_as_the_name_is_refused_with_what_to_do():
    """``spec_from_module(model, x)`` puts the input where the spec's name goes: a
    TypeError that says so, not a failure deep inside the reader."""
    with pytest.raises(TypeError, match="example_input="):
        qgen.spec_from_module(nn.Linear(3, 2), torch.randn(1, 3))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        qgen.spec_from_module(lambda x: x)
