"""The metanetwork building blocks: build-time tables from the kinds (qgen.codegen.blocks) and the
torch-only runtime (qgen.runtime.blocks), tested directly; float64 at 1e-10."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qgen
from qgen.codegen.blocks import block_tables, canonicalization, gram, products
from qgen.codegen.output import compile_spec
from qgen.codegen.pytext import WIDTH, format_source, literal
from qgen.data import chain_spec
from qgen.runtime import blocks as B
from qgen.runtime.source import definitions, extract
from qgen.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-10

MIXED = """
name: mixed
types:
  x: {size: 2}
  h: {group: scaled}
  s: {group: signed}
  o: {group: orthogonal}
tensors:
  A: [h, x*]
  B: [s, h*]
  C: [o, s*]
  c: [s]
"""
RECURRENT = """
name: recurrent
types:
  x: {size: 2}
  h: {group: scaled}
tensors:
  U: [h, x*]
  W: [h, h*]
"""


def _spec(text: str):
    return parse_spec(text, "<test>")


def _relative(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)) for k in b)


def _weights(space, sizes, seed, channels=3, batch=2):
    gen = torch.Generator().manual_seed(seed)
    full = {t: (s if s is not None else sizes) for t, (_, s) in space.TYPES.items()}
    x = {
        n: torch.randn(batch, channels, *(full[a.rstrip("*")] for a in axes), generator=gen)
        for n, axes in space.TENSORS.items()
    }
    x = {k: v.double() for k, v in x.items()}
    return x, space.sample_group_element(space.sizes_of(x), gen)


# ------------------------------------------------------------------ tables from the kinds


def test_rules_follow_the_kinds():
    relu = block_tables(load_spec(ROOT / "examples" / "mlp_relu.yaml"))
    assert relu["activation"]["W2"] == "homogeneous" and relu["activation"]["b4"] == "any"
    assert relu["centre"]["W2"] is None and relu["norm"]["W2"] is None
    assert relu["centre"]["b4"] == () and relu["norm"]["b4"] == (1, 2)
    sine = block_tables(load_spec(ROOT / "examples" / "inr_sine.yaml"))
    assert sine["activation"]["W2"] == "odd" and sine["norm"]["W2"] == (1, 2, 3)
    d4 = block_tables(load_spec(ROOT / "examples" / "inr_sine_d4.yaml"))
    assert d4["activation"]["W1"] == "gate" and d4["entry"]["W1"] == ((3,), False, True, False)
    gl = block_tables(load_spec(ROOT / "examples" / "linear_net.yaml"))
    assert set(gl["activation"].values()) == {"gate"}
    assert all(e[3] for e in gl["entry"].values())  # GL: invariants only
    mixed = block_tables(_spec(MIXED))
    # scaled x signed: a real factor, neither homogeneous nor odd functions commute
    assert mixed["activation"]["B"] == "gate" and mixed["entry"]["B"] == ((), True, True, False)
    assert mixed["activation"]["C"] == "gate" and mixed["entry"]["C"] == ((2,), False, True, False)
    assert mixed["activation"]["c"] == "odd"


def test_scaled_products_balance_and_gl_gives_the_attention_invariants():
    relu = products(load_spec(ROOT / "examples" / "mlp_relu.yaml"))
    assert ("b1", "W2", "bci,bcji->bcj", ("b2",)) in relu  # (q_i / q_j) * q_j = q_i
    assert not any(p[0] == p[1] == "W2" for p in relu)  # W2 * W2 never balances
    tf = parse_spec(
        "name: tf\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 4\n"
        "depth: 1\ninputs: 2\noutputs: 2\n",
        "<tf>",
    )
    pairs = {(a, b, eq) for a, b, eq, targets in products(tf) if not targets}
    # sum_h sum_{r, r'} (Wq_h Wk_h^T)[r, r']: heads and dk contracted, r and r' pooled
    assert ("Wq1", "Wk1", "bcijk,bcijl->bc") in pairs
    assert not any(a == "Wq1" and b == "Wv1" for a, b, _ in pairs)  # dk and dv never pair


def test_canonicalization_order_and_refusals():
    steps, _ = canonicalization(load_spec(ROOT / "examples" / "mlp_relu.yaml"))
    assert [s[0] for s in steps] == ["h1", "h2", "h3"]
    assert canonicalization(_spec(RECURRENT)) == (
        None,
        "no canonicalization for this weight space (h: W has 2 axes of h)",
    )
    steps, _ = canonicalization(load_spec(ROOT / "examples" / "inr_sine_d4.yaml"))
    assert steps[0][4] == (("b1", 2),)  # W1's coord axis is rotated: only b1 fixes signs


# ------------------------------------------------------------------ runtime, directly


def _mlp_net(widths, activation):
    layers = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [torch.nn.Linear(a, b).double(), activation()]
    return torch.nn.Sequential(*layers[:-1])


def _as_weights(net):
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    x = {}
    for i, lin in enumerate(linears, start=1):
        x[f"W{i}"] = lin.weight.detach().clone()[None, None]
        x[f"b{i}"] = lin.bias.detach().clone()[None, None]
    return x


def _load(net, x):
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears, start=1):
            lin.weight.copy_(x[f"W{i}"][0, 0])
            lin.bias.copy_(x[f"b{i}"][0, 0])


@pytest.mark.parametrize(
    ("spec", "activation"), [("mlp_relu", torch.nn.ReLU), ("inr_sine", torch.nn.Tanh)]
)
def test_canonicalization_keeps_a_real_network_s_function(spec, activation):
    """Rescaling (ReLU) or sign-flipping (tanh) neurons keeps the function, so the
    canonical weights are the same network; and they are a fixed point."""
    s = load_spec(ROOT / "examples" / f"{spec}.yaml")
    sizes = {t: d.size for t, d in s.types.items() if d.fixed}
    depth = sum(t.name.startswith("W") for t in s.tensors)
    out = sizes[s.tensor(f"W{depth}").axes[0].type]
    widths = [sizes[s.tensor("W1").axes[1].type], *[5, 4, 3][: depth - 1], out]
    torch.manual_seed(0)
    net = _mlp_net(widths, activation)
    steps = block_tables(s)["canon"]
    x = _as_weights(net)
    canon = B.canonicalize_with(x, steps)
    inputs = torch.randn(16, widths[0], dtype=torch.float64)
    before = net(inputs)
    _load(net, canon)
    assert (net(inputs) - before).abs().max() <= TOL * before.abs().max()
    assert _relative(B.canonicalize_with(canon, steps), canon) <= TOL
    assert _relative(canon, x) > 1e-3  # it did change the weights


def test_entry_invariant_removes_a_positive_factor_and_the_orthogonal_norm():
    v = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    q = torch.rand(1, 1, 3, 1, dtype=torch.float64) + 0.1
    assert torch.allclose(B.entry_invariant(v * q, (), True), B.entry_invariant(v, (), True))
    rot, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    assert torch.allclose(
        B.entry_invariant(v @ rot, (3,), False), B.entry_invariant(v, (3,), False)
    )
    zero = torch.zeros(1, 2, 3, requires_grad=True)
    B.entry_invariant(zero, (), True).sum().backward()
    assert torch.isfinite(zero.grad).all()


@settings(max_examples=10, deadline=None)
@given(size=st.integers(1, 3), seed=st.integers(0, 2**31 - 1), gated=st.booleans())
def test_runtime_blocks_on_a_tensor_with_several_kinds(size, seed, gated):
    """A scaled x signed tensor, an orthogonal x signed one: every block equivariant, the
    pooled features and invariant products invariant."""
    space = compile_spec(_spec(MIXED))
    tables = block_tables(_spec(MIXED))
    x, g = _weights(space, size, seed)
    gx = space.act(g, x)
    torch.manual_seed(seed % 1000)
    act = B.Activation(3, tables, gated=gated).double()
    norm = B.ChannelNorm(3, tables).double()
    normalizer = B.InputNorm(3, tables).double().fit({k: v + 1 for k, v in x.items()})
    with torch.no_grad():
        for block in (act, norm, normalizer):
            assert _relative(block(gx), space.act(g, block(x))) <= TOL
        for hidden in (None, 4):
            pool = B.InvariantPool(3, tables, hidden).double()
            assert _relative({"p": pool(gx)}, {"p": pool(x)}) <= TOL
        prods = B.Products(3, 3, tables).double()
        (out, inv), (out_g, inv_g) = prods(x), prods(gx)
        expected = space.act(g, {**x, **out})
        assert _relative(out_g, {k: expected[k] for k in out}) <= TOL
        assert inv is None or _relative({"i": inv_g}, {"i": inv}) <= TOL


def test_metanet_refuses_what_it_cannot_do():
    tables = block_tables(_spec(RECURRENT))
    space = compile_spec(_spec(RECURRENT))
    with pytest.raises(ValueError, match="W has 2 axes of h"):
        B.MetaNet(tables, space.EquivariantLayer, None, 1, 4, 2, 1, canonicalize=True)
    relu = compile_spec(ROOT / "examples" / "mlp_relu.yaml")
    with pytest.raises(ValueError, match="would not be equivariant"):
        relu.MetaNetwork(1, 4, 2, 1, canonicalize=True, output="equivariant")
    gl = compile_spec(ROOT / "examples" / "linear_net.yaml")
    with pytest.raises(ValueError, match="no pair of tensors balances"):
        gl.MetaNetwork(1, 4, 2, 1, degree2=True)
    deep = parse_spec(
        "name: deep\narch: mlp\nwidths: [2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1]\n",
        "<deep>",
    )
    assert block_tables(deep)["products"] == ()
    assert "at most 32" in block_tables(deep)["products_problem"]
    with pytest.raises(ValueError, match="activation 'elu'"):
        relu.EquivariantActivation(4, activation="elu")


# ------------------------------------------------------------------ copying and literals


def test_extract_copies_definitions_with_their_dependencies_in_order():
    assert extract("qgen.runtime.blocks", ["ChannelNorm"]).startswith("Weights = ")
    text = extract("qgen.runtime.blocks", ["ChannelNorm"], skip=("Weights",))
    assert text.startswith("class ChannelNorm")
    text = extract("qgen.runtime.blocks", ["entry_invariant"])
    names = [n.name for n in ast.parse(text).body]
    assert names == ["_safe_norm", "entry_invariant"]  # the module's order
    assert "MetaNet" in definitions("qgen.runtime.blocks")
    with pytest.raises(KeyError, match="defines no"):
        extract("qgen.runtime.blocks", ["Nope"])


def test_runtime_imports_torch_alone():
    tree = ast.parse((ROOT / "qgen" / "runtime" / "blocks.py").read_text())
    imported = {
        (n.module or "") if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported == {"__future__", "torch"}


def test_literal_tables_round_trip_and_fit():
    value = block_tables(load_spec(ROOT / "examples" / "cnn_c4.yaml"))
    text = format_source("T = " + literal(value) + "\n")
    assert ast.literal_eval(text.removeprefix("T = ")) == value
    assert all(len(line) <= WIDTH for line in text.splitlines())


def test_nonlinear_head_eligibility_is_what_the_generated_modules_have():
    """The kind-level rule (every kind ``nonlinear_head``, some kind with an entry factor)
    agrees with the modules in generated/ (the template decides it by kind name)."""
    from qgen.codegen.blocks import nonlinear_head

    root = Path(__file__).resolve().parent.parent
    seen = 0
    for module in sorted((root / "generated").glob("*.py")):
        if module.name.startswith("test_"):
            continue
        name = module.stem
        spec_path = root / "examples" / f"{name}.yaml"
        if name.startswith("preset_"):
            spec_path = root / "examples" / "presets" / f"{name.removeprefix('preset_')}.yaml"
        if not spec_path.exists():
            continue
        has_head = "class NonlinearInvariantHead" in module.read_text()
        assert nonlinear_head(load_spec(spec_path)) == has_head, name
        seen += 1
    assert seen >= 8
    assert nonlinear_head(
        _spec("name: s\ntypes: {h: {group: signed}, x: {size: 2}}\ntensors: {W: [h, x*]}")
    )
    assert not nonlinear_head(_spec("name: s\ntypes: {h: {group: perm}}\ntensors: {W: [h, h*]}"))
    assert not nonlinear_head(
        _spec("name: s\ntypes: {h: {group: scaled}, g: {group: gl}}\ntensors: {W: [h, g*]}")
    )


@pytest.mark.parametrize("example", ["mlp_gelu", "mlp_relu", "inr_sine"])
@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
def test_the_no_grad_forward_with_its_shortcuts_is_the_forward(example, activation):
    # in place activations and one pass for mean |u| = mean u after ReLU, under no_grad
    space = compile_spec(ROOT / "examples" / f"{example}.yaml")
    torch.manual_seed(0)
    # the statistics pool (pool_hidden=None) has the one-pass shortcut after ReLU
    net = space.MetaNetwork(3, 5, 2, 4, activation=activation, pool_hidden=None).double()
    x, _ = _weights(space, 4, seed=1)
    net.fit_normalizer(x)
    with torch.no_grad():
        fast = net(x)
    slow = net(x)  # gradients recorded: nothing in place, both means taken
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-12, atol=1e-12)
    assert all(v.grad is None for v in x.values())


def test_the_pool_reads_a_nonnegative_tensor_once_and_gives_the_same_features():
    space = compile_spec(ROOT / "examples" / "mlp_gelu.yaml")
    pool = B.InvariantPool(3, space.BLOCK_TABLES)
    x, _ = _weights(space, 4, seed=2)
    x = {k: v.abs() for k, v in x.items()}
    torch.testing.assert_close(pool(x, frozenset(x)), pool(x), rtol=1e-12, atol=1e-12)
    activation = B.Activation(3, space.BLOCK_TABLES, "relu", reuse_input=True)
    assert activation.nonnegative == frozenset(space.TENSORS)  # perm: ReLU everywhere
    v = x["W2"].clone() - 0.5
    with torch.no_grad():
        out = activation({**x, "W2": v})["W2"]
    assert out.data_ptr() == v.data_ptr() and (v >= 0).all()  # in place, under no_grad
    assert B.Activation(3, space.BLOCK_TABLES, "gelu").nonnegative == frozenset()


def test_generated_block_tests_hold_where_a_tensor_has_no_invariant(tmp_path, monkeypatch):
    # C[g, s*]: GL acts on g and no other axis pairs with it, so no invariant of the space
    # depends on C; the generated tests must not demand it (and still check the others)
    import importlib
    import sys

    import qgen

    text = """
