"""qgen benchmarks: layer speed, build time and peak memory, with ratios to references.

Run from the repository root::

    .venv/bin/python -m bench.run                  # everything, writes bench/results.json
    .venv/bin/python -m bench.run --sections layers --device cuda
    .venv/bin/python -m bench.run --quick          # tiny sizes: checks the runner works

Every figure is a ratio to a reference measured in the same run, on the same
machine, interleaved round by round (so a noisy neighbour slows all sides):

* layers: the generated ``EquivariantLayer`` against a hand-written NFN HNP layer
  (:mod:`bench.reference`), against the floor (one channel-mixing matmul per
  tensor) and, at small sizes, against the dense approach (:mod:`bench.dense`);
  median seconds per call, forward and forward + backward, float32;
* build: ``qgen count`` and ``qgen build`` as the architecture grows, in process and
  as whole commands;
* memory: peak memory of one forward pass over (input + output) bytes.

On CPU the runner first makes glibc's allocator keep freed memory (``--allocator
retain``, the default), as a caching allocator does: otherwise each large result of
each forward pass is a fresh ``mmap`` whose pages fault in one by one, and on this
VM those faults took half the time of a pass and varied 2x from run to run, for
every implementation alike (``--allocator system`` measures that).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.dense import DenseLayer
from bench.reference import ChannelMixFloor, FixedMixFloor, HNPLayer
from qgen.codegen.output import compile_spec
from qgen.solver.basis import solve
from qgen.spec import Spec, parse_spec

ROOT = Path(__file__).resolve().parent.parent

#: targets from the benchmark issue (stated in the output next to the measured figure)
TARGET_VS_REFERENCE = 1.0
TARGET_VS_FLOOR = 2.5
TARGET_BUILD_S = 2.0
TARGET_MEMORY = 4.0


@dataclass
class LayerCase:
    """One weight space to time a layer on."""

    name: str
    spec_text: str
    batch: int
    channels: int
    hnp_layers: list[tuple[str, str]] | None = None  # (weight, bias) names: an HNP reference
    dense: bool = False  # also time the dense approach (small sizes only)
    floor_target: bool = True  # whether the "within 2.5x of the floor" target applies
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Spec:
        return parse_spec(self.spec_text, f"<bench:{self.name}>")


def _mlp(name: str, widths: list[int]) -> str:
    return f"name: {name}\narch: mlp\nwidths: {widths}\nactivation: gelu\n"


def _mlp_layers(depth: int) -> list[tuple[str, str]]:
    return [(f"W{i}", f"b{i}") for i in range(1, depth + 1)]


def layer_cases(quick: bool) -> list[LayerCase]:
    """The issue's four weight spaces (tiny versions with ``quick``), plus a dense one."""
    if quick:
        return [
            LayerCase("inr_mlp", _mlp("inr_mlp", [2, 4, 4, 1]), 4, 2, _mlp_layers(3), dense=True),
            LayerCase(
                "cnn",
                "name: cnn\narch: cnn\nchannels: [1, 3, 3]\nkernel: 3\nclasses: 2\n"
                "activation: gelu\n",
                4,
                2,
                [("K1", "b1"), ("K2", "b2"), ("W", "b")],
            ),
            LayerCase(
                "transformer",
                "name: tf\narch: transformer\nd_model: 4\nheads: 2\nd_head: 2\nmlp: 4\n"
                "depth: 1\ninputs: 2\noutputs: 2\n",
                2,
                2,
                floor_target=False,
            ),
        ]
    return [
        LayerCase("inr_mlp", _mlp("inr_mlp", [2, 32, 32, 32, 1]), 128, 16, _mlp_layers(4)),
        LayerCase("wide_mlp", _mlp("wide_mlp", [64, 128, 128, 10]), 32, 8, _mlp_layers(3)),
        LayerCase(
            "cnn",
            "name: cnn\narch: cnn\nchannels: [1, 16, 16, 16]\nkernel: 3\nclasses: 10\n"
            "activation: gelu\n",
            64,
            8,
            [("K1", "b1"), ("K2", "b2"), ("K3", "b3"), ("W", "b")],
        ),
        LayerCase(
            "transformer",
            "name: tf\narch: transformer\nd_model: 64\nheads: 4\nd_head: 16\nmlp: 128\n"
            "depth: 1\ninputs: 16\noutputs: 10\n",
            16,
            4,
            floor_target=False,
            notes=["no hand-written reference: NFN's HNP layer does not cover attention"],
        ),
        LayerCase(
            "small_mlp_dense",
            _mlp("small_mlp_dense", [2, 8, 8, 8, 1]),
            32,
            8,
            _mlp_layers(4),
            dense=True,
        ),
    ]


