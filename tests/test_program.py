"""The layer program (qgen.codegen.program, .passes): lowering, each pass alone, the emitter.

The strongest check is semantic: a module generated with any prefix of the passes computes
the same function (same parameters, float64) as with all of them, on random specs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import sizes_for, specs

import qgen
import qgen.codegen.passes as passes_module
from qgen.codegen.emit import emit
from qgen.codegen.passes import (
    PASSES,
    compile_program,
    drop_dead,
    fuse_layouts,
    move_inputs,
    pool_from_carried,
    share_means,
)
from qgen.codegen.plan import plan_layer
from qgen.codegen.program import (
    Accumulate,
    Concat,
    Mean,
    Mix,
    MixInto,
    Permute,
    Place,
    Reduce,
    Rows,
    lower,
)
from qgen.solver.basis import solve
from qgen.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
CNN = "name: cnn\narch: cnn\nchannels: [1, 4, 5]\nkernel: 3\nclasses: 2\nactivation: gelu\n"


def _plan(spec):
    return plan_layer(solve(spec))


def _gelu():
    return _plan(load_spec(ROOT / "examples" / "mlp_gelu.yaml"))


def test_lowering_mixes_every_group_once_and_accumulates_every_placement():
    plan = _gelu()
    program = lower(plan)
    mixes = [op for op in program.ops if isinstance(op, Mix | MixInto)]
    assert sorted(op.key for op in mixes) == sorted(g.key for g in plan.groups if g.outputs)
    placed = sum(isinstance(op, Place) for op in program.ops)
    fused = sum(isinstance(op, MixInto) for op in program.ops)
    assert placed + fused == sum(len(g.outputs) for g in plan.groups)
    assert sum(isinstance(op, Accumulate) for op in program.ops) == placed
    names = [
        v for op in program.ops if not isinstance(op, Accumulate | MixInto) for v in op.defines()
    ]
    assert len(names) == len(set(names))  # every value is defined once


def test_share_means_starts_larger_means_from_smaller_ones():
    # the perm MLP's W2 is reduced over h2, over h1, and over both
    program = share_means(lower(_gelu()))
    shared = [op for op in program.ops if isinstance(op, Mean)]
    assert [(op.src, op.dims) for op in shared] == [("x:W2", (2,))]
    reduces = [op for op in program.ops if isinstance(op, Reduce) and op.tensor == "W2"]
    total = [op for op in reduces if op.pattern.pool_types == ("h1", "h2")]
    assert total and all(op.src == "x:W2:mean:2" and op.pool == (2,) for op in total)


def test_pool_from_carried_reads_summaries_off_group_inputs():
    program = pool_from_carried(lower(_gelu()))
    pooled = program.defining()["r:pooled"]
    assert isinstance(pooled, Concat)
    rows = [program.defining()[s] for s in pooled.srcs]
    assert [type(op).__name__ for op in rows] == ["Rows", "Rows", "Reduce"]
    assert [(r.src, r.start, r.stop) for r in rows[:2]] == [
        ("r:carry_h1:mean", 0, 6),
        ("r:carry_h2:mean", 1, 5),
    ]
    # everything r:pooled reads is defined before it
    order = {v: i for i, op in enumerate(program.ops) for v in op.defines()}
    for op in program.ops:
        for v in op.uses():
            if not isinstance(op, Accumulate | MixInto):
                assert order[v] <= order[op.defines()[0]] if op.defines() else True


def test_move_inputs_reads_a_kernel_from_one_moved_copy():
    program = move_inputs(lower(_plan(parse_spec(CNN))))
    copies = [op for op in program.ops if isinstance(op, Permute)]
    assert "K2" in [op.tensor for op in copies]
    readers = [op for op in program.ops if isinstance(op, Reduce) and op.tensor == "K2"]
    assert len(readers) > 1 and all(op.src == "x:K2:moved" for op in readers)


def test_fuse_layouts_places_a_kernels_terms_in_its_mix_layout_and_owns_the_sum():
    program = fuse_layouts(lower(_plan(parse_spec(CNN))))
    places = [op for op in program.ops if isinstance(op, Place) and op.pattern.tensor == "K2"]
    assert places and all(op.layout == (0, 1, 4, 5, 2, 3) for op in places)
    fused = [op for op in program.ops if isinstance(op, MixInto) and op.tensor == "K2"]
    assert len(fused) == 1 and fused[0].owned and fused[0].order == (0, 1, 4, 5, 2, 3)
    # a single term as the addend is a view of the mix: not owned
    relu = fuse_layouts(lower(_plan(load_spec(ROOT / "examples" / "mlp_relu.yaml"))))
    assert not any(op.owned for op in relu.ops if isinstance(op, MixInto))


def test_drop_dead_keeps_exactly_what_outputs_read():
    program = compile_program(_gelu())
    assert drop_dead(program) == program
    bloated = program.replace([*program.ops, Rows(out="unused", src="x:W2", start=0, stop=1)])
    assert drop_dead(bloated) == program


def test_emitted_names_are_identifiers_and_comments_name_the_axes():
    emitted = emit(compile_program(_gelu()))
    text = emitted.body(0)
    assert "W2[h2, h1*]: pool h1; carry h2" in text
    tree = ast.parse("def forward(x, mixes, c):\n" + emitted.body(4))  # plain Python names
    bound = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    assert {"r_carry_h1", "y_W2"} <= bound
    assert emitted.uses_channels and not emitted.uses_sizes


@pytest.mark.parametrize("passes", range(len(PASSES)))
def test_each_prefix_of_the_passes_computes_the_same_layer(monkeypatch, passes):
    _same_function(monkeypatch, parse_spec(CNN), passes, {"cin": 1, "c1": 3, "c2": 4})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_passes_preserve_the_layer_on_random_specs(data):
    spec = data.draw(specs(max_axes=3, nested=data.draw(st.booleans())))
    sizes = data.draw(sizes_for(spec, max_size=3))
    passes = data.draw(st.integers(0, len(PASSES) - 1))
    with pytest.MonkeyPatch.context() as mp:
        _same_function(mp, spec, passes, sizes)


def _same_function(monkeypatch, spec, passes, group_sizes):
    full = qgen.compile(spec)
    monkeypatch.setattr(passes_module, "PASSES", PASSES[:passes])
    partial = qgen.compile(spec)
    monkeypatch.undo()
    sizes = {**group_sizes, **{t.name: t.size for t in spec.types.values() if t.fixed}}
    torch.manual_seed(0)
    a = full.EquivariantLayer(2, 3).double()
    b = partial.EquivariantLayer(2, 3).double()
    b.load_state_dict(a.state_dict())
    g = torch.Generator().manual_seed(1)
    x = {
        t.name: torch.randn(4, 2, *(sizes[ax.type] for ax in t.axes), generator=g).double()
        for t in spec.tensors
    }
    ya, yb = a(x), b(x)
    for name in ya:
        torch.testing.assert_close(yb[name], ya[name], rtol=1e-12, atol=1e-12)
    if hasattr(full, "_summaries"):
        torch.testing.assert_close(partial._summaries(x, 2)[-1], full._summaries(x, 2)[-1])
