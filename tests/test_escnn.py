"""Groups from escnn on fixed axes: known counts, orbit counting vs escnn, numeric verify."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qgen import parse_spec, solve
from qgen.errors import SpecError
from qgen.groups.escnn import EscnnKind, EscnnRep, escnn_grid_count, grid_permutations
from qgen.verify import check_block

pytest.importorskip("escnn")


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """Decompositions cached on disk in a folder of this test session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("QGEN_CACHE", str(tmp_path_factory.mktemp("qgen_cache")))
    yield
    mp.undo()


def grid_spec(family: str, n: int, k: int) -> str:
    return (
        "name: g\ntypes:\n"
        f"  kx: {{size: {k}}}\n  ky: {{size: {k}}}\n"
        f"  grid: {{group: {{escnn: {family}, N: {n}}}, rep: {{grid: [kx, ky]}}}}\n"
        "tensors:\n  K: [kx, ky]\n"
    )


@pytest.mark.parametrize(
    "family, n, k, block, invariants",
    [
        ("cyclic", 4, 3, 21, 3),
        ("dihedral", 4, 3, 15, 3),
        ("dihedral", 4, 5, 91, 6),
        ("dihedral", 4, 7, 325, 10),
        ("cyclic", 2, 3, 41, 5),  # D4's rotation subgroup of order 2
    ],
)
def test_known_grid_counts(family, n, k, block, invariants):
    counts = solve(parse_spec(grid_spec(family, n, k))).counts()
    assert counts["equivariant"]["K"]["K"] == block
    assert counts["invariant"]["K"] == invariants == counts["bias"]["K"]


@pytest.mark.parametrize(
    "group, dim, expected",
    [("{escnn: dihedral, N: 4}", 2, 1), ("{escnn: so2}", 2, 2), ("{escnn: so3}", 3, 1)],
)
def test_known_standard_rep_counts(group, dim, expected):
    text = f"name: s\ntypes:\n  v: {{size: {dim}, group: {group}, rep: standard}}\n"
    text += "tensors:\n  V: [v]\n"
    assert solve(parse_spec(text)).counts()["equivariant"]["V"]["V"] == expected


@pytest.mark.parametrize("family, n", [("cyclic", 4), ("dihedral", 4), ("dihedral", 2)])
def test_orbit_counting_agrees_with_escnn_on_a_3x3_grid(family, n):
    kind = EscnnKind(EscnnRep(family, n, grid=3))
    assert kind.count((1, -1)) == escnn_grid_count(kind.rep)


def test_d4_grid_restricted_to_c2_gives_41():
    assert escnn_grid_count(EscnnRep("dihedral", 4, grid=3), rotations=2) == 41
    assert EscnnKind(EscnnRep("cyclic", 2, grid=3)).count((1, -1)) == 41


def test_grid_permutations_are_a_representation():
    """g -> P_g is a homomorphism (closed under products; identity first)."""
    perms = [tuple(p) for p in grid_permutations(EscnnRep("dihedral", 4, grid=3))]
    assert perms[0] == tuple(range(9))
    for p, q in itertools.product(perms, repeat=2):
        assert tuple(p[i] for i in q) in perms


# ---------------------------------------------------------------- random specs vs verify

_REPS = [
    ("{escnn: dihedral, N: 4}", "standard"),
    ("{escnn: cyclic, N: 3}", "regular"),
    ("{escnn: dihedral, N: 3}", "[standard, {irrep: [0, 0]}]"),
    ("{escnn: so2}", "[standard, {irrep: 2}]"),
    ("{escnn: o2}", "standard"),
    ("{escnn: so3}", "standard"),
    ("{escnn: o3}", "standard"),
]
_GRIDS = [("cyclic", 4), ("dihedral", 4), ("cyclic", 2), ("dihedral", 1)]