def _sizes(spec: Spec) -> dict[str, int]:
    """The sizes recorded in a preset's expanded spec (every type has one)."""
    return {name: decl.size for name, decl in spec.types.items()}


def _inputs(spec: Spec, batch: int, channels: int, device: str) -> dict[str, torch.Tensor]:
    sizes = _sizes(spec)
    gen = torch.Generator().manual_seed(0)
    return {
        t.name: torch.randn(batch, channels, *(sizes[a.type] for a in t.axes), generator=gen).to(
            device
        )
        for t in spec.tensors
    }


def _interleaved(
    fns: dict[str, Callable[[], object]], sync: Callable[[], None], rounds: int, min_time: float
) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds."""
    iters: dict[str, int] = {}
    for name, fn in fns.items():  # warm up, and pick a loop count per function
        for _ in range(3):
            fn()
        sync()
        start = time.perf_counter()
        fn()
        sync()
        once = max(time.perf_counter() - start, 1e-7)
        iters[name] = max(1, int(min_time / once))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        # every other round in reverse (A B C, C B A, ...): drift and position in the
        # round weigh on every implementation alike
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            start = time.perf_counter()
            for _ in range(iters[name]):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / iters[name])
    return {name: statistics.median(v) for name, v in samples.items()}


def _forward(layer: torch.nn.Module, x: dict[str, torch.Tensor]) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return layer(x)

    return run


def _forward_backward(layer: torch.nn.Module, x: dict[str, torch.Tensor]) -> Callable[[], object]:
    def run() -> object:
        layer.zero_grad(set_to_none=True)
        y = layer(x)
        loss = sum(t.square().mean() for t in y.values())
        loss.backward()
        return loss

    return run


def _peak_memory_ratio(layer: torch.nn.Module, x: dict[str, torch.Tensor], device: str) -> float:
    """Peak bytes alive during one no-grad forward pass over (input + output) bytes."""
    with torch.no_grad():
        y = layer(x)
    io = sum(t.numel() * t.element_size() for t in (*x.values(), *y.values()))
    del y
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            y = layer(x)
        torch.cuda.synchronize()
        del y
        peak = torch.cuda.max_memory_allocated() - base
        inputs = sum(t.numel() * t.element_size() for t in x.values())
        return (peak + inputs) / io
    # CPU: the profiler's memory timeline (every tensor alive at each moment, by category)
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(
        activities=[ProfilerActivity.CPU],
        profile_memory=True,
        record_shapes=True,
        with_stack=True,
    ) as prof:
        with torch.no_grad():
            y = layer(x)
    del y
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline("cpu")
    peak = max(sum(row) for row in sizes)
    params = sum(p.numel() * p.element_size() for p in layer.parameters())
    params += sum(b.numel() * b.element_size() for b in layer.buffers())
    return (peak - params) / io


def bench_layers(
    cases: list[LayerCase],
    device: str,
    rounds: int,
    min_time: float,
    memory: bool,
    compiled: bool = False,
) -> list[dict]:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for case in cases:
        spec = case.spec
        c = case.channels
        x = _inputs(spec, case.batch, c, device)
        module = compile_spec(spec)
        layers: dict[str, torch.nn.Module] = {"generated": module.EquivariantLayer(c, c)}
        if case.hnp_layers:
            shapes = {n: tuple(t.shape[2:]) for n, t in x.items()}
            layers["hnp"] = HNPLayer(case.hnp_layers, shapes, c, c)
        layers["floor"] = ChannelMixFloor(list(x), c, c)
        fixed_axes = {
            t.name: tuple(i for i, a in enumerate(t.axes) if spec.types[a.type].fixed)
            for t in spec.tensors
        }
        fixed_sizes = {
            n: math.prod(x[n].shape[2 + i] for i in axes) for n, axes in fixed_axes.items()
        }
        layers["floor_fixed"] = FixedMixFloor(fixed_axes, fixed_sizes, c, c)
        if case.dense:
            layers["dense"] = DenseLayer(solve(spec), _sizes(spec), c, c)
        for layer in layers.values():
            layer.to(device)
        if compiled:  # the same generated layer (shared parameters) through inductor
            layers["generated_compiled"] = torch.compile(layers["generated"])
        row: dict = {
            "case": case.name,
            "batch": case.batch,
            "channels": c,
            "numel": sum(t[0, 0].numel() for t in x.values()),
            "params": {k: sum(p.numel() for p in v.parameters()) for k, v in layers.items()},
            "notes": case.notes,
            "floor_target": case.floor_target,
        }
        for mode, wrap in (("forward", _forward), ("forward_backward", _forward_backward)):
            fns = {k: wrap(v, x) for k, v in layers.items()}
            row[mode] = _interleaved(fns, sync, rounds, min_time)
        if memory:
            row["peak_memory_over_io"] = {
                k: _peak_memory_ratio(v, x, device)
                for k, v in layers.items()
                if k not in ("dense", "generated_compiled")
            }
        rows.append(row)
    return rows


_IN_PROCESS = """
import sys, time
from qgen.spec import parse_spec
text, out = sys.argv[1], sys.argv[2]
spec = parse_spec(text, "<bench>")
start = time.perf_counter()
if out == "-":
    from qgen.solver.basis import solve
    solve(spec).counts()
