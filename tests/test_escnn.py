"""Groups from escnn on fixed axes: known counts, orbit counting vs escnn, numeric verify."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from test_codegen import check_completeness, full_sizes, randomize, relative_error, weights

import qgen
from qgen import parse_spec, solve
from qgen.errors import SpecError
from qgen.kinds.escnn import EscnnKind, EscnnRep, escnn_grid_count, grid_permutations
from qgen.solver.verify import check_block

ROOT = Path(__file__).resolve().parents[1]

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


def test_build_writes_escnn_modules_that_import_torch_alone(tmp_path):
    from qgen.codegen.output import build

    spec = parse_spec(grid_spec("cyclic", 4, 3), source="g.yaml")
    paths = build(spec, tmp_path / "out", tests=True)
    assert sorted(p.name for p in paths) == ["g.py", "test_g.py"]
    source = paths[0].read_text()
    assert "import escnn" not in source and "qgen" not in source.split('"""')[2]


def test_build_refuses_so3_irreps_and_writes_nothing(tmp_path):
    from qgen.codegen.output import build

    text = "name: s\ntypes:\n  v: {group: {escnn: so3}, rep: [standard, {irrep: 2}]}\n"
    spec = parse_spec(text + "tensors:\n  V: [v]\n", source="s.yaml")
    with pytest.raises(SpecError, match="standard and trivial summands"):
        build(spec, tmp_path / "out", tests=True)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_escnn_specs_dump_back_to_the_same_spec():
    from qgen.spec import dump_spec

    text = grid_spec("dihedral", 4, 3).replace(
        "types:\n", "types:\n  v: {group: {escnn: so2}, rep: [standard, {irrep: 2}]}\n"
    )
    spec = parse_spec(text)
    again = parse_spec(dump_spec(spec))
    assert again.types == spec.types
    assert solve(again).counts() == solve(spec).counts()


# ---------------------------------------------------------------- generated layers


def _element_is_exact(module, g):
    """Finite groups sample exact matrices: orthogonal to rounding, entries of escnn's reps."""
    for t, (kind, _) in module.TYPES.items():
        if kind == "escnn":
            m = g[t]
            eye = torch.eye(m.shape[-1], dtype=torch.float64)
            assert torch.allclose(m @ m.mT, eye, atol=1e-13), t


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking compiles: slow
)
@given(st.data())
def test_random_escnn_specs_give_equivariant_and_complete_layers(data):
    """Generated layers of specs mixing escnn types with perm/signed/scaled/gl types:
    equivariant under random elements (float64, 1e-10), invariant heads, and complete:
    per block the maps they represent span exactly the solver's count, and satisfy the
    numeric solver's constraints."""
    spec = parse_spec(data.draw(escnn_spec_texts()), source="<hypothesis>")
    sizes = full_sizes(spec, {t: data.draw(st.integers(1, 3)) for t in spec.group_types})
    module = qgen.compile(spec)
    seed = data.draw(st.integers(0, 2**31 - 1))
    layer = module.EquivariantLayer(2, 3).double()
    head = module.InvariantHead(2, 4).double()
    randomize(layer, seed)
    randomize(head, seed + 1)
    x = weights(module, sizes, 2, 2, torch.float64, seed)
    g = module.sample_group_element(sizes, torch.Generator().manual_seed(seed))
    _element_is_exact(module, g)
    with torch.no_grad():
        assert relative_error(layer(module.act(g, x)), module.act(g, layer(x))) <= 1e-10
        assert relative_error({"o": head(module.act(g, x))}, {"o": head(x)}) <= 1e-10
        gh = module.compose(g, module.inverse(g))
        assert relative_error(module.act(gh, x), x) <= 1e-10
    if all(n <= 2 for n in sizes.values()):
        check_completeness(spec, module, sizes)


def test_generated_bases_are_the_solvers_exactly():
    """The baked bases decode to the escnn kind's basis bit for bit (grids: 0/1 orbits)."""

    spec = parse_spec(grid_spec("dihedral", 4, 3))
    module = qgen.compile(spec)
    kind = EscnnKind(EscnnRep("dihedral", 4, grid=3))
    expected = torch.from_numpy(kind.basis((1, -1))).reshape(15, 3, 3, 3, 3)
    assert any(torch.equal(b, expected) for b in module._BASES)


def _sine_inr(params, points):
    """A 2 -> h -> h -> 1 sine INR evaluated at ``points`` [P, 2]: ``[P]``."""
    h = torch.sin(points @ params["W1"].T + params["b1"])
    h = torch.sin(h @ params["W2"].T + params["b2"])
    return (h @ params["W3"].T + params["b3"]).squeeze(-1)


def test_d4_acts_on_a_sine_inr_as_rotating_its_grid_and_the_metanetwork_agrees():
    """A real INR acted on by a D4 element (on the coordinates of W1) is the INR evaluated on
    the rotated/reflected grid of points, which a square grid maps onto itself exactly; a
    metanetwork (layer, nonlinearity, layer, invariant head) gives the same output for both,
    and a different one for a rotation outside D4.

    The metanetwork uses inr_sine_d4 with perm hidden types (a subgroup of the sine INR's
    symmetries): with sign flips the only linear invariant is b3, so no head could see W1.
    Its nonlinearity is tanh (odd: it commutes with D4's signed permutation matrices) and
    adds the norm of each neuron's W1 features over coord to b1 (D4-invariant; not
    rotation-invariant after tanh), so the head does depend on W1.
    """
    text = (ROOT / "examples" / "inr_sine_d4.yaml").read_text().replace("signed", "perm")
    module = qgen.compile(parse_spec(text))
    gen = torch.Generator().manual_seed(0)
    h = 6
    shapes = {"W1": (h, 2), "b1": (h,), "W2": (h, h), "b2": (h,), "W3": (1, h), "b3": (1,)}
    params = {k: torch.randn(*s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}
    axis = torch.linspace(-1, 1, 9, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)  # symmetric about 0: D4 permutes its points
    layer1 = module.EquivariantLayer(1, 8).double()
    layer2 = module.EquivariantLayer(8, 8).double()
    head = module.InvariantHead(8, 3).double()
    randomize(layer1, 1)
    randomize(layer2, 2)
    randomize(head, 3)

    def metanet(p):
        y = {k: torch.tanh(v) for k, v in layer1(p).items()}
        y["b1"] = y["b1"] + y["W1"].norm(dim=-1)
        return head(layer2(y))

    def acted(a):
        return module.act({"coord": a}, {k: v[None, None] for k, v in params.items()})

    elements = module._ELEMENTS_coord
    assert len(elements) == 8
    with torch.no_grad():
        reference = metanet({k: v[None, None] for k, v in params.items()})
        for a in elements:
            moved = acted(a)
            rotated = grid @ torch.linalg.inv(a).T  # the points A^-1 x: the grid, permuted
            assert torch.equal(rotated.unique(dim=0), grid.unique(dim=0))
            inr = {k: v[0, 0] for k, v in moved.items()}
            assert torch.allclose(_sine_inr(inr, grid), _sine_inr(params, rotated), atol=1e-12)
            assert relative_error({"o": metanet(moved)}, {"o": reference}) <= 1e-10
        angle = torch.tensor(0.5, dtype=torch.float64)
        c, s = torch.cos(angle), torch.sin(angle)
        turn = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
        assert relative_error({"o": metanet(acted(turn))}, {"o": reference}) > 1e-4
