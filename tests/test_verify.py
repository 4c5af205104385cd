"""The enumeration against the independent numeric solver, on random specs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import sizes_for, specs

from qgen import parse_spec, solve
from qgen.groups import get_kind
from qgen.groups.base import PartitionKind
from qgen.verify import check_block, size_levels, verify

MAX_ENTRIES = 4096


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_enumeration_matches_numeric_solver_on_random_specs(data):
    spec = data.draw(specs())
    sizes = data.draw(sizes_for(spec))
    basis = solve(spec)
    for block in basis.all_blocks():
        check = check_block(block, sizes, max_entries=MAX_ENTRIES)
        if check.skipped:
            continue
        assert check.numeric == check.enumerated, (block.label, sizes, check)
        assert check.span == check.enumerated, (block.label, sizes, check)
        assert check.residual <= 1e-9, (block.label, sizes, check)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_nested_types_enumeration_matches_numeric_solver(data):
    """Wreath products (a perm type with types nested in it) on random specs."""
    spec = data.draw(specs(nested=True, max_axes=2))
    sizes = data.draw(sizes_for(spec))
    for block in solve(spec).all_blocks():
        check = check_block(block, sizes, max_entries=MAX_ENTRIES)
        if check.skipped:
            continue
        assert check.numeric == check.enumerated == check.span, (block.label, sizes, check)
        assert check.residual <= 1e-9, (block.label, sizes, check)


@pytest.mark.parametrize(
    "text",
    [
        # three axes of one perm type on each side: 203 generically, 187 at n = 4
        "name: cube\ntypes: {h: {group: perm}}\ntensors: {T: [h, h, h]}\n",
        # a mixed spec with every kind and dual axes
        "name: mixed\ntypes: {a: {group: gl}, b: {group: orthogonal}, c: {group: scaled},"
        " d: {group: signed}, x: {size: 2}}\n"
        "tensors: {A: [a, a*], B: [b, c*, x], C: [c, d, d*], D: [a*, b]}\n",
    ],
)
def test_verify_reports_agreement(text):
    basis = solve(parse_spec(text))
    report = verify(basis, size_levels(basis, {}, up_to=4), max_entries=5000)
    assert report.ok
    assert any(c.skipped is None and c.generic for c in report.checks)


class AllowEverything(PartitionKind):
    """A wrong 'signed' kind that forgets the even-part rule."""

    name = "signed"
    summary = "broken"

    def allows(self, part_variances):
        return True

    def generators(self, n):
        return get_kind("signed").generators(n)


def test_verify_catches_a_wrong_rule(monkeypatch):
    import qgen.basis

    broken = AllowEverything()
    real = qgen.basis.get_kind
    monkeypatch.setattr(qgen.basis, "get_kind", lambda n: broken if n == "signed" else real(n))
    basis = solve(parse_spec("name: s\ntypes: {h: {group: signed}}\ntensors: {W: [h, h*]}\n"))
    report = verify(basis, size_levels(basis, {}, up_to=2))
    assert not report.ok
    bad = report.failures[0]
    assert bad.numeric < bad.enumerated


def test_attention_wreath_product_counts():
    """Multi-head attention weights with per-head GL: 1 map per (head-carried) block."""
    spec = """
name: mha
types:
  d: {size: 2}
  head: {group: perm}
  dk: {group: gl, within: head}
tensors:
  Wq: [head, dk, d*]
  Wk: [head, dk*, d*]
"""
    basis = solve(parse_spec(spec))
    assert basis.blocks["Wq", "Wq"].count() == 4  # identity per head, dense over d x d
    assert basis.blocks["Wq", "Wk"].count() == 0  # dk and dk* cannot pair
    assert basis.invariant["Wq"].count() == 0
    report = verify(basis, size_levels(basis, {}, up_to=3))
    assert report.ok


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_cached_counts_equal_direct_block_counts(data):
    """counts() shares work between blocks of the same shape; it must not change a count."""
    spec = data.draw(specs(nested=data.draw(st.booleans())))
    sizes = data.draw(st.one_of(st.just({}), sizes_for(spec)))
    basis = solve(spec)
    counts = basis.counts(sizes)
    for (s, t), block in basis.blocks.items():
        assert counts["equivariant"][s][t] == block.count(sizes)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_generic_sizes_equal_the_maximum_block_threshold(data):
    spec = data.draw(specs(nested=data.draw(st.booleans())))
    basis = solve(spec)
    naive = {
        t: max([1, *(b.thresholds().get(t, 1) for b in basis.all_blocks())])
        for t in spec.group_types
    }
    assert basis.generic_sizes() == naive
