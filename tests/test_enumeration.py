"""Partitions built under the kinds' rules equal the old filter over all set partitions.

The reference here is the brute force qgen used before (every set partition, then the
rule checked part by part); the pruned search (:func:`qgen.kinds.partitions.ruled_partitions`)
and its counting programme must give the same tables, in the same order, on random
points, rules, variances and specs, and refuse what is past its bounds before building it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import specs

from qgen.codegen import blocks
from qgen.kinds.base import MAX_TERMS, PartitionKind
from qgen.kinds.gl import GL
from qgen.kinds.orthogonal import Orthogonal
from qgen.kinds.partitions import (
    PartRule,
    TooLarge,
    ruled_count,
    ruled_partitions,
    set_partitions,
)
from qgen.kinds.perm import Perm
from qgen.kinds.scaled import Scaled
from qgen.kinds.signed import Signed
from qgen.spec import parse_spec


def _all_partitions(m: int) -> Iterator[list[list[int]]]:
    """Every set partition of range(m), by the textbook recursion (the reference)."""
    if m == 0:
        yield []
        return
    for rest in _all_partitions(m - 1):
        for k in range(len(rest)):
            yield [*rest[:k], [*rest[k], m - 1], *rest[k + 1 :]]
        yield [*rest, [m - 1]]


def _canonical(p) -> tuple:
    return tuple(sorted(tuple(sorted(part)) for part in p))


def brute(points, rule: PartRule) -> tuple:
    """The old way: all Bell(m) partitions, filtered."""

    def ok(part) -> bool:
        labels = [points[i][0] for i in part]
        total = sum(points[i][1] for i in part)
        balanced = total == 0 if rule.modulus == 0 else total % rule.modulus == 0
        return (
            len(set(labels)) == len(labels)
            and balanced
            and len(part) >= rule.min_size
            and (rule.max_size == 0 or len(part) <= rule.max_size)
            and (not rule.needs or bool(rule.needs & set(labels)))
            and (rule.accept is None or rule.accept(tuple(part)))
        )

    return tuple(
        sorted(_canonical(p) for p in _all_partitions(len(points)) if all(ok(q) for q in p))
    )


def by_parts(partitions) -> tuple[int, ...]:
    counts = [0] * (max((len(p) for p in partitions), default=-1) + 1)
    for p in partitions:
        counts[len(p)] += 1
    return tuple(counts)


rules = st.builds(
    PartRule,
    modulus=st.sampled_from([0, 1, 2, 3]),
    min_size=st.integers(1, 3),
    max_size=st.sampled_from([0, 1, 2, 3]),
    needs=st.frozensets(st.integers(0, 3), max_size=2),
)
point_lists = st.lists(st.tuples(st.integers(0, 3), st.integers(-2, 2)), max_size=7).map(tuple)


def test_bell_numbers_and_the_reference_agree():
    for m in range(8):
        assert set_partitions(m) == tuple(sorted(_canonical(p) for p in _all_partitions(m)))


@settings(max_examples=300, deadline=None)
@given(points=point_lists, rule=rules)
def test_pruned_enumeration_equals_the_filter(points, rule):
    expected = brute(points, rule)
    assert ruled_partitions(points, rule) == expected
    got = ruled_count(points, rule)
    assert sum(got) == len(expected)
    assert got[: len(by_parts(expected))] == by_parts(expected)
    assert not any(got[len(by_parts(expected)) :])


@settings(max_examples=100, deadline=None)
@given(points=point_lists, rule=rules, bound=st.integers(3, 6))
def test_a_kind_s_own_part_test_is_applied_to_closed_parts(points, rule, bound):
    """A rule that is not a charge (``accept``) prunes nothing but filters closed parts."""
    custom = PartRule(rule.modulus, rule.min_size, rule.max_size, rule.needs, _SumBelow(bound))
    assert ruled_partitions(points, custom) == brute(points, custom)
    assert sum(ruled_count(points, custom)) == len(brute(points, custom))


class _SumBelow:
    """Accept a part when its point indices sum below a bound (hashable for the cache)."""

    def __init__(self, bound: int) -> None:
        self.bound = bound

    def __call__(self, part) -> bool:
        return sum(part) < self.bound

    def __eq__(self, other) -> bool:
        return isinstance(other, _SumBelow) and other.bound == self.bound

    def __hash__(self) -> int:
        return hash(self.bound)


#: the rules as the kinds wrote them before they became charges
OLD_RULES = {
    "perm": lambda part: True,
    "scaled": lambda part: sum(part) == 0,
    "signed": lambda part: len(part) % 2 == 0,
    "gl": lambda part: len(part) == 2 and sum(part) == 0,
    "orthogonal": lambda part: len(part) == 2,
}
KINDS = {
    "perm": Perm(),
    "scaled": Scaled(),
    "signed": Signed(),
    "gl": GL(),
    "orthogonal": Orthogonal(),
}


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    variances=st.lists(st.sampled_from([1, -1]), max_size=7).map(tuple),
)
def test_kind_terms_counts_and_thresholds_equal_the_old_filter(kind, variances):
    old = tuple(
        p
        for p in set_partitions(len(variances))
        if all(OLD_RULES[kind](tuple(variances[i] for i in part)) for part in p)
    )
    k = KINDS[kind]
    assert k.terms(variances) == old
    assert k.count(variances, None) == len(old)
    if isinstance(k, PartitionKind):
        for n in range(1, len(variances) + 2):
            assert k.count(variances, n) == sum(1 for p in old if len(p) <= n)
        assert k.threshold(variances) == (max((len(p) for p in old), default=1) or 1)


class _EvenOrSingle(PartitionKind):
    """A kind whose rule is not a charge: parts of one axis or an even number."""

    name = "even_or_single"
    summary = "test kind"
    action = "monomial"

    def allows(self, part_variances) -> bool:
        return len(part_variances) == 1 or len(part_variances) % 2 == 0

    def generators(self, n: int):
        return []


@given(variances=st.lists(st.sampled_from([1, -1]), max_size=6).map(tuple))
def test_a_kind_with_its_own_allows_keeps_its_rule(variances):
    kind = _EvenOrSingle()
    old = tuple(
        p
        for p in set_partitions(len(variances))
        if all(kind.allows(tuple(variances[i] for i in part)) for part in p)
    )
    assert kind.terms(variances) == old
    assert kind.count(variances, 2) == sum(1 for p in old if len(p) <= 2)


def _brute_options(kind, roles, variances, pools):
    """The old degree-2 per-type table: the kind's terms (every partition where no group
    acts), then parts with one axis per role, not the target's alone, no singleton
    unless pooling."""
    if kind.action is None:
        terms = set_partitions(len(variances))
    else:
        terms = kind.terms(variances)
    out = []
    for p in terms:
        ok = True
        for part in p:
            rs = [roles[i] for i in part]
            if len(set(rs)) != len(rs) or rs == [2] or not (pools or len(part) > 1):
                ok = False
        if ok:
            out.append(p)
    return tuple(out)


@settings(max_examples=60, deadline=None)
@given(spec=specs(max_tensors=3, max_axes=3))
def test_degree2_products_equal_the_filtered_enumeration(spec):
    new = blocks.products(spec)
    saved = blocks._options
    blocks._options = _brute_options
    try:
        old = blocks.products(spec)
    finally:
        blocks._options = saved
    assert new == old


def test_the_issue_s_spec_builds_its_tables_in_a_moment():
    """``[q, q, q, q]`` of a scaled type: 12 axes in a degree-2 table, Bell(12) = 4.2
    million partitions before; the rule-built table takes well under a second."""
    spec = parse_spec(
        "name: qqqq\ntypes:\n  q: {group: scaled}\ntensors:\n  T: [q, q, q, q]\n", source="<t>"
    )
    start = time.process_time()
    # all axes plain: a part joining T and T sums to -2 or -1, so nothing balances
    assert blocks.products(spec) == ()
    mixed = parse_spec(
        "name: mixed\ntypes:\n  q: {group: scaled}\ntensors:\n"
        "  T1: [q*, q, q*, q]\n  T2: [q, q, q, q]\n  T3: [q, q*, q]\n  T4: [q*, q]\n",
        source="<t>",
    )
    found = blocks.products(mixed)
    assert time.process_time() - start < 20
    assert len(found) > 100
    assert ("T1", "T1", "bcijkl,bcjilk->bc", ()) in found


def test_counts_need_no_enumeration_and_tables_are_refused_past_the_bound():
    perm = Perm()
    start = time.process_time()
    # 80 axes of a perm type: Bell(80) terms, counted by the programme in a moment
    assert perm.count((1,) * 80, None) > 10**80
    assert perm.count((1, 1, -1, -1), 2) == 8
    assert time.process_time() - start < 10
    with pytest.raises(TooLarge, match=r"10 axes of a perm type: 115,975 partitions, more than"):
        perm.terms((1,) * 10)
    assert MAX_TERMS >= 21147  # Bell(9): every bundled block stays under the bound
    assert len(perm.terms((1,) * 9)) == 21147


def test_a_block_past_the_bound_is_refused_with_its_size(tmp_path):
    """Exit 2, one line naming the block and its number of terms, nothing written; the
    count of the same spec still answers (it needs no enumeration)."""
    import subprocess
    import sys

    spec = tmp_path / "wide.yaml"
    # four axes of each of two perm types (the spec's limit is four per type): the block
    # T <- T has Bell(8) ** 2 terms
    spec.write_text(
        "name: wide\ntypes:\n  p: {group: perm}\n  q: {group: perm}\n"
        "tensors:\n  T: [p, p, p, p, q, q, q, q]\n"
    )
    out = tmp_path / "out"
    run = subprocess.run(
        # the parameter budget raised: the term bound is what is tested here
        [sys.executable, "-m", "qgen", "build", str(spec), "-o", str(out), "--budget", str(10**12)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "block T <- T: 17,139,600 basis terms, more than the 50,000" in lines[0]
    assert not out.exists() or not any(out.iterdir())
    count = subprocess.run(
        [sys.executable, "-m", "qgen", "count", str(spec)], capture_output=True, timeout=120
    )
    assert count.returncode == 0
