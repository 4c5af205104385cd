"""Practical sizes (issue 23 part 3): the cost statement, the parameter budget, and the
declared choices for large fixed axes (``fixed_axes: {x: dense|set|tied|drop}``)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qgen
from qgen.cli.main import main
from qgen.errors import SpecError
from qgen.solver.basis import solve
from qgen.solver.cost import (
    DEFAULT_BUDGET,
    BudgetError,
    check_budget,
    choose_fixed_axes,
    fixed_axis_options,
    layer_cost,
)
from qgen.solver.verify import size_levels, verify
from qgen.spec import dump_spec, parse_spec
from qgen.spec.fixed_axes import apply_fixed_axes

MNIST = "name: mnist\narch: mlp\nwidths: [784, 32, 32, 10]\nactivation: gelu\n"


def _maps(spec) -> int:
    return solve(spec).counts()["total"]["equivariant"]


# ------------------------------------------------------------------ the choices


def test_each_choice_rewrites_the_type_and_counts_exactly():
    dense = parse_spec(MNIST)
    options = fixed_axis_options(dense)
    assert list(options) == ["x"]  # y (10) is not large
    assert options["x"] == {"dense": 1_269_190, "set": 732, "tied": 732, "drop": 678}
    for choice, maps in options["x"].items():
        spec = parse_spec(MNIST + f"fixed_axes: {{x: {choice}}}\n")
        assert _maps(spec) == maps
        kinds = {n: d.kind for n, d in spec.types.items()}
        if choice == "drop":
            assert "x" not in kinds and [t.name for t in spec.tensors][0] == "b1"
        else:
            assert kinds["x"] == {"dense": "fixed", "set": "perm", "tied": "tied"}[choice]
            assert spec.types["x"].size == 784
        # the explicit form (qgen expand) is a plain spec with the same counts
        assert _maps(parse_spec(dump_spec(spec))) == maps


def test_tied_and_set_counts_are_the_partition_counts_block_by_block():
    # W1 [h1, x*] <- W1: two h1 axes and two x axes, Bell(2) * Bell(2) = 4 (dense: 2 * 784^2)
    tied = solve(parse_spec(MNIST + "fixed_axes: {x: tied}\n"))
    dense = solve(parse_spec(MNIST))
    assert tied.blocks["W1", "W1"].count() == 4
    assert dense.blocks["W1", "W1"].count() == 2 * 784**2
    # blocks without x are untouched; blocks reading x once pool it (one map per term)
    assert tied.blocks["W2", "W2"].count() == dense.blocks["W2", "W2"].count()
    assert tied.blocks["b1", "W1"].count() == dense.blocks["b1", "W1"].count() // 784


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{zz: tied}", "fixed_axes.zz: 'zz' is not a declared type"),
        ("{h1: tied}", "fixed_axes.h1: h1 is a perm type; only plain fixed types"),
        ("{x: shared}", "fixed_axes.x: unknown choice 'shared'; choose one of: dense, set"),
        ("[x]", "fixed_axes: expected a mapping"),
    ],
)
def test_a_bad_choice_is_one_line_naming_the_entry(entry, message):
    with pytest.raises(SpecError) as err:
        parse_spec(MNIST + f"fixed_axes: {entry}\n", "m.yaml")
    assert message in str(err.value) and str(err.value).startswith("m.yaml:5:")
    assert "\n" not in str(err.value)


def test_dropping_every_tensor_is_refused():
    text = "name: e\ntypes: {v: {size: 100}, d: {group: perm}}\ntensors: {E: [v, d]}\n"
    with pytest.raises(SpecError, match="leaves no tensor"):
        parse_spec(text + "fixed_axes: {v: drop}\n")
    kept = parse_spec(
        text.replace("{E: [v, d]}", "{E: [v, d], F: [d]}") + "fixed_axes: {v: drop}\n"
    )
    assert [t.name for t in kept.tensors] == ["F"] and "v" not in kept.types


# ------------------------------------------------------------------ generated layers

SMALL = """
name: tied_small
types:
  x: {size: 5}
  h: {group: scaled}
  y: {size: 2}
tensors:
  W1: [h, x*]
  b1: [h]
  W2: [y, h*]
  E: [x, x*]
