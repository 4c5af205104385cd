"""The fixed-input MLP layer against NFN's HNP layer on the same space (issue 23 part 3).

The weight space of a GELU MLP with widths 784-32-32-10 (an MNIST classifier: 784
fixed inputs, 10 fixed outputs, hidden neurons permuted: NFN's HNP setting). For each
batch size and channel count, the generated ``EquivariantLayer`` and the hand-written
:class:`bench.reference.HNPLayer` are timed side by side in the same process, forward
(no grad) and forward + backward (a loss on every output, gradients of the parameters),
interleaved round by round (A B, B A, ...) so that a noisy neighbour slows both alike;
the figures are medians over the rounds and the ratios are generated / HNP per round
pair, medianed. Run from the repository root::

    .venv/bin/python -m bench.fixed_mlp                      # writes bench/fixed_mlp.json
    .venv/bin/python -m bench.fixed_mlp --quick              # tiny sizes: the runner works

``--threads`` sets ``torch.set_num_threads`` (default 2, this machine's cores). Both
layers hold float32 parameters; the generated layer spans every equivariant map
(1,269,190 per channel pair), the HNP layer the terms of NFN's formulas (see
:mod:`bench.reference`), so at equal time the generated layer does more.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from bench.reference import HNPLayer
from bench.run import _inputs, retain_freed_memory
from qgen.codegen.output import compile_spec
from qgen.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent

WIDTHS = [784, 32, 32, 10]
LAYERS = [("W1", "b1"), ("W2", "b2"), ("W3", "b3")]


def _spec(widths: list[int]):
    text = f"name: mnist_mlp\narch: mlp\nwidths: {widths}\nactivation: gelu\n"
    return parse_spec(text, "<bench:fixed_mlp>")


def _forward(layer, x):
    def run():
        with torch.no_grad():
            layer(x)

    return run


def _forward_backward(layer, x):
    def run():
        layer.zero_grad(set_to_none=True)
        y = layer(x)
        sum(t.square().mean() for t in y.values()).backward()

    return run


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _pair(fns: dict, rounds: int) -> dict:
    """One warm-up call each, then ``rounds`` interleaved rounds (reversed every other)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            samples[name].append(_timed(fns[name]))
    ratios = [g / h for g, h in zip(samples["generated"], samples["hnp"], strict=True)]
    return {
        "seconds": {k: statistics.median(v) for k, v in samples.items()},
        "samples": samples,
        "ratio": statistics.median(ratios),
    }


def run(widths, batches, channels, rounds) -> list[dict]:
    spec = _spec(widths)
    module = compile_spec(spec)
    rows = []
    for c in channels:
        torch.manual_seed(0)
        layers = {"generated": module.EquivariantLayer(c, c)}
        for batch in batches:
            x = _inputs(spec, batch, c, "cpu")
            if "hnp" not in layers:
                shapes = {n: tuple(t.shape[2:]) for n, t in x.items()}
                layers["hnp"] = HNPLayer(LAYERS, shapes, c, c)
            row = {
                "batch": batch,
                "channels": c,
                "params": {k: sum(p.numel() for p in v.parameters()) for k, v in layers.items()},
            }
            for mode, wrap in (("forward", _forward), ("forward_backward", _forward_backward)):
                row[mode] = _pair({k: wrap(v, x) for k, v in layers.items()}, rounds)
                print(
                    f"batch {batch:4d}  channels {c:2d}  {mode:16s} "
                    f"generated {row[mode]['seconds']['generated'] * 1e3:9.1f} ms  "
                    f"HNP {row[mode]['seconds']['hnp'] * 1e3:9.1f} ms  "
                    f"ratio {row[mode]['ratio']:.2f}",
                    flush=True,
                )
            rows.append(row)
            del x
        del layers
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (checks the runner)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", default=str(ROOT / "bench" / "fixed_mlp.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    retain_freed_memory()
    widths = [12, 4, 4, 3] if args.quick else WIDTHS
    batches = [2, 3] if args.quick else args.batches
    channels = [1, 2] if args.quick else args.channels
    rounds = 2 if args.quick else args.rounds
    load_before = os.getloadavg()
    start = time.perf_counter()
    rows = run(widths, batches, channels, rounds)
    result = {
        "widths": widths,
        "threads": args.threads,
        "rounds": rounds,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "seconds_total": time.perf_counter() - start,
        "rows": rows,
    }
    if not args.quick or args.out != parser.get_default("out"):
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
