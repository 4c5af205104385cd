"""Exact counts against reference values and against closed forms from sympy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sympy.functions.combinatorial.numbers import stirling

from qgen import parse_spec, solve
from qgen.kinds import get_kind


def one_type_block(kind: str, out_axes: list[str], in_axes: list[str]):
    """The single block T_out <- T_in with every axis of one type ``h``."""
    text = f"""
name: block
types: {{h: {{group: {kind}}}}}
tensors:
  A: [{", ".join(out_axes)}]
  B: [{", ".join(in_axes)}]
"""
    return solve(parse_spec(text)).blocks["A", "B"]


@pytest.mark.parametrize(
    ("out_axes", "in_axes", "by_n"),
    [
        (["h"], ["h"], {1: 1, 2: 2, 3: 2, None: 2}),
        (["h"], ["h", "h"], {1: 1, 2: 4, 3: 5, None: 5}),
        (["h", "h"], ["h", "h"], {1: 1, 2: 8, 3: 14, 4: 15, 5: 15, None: 15}),
        (["h"] * 3, ["h"] * 3, {1: 1, 2: 32, 3: 122, 4: 187, 5: 202, 6: 203, None: 203}),
    ],
)
def test_perm_reference_values(out_axes, in_axes, by_n):
    block = one_type_block("perm", out_axes, in_axes)
    for n, expected in by_n.items():
        assert block.count({"h": n} if n else None) == expected


@pytest.mark.parametrize(
    ("out_axes", "in_axes", "by_n"),
    [
        (["h", "h"], ["h", "h"], {1: 1, 2: 4, 3: 4, None: 4}),
        (["h"] * 3, ["h"] * 3, {1: 1, 2: 16, 3: 31, 4: 31, None: 31}),
        (["h"], ["h", "h"], {1: 0, 2: 0, None: 0}),
        (["h", "h*"], ["h"], {None: 0}),
    ],
)
def test_signed_reference_values(out_axes, in_axes, by_n):
    block = one_type_block("signed", out_axes, in_axes)
    for n, expected in by_n.items():
        assert block.count({"h": n} if n else None) == expected


@pytest.mark.parametrize(("kind", "expected"), [("scaled", 3), ("gl", 2), ("orthogonal", 3)])
def test_matrix_to_matrix_continuous_kinds(kind, expected):
    block = one_type_block(kind, ["h", "h*"], ["h", "h*"])
    assert block.count() == expected
    assert block.count({"h": 2}) == expected


def test_gl_pairings_become_dependent_below_threshold():
    # 3 "+" and 3 "-" axes: the 6 permutations of S_3 acting on V^(x)3, independent iff n >= 3.
    block = one_type_block("gl", ["h", "h", "h"], ["h", "h", "h"])
    assert block.count() == 6
    assert [block.count({"h": n}) for n in (1, 2, 3, 4)] == [1, 5, 6, 6]
    assert block.thresholds() == {"h": 3}


def test_orthogonal_brauer_counts():
    # End_{O(n)}(V^(x)2) has dimension 3 (n >= 2); End(V^(x)4) = 105 generically, 91 at n = 3.
    block = one_type_block("orthogonal", ["h", "h"], ["h", "h"])
    assert [block.count({"h": n}) for n in (1, 2)] == [1, 3]
    big = one_type_block("orthogonal", ["h"] * 4, ["h"] * 4)
    assert big.count() == 105
    assert big.count({"h": 3}) == 91


MLP = """
name: mlp
types:
  x:  {size: 2}
  h1: {group: KIND}
  h2: {group: KIND}
  h3: {group: KIND}
  y:  {size: 2}
tensors:
  W1: [h1, x*]
  b1: [h1]
  W2: [h2, h1*]
  b2: [h2]
  W3: [h3, h2*]
  b3: [h3]
  W4: [y, h3*]
  b4: [y]
"""


@pytest.mark.parametrize(("kind", "total"), [("perm", 164), ("scaled", 21), ("signed", 25)])
def test_mlp_totals(kind, total):
    counts = solve(parse_spec(MLP.replace("KIND", kind))).counts()
    assert counts["total"]["equivariant"] == total


def np_mlp(layers: int) -> str:
    types = "\n".join(f"  h{i}: {{group: perm}}" for i in range(layers + 1))
    tensors = "\n".join(f"  W{i}: [h{i}, h{i - 1}*]\n  b{i}: [h{i}]" for i in range(1, layers + 1))
    return f"name: np_mlp\ntypes:\n{types}\ntensors:\n{tensors}\n"


@pytest.mark.parametrize("layers", [1, 2, 3, 4, 6])
def test_all_permuted_mlp_matches_closed_form(layers):
    counts = solve(parse_spec(np_mlp(layers))).counts()
    assert counts["total"]["equivariant"] == 4 * layers**2 + 10 * layers - 4


@given(st.integers(0, 7), st.integers(1, 8))
def test_perm_count_equals_stirling_sum(m, n):
    """Enumeration with at most n parts equals sum_{j <= min(n, m)} S(m, j) (sympy)."""
    perm = get_kind("perm")
    expected = sum(int(stirling(m, j)) for j in range(0, min(n, m) + 1)) if m else 1
    assert perm.count((1,) * m, n) == expected


def test_invariants_and_bias_use_the_same_machinery():
    spec = parse_spec(MLP.replace("KIND", "perm"))
    basis = solve(spec)
    # b1 <- R: one broadcast term; R <- W2: pool both axes.
    assert basis.bias["b1"].count() == 1
    assert basis.invariant["W2"].count() == 1
    # fixed axes multiply: b4 has a free bias per output neuron, W1 an invariant per input.
    assert basis.bias["b4"].count() == 2
    assert basis.invariant["W1"].count() == 2


def test_fixed_sizes_multiply():
    spec = parse_spec(
        "name: f\ntypes: {h: {group: perm}, x: {size: 3}, y: {size: 2}}\n"
        "tensors: {A: [h, x], B: [y, h]}\n"
    )
    block = solve(spec).blocks["A", "B"]
    assert block.count() == 2 * 3 * 2
    assert block.fixed_multiplicity == 6