"""


@pytest.fixture(scope="module")
def tied_module():
    return qgen.compile(parse_spec(SMALL + "fixed_axes: {x: tied}\n"))


@pytest.fixture(scope="module")
def dense_module():
    return qgen.compile(parse_spec(SMALL))


def _inputs(module, spec_text, h, batch, channels, seed):
    spec = parse_spec(spec_text)
    sizes = {"x": 5, "h": h, "y": 2}
    g = torch.Generator().manual_seed(seed)
    return {
        t.name: torch.randn(
            batch, channels, *(sizes[a.type] for a in t.axes), generator=g, dtype=torch.float64
        )
        for t in spec.tensors
    }


def _x_permutation(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(5, generator=g), torch.ones(5, dtype=torch.float64)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_a_tied_layer_is_equivariant_and_commutes_with_permuting_the_tied_axis(
    tied_module, h, seed
):
    m = tied_module
    torch.manual_seed(seed)
    layer = m.EquivariantLayer(2, 3).double()
    x = _inputs(m, SMALL, h, 3, 2, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    g = m.sample_group_element({"x": 5, "h": h, "y": 2}, gen)
    # the group does not move a tied axis: its element there is the identity
    assert torch.equal(g["x"][0], torch.arange(5)) and torch.equal(
        g["x"][1], torch.ones(5).double()
    )
    y = layer(x)
    gy = layer(m.act(g, x))
    for name in y:
        torch.testing.assert_close(gy[name], m.act(g, y)[name], rtol=1e-10, atol=1e-10)
    # its maps are shared across the indices: permuting x commutes with the layer
    p = {"x": _x_permutation(seed), "h": (torch.arange(h), torch.ones(h, dtype=torch.float64))}
    py = layer(m.act(p, x))
    for name in y:
        torch.testing.assert_close(py[name], m.act(p, y)[name], rtol=1e-10, atol=1e-10)


def test_a_dense_fixed_axis_does_not_commute_with_permuting_it(dense_module, tied_module):
    # the same check fails for the dense axis: the test above can fail
    m = dense_module
    torch.manual_seed(0)
    layer = m.EquivariantLayer(2, 3).double()
    x = _inputs(m, SMALL, 3, 2, 2, 0)
    perm = _x_permutation(1)[0]

    def permute(w: dict) -> dict:
        out = dict(w)
        out["W1"] = w["W1"][..., perm]
        out["E"] = w["E"][:, :, perm][..., perm]
        return out

    y, py = layer(x), layer(permute(x))
    assert (py["E"] - permute(y)["E"]).abs().max() > 1e-3
    assert solve(parse_spec(SMALL)).blocks["E", "E"].count() == 5**4
    assert solve(parse_spec(SMALL + "fixed_axes: {x: tied}\n")).blocks["E", "E"].count() == 15


def test_tied_counts_agree_with_the_numeric_solver():
    basis = solve(parse_spec(SMALL + "fixed_axes: {x: tied}\n"))
    report = verify(basis, size_levels(basis, {}, up_to=3), max_entries=20_000)
    assert report.ok and any(c.skipped is None for c in report.checks)


def test_a_tied_layer_has_exactly_the_solved_parameters(tied_module):
    layer = tied_module.EquivariantLayer(2, 3)
    basis = solve(parse_spec(SMALL + "fixed_axes: {x: tied}\n"))
    total = basis.counts()["total"]
    params = sum(p.numel() for p in layer.parameters())
    assert params == total["equivariant"] * 2 * 3 + total["bias"] * 3
    assert layer_cost(basis).parameters(2, 3) == params


# ------------------------------------------------------------------ the budget


def test_the_cost_names_maps_parameters_and_the_biggest_blocks():
    cost = layer_cost(parse_spec(MNIST))
    assert (cost.maps, cost.bias) == (1_269_190, 807)
    assert cost.biggest[0] == ("W1 <- W1", 2 * 784**2)
    line = cost.statement()
    assert line.startswith("mnist: 1,269,190 parameters per channel pair")
    assert "W1 <- W1 1,229,312 (96.9%)" in line
    assert cost.parameters(16, 16) == 1_269_190 * 256 + 807 * 16


def test_over_the_budget_is_refused_with_the_cost_and_the_options():
    spec = parse_spec(MNIST)
    assert check_budget(spec).maps < DEFAULT_BUDGET  # the benchmark's MLP fits the default
    with pytest.raises(BudgetError) as err:
        check_budget(spec, 1_000_000)
    text = str(err.value)
    assert "\n" not in text
    for part in (
        "1,269,190 parameters per channel pair",
        "budget of 1,000,000",
        "W1 <- W1",
        "{x: set|tied|drop}",
        "tied 732",
        "drop 678",
        "--budget N",
        "budget=N",
    ):
        assert part in text
    with pytest.raises(BudgetError):
        qgen.compile(spec, budget=1_000_000)
    assert qgen.compile(parse_spec(MNIST + "fixed_axes: {x: tied}\n"), budget=1_000)


def test_the_cli_states_the_cost_and_refuses_over_budget(tmp_path, capsys):
    path = tmp_path / "mnist.yaml"
    path.write_text(MNIST)
    assert main(["count", str(path), "--budget", "1000000"]) == 0
    out = capsys.readouterr().out
    assert "cost: mnist: 1,269,190 parameters per channel pair" in out
    assert "budget: OVER the budget of 1,000,000" in out
    assert "x (size 784): dense 1,269,190; set 732; tied 732; drop 678" in out
    assert main(["build", str(path), "-o", str(tmp_path / "out"), "--budget", "1000000"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "over the budget" in captured.err
    assert not (tmp_path / "out").exists()  # refused before anything is written
    path.write_text(MNIST + "fixed_axes: {x: tied}\n")
    assert main(["build", str(path), "-o", str(tmp_path / "out"), "--budget", "1000"]) == 0
    assert capsys.readouterr().out.startswith("cost: mnist: 732 parameters per channel pair")


# ------------------------------------------------------------------ the model-import hook


def test_the_default_for_large_axes_ties_the_biggest_until_the_layer_fits():
    assert choose_fixed_axes(parse_spec(MNIST)) == {}  # within the default budget
    assert choose_fixed_axes(parse_spec(MNIST), budget=1_000) == {"x": "tied"}
    # a token model: vocabulary 1000 and positions 64 fixed, a residual stream of perm
    text = """
name: tokens
types:
  vocab: {size: 1000}
  pos: {size: 64}
  d: {group: perm}
  y: {size: 100}
tensors:
  E: [vocab, d]
  P: [pos, d]
  W: [d, d*]
  U: [y, d*]
"""
    spec = parse_spec(text)
    maps = _maps(spec)
    assert maps > DEFAULT_BUDGET
    chosen = choose_fixed_axes(spec)
    assert chosen == {"vocab": "tied"}  # the biggest first, and no more than needed
    fitted = apply_fixed_axes(spec, chosen)
    assert _maps(fitted) <= DEFAULT_BUDGET < maps
    both = choose_fixed_axes(spec, budget=100)
    assert set(both) == {"vocab", "pos", "y"}
    assert choose_fixed_axes(spec, prefer="drop", budget=100)["vocab"] == "drop"
