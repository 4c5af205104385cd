"""Tests of the generated module ``mlp_relu`` (qgen 0.1.0, spec sha256 e84e22706ed26814).

Standalone: needs torch, pytest and hypothesis, not qgen. Keep it next to
``mlp_relu.py`` and run ``pytest``. Tolerances: equivariance and invariance hold
to 1e-5 (float32) and 1e-10 (float64) relative to the largest entry of each output.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

space = importlib.import_module("mlp_relu")  # the generated module next to this file

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
GROUP_TYPES = [t for t, (kind, size) in space.TYPES.items() if size is None]


def random_weights(sizes, batch, channels, dtype, generator):
    return {
        name: torch.randn(
            batch, channels, *(sizes[a.rstrip("*")] for a in axes), generator=generator
        ).to(dtype)
        for name, axes in space.TENSORS.items()
    }


def all_sizes(group_sizes):
    fixed = {t: size for t, (kind, size) in space.TYPES.items() if size is not None}
    return {**fixed, **group_sizes}


def randomize(module, generator):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator).to(p.dtype))


def assert_close(actual, expected, dtype):
    for name in expected:
        scale = expected[name].abs().max().clamp_min(1e-30)
        err = (actual[name] - expected[name]).abs().max() / scale
        assert err <= TOLERANCE[dtype], f"{name}: relative error {err:.2e}"


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test on one intra-op thread: its tensors are tiny, and on a busy machine
    a second thread spinning for a core made these tests up to 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


sizes_strategy = st.fixed_dictionaries({t: st.integers(1, 4) for t in GROUP_TYPES})
dtypes = st.sampled_from([torch.float32, torch.float64])


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_layer_is_equivariant(sizes, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes(sizes)
    layer = space.EquivariantLayer(2, 3).to(dtype)
    randomize(layer, gen)
    x = random_weights(sizes, 3, 2, dtype, gen)
    g = space.sample_group_element(sizes, gen)
    with torch.no_grad():
        assert_close(layer(space.act(g, x)), space.act(g, layer(x)), dtype)


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_head_is_invariant(sizes, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes(sizes)
    head = space.InvariantHead(2, 5).to(dtype)
    randomize(head, gen)
    x = random_weights(sizes, 3, 2, dtype, gen)
    g = space.sample_group_element(sizes, gen)
    with torch.no_grad():
        assert_close({"out": head(space.act(g, x))}, {"out": head(x)}, dtype)


#: fixed types the group leaves alone (no escnn representation, not on a grid) and their
#: sizes: a block's maps are (group part) (x) (every map between the indices of these axes)
PLAIN_FIXED: dict[str, int] = {
    "x": 2,
    "y": 2,
}
#: indices of each plain fixed axis that the span test probes (inputs) and reads (outputs)
INDICES_PER_AXIS = 2


def restricted_slots():
    """``(tensor, axis position) -> size`` of every plain fixed axis."""
    return {
        (name, i): PLAIN_FIXED[a.rstrip("*")]
        for name, axes in space.TENSORS.items()
        for i, a in enumerate(axes)
        if a.rstrip("*") in PLAIN_FIXED
    }


def index_choices():
    """Per plain fixed axis, ``min(2, size)`` distinct indices, sorted (two, so that maps
    between different indices stay under test)."""
    return st.fixed_dictionaries(
        {
            slot: st.lists(
                st.integers(0, n - 1),
                min_size=min(INDICES_PER_AXIS, n),
                max_size=min(INDICES_PER_AXIS, n),
                unique=True,
            ).map(sorted)
            for slot, n in restricted_slots().items()
        }
    )


def kept_positions(name, sizes, chosen):
    """The multi-indices of tensor ``name`` that are kept, one index tensor per axis: every
    index of a group or escnn axis, the ``chosen`` ones of a plain fixed axis."""
    kept = [
        torch.tensor(chosen[name, i]) if (name, i) in chosen else torch.arange(sizes[a.rstrip("*")])
        for i, a in enumerate(space.TENSORS[name])
    ]
    return [g.reshape(-1) for g in torch.meshgrid(*kept, indexing="ij")]


def restricted_count(key, probe, read):
    """``BLOCK_COUNTS[s, t]`` on the kept positions: the factor of all maps between plain
    fixed indices, ``F_s F_t``-dimensional, shrinks to ``f_s f_t`` (positions kept)."""
    s, t = key
    full = kept = 1
    for name, chosen in ((s, read), (t, probe)):
        for i, a in enumerate(space.TENSORS[name]):
            if (name, i) in chosen:
                full *= PLAIN_FIXED[a.rstrip("*")]
                kept *= len(chosen[name, i])
    count = space.BLOCK_COUNTS[key] * kept
    assert count % full == 0, f"block {key}: {space.BLOCK_COUNTS[key]} maps do not factor"
    return count // full


def block_maps(layer, sizes, probe, read):
    """The layer's map per (out, in) block as ``[out_channels, out positions, in positions]``
    on the positions of each input that ``probe`` keeps and of each output that ``read``
    keeps: one forward per input tensor, one unit input per kept position."""
    names = list(space.TENSORS)
    shapes = {n: [sizes[a.rstrip("*")] for a in space.TENSORS[n]] for n in names}
    maps = {}
    for t in names:
        at = kept_positions(t, sizes, probe)
        count = len(at[0])
        x = {n: torch.zeros(count, 1, *shapes[n], dtype=torch.float64) for n in names}
        x[t][(torch.arange(count), 0, *at)] = 1.0
        y = layer(x)
        for s in names:
            out = y[s][(slice(None), slice(None), *kept_positions(s, sizes, read))]
            maps[s, t] = out.permute(1, 2, 0)
    return maps


@settings(max_examples=3, deadline=None)
@given(
    extra=st.fixed_dictionaries({t: st.integers(0, 1) for t in GROUP_TYPES}),
    probe=index_choices(),
    read=index_choices(),
    seed=st.integers(0, 2**31 - 1),
)
def test_layer_spans_every_equivariant_map(extra, probe, read, seed):
    """With one input channel and no bias, the maps the layer represents span, per block,
    a space of exactly BLOCK_COUNTS dimensions (at sizes where those counts hold).

    Read on two indices of each plain fixed axis: a block's maps are ``S (x) Hom(R^F_t,
    R^F_s)`` over the plain fixed positions of its input ``t`` and output ``s``, so on
    ``f_t`` and ``f_s`` of them the layer must span ``BLOCK_COUNTS * f_s f_t / (F_s F_t)``
    maps (group and escnn axes stay whole: their maps do not factor so). Each output
    channel has its own random weights, so one forward with K output channels gives K
    independent random maps of the span.
    """
    sizes = all_sizes({t: space.GENERIC_SIZES[t] + extra[t] for t in GROUP_TYPES})
    expected = {key: restricted_count(key, probe, read) for key in space.BLOCK_COUNTS}
    samples = max([*expected.values(), 1]) + 8
    layer = space.EquivariantLayer(1, samples, bias=False).double()
    randomize(layer, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        maps = block_maps(layer, sizes, probe, read)
    for key, count in expected.items():
        rank = int(torch.linalg.matrix_rank(maps[key].reshape(samples, -1)))
        assert rank == count, f"block {key}: layer spans {rank} maps, expected {count}"


def test_bias_and_invariants_have_the_solved_dimensions():
    sizes = all_sizes({t: space.GENERIC_SIZES[t] for t in GROUP_TYPES})
    x = random_weights(sizes, 1, 1, torch.float64, torch.Generator().manual_seed(0))
    layer = space.EquivariantLayer(1, 1).double()
    biases = []  # the mixes' bias (coefficients) entries; every weight set to zero
    with torch.no_grad():
        for name, p in layer.mixes.named_parameters():
            # "<mix key>.bias" or "<mix key>.bias_coefficients.<i>" (a key has no dot, but
            # it names tensors, which may be called bias)
            if name.split(".")[1] in ("bias", "bias_coefficients"):
                biases.append(p)
            else:
                p.zero_()
    for name, count in space.BIAS_COUNTS.items():
        outputs = []
        with torch.no_grad():
            for p in biases:
                for i in range(p.numel()):
                    p.zero_()
                    p.view(-1)[i] = 1.0
                    outputs.append(layer(x)[name].reshape(-1))
        rank = int(torch.linalg.matrix_rank(torch.stack(outputs))) if outputs else 0
        assert rank == count, f"bias of {name}: {rank}, expected {count}"
    features = space.InvariantHead(1, 1).in_features
    assert features == sum(space.INVARIANT_COUNTS.values())


def test_gradients_flow_and_shapes_are_kept():
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    x = random_weights(sizes, 2, 1, torch.float32, torch.Generator().manual_seed(1))
    layer = space.EquivariantLayer(1, 4)
    y = layer(x)
    assert {n: tuple(t.shape[2:]) for n, t in y.items()} == {
        n: tuple(t.shape[2:]) for n, t in x.items()
    }
    sum(t.square().sum() for t in y.values()).backward()
    assert all(p.grad is not None for p in layer.parameters())


class _Net(torch.nn.Module):
    """A layer and an invariant head, for the torch.func test."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = space.EquivariantLayer(2, 3)
        self.head = space.InvariantHead(3, 2)

    def forward(self, x):
        y = self.layer(x)
        return self.head(y).square().sum() + sum(t.square().sum() for t in y.values())


