"""The enumeration against the independent numeric solver, on random specs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import sizes_for, specs

from qgen import parse_spec, solve
from qgen.kinds import get_kind
from qgen.kinds.base import PartitionKind
from qgen.solver.verify import check_block, size_levels, verify

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
    import qgen.solver.basis

    broken = AllowEverything()
    real = qgen.solver.basis.get_kind
    monkeypatch.setattr(
        qgen.solver.basis, "get_kind", lambda n: broken if n == "signed" else real(n)
    )
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


BLOCKWISE_SPEC = """\
name: conv
types:
  cin: {size: %d}
  c1: {group: %s}
  k: {size: %d}
  y: {size: 4}
tensors:
  K1: [c1, cin*, k, k]
  b1: [c1]
  W2: [y, c1*]
"""


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["perm", "signed", "scaled", "gl"]),
    k=st.integers(3, 4),
    n=st.integers(1, 2),
)
def test_blockwise_check_equals_the_full_dense_solve(kind, k, n):
    """Fixed axes of size 3 and 4 are solved on two indices each and scaled back; the
    result equals the dense nullspace and span at the full sizes."""
    from qgen.solver.verify import _solve_and_span

    basis = solve(parse_spec(BLOCKWISE_SPEC % (1, kind, k)))
    for block in basis.all_blocks():
        check = check_block(block, {"c1": n}, max_entries=10**6)
        assert check.ok, (block.label, check)
        if check.solved_at is None:
            continue
        assert max(check.solved_at[t] for t in ("cin", "k", "y") if t in check.solved_at) <= 2
        numeric, span, residual = _solve_and_span(block, check.sizes)
        assert (check.numeric, check.span) == (numeric, span) == (check.enumerated,) * 2
        assert residual <= 1e-9


def test_blockwise_check_catches_a_wrong_fixed_count(monkeypatch):
    """A fixed factor that claims one map too many is caught, however large the axes."""
    from qgen.kinds.fixed import Fixed

    monkeypatch.setattr(Fixed, "count", lambda self, v, n: n ** len(v) + 1)
    basis = solve(parse_spec(BLOCKWISE_SPEC % (3, "perm", 5)))
    check = check_block(basis.blocks["K1", "K1"], {"c1": 2})
    assert check.solved_at is not None and not check.ok


def test_large_conv_blocks_are_checked_not_skipped():
    """3 input channels, 5x5 then 3x3 kernels under positive scalings: every block is
    checked (it took 82 s with the largest block skipped before blockwise checks)."""
    text = BLOCKWISE_SPEC % (3, "scaled", 5) + "  K2: [c2, c1*, k3, k3]\n  W3: [y, c2*]\n"
    text = text.replace("  y:", "  c2: {group: scaled}\n  k3: {size: 3}\n  y:")
    basis = solve(parse_spec(text))
    report = verify(basis, size_levels(basis, {}))
    assert report.ok and not any(c.skipped for c in report.checks)
    assert report.seconds < 30


GROUPED_CONV = """\
name: grouped
types:
  x: {size: 3}
  y: {size: 5}
  g1: {group: perm, size: 2}
  k3: {size: 3}
  h1: {group: scaled, size: 2, within: g1}
  h2: {group: scaled, size: 3, within: g1}
tensors:
  p0_weight: [g1, h1, x*, k3, k3]
  p0_bias: [g1, h1]
  p2_weight: [g1, h2, h1*, k3, k3]
  p2_bias: [g1, h2]
  p6_weight: [y, g1*, h2*]
  p6_bias: [y]
"""


def test_nested_monomial_generators_tie_entries_before_the_dense_stage():
    """A grouped convolution (`qgen spec --from-model` of Conv2d(groups=2)): per-group
    permutations are signed permutations of the entries where their owner matches, so they
    go to the orbit stage; verify of this spec did not finish in 300 s before."""
    basis = solve(parse_spec(GROUPED_CONV))
    report = verify(basis, size_levels(basis, {}, up_to=2))
    assert report.ok and not any(c.skipped for c in report.checks)
    assert max(c.enumerated for c in report.checks) == 729