name: no_invariant_of_c
types: {n: {group: perm}, s: {group: signed}, g: {group: gl}, x: {size: 3}}
tensors: {A: [n, n], B: [s, n*, x], C: [g, s*], d: [g]}
"""
    (tmp_path / "spec.yaml").write_text(text)
    qgen.build(tmp_path / "spec.yaml", tmp_path, tests=True)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("no_invariant_of_c", "test_no_invariant_of_c"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    generated = importlib.import_module("test_no_invariant_of_c")
    assert generated._seen_by_the_head(2, False) == ["A", "B"]
    generated.test_metanetwork_output_depends_on_every_tensor_it_can_see()
    generated.test_blocks_have_finite_gradients_at_zero_entries()


# ------------------------------------------------------------------ Gram invariants (GL)

RESMLP_GL = ROOT / "bench" / "metanet_learn" / "resmlp_gl.yaml"
TRANSFORMER = (
    "name: tf\narch: transformer\nd_model: 3\nheads: 2\nd_head: 2\nmlp: 3\n"
    "depth: 1\ninputs: 2\noutputs: 2\n"
)
#: GL next to scaled, signed and orthogonal free axes of the Gram tensors
GL_MIXED = """
name: gl_mixed
types:
  x: {size: 2}
  r: {group: gl}
  h: {group: scaled}
  s: {group: signed}
  o: {group: orthogonal}