def test_torch_func_per_sample_gradients_match_backward_passes():
    """``vmap(grad(loss))`` over ``functional_call`` and ``jacrev`` of the per-sample
    losses give each sample's gradient as one ordinary backward pass does (float64)."""
    from torch.func import functional_call, grad, jacrev, vmap

    gen = torch.Generator().manual_seed(2)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    x = random_weights(sizes, 3, 2, torch.float64, gen)
    net = _Net().double()
    randomize(net, gen)
    params = {k: p.detach() for k, p in net.named_parameters()}

    def loss(p, sample):
        return functional_call(net, (p,), ({k: v.unsqueeze(0) for k, v in sample.items()},))

    expected = []
    for b in range(3):
        net.zero_grad(set_to_none=True)
        net({k: v[b : b + 1] for k, v in x.items()}).backward()
        expected.append({k: p.grad.clone() for k, p in net.named_parameters() if p.numel()})
    per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x)
    jacobian = jacrev(lambda p: vmap(loss, in_dims=(None, 0))(p, x))(params)
    for got in (per_sample, jacobian):
        for b, want in enumerate(expected):
            assert_close({k: got[k][b] for k in want}, want, torch.float64)


# ---------------------------------------------------------------- quasi-equivariance


def quasi_layer(dtype, gen, rho=2.0):
    layer = space.EquivariantLayer(2, 3, quasi=True).to(dtype)
    randomize(layer, gen)
    with torch.no_grad():
        layer.relaxation.rho.fill_(rho)
    return layer