@st.composite
def escnn_spec_texts(draw) -> str:
    """One escnn type (a rep or a 2x2/3x3 grid) with perm/signed/scaled/gl types."""
    types = {}
    if draw(st.booleans()):
        group, rep = draw(st.sampled_from(_REPS))
        types["e"] = f"{{group: {group}, rep: {rep}}}"
        escnn_axes = [["e"], ["e", "e"]]
    else:
        family, n = draw(st.sampled_from(_GRIDS))
        k = draw(st.integers(2, 3))
        types["kx"] = f"{{size: {k}}}"
        types["ky"] = f"{{size: {k}}}"
        types["g"] = f"{{group: {{escnn: {family}, N: {n}}}, rep: {{grid: [kx, ky]}}}}"
        escnn_axes = [["kx", "ky"]]
    kind = draw(st.sampled_from(["perm", "signed", "scaled", "gl"]))
    types["h"] = f"{{group: {kind}}}"
    tensors = {}
    for i in range(draw(st.integers(1, 3))):
        axes = draw(st.sampled_from([[], ["h"], ["h", "h"]]))
        axes = [a + ("*" if draw(st.booleans()) else "") for a in axes]
        extra = draw(st.sampled_from([[], *escnn_axes]))
        axes = axes + extra if axes or extra else ["h"]
        tensors[f"T{i}"] = "[" + ", ".join(axes) + "]"
    lines = ["name: random_escnn", "types:"]
    lines += [f"  {k}: {v}" for k, v in types.items()]
    lines += ["tensors:"] + [f"  {k}: {v}" for k, v in tensors.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_escnn_counts_agree_with_numeric_verify(data):
    spec = parse_spec(data.draw(escnn_spec_texts()), source="<hypothesis>")
    sizes = {t: data.draw(st.integers(1, 3)) for t in spec.group_types}
    for block in solve(spec).all_blocks():
        check = check_block(block, sizes, max_entries=4096)
        if check.skipped:
            continue
        assert check.numeric == check.enumerated == check.span, (block.label, check)
        assert check.residual <= 1e-9, (block.label, check)


# ---------------------------------------------------------------- spec errors


@pytest.mark.parametrize(
    "types, message",
    [
        ("v: {size: 2, group: {escnn: dihedral}, rep: standard}", "dihedral needs N"),
        ("v: {size: 2, group: {escnn: so2, N: 3}, rep: standard}", "takes no N"),
        ("v: {size: 2, group: {escnn: tetra, N: 3}, rep: standard}", "unknown escnn group"),
        ("v: {size: 2, group: {escnn: dihedral, N: 4}}", "needs a representation"),
        ("v: {size: 3, group: {escnn: dihedral, N: 4}, rep: standard}", "does not match"),
        ("v: {size: 2, group: {escnn: so2}, rep: regular}", "needs a finite group"),
        ("v: {size: 2, group: {escnn: dihedral, N: 4}, rep: fancy}", "unknown representation"),
        ("v: {size: 2, rep: standard}", "'rep' needs an escnn group"),
        ("v: {size: 2, group: escnn}", "escnn group is a mapping"),
        (
            "v: {group: {escnn: cyclic, N: 3}, rep: {grid: [kx, kx]}}\n  kx: {size: 3}",
            "N in 1, 2, 4",
        ),
    ],
)
def test_bad_escnn_specs_name_the_line(types, message):
    text = f"name: s\ntypes:\n  {types}\ntensors:\n  V: [v]\n"
    with pytest.raises(SpecError, match=message) as exc:
        parse_spec(text, source="s.yaml")
    assert "s.yaml:" in str(exc.value)


def test_grid_axes_must_come_in_pairs():
    text = grid_spec("cyclic", 4, 3).replace("K: [kx, ky]", "K: [kx, kx]")
    with pytest.raises(SpecError, match="one kx axis and one ky axis"):
        parse_spec(text, source="s.yaml")


def test_build_refuses_escnn_types_and_writes_nothing(tmp_path):
    from qgen.builder import build

    spec = parse_spec(grid_spec("cyclic", 4, 3), source="g.yaml")
    with pytest.raises(SpecError, match="code generation does not yet"):
        build(spec, tmp_path / "out", tests=True)
    assert not (tmp_path / "out").exists()


def test_escnn_specs_dump_back_to_the_same_spec():
    from qgen.spec import dump_spec

    text = grid_spec("dihedral", 4, 3).replace(
        "types:\n", "types:\n  v: {group: {escnn: so2}, rep: [standard, {irrep: 2}]}\n"
    )
    spec = parse_spec(text)
    again = parse_spec(dump_spec(spec))
    assert again.types == spec.types
    assert solve(again).counts() == solve(spec).counts()