tensors:
  A: [r, x*]
  B: [h, r*]
  C: [s, o, r*]
  d: [r]
  E: [r, s*]
"""


def test_gram_pairs_contract_every_gl_axis_and_share_the_head():
    tf = {(*t, eq): (entry, pool) for t, eq, entry, pool in gram(_spec(TRANSFORMER))}
    # per head: Wq_h^T Wk_h [head, r, r] and Wo_h Wv_h [head, r, r], plain perm entries
    assert tf[("Wq1", "Wk1", "bcjik,bcjil->bcjkl")] == (((), False, False, False), ((2, 3, 4), 1))
    assert ("Wv1", "Wo1", "bcjik,bclji->bcjkl") in tf
    assert not any({a, b} & {"Wv1", "Wo1"} and {a, b} & {"Wq1", "Wk1"} for a, b, _ in tf)
    res = {t: (eq, entry, pool) for t, eq, entry, pool in gram(load_spec(RESMLP_GL))}
    # W_out W_in: every axis fixed, so every entry is an invariant, kept
    assert res[("W_in", "W_out")] == ("bcij,bcki->bcjk", ((), False, False, False), ((), 6))
    # W1a W_in [m1, x]: scaled rows, divided by the channel norm, pooled over m1
    assert res[("W_in", "W1a")][1:] == (((), True, False, False), ((3,), 3))
    assert ("W_in", "b_in") not in res  # two plain r axes: not invariant
    assert not any(len(t) > 2 for t, *_ in gram(load_spec(RESMLP_GL)))  # pairs close
    # a linear chain: its one invariant A3 A2 A1 [y, x], every entry kept
    assert gram(load_spec(ROOT / "examples" / "linear_net.yaml")) == (
        (("A1", "A2", "A3"), "bcik,bcji,bclj->bckl", ((), False, False, False), ((), 6)),
    )
    assert gram(load_spec(ROOT / "examples" / "mlp_relu.yaml")) == ()  # no GL axis


@settings(max_examples=10, deadline=None)
@given(
    which=st.sampled_from(["resmlp", "transformer", "mixed", "linear"]),
    size=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
    hidden=st.sampled_from([None, 4]),
)
def test_gram_pool_is_invariant_under_random_group_elements(which, size, seed, hidden):
    spec = {
        "resmlp": load_spec(RESMLP_GL),
        "transformer": _spec(TRANSFORMER),
        "mixed": _spec(GL_MIXED),
        "linear": load_spec(ROOT / "examples" / "linear_net.yaml"),
    }[which]
    space, tables = compile_spec(spec), block_tables(spec)
    assert tables["gram"]
    x, g = _weights(space, size, seed)
    torch.manual_seed(seed % 1000)
    pool = B.GramPool(3, tables, hidden).double()
    with torch.no_grad():
        assert _relative({"p": pool(space.act(g, x))}, {"p": pool(x)}) <= TOL
        # and the pooled features are not constant: they see every tensor of a pair
        y = {k: v * 1.5 + 0.1 for k, v in x.items()}
        assert (pool(y) - pool(x)).abs().max() > 1e-6


@settings(max_examples=5, deadline=None)
@given(size=st.integers(1, 3), seed=st.integers(0, 2**31 - 1), head_norm=st.booleans())
def test_default_metanetwork_on_a_gl_space_is_invariant_and_reads_the_gl_tensors(
    size, seed, head_norm
):
    space = compile_spec(load_spec(RESMLP_GL))
    x, g = _weights(space, size, seed, channels=1, batch=3)
    torch.manual_seed(seed % 1000)
    net = space.MetaNetwork(1, 4, 2, 1, head_norm=head_norm).double()
    assert net.gram is not None  # the default where the space has Gram pairs
    with torch.no_grad():
        assert _relative({"o": net(space.act(g, x))}, {"o": net(x)}) <= TOL
        y = dict(x)
        y["W1a"] = x["W1a"] * 2 + 0.3  # a GL tensor only the Gram tensors can read
        assert (net(y) - net(x)).abs().max() > 1e-6
    with pytest.raises(ValueError, match="gram=True"):
        compile_spec(ROOT / "examples" / "mlp_relu.yaml").MetaNetwork(1, 4, 2, 1, gram=True)


def _gram_by_every_combination(spec):
    """Reference for :func:`qgen.codegen.blocks.gram`: every set of two, then three,
    tensors with contracted axes tried, skipping sets that hold a closed smaller one."""
    import itertools

    from qgen.codegen import blocks as tables

    kinds = tables.axis_kinds(spec)
    sizes = {n: d.size for n, d in spec.types.items() if d.fixed}
    names = [t.name for t in spec.tensors if any(tables._contracted(a) for a in kinds[t.name])]
    out, closed = [], []
    for size in range(2, tables.GRAM_MAX_TENSORS + 1):
        for group in itertools.combinations(names, size):
            if any(set(c) <= set(group) for c in closed):
                continue
            found = tables._gram_product(spec, [kinds[n] for n in group])
            if found is None:
                continue
            closed.append(group)
            rules = tables._tensor_rules(found[1], sizes)
            out.append((group, found[0], rules["entry"], rules["pool"]))
    return tuple(out)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_gram_sets_from_sharing_pairs_equal_every_combination(depth):
    """The Gram tensors found from pairs sharing a contracted type are exactly those of
    trying every combination (in the same order), on the bundled specs and transformers."""

    text = (ROOT / "examples" / "presets" / "transformer.yaml").read_text()
    specs = [parse_spec(text.replace("depth: 1", f"depth: {depth}"))]
    if depth == 1:
        paths = sorted(ROOT.glob("examples/*.yaml")) + sorted(
            ROOT.glob("bench/metanet_learn/*.yaml")
        )
        specs += [load_spec(p) for p in paths]
    for spec in specs:
        assert gram(spec) == _gram_by_every_combination(spec), spec.name


# ------------------------------------------------------------------ statistics, canonical_space

CHAIN = [(5, 3), (4, 5), (2, 4)]


def _big_scales(g: dict, space, gen, decades: float = 3.0) -> dict:
    """``g`` with every positive scale multiplied by ``10 ** U[-decades, decades]``."""
    out = {}
    for t, e in g.items():
        if space.TYPES[t][0] == "scaled":
            u = torch.rand(e[1].shape, generator=gen, dtype=e[1].dtype) * 2 - 1
            e = (e[0], e[1] * 10.0 ** (decades * u))
        out[t] = e
    return out


@settings(max_examples=8, deadline=None)
@given(
    which=st.sampled_from(["mlp_relu", "mlp_gelu", "inr_sine", "mixed", "linear_net"]),
    size=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_input_statistics_are_invariant_under_random_group_elements(which, size, seed):
    """StatNN's statistics, of the canonicalized input where there is a canonicalization (the
    scales up to 1e3 either way), else of the entries only moved: invariant at 1e-10."""
    spec = _spec(MIXED) if which == "mixed" else load_spec(ROOT / "examples" / f"{which}.yaml")
    space, tables = compile_spec(spec), block_tables(spec)
    x, g = _weights(space, size, seed)
    g = _big_scales(g, space, torch.Generator().manual_seed(seed % 1000))
    canonical = tables["canon"] is not None
    stats = B.InputStatistics(3, tables, canonical).double()
    prepare = (lambda v: B.canonicalize_with(v, tables["canon"])) if canonical else (lambda v: v)
    if not stats.features:  # GL everywhere: nothing to read
        assert which == "linear_net"
        return
    stats.fit(prepare(x))
    with torch.no_grad():
        a, b = stats(prepare(x)), stats(prepare(space.act(g, x)))
    assert _relative({"s": b}, {"s": a}) <= TOL
    assert a.shape == (2, stats.features)


def test_input_statistics_are_stat_nn_s_and_standardized():
    space = compile_spec(ROOT / "examples" / "mlp_gelu.yaml")  # perm: the entries as they are
    x, _ = _weights(space, 3, seed=4, channels=1, batch=6)
    stats = B.InputStatistics(1, space.BLOCK_TABLES).double().fit(x)
    raw = stats.raw(x)
    v = x["W1"].flatten(1)
    expected = [v.mean(1), v.std(1, correction=0)]
    expected += list(torch.quantile(v, torch.tensor(B.STAT_QUANTILES).double(), dim=1))
    torch.testing.assert_close(raw[:, :7], torch.stack(expected, 1))
    zero = torch.zeros(stats.features, dtype=torch.float64)
    torch.testing.assert_close(stats(x).mean(0), zero, atol=1e-12, rtol=0)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@settings(max_examples=5, deadline=None)
@given(size=st.integers(1, 3), seed=st.integers(0, 2**31 - 1), stats=st.booleans())
def test_canonical_space_metanetwork_is_invariant_and_uses_perm_layers(
    activation, size, seed, stats
):
    """Scaled (ReLU) or signed (tanh) space, canonicalized, then the perm build's layers:
    invariant under random group elements (scales 1e-3..1e3 on top) at 1e-9 relative."""
    full = qgen.compile(chain_spec(CHAIN, activation, name=f"full_{activation}"))
    perm = qgen.compile(chain_spec(CHAIN, activation, name=f"perm_{activation}", group="perm"))
    x, g = _weights(full, size, seed)
    g = _big_scales(g, full, torch.Generator().manual_seed(seed % 1000))
    torch.manual_seed(seed % 1000)
    net = full.MetaNetwork(
        3, 4, 2, 2, canonicalize=True, canonical_space=perm, head_hidden=8, stats=stats
    ).double()
    net.fit_normalizer(x)
    assert isinstance(net.layers[0], perm.EquivariantLayer)
    assert (net.stats is not None) == stats
    with torch.no_grad():
        assert _relative({"out": net(full.act(g, x))}, {"out": net(x)}) <= 1e-9
        y = {k: v * 1.5 + 0.1 for k, v in x.items()}
        assert (net(y) - net(x)).abs().max() > 1e-6


def test_canonical_space_refusals():
    full = qgen.compile(chain_spec(CHAIN, "relu", name="full_relu"))
    perm = qgen.compile(chain_spec(CHAIN, "relu", name="perm_relu", group="perm"))
    other = qgen.compile(chain_spec([(5, 3), (2, 5)], "relu", name="other", group="perm"))
    with pytest.raises(ValueError, match="canonicalize=True"):
        full.MetaNetwork(1, 4, 2, 1, canonicalize=False, canonical_space=perm)
    with pytest.raises(ValueError, match="not this space"):
        full.MetaNetwork(1, 4, 2, 1, canonicalize=True, canonical_space=other)
    with pytest.raises(ValueError, match="quasi"):  # perm: nothing continuous to relax
        full.MetaNetwork(1, 4, 2, 1, canonicalize=True, canonical_space=perm, quasi=True)
