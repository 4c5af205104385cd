"""Generated layers: equivariance, completeness against the solver, files, safety."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import sizes_for, specs

import qgen
from qgen import parse_spec, solve
from qgen.codegen.rendering import render_module, render_tests
from qgen.solver.numeric import constraint_residual
from qgen.solver.verify import axis_actions, generators_at
from qgen.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}


def weights(module, sizes, batch, channels, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch, channels, *(sizes[a.rstrip("*")] for a in axes), generator=gen).to(
            dtype
        )
        for name, axes in module.TENSORS.items()
    }


def full_sizes(spec, group_sizes):
    return {**{t.name: t.size for t in spec.types.values() if t.fixed}, **group_sizes}


def randomize(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen).to(p.dtype))


def relative_error(a, b):
    return max(
        float((a[k] - b[k]).detach().abs().max() / b[k].detach().abs().max().clamp_min(1e-30))
        for k in b
    )


# ---------------------------------------------------------------- equivariance


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_specs_give_equivariant_layers_and_invariant_heads(data):
    spec = data.draw(specs(nested=data.draw(st.booleans())))
    sizes = full_sizes(spec, data.draw(sizes_for(spec)))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    seed = data.draw(st.integers(0, 2**31 - 1))
    module = qgen.compile(spec)
    layer = module.EquivariantLayer(2, 3).to(dtype)
    head = module.InvariantHead(2, 4).to(dtype)
    randomize(layer, seed)
    randomize(head, seed + 1)
    x = weights(module, sizes, 2, 2, dtype, seed)
    g = module.sample_group_element(sizes, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        assert relative_error(layer(module.act(g, x)), module.act(g, layer(x))) <= TOLERANCE[dtype]
        inv = {"out": head(module.act(g, x))}
        assert relative_error(inv, {"out": head(x)}) <= TOLERANCE[dtype]


# ---------------------------------------------------------------- completeness


def layer_block_maps(module, layer, sizes):
    """{(s, t): dense map} of a 1-channel layer (the Jacobian, read off basis inputs)."""
    names = list(module.TENSORS)
    shapes = {n: [sizes[a.rstrip("*")] for a in module.TENSORS[n]] for n in names}
    numel = {n: int(torch.tensor(shapes[n]).prod()) for n in names}
    maps = {}
    for t in names:
        x = {n: torch.zeros(numel[t], 1, *shapes[n], dtype=torch.float64) for n in names}
        x[t] = torch.eye(numel[t], dtype=torch.float64).reshape(numel[t], 1, *shapes[t])
        y = layer(x)
        for s in names:
            maps[s, t] = y[s].reshape(numel[t], -1).T.reshape(*shapes[s], *shapes[t])
    return maps


def representable_maps(module, sizes):
    """Per block, the maps obtained by switching on one weight at a time."""
    layer = module.EquivariantLayer(1, 1, bias=False).double()
    params = list(layer.parameters())
    collected: dict = {}
    with torch.no_grad():
        for p in params:
            p.zero_()
        for p in params:
            for i in range(p.numel()):
                p.view(-1)[i] = 1.0
                for key, m in layer_block_maps(module, layer, sizes).items():
                    collected.setdefault(key, []).append(m)
                p.view(-1)[i] = 0.0
    return {k: torch.stack(v) for k, v in collected.items()}


def check_completeness(spec, module, sizes):
    basis = solve(spec)
    maps = representable_maps(module, sizes)
    for (s, t), block in basis.blocks.items():
        expected = block.count(sizes)
        stack = maps.get((s, t))
        if stack is None:
            assert expected == 0
            continue
        rank = int(torch.linalg.matrix_rank(stack.reshape(stack.shape[0], -1)))
        assert rank == expected, (block.label, sizes, rank, expected)
        axes = axis_actions(block, sizes)
        gens = generators_at(block, sizes)
        assert constraint_residual(stack, axes, gens) <= 1e-9, block.label


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_specs_give_complete_layers(data):
    """Every equivariant map is representable, at every size (below thresholds too)."""
    spec = data.draw(specs(max_axes=2, nested=data.draw(st.booleans())))
    sizes = full_sizes(spec, data.draw(sizes_for(spec, max_size=3)))
    check_completeness(spec, qgen.compile(spec), sizes)


@pytest.mark.parametrize("example", ["mlp_relu", "inr_sine", "linear_net"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_examples_are_complete(example, n):
    spec = load_spec(ROOT / "examples" / f"{example}.yaml")
    sizes = full_sizes(spec, {t: n for t in spec.group_types})
    check_completeness(spec, qgen.compile(spec), sizes)


def test_a_layer_that_misses_terms_fails_the_completeness_check(monkeypatch):
    # a program that drops what one group adds to its tensors: its terms are missing
    import qgen.codegen.rendering as codegen
    from qgen.codegen.passes import drop_dead
    from qgen.codegen.program import Accumulate, MixInto, Program

    spec = load_spec(ROOT / "examples" / "mlp_relu.yaml")
    compile_program = codegen.compile_program

    def without_carry_h1(plan):
        program = compile_program(plan)
        ops, written = [], set()
        for op in program.ops:
            if isinstance(op, Accumulate) and op.value.startswith("p:carry_h1"):
                continue
            if isinstance(op, Accumulate | MixInto):
                op = dataclasses.replace(op, first=op.tensor not in written)
                written.add(op.tensor)
            ops.append(op)
        outputs = tuple((t, v if t in written else None) for t, v in program.outputs)
        return drop_dead(Program(tuple(ops), outputs))

    monkeypatch.setattr(codegen, "compile_program", without_carry_h1)
    module = qgen.compile(spec)
    assert "h1:W1,b1" not in module.EquivariantLayer.forward.__code__.co_consts
    sizes = full_sizes(spec, {t: 2 for t in spec.group_types})
    with pytest.raises(AssertionError):
        check_completeness(spec, module, sizes)


# ---------------------------------------------------------------- files


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_generated_files_are_up_to_date(path):
    spec = load_spec(path)
    module = ROOT / "generated" / f"{spec.name}.py"
    tests = ROOT / "generated" / f"test_{spec.name}.py"
    hint = f"out of date: run qgen build {path.relative_to(ROOT)} -o generated --tests"
    assert module.read_text() == render_module(spec), hint
    assert tests.read_text() == render_tests(spec), hint


def test_build_is_deterministic(tmp_path):
    for run in ("a", "b"):
        qgen.build(EXAMPLES[0], tmp_path / run, tests=True)
    for f in (tmp_path / "a").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()


def test_generated_code_is_ruff_clean(tmp_path):
    qgen.build(ROOT / "examples" / "mlp_gelu.yaml", tmp_path, tests=True)
    config = ["--config", str(ROOT / "pyproject.toml")]
    check = subprocess.run([sys.executable, "-m", "ruff", "check", *config, str(tmp_path)])
    fmt = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *config, str(tmp_path)]
    )
    assert check.returncode == 0 and fmt.returncode == 0


def test_bad_spec_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\ntypes: {h: {group: perm}}\ntensors: {W: [h, q]}\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "qgen", "build", str(bad), "-o", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "undeclared type 'q'" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_failed_build_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    import qgen.codegen.output as build_module

    qgen.build(EXAMPLES[0], tmp_path)
    target = tmp_path / f"{load_spec(EXAMPLES[0]).name}.py"
    before = target.read_bytes()

    def broken(spec, *args):
        raise RuntimeError("render failed")

    monkeypatch.setattr(build_module, "render", broken)
    with pytest.raises(RuntimeError):
        qgen.build(EXAMPLES[0], tmp_path, tests=True)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_generated_module_imports_with_torch_alone(tmp_path):
    paths = qgen.build(ROOT / "examples" / "cnn_small.yaml", tmp_path)
    tree = ast.parse(paths[0].read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"torch", "__future__"}
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in ("qgen", "sympy", "yaml", "jinja2"))
    code = f"import sys; {blocked}; import cnn_small; cnn_small.EquivariantLayer(1, 2)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_a_hidden_weight_is_read_once_per_kept_axes_pattern():
    # W2 is read for its row means and its column means; its total mean (an invariant
    # summary) is read off the mean of a group's inputs, not off W2 again; the layer and
    # the invariant head share those reductions (written once, in _summaries)
    spec = load_spec(ROOT / "examples" / "mlp_gelu.yaml")
    source = render_module(spec)
    assert source.count("x_W2.mean(") == 2 and source.count('x_W2 = x["W2"]') == 1
    assert "mean((2, 3))" not in source
    module = qgen.compile(spec)
    sizes = {"x": 4, "h1": 5, "h2": 6, "y": 3}
    x = {t.name: torch.randn(3, 2, *(sizes[a.type] for a in t.axes)) for t in spec.tensors}
    summaries = module._summaries(x, 2)[-1]
    direct = torch.cat(
        [
            x["W1"].mean(2).flatten(1, 2),
            x["b1"].mean(2),
            x["W2"].mean((2, 3)),
            x["b2"].mean(2),
            x["W3"].mean(3).flatten(1, 2),
            x["b3"].flatten(1, 2),
        ],
        dim=1,
    )
    torch.testing.assert_close(summaries, direct, rtol=0, atol=1e-6)


def test_terms_of_a_kernel_are_summed_in_its_mix_layout(monkeypatch):
    # the broadcast terms of K2[c2, c1, k3, k3] are summed as [batch, channels, k3, k3,
    # c2, c1], the layout of the mix that carries both neuron axes: that sum is the
    # matmul's addend as it is (accumulated in place), and the result a permuted view
    text = "name: cnn\narch: cnn\nchannels: [1, 4, 5]\nkernel: 3\nclasses: 2\nactivation: gelu\n"
    spec = parse_spec(text)
    module = qgen.compile(spec)
    source = module.__source__
    assert "owned=True" in source and "order=(0, 1, 4, 5, 2, 3)" in source
    layer = module.EquivariantLayer(2, 3, contiguous=False)
    x = {
        t.name: torch.randn(6, 2, *(spec.types[a.type].size for a in t.axes)) for t in spec.tensors
    }
    seen = {}
    mix_into = module._mix_into

    def spy(acc, weight, r, fixed=(), order=None, owned=False):
        if order == (0, 1, 4, 5, 2, 3):
            seen["acc"] = (acc.shape, acc.is_contiguous(), acc.data_ptr(), owned)
        out = mix_into(acc, weight, r, fixed, order, owned)
        if order == (0, 1, 4, 5, 2, 3):
            seen["out"] = (out.shape, out.data_ptr())
        return out

    monkeypatch.setitem(module.EquivariantLayer.forward.__globals__, "_mix_into", spy)
    with torch.no_grad():
        layer(x)
    shape, contiguous, pointer, owned = seen["acc"]
    assert shape == (6, 3, 3, 3, 5, 4) and contiguous and owned
    assert seen["out"] == ((6, 3, 5, 4, 3, 3), pointer)  # accumulated into the sum in place


def test_batch_mix_gradients_match_autograd_through_the_broadcast_weight(monkeypatch):
    # _BatchMix's hand-written backward against autograd's own (float64, same layer)
    text = "name: cnn\narch: cnn\nchannels: [1, 4, 5]\nkernel: 3\nclasses: 2\nactivation: gelu\n"
    spec = parse_spec(text)
    module = qgen.compile(spec)
    layer = module.EquivariantLayer(3, 2).double()
    x = {
        t.name: torch.randn(6, 3, *(spec.types[a.type].size for a in t.axes), dtype=torch.float64)
        for t in spec.tensors
    }
    for t in x.values():
        t.requires_grad_(True)

    def gradients() -> list[torch.Tensor]:
        layer.zero_grad(set_to_none=True)
        for t in x.values():
            t.grad = None
        y = layer(x)
        sum(
            (v * torch.linspace(-1, 1, v.numel(), dtype=v.dtype).view(v.shape)).sum()
            for v in y.values()
        ).backward()
        return [p.grad.clone() for p in layer.parameters()] + [t.grad.clone() for t in x.values()]

    calls = []
    apply = module._BatchMix.apply
    monkeypatch.setattr(module._BatchMix, "apply", lambda *a: calls.append(1) or apply(*a))
    mine = gradients()
    assert calls  # the cheap-gradient path was taken
    monkeypatch.setattr(module, "_batch_mix_pays", lambda *a: False)
    reference = gradients()
    for a, b in zip(mine, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    r = torch.randn(4, 3, 7, dtype=torch.float64, requires_grad=True)
    acc = torch.randn(4, 5, 7, dtype=torch.float64, requires_grad=True)
    for args in ((w, r, acc), (w, r, None)):  # vmapped gradients (torch.func) too
        assert torch.autograd.gradcheck(apply, args, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(apply, (w, r, acc))  # double backward too


def test_names_only_reach_generated_code_as_identifiers_and_literals():
    # names that shadow what the generated code uses must stay inert (a spec named like a
    # module the generated files import is refused: tests/test_hostile.py)
    text = """