else:
    from qgen.codegen.output import build
    build(spec, out)
print(time.perf_counter() - start)
"""


def _in_process(text: str, out: str, env: dict) -> float:
    """Seconds for ``counts()`` (``out`` "-") or ``build`` in a fresh interpreter, after
    imports: what a script calling qgen pays, with no cache warmed by earlier cases."""
    run = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS, text, out],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return float(run.stdout.strip().splitlines()[-1])


def _whole_command(args: list[str], env: dict) -> float:
    """Wall seconds of one ``python -m qgen ...`` command, interpreter start included."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qgen", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def build_cases(quick: bool) -> list[tuple[str, int, str]]:
    """``(family, depth, spec text)`` for growing MLPs and transformers."""
    mlp_depths = [2, 4] if quick else [4, 16, 64, 256]
    tf_depths = [1] if quick else [1, 4, 12]
    cases = [("mlp", d, _mlp(f"mlp{d}", [64] + [32] * (d - 1) + [10])) for d in mlp_depths]
    if not quick:  # the same depth at other widths: build time must not depend on them
        cases.append(("mlp_wide", 64, _mlp("mlp64w", [64] + [4096] * 63 + [10])))
    cases += [
        (
            "transformer",
            d,
            f"name: tf{d}\narch: transformer\nd_model: 64\nheads: 4\nd_head: 16\nmlp: 128\n"
            f"depth: {d}\ninputs: 16\noutputs: 10\n",
        )
        for d in tf_depths
    ]
    return cases


def bench_build(quick: bool) -> list[dict]:
    """Each figure the best of a few fresh processes (the least disturbed by neighbours)."""
    repeat = 1 if quick else 3
    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        for family, depth, text in build_cases(quick):
            out = Path(tmp) / f"{family}{depth}"
            path = Path(tmp) / f"{family}{depth}.yaml"
            path.write_text(text)

            def best(fn: Callable[[], float]) -> float:
                return min(fn() for _ in range(repeat))

            rows.append(
                {
                    "family": family,
                    "depth": depth,
                    "tensors": len(parse_spec(text, "<bench>").tensors),
                    "count_s": best(lambda t=text: _in_process(t, "-", env)),
                    "build_s": best(lambda t=text, o=out: _in_process(t, str(o), env)),
                    "count_command_s": best(
                        lambda p=path: _whole_command(["count", str(p), "--json"], env)
                    ),
                    "build_command_s": best(
                        lambda p=path, o=out: _whole_command(["build", str(p), "-o", str(o)], env)
                    ),
                }
            )
    return rows


def _fmt_ms(s: float) -> str:
    return f"{s * 1e3:9.3f}"


