"""The runtime that generated modules copy (qgen.runtime), tested as ordinary modules, and
the copying itself: a generated module carries exactly the runtime its code uses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qgen.codegen.pytext import format_source
from qgen.codegen.rendering import render_module
from qgen.runtime import group, mixing
from qgen.runtime.source import RUNTIME_MODULES, definitions, runtime_for
from qgen.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = ROOT / "qgen" / "runtime"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted(
    (ROOT / "examples" / "presets").glob("*.yaml")
)


@pytest.mark.parametrize("module", RUNTIME_MODULES)
def test_runtime_modules_import_torch_alone(module):
    # whatever is copied from here must run in a generated file that imports only torch
    path = RUNTIME_DIR / (module.rpartition(".")[2] + ".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] == "torch" for a in node.names), path
        elif isinstance(node, ast.ImportFrom):
            assert node.module.split(".")[0] in ("torch", "__future__"), path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_generated_modules_carry_only_runtime_they_use(path):
    # every private top-level definition of a generated module is used by another one
    source = render_module(load_spec(path))
    tree = ast.parse(source)
    private = [
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name.startswith("_")
    ]
    uses: dict[str, int] = {}
    for node in tree.body:
        own = getattr(node, "name", None)
        for name in {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} - {own}:
            uses[name] = uses.get(name, 0) + 1
    unused = [name for name in private if not uses.get(name)]
    assert not unused, f"dead code in the module generated from {path.name}: {unused}"


def test_runtime_for_follows_uses_across_modules():
    # a diagonal placement needs _eye; the grid action needs the matrix action it calls
    text = "def f(x):\n    return _eye(3, x) + _act_grid(x, (), ('a', 'a'), x)\n"
    pasted = runtime_for(text)
    defined = {n.name for n in ast.parse(pasted).body if isinstance(n, ast.FunctionDef)}
    assert defined == {"_eye", "_act_grid", "_act_matrix"}
    assert "def _eye" not in runtime_for("def _eye():\n    pass\n\n\ndef f():\n    _eye()\n")


def test_diagonal_terms_bring_eye_and_others_do_not():
    with_diagonal = parse_spec("name: g\ntypes: {n: {group: perm}}\ntensors: {A: [n, n]}\n")
    assert "def _eye(" in render_module(with_diagonal)
    assert "def _eye(" not in render_module(load_spec(ROOT / "examples" / "mlp_relu.yaml"))


def test_every_runtime_definition_is_documented():
    for module in RUNTIME_MODULES:
        path = RUNTIME_DIR / (module.rpartition(".")[2] + ".py")
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), module
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                assert ast.get_docstring(node), f"{module}.{node.name} has no docstring"
        assert definitions(module)


def test_format_source_is_ruff_format_and_refuses_bad_text():
    assert format_source("x = ( 1,2 )\n") == "x = (1, 2)\n"
    with pytest.raises(SyntaxError, match="ruff format"):
        format_source("def (:\n")


# ----------------------------------------------------------------- mixing, tested directly


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 4),
    c_in=st.integers(1, 5),
    c_out=st.integers(1, 40),
    carried=st.lists(st.integers(1, 6), min_size=1, max_size=3),  # mixes carry >= 1 axis
    accumulate=st.booleans(),
)
def test_mix_into_is_the_matmul_plus_the_accumulator(batch, c_in, c_out, carried, accumulate):
    g = torch.Generator().manual_seed(batch * 1000 + c_in * 100 + c_out)
    weight = torch.randn(c_out, c_in, dtype=torch.float64, generator=g)
    r = torch.randn(batch, c_in, *carried, dtype=torch.float64, generator=g)
    acc = torch.randn(batch, c_out, *carried, dtype=torch.float64, generator=g)
    expected = torch.einsum("oi,bi...->bo...", weight, r) + (acc if accumulate else 0)
    got = mixing._mix_into(acc.clone() if accumulate else None, weight, r)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mixing._mix(weight, r), expected - (acc if accumulate else 0))


def test_batch_mix_gradients_are_autograd_gradients():
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(4, 3, 7, dtype=torch.float64, requires_grad=True)
    acc = torch.randn(4, 5, 7, dtype=torch.float64, requires_grad=True)
    for args in ((w, r, acc), (w, r, None)):
        assert torch.autograd.gradcheck(mixing._BatchMix.apply, args, check_batched_grad=True)


# ------------------------------------------------------------------ group elements


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_monomial_compose_and_inverse_agree_with_matrices(n, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = group._sample_scaled(n, g), group._sample_signed(n, g)

    def matrix(m):
        index, scale = m
        out = torch.zeros(n, n, dtype=torch.float64)
        out[torch.arange(n), index] = scale
        return out

    x = torch.randn(3, n, dtype=torch.float64)
    ab = group._compose_monomial(a, b)
    torch.testing.assert_close(matrix(ab), matrix(a) @ matrix(b))
    torch.testing.assert_close(matrix(group._inverse_monomial(a)), torch.linalg.inv(matrix(a)))
    # acting along an axis is multiplying by the matrix; the dual axis by its inverse transpose
    torch.testing.assert_close(group._act_monomial(x, -1, a, False), x @ matrix(a).T)
    torch.testing.assert_close(group._act_monomial(x, -1, a, True), x @ torch.linalg.inv(matrix(a)))


def test_the_matmul_route_folds_only_on_cpu_and_only_where_measured():
    weight = torch.randn(64, 8)
    few = torch.randn(4, 8, 3)  # 3 entries per row, 64 rows: the CPU fold
    assert mixing._route(weight, few) == "fold"
    assert mixing._route(weight, torch.randn(4, 8, 16)) == "bmm"  # many entries
    assert mixing._route(weight[:16], few[:, :8]) == "bmm"  # few rows
    on_meta = torch.empty(4, 8, 3, device="meta")  # any non-CPU device: never folds
    assert mixing._route(weight.to("meta"), on_meta) == "bmm"
    # a weight gradient larger than the copies _BatchMix makes (out * in > n * (out + in))
    grad = torch.randn(31, 256, requires_grad=True)
    assert mixing._route(grad, torch.randn(4, 256, 9)) == "batch"
    with torch.no_grad():
        assert mixing._route(grad, torch.randn(4, 256, 9)) == "bmm"
    # a weight too large to stay in cache: a 1x1 convolution (float32), a fold (float64)
    big = torch.randn(1024, 1024)
    wide = torch.randn(2, 1024, 32)
    assert mixing._route(big, wide) == "conv"
    assert mixing._route(big.double(), wide.double()) == "fold"
    assert mixing._route(big[:1023], wide) == "bmm"  # one row short of the threshold
    assert mixing._route(big.to("meta"), wide.to("meta")) == "bmm"
    torch.testing.assert_close(
        mixing._product(big, wide), torch.einsum("oi,bin->bon", big, wide), rtol=1e-4, atol=1e-4
    )
    acc = torch.randn(2, 1024, 32)
    torch.testing.assert_close(
        mixing._mix_into(acc.clone(), big, wide, owned=True),
        acc + torch.einsum("oi,bin->bon", big, wide),
        rtol=1e-4,
        atol=1e-4,
    )
    # its gradients are the product's (the weight's: one reduction, never [batch, out, in])
    w = big.clone().requires_grad_()
    r = wide.clone().requires_grad_()
    mixing._product(w, r).square().sum().backward()
    w2, r2 = big.double().requires_grad_(), wide.double().requires_grad_()
    torch.einsum("oi,bin->bon", w2, r2).square().sum().backward()
    torch.testing.assert_close(w.grad.double(), w2.grad, rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(r.grad.double(), r2.grad, rtol=1e-4, atol=1e-2)
    for route_input in (few, torch.randn(4, 8, 16)):  # every route computes the product
        torch.testing.assert_close(
            mixing._product(weight, route_input), torch.einsum("oi,bin->bon", weight, route_input)
        )