name: shadowing
types: {n: {group: perm}, x: {size: 2}, F: {group: scaled}}
tensors: {nn: [n, x*], out: [F, n*], self: [F]}
"""
    spec = parse_spec(text)
    module = qgen.compile(spec)
    sizes = {"n": 3, "x": 2, "F": 2}
    x = weights(module, sizes, 2, 1)
    g = module.sample_group_element(sizes, torch.Generator().manual_seed(0))
    layer = module.EquivariantLayer(1, 1).double()
    assert relative_error(layer(module.act(g, x)), module.act(g, layer(x))) <= 1e-10
    source_names = {
        node.id for node in ast.walk(ast.parse(module.__source__)) if isinstance(node, ast.Name)
    }
    assert "self" in source_names and "out" in source_names  # the code's own variables
    assert "nn" in source_names  # torch.nn, imported by the module; the tensor is a string


def test_quasi_is_refused_without_a_continuous_part():
    module = qgen.compile(ROOT / "examples" / "mlp_gelu.yaml")  # perm types only
    with pytest.raises(ValueError, match="no continuous part"):
        module.EquivariantLayer(1, 1, quasi=True)


def test_bad_input_dicts_get_clear_errors():
    module = qgen.compile(ROOT / "examples" / "mlp_relu.yaml")
    layer = module.EquivariantLayer(1, 2)
    x = weights(module, {"x": 2, "y": 2, "h1": 3, "h2": 3, "h3": 3}, 2, 1, torch.float32)
    with pytest.raises(ValueError, match="missing tensors"):
        layer({k: v for k, v in x.items() if k != "b1"})
    with pytest.raises(ValueError, match="axis h1\\* has size 4, elsewhere 3"):
        layer({**x, "W2": torch.randn(2, 1, 3, 4)})
    with pytest.raises(ValueError, match="expected shape"):
        layer({**x, "b1": torch.randn(2, 5, 3)})


# ---------------------------------------------------------------- dtypes, compile


def test_bfloat16_and_widths_are_read_at_run_time():
    module = qgen.compile(ROOT / "examples" / "mlp_relu.yaml")
    layer = module.EquivariantLayer(2, 2)
    for width in (3, 7):
        sizes = {"x": 2, "y": 2, "h1": width, "h2": width + 1, "h3": 2}
        x = weights(module, sizes, 2, 2, torch.float32)
        ref = layer(x)
        out = layer.to(torch.bfloat16)({k: v.bfloat16() for k, v in x.items()})
        layer.float()
        assert relative_error({k: v.float() for k, v in out.items()}, ref) < 5e-2


@pytest.mark.parametrize(
    ("example", "sizes"),
    [
        ("mlp_relu", {"x": 2, "y": 2, "h1": 5, "h2": 6, "h3": 4}),
        ("cnn_small", {"cin": 1, "kx": 3, "ky": 3, "y": 10, "c1": 6, "c2": 5}),
    ],
)
def test_layers_run_under_autocast_forward_and_backward(example, sizes):
    """CPU autocast (bfloat16 matmuls): the in-place accumulating mix falls back to an
    out-of-place add, and _BatchMix forms each gradient in its input's dtype; outputs and
    parameter gradients stay within bfloat16 accuracy of float32."""
    module = qgen.compile(ROOT / "examples" / f"{example}.yaml")
    layer = module.EquivariantLayer(4, 4)
    x = weights(module, sizes, 8, 4, torch.float32)
    ref = layer(x)
    sum(v.square().mean() for v in ref.values()).backward()
    ref_grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        loss = sum(v.float().square().mean() for v in out.values())
    loss.backward()
    assert any(v.dtype == torch.bfloat16 for v in out.values())
    assert relative_error({k: v.float() for k, v in out.items()}, ref) < 3e-2
    grads = {n: p.grad for n, p in layer.named_parameters()}
    assert all(g.dtype == torch.float32 for g in grads.values())
    assert relative_error(grads, ref_grads) < 5e-2


def test_torch_compile_matches_eager():
    module = qgen.compile(ROOT / "examples" / "mlp_gelu.yaml")
    layer = module.EquivariantLayer(2, 3)
    sizes = {"x": 4, "y": 3, "h1": 5, "h2": 6}
    x = weights(module, sizes, 4, 2, torch.float32)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    ref = layer(x)
    assert relative_error(out, ref) < 1e-6
    sum(v.sum() for v in out.values()).backward()


def test_training_demo_runs_and_learns():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import train_demo
    finally:
        sys.path.pop(0)
    assert train_demo.main(steps=60) < 0.12  # below predicting the mean (about 0.12)