def report(results: dict) -> list[str]:
    """The printed tables, with the targets judged plainly."""
    lines = [f"machine: {results['machine']}"]
    if "allocator" in results:
        lines.append(f"allocator: {results['allocator']}")
    lines.append("")
    for row in results.get("layers", []):
        lines.append(
            f"== {row['case']}: batch {row['batch']}, {row['channels']} -> {row['channels']} "
            f"channels, {row['numel']} weights per network; params {row['params']}"
        )
        for note in row["notes"]:
            lines.append(f"   note: {note}")
        for mode in ("forward", "forward_backward"):
            t = row[mode]
            parts = [f"{k} {_fmt_ms(v)} ms" for k, v in t.items()]
            lines.append(f"   {mode:17s} " + " | ".join(parts))
            gen = t["generated"]
            if "hnp" in t:
                r = gen / t["hnp"]
                verdict = "met" if r <= TARGET_VS_REFERENCE else "MISSED"
                lines.append(
                    f"   {'':17s} generated / hand-written HNP = {r:.2f}  "
                    f"(target <= {TARGET_VS_REFERENCE}: {verdict})"
                )
            r = gen / t["floor"]
            if row.get("floor_target", True):
                verdict = "met" if r <= TARGET_VS_FLOOR else "MISSED"
                lines.append(
                    f"   {'':17s} generated / floor = {r:.2f}  "
                    f"(target <= {TARGET_VS_FLOOR}: {verdict})"
                )
                least = t.get("floor_fixed", 0.0) / t["floor"]
                if r > TARGET_VS_FLOOR and least > TARGET_VS_FLOOR:
                    lines.append(
                        f"   {'':17s} (out of reach for any complete layer: mixing the "
                        f"fixed axes alone takes {least:.2f}x the floor)"
                    )
            else:
                lines.append(f"   {'':17s} generated / floor = {r:.2f}  (no target)")
            if "floor_fixed" in t:
                r = gen / t["floor_fixed"]
                lines.append(
                    f"   {'':17s} generated / floor with fixed axes mixed = {r:.2f}  "
                    "(the least a complete basis does)"
                )
            if "dense" in t:
                lines.append(f"   {'':17s} dense / generated = {t['dense'] / gen:.1f}")
            if "generated_compiled" in t:
                r = t["generated_compiled"] / gen
                lines.append(f"   {'':17s} torch.compile'd / eager generated = {r:.2f}")
        if "peak_memory_over_io" in row:
            m = row["peak_memory_over_io"]
            verdict = "met" if m["generated"] < TARGET_MEMORY else "MISSED"
            lines.append(
                "   peak forward memory / (input + output): "
                + ", ".join(f"{k} {v:.2f}" for k, v in m.items())
                + f"  (target generated < {TARGET_MEMORY}: {verdict})"
            )
        lines.append("")
    build_rows = results.get("build", [])
    if build_rows:
        lines.append("== build and count time (seconds; in process, then whole command)")
        lines.append(
            f"   {'arch':12s} {'depth':>5s} {'tensors':>7s} {'count':>7s} {'build':>7s}"
            f" {'count cmd':>9s} {'build cmd':>9s}"
        )
        for r in build_rows:
            lines.append(
                f"   {r['family']:12s} {r['depth']:5d} {r['tensors']:7d} {r['count_s']:7.3f} "
                f"{r['build_s']:7.3f} {r.get('count_command_s', math.nan):9.3f} "
                f"{r.get('build_command_s', math.nan):9.3f}"
            )
        for family in ("mlp", "transformer"):
            fam = [r for r in build_rows if r["family"] == family]
            if len(fam) >= 2:
                a, b = fam[-2], fam[-1]
                k = math.log(b["build_s"] / a["build_s"]) / math.log(b["depth"] / a["depth"])
                lines.append(
                    f"   {family}: build time grows as depth^{k:.2f} "
                    f"(from depth {a['depth']} to {b['depth']})"
                )
        for family, depth in (("mlp", 256), ("transformer", 12)):
            for r in build_rows:
                if r["family"] == family and r["depth"] == depth:
                    verdict = "met" if r["build_s"] < TARGET_BUILD_S else "MISSED"
                    lines.append(
                        f"   qgen build {family} depth {depth}: {r['build_s']:.2f} s "
                        f"in process (target < {TARGET_BUILD_S} s: {verdict})"
                    )
        lines.append("")
    return lines


def retain_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse, as a caching allocator does
    (CUDA's; jemalloc or tcmalloc, which PyTorch's CPU tuning guide recommends): serve
    large blocks from the heap rather than ``mmap`` (``M_MMAP_MAX = 0``) and never give
    the heap's top back (``M_TRIM_THRESHOLD`` at its maximum). False where that is not
    glibc, or it refuses."""
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        return libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    desc = f"{platform.system()} {cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    return desc + f", {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["layers", "build", "memory"],
        choices=["layers", "build", "memory"],
    )
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 21)")
    parser.add_argument("--cases", nargs="+", default=None, help="layer cases to run (default all)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="also time the generated layer under torch.compile"
    )
    parser.add_argument(
        "--allocator",
        default="retain",
        choices=["retain", "system"],
        help="CPU: keep freed memory for reuse (default), or glibc's defaults",
    )
    parser.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results.json"),
        help="JSON file for the figures (default bench/results.json)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (1 if args.quick else 21)
    min_time = 0.001 if args.quick else 0.05
    device = args.device
    if device == "cuda":
        machine_desc = f"{machine()}, {torch.cuda.get_device_name()}"
    else:
        machine_desc = machine()
    allocator = "system"
    if device == "cpu" and args.allocator == "retain" and retain_freed_memory():
        allocator = "retain (glibc keeps freed memory: M_MMAP_MAX=0, no trimming)"
    results: dict = {
        "machine": machine_desc,
        "device": device,
        "allocator": allocator,
        "quick": args.quick,
    }
    if "layers" in args.sections:
        cases = [c for c in layer_cases(args.quick) if not args.cases or c.name in args.cases]
        results["layers"] = bench_layers(
            cases, device, rounds, min_time, "memory" in args.sections, args.compile
        )
    if "build" in args.sections:
        results["build"] = bench_build(args.quick)
    for line in report(results):
        print(line)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"figures written to {out}")
    return results


if __name__ == "__main__":
    main()