def permutation_part(g, gen):
    """The same kind of element with every continuous part replaced by a permutation."""
    out = {}
    for t, e in g.items():
        if isinstance(e, tuple):
            out[t] = (e[0], torch.ones_like(e[1]))
        else:
            n = e.shape[-1]
            perm = torch.eye(n, dtype=e.dtype)[torch.randperm(n, generator=gen)]
            out[t] = perm.expand(e.shape).clone()  # one per outer index for nested types
    return out


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_quasi_layer_is_quasi_equivariant(sizes, seed, dtype):
    """F(g.x) = g'.F(x) with g' = alpha(g.x) g alpha(x)^-1, computed from the layer."""
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes(sizes)
    layer = quasi_layer(dtype, gen)
    x = random_weights(sizes, 3, 2, dtype, gen)
    g = space.sample_group_element(sizes, gen)
    with torch.no_grad():
        gx = space.act(g, x)
        alpha = layer.relaxation
        g_prime = space.compose(alpha(gx), space.compose(g, space.inverse(alpha(x))))
        assert_close(layer(gx), space.act(g_prime, layer(x)), dtype)


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_quasi_layer_is_strictly_permutation_equivariant(sizes, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes(sizes)
    layer = quasi_layer(dtype, gen)
    x = random_weights(sizes, 3, 2, dtype, gen)
    p = permutation_part(space.sample_group_element(sizes, gen), gen)
    with torch.no_grad():
        assert_close(layer(space.act(p, x)), space.act(p, layer(x)), dtype)


def test_quasi_layer_with_eps_zero_is_the_strict_layer():
    gen = torch.Generator().manual_seed(0)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    quasi = quasi_layer(torch.float64, gen, rho=float("-inf"))
    strict = space.EquivariantLayer(2, 3).double()
    strict.load_state_dict(quasi.state_dict(), strict=False)
    x = random_weights(sizes, 3, 2, torch.float64, gen)
    with torch.no_grad():
        y, z = quasi(x), strict(x)
    assert all(torch.equal(y[k], z[k]) for k in y)


def test_relaxation_changes_the_layer():
    """The relaxed layer is not strictly equivariant under the continuous part."""
    gen = torch.Generator().manual_seed(1)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    layer = quasi_layer(torch.float64, gen)
    x = random_weights(sizes, 3, 2, torch.float64, gen)
    g = space.sample_group_element(sizes, gen)
    with torch.no_grad():
        lhs, rhs = layer(space.act(g, x)), space.act(g, layer(x))
    worst = max(float((lhs[k] - rhs[k]).abs().max() / rhs[k].abs().max()) for k in rhs)
    assert worst > 1e-3


@settings(max_examples=20, deadline=None)
@given(log10=st.floats(-30, 30), seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_alpha_stays_in_the_group_for_extreme_weights(log10, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    layer = quasi_layer(dtype, gen, rho=10.0)  # eps near its bound
    x = random_weights(sizes, 2, 2, torch.float64, gen)
    x = {k: (v * 10.0**log10).to(dtype) for k, v in x.items()}
    with torch.no_grad():
        alpha = layer.relaxation(x)
    for t, e in alpha.items():
        if isinstance(e, tuple):
            assert torch.isfinite(e[1]).all() and (e[1] > 0).all(), t
        else:
            e = e.double()
            assert torch.isfinite(e).all(), t
            assert (torch.linalg.svdvals(e).min(-1).values > 0.05).all(), t


# ---------------------------------------------------------------- nonlinear invariant head


@settings(max_examples=20, deadline=None)
@given(sizes=sizes_strategy, seed=st.integers(0, 2**31 - 1), dtype=dtypes)
def test_nonlinear_head_is_invariant(sizes, seed, dtype):
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes(sizes)
    head = space.NonlinearInvariantHead(3, 4, hidden=8).to(dtype)
    randomize(head, gen)
    x = random_weights(sizes, 3, 3, dtype, gen)
    g = space.sample_group_element(sizes, gen)
    with torch.no_grad():
        assert_close({"out": head(space.act(g, x))}, {"out": head(x)}, dtype)


@settings(max_examples=10, deadline=None)
@given(log10=st.floats(-6, 6), seed=st.integers(0, 2**31 - 1))
def test_nonlinear_head_is_invariant_under_large_scales(log10, seed):
    """Scales far outside sample_group_element's range: e.g. 1e6 on every index."""
    gen = torch.Generator().manual_seed(seed)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    head = space.NonlinearInvariantHead(3, 4, hidden=8).double()
    randomize(head, gen)
    x = random_weights(sizes, 2, 3, torch.float64, gen)
    g = space.sample_group_element(sizes, gen)
    g = {
        t: (i, s * 10.0**log10) if space.TYPES[t][0] == "scaled" else (i, s)
        for t, (i, s) in g.items()
    }
    with torch.no_grad():
        assert_close({"out": head(space.act(g, x))}, {"out": head(x)}, torch.float64)


def test_nonlinear_head_depends_on_every_tensor():
    gen = torch.Generator().manual_seed(2)
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    x = random_weights(sizes, 1, 3, torch.float64, gen)
    head = space.NonlinearInvariantHead(3, 4, hidden=8).double()
    randomize(head, gen)
    for name in space.TENSORS:
        y = dict(x)
        y[name] = x[name] + torch.randn(x[name].shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            assert (head(x) - head(y)).abs().max() > 1e-6, name


def test_nonlinear_head_gradients_are_finite_at_zero_entries():
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    x = random_weights(sizes, 2, 3, torch.float32, torch.Generator().manual_seed(3))
    x = {k: torch.relu(v).requires_grad_() for k, v in x.items()}  # many all-zero entries
    head = space.NonlinearInvariantHead(3, 4, hidden=8)
    head(x).square().sum().backward()
    assert all(torch.isfinite(v.grad).all() for v in x.values())
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


# ---------------------------------------------------------------- building blocks

block_sizes = st.fixed_dictionaries({t: st.integers(1, 3) for t in GROUP_TYPES})
DEGREE2 = [False, True] if space.BLOCK_TABLES["products"] else [False]
#: whether these blocks see an invariant without degree-2 products (else only with them)
LINEAR_INVARIANTS = True


def moved(sizes, seed, channels=3, batch=2):
    gen = torch.Generator().manual_seed(seed)
    x = random_weights(sizes, batch, channels, torch.float64, gen)
    g = space.sample_group_element(sizes, gen)
    return gen, x, g


@settings(max_examples=15, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**31 - 1), gated=st.booleans())
def test_activation_is_equivariant(sizes, seed, gated):
    gen, x, g = moved(all_sizes(sizes), seed)
    act = space.EquivariantActivation(3, gated=gated).double()
    randomize(act, gen)
    with torch.no_grad():
        assert_close(act(space.act(g, x)), space.act(g, act(x)), torch.float64)


def test_a_pointwise_function_the_kinds_forbid_breaks_equivariance():
    """The check above can fail: softplus (neither odd nor homogeneous) on every tensor is
    not equivariant wherever a rule other than "any" was chosen."""
    forbidden = [t for t, r in space.BLOCK_TABLES["activation"].items() if r != "any"]
    if not forbidden:
        assert set(space.BLOCK_TABLES["activation"].values()) == {"any"}
        return
    worst = 0.0
    for seed in range(10):
        _, x, g = moved(all_sizes({t: 3 for t in GROUP_TYPES}), seed)
        soft = {k: torch.nn.functional.softplus(v) for k, v in x.items()}
        moved_soft = space.act(g, soft)
        for t in forbidden:
            y = torch.nn.functional.softplus(space.act(g, x)[t])
            worst = max(worst, float((y - moved_soft[t]).abs().max()))
    assert worst > 1e-3


@settings(max_examples=15, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**31 - 1))
def test_norms_are_equivariant(sizes, seed):
    gen, x, g = moved(all_sizes(sizes), seed)
    norm = space.EquivariantNorm(3).double()
    randomize(norm, gen)
    data = random_weights(all_sizes(sizes), 5, 3, torch.float64, gen)
    data = {k: v + 1.0 for k, v in data.items()}  # a mean for the normalizer to remove
    normalizer = space.InputNormalizer(3).double().fit(data)
    with torch.no_grad():
        assert_close(norm(space.act(g, x)), space.act(g, norm(x)), torch.float64)
        assert_close(normalizer(space.act(g, x)), space.act(g, normalizer(x)), torch.float64)


@settings(max_examples=15, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**31 - 1))
def test_degree2_products_are_equivariant(sizes, seed):
    gen, x, g = moved(all_sizes(sizes), seed)
    products = space.Degree2(3, 2).double()
    randomize(products, gen)
    with torch.no_grad():
        out, invariants = products(x)
        out_g, invariants_g = products(space.act(g, x))
        if out:
            expected = space.act(g, {**{k: v[:, :2] for k, v in x.items()}, **out})
            assert_close(out_g, {k: expected[k] for k in out}, torch.float64)
        if invariants is not None:
            assert_close({"inv": invariants_g}, {"inv": invariants}, torch.float64)


@settings(max_examples=15, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**31 - 1), log10=st.floats(-4, 4))
def test_canonicalization_divides_out_the_factors(sizes, seed, log10):
    """canonicalize(g.x) = p.canonicalize(x), p = g without its scales and signs; the scales
    also far outside the sampler's range."""
    _, x, g = moved(all_sizes(sizes), seed)
    factored = {step[0] for step in space.BLOCK_TABLES["canon"]}
    big = {t for t in factored if space.TYPES[t][0] == "scaled"}
    g = {t: (e[0], e[1] * 10.0**log10) if t in big else e for t, e in g.items()}
    p = {t: (e[0], torch.ones_like(e[1])) if t in factored else e for t, e in g.items()}
    expected = space.act(p, space.canonicalize(x))
    assert_close(space.canonicalize(space.act(g, x)), expected, torch.float64)


@settings(max_examples=10, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**31 - 1), degree2=st.sampled_from(DEGREE2))
def test_metanetwork_with_equivariant_output_is_equivariant(sizes, seed, degree2):
    gen, x, g = moved(all_sizes(sizes), seed)
    net = space.MetaNetwork(3, 4, 2, 2, output="equivariant", degree2=degree2).double()
    randomize(net, gen)
    net.fit_normalizer(random_weights(all_sizes(sizes), 4, 3, torch.float64, gen))
    with torch.no_grad():
        assert_close(net(space.act(g, x)), space.act(g, net(x)), torch.float64)


INVARIANT_DEGREE2 = DEGREE2 if LINEAR_INVARIANTS else [True]


@settings(max_examples=10, deadline=None)
@given(
    sizes=block_sizes,
    seed=st.integers(0, 2**31 - 1),
    degree2=st.sampled_from(INVARIANT_DEGREE2),
    gated=st.booleans(),
    canonical=st.booleans(),
    statistics=st.booleans(),
    head_norm=st.booleans(),
    stats=st.booleans(),
)
def test_metanetwork_output_is_invariant(
    sizes, seed, degree2, gated, canonical, statistics, head_norm, stats
):
    """Invariant under random group elements, with or without StatNN's input statistics
    (``stats``, fitted on other weights: standardized, not constant)."""
    gen, x, g = moved(all_sizes(sizes), seed)
    net = space.MetaNetwork(
        3,
        4,
        2,
        2,
        degree2=degree2,
        gated=gated,
        canonicalize=canonical,
        head_hidden=8,
        pool_hidden=None if statistics else 5,
        head_norm=head_norm,
        stats=stats,
    ).double()
    randomize(net, gen)
    net.fit_normalizer(random_weights(all_sizes(sizes), 4, 3, torch.float64, gen))
    with torch.no_grad():
        assert_close({"out": net(space.act(g, x))}, {"out": net(x)}, torch.float64)


def _seen_by_the_head(depth: int, degree2: bool) -> list[str]:
    """Tensors the invariant output can depend on: those the head reads (pooled entry
    invariants, linear invariants, invariant degree-2 products, Gram tensors), and those a
    layer maps into one of these, once per layer. (A tensor with none of these, such as
    one with a GL axis that no other axis pairs with, has no invariant at all.)"""
    tables = space.BLOCK_TABLES
    seen = {t for t, rule in tables["pool"].items() if rule is not None}
    seen |= {t for t, k in space.INVARIANT_COUNTS.items() if k}
    if degree2:
        seen |= {t for a, b, _, targets in tables["products"] if not targets for t in (a, b)}
    seen |= {t for tensors, *_ in tables["gram"] for t in tensors}
    for _ in range(depth):
        seen |= {t for (s, t), k in space.BLOCK_COUNTS.items() if k and s in seen}
    return [t for t in space.TENSORS if t in seen]


def test_metanetwork_output_depends_on_every_tensor_it_can_see():
    gen = torch.Generator().manual_seed(2)
    x = random_weights(all_sizes({t: 3 for t in GROUP_TYPES}), 1, 3, torch.float64, gen)
    net = space.MetaNetwork(3, 4, 2, 2, degree2=INVARIANT_DEGREE2[-1], head_hidden=8).double()
    randomize(net, gen)
    seen = _seen_by_the_head(2, INVARIANT_DEGREE2[-1])
    assert seen
    for name in seen:
        y = dict(x)
        y[name] = x[name] + torch.randn(x[name].shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            assert (net(x) - net(y)).abs().max() > 1e-6, name


def test_blocks_have_finite_gradients_at_zero_entries():
    sizes = all_sizes({t: 3 for t in GROUP_TYPES})
    x = random_weights(sizes, 2, 3, torch.float64, torch.Generator().manual_seed(3))
    # every other tensor all zero, the rest with many zero entries
    x = {k: torch.relu(v) * (i % 2) for i, (k, v) in enumerate(x.items())}
    x = {k: v.requires_grad_() for k, v in x.items()}
    output = "invariant" if LINEAR_INVARIANTS else "equivariant"
    options = {"canonicalize": True} if output == "invariant" else {}
    net = space.MetaNetwork(
        3, 4, 2, 2, output=output, degree2=DEGREE2[-1], gated=True, **options
    ).double()
    y = net(x)
    if output == "invariant":
        loss = y.square().sum()
    else:
        loss = sum(v.square().sum() for v in y.values())
    loss.backward()
    # (a tensor the output cannot depend on gets no gradient)
    assert all(v.grad is None or torch.isfinite(v.grad).all() for v in x.values())
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
