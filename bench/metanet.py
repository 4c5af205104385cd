"""What the building blocks cost: a generated ``MetaNetwork`` against its linear layers alone.

    .venv/bin/python -m bench.metanet              # bench/run.py's INR MLP case
    .venv/bin/python -m bench.metanet --quick      # tiny sizes: checks the runner works

Both sides run in one process, interleaved round by round (``bench.run._interleaved``),
with glibc keeping freed memory as in bench/run.py:

* ``layers``: the network's ``EquivariantLayer`` modules applied in sequence (the same
  parameter objects the MetaNetwork holds), nothing between them, then its linear
  ``InvariantHead`` (invariant output) or last layer (equivariant output): the purely
  linear network;
* ``metanetwork``: the whole ``MetaNetwork`` forward: input normalizer, layers,
  activations, channel norms, and the invariant head (or the last layer for
  ``output="equivariant"``); with ``--degree2`` also the degree-2 products.

The ratio ``metanetwork / layers`` is the cost of everything between the layers.
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.run import _inputs, _interleaved, layer_cases, retain_freed_memory
from qgen.codegen.output import compile_spec


def _layers_only(net) -> torch.nn.Module:
    class Layers(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = net.layers
            self.out = getattr(net, "out", None)
            self.head = getattr(net, "linear_head", None)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            if self.out is not None:
                return self.out(x)
            return self.head(x) if self.head is not None else x

    return Layers()


def measure(quick: bool, degree2: bool, rounds: int, min_time: float) -> list[dict]:
    case = next(c for c in layer_cases(quick) if c.name == "inr_mlp")
    spec = case.spec
    space = compile_spec(spec)
    x = _inputs(spec, case.batch, case.channels, "cpu")
    c = case.channels
    rows = []
    for output in ("invariant", "equivariant"):
        torch.manual_seed(0)
        net = space.MetaNetwork(
            c, c, 2, c if output == "equivariant" else 1, output=output, degree2=degree2
        )
        net.fit_normalizer(x)
        net.eval()
        layers = _layers_only(net)

        def run(module):
            def call():
                with torch.no_grad():
                    return module(x)

            return call

        times = _interleaved(
            {"metanetwork": run(net), "layers": run(layers)}, lambda: None, rounds, min_time
        )
        rows.append(
            {
                "case": case.name,
                "output": output,
                "degree2": degree2,
                "batch": case.batch,
                "channels": c,
                "seconds": times,
                "ratio": times["metanetwork"] / times["layers"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--degree2", action="store_true")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()  # as bench/run.py does by default (see there)
    print(f"allocator: {'retain' if retained else 'system'}")
    rows = measure(args.quick, args.degree2, 3 if args.quick else args.rounds, args.min_time)
    for r in rows:
        print(
            f"{r['case']} output={r['output']} degree2={r['degree2']}: MetaNetwork "
            f"{r['seconds']['metanetwork'] * 1e3:.2f} ms, layers alone "
            f"{r['seconds']['layers'] * 1e3:.2f} ms, ratio {r['ratio']:.2f}"
        )
    print(json.dumps(rows))
    return rows


if __name__ == "__main__":
    main()
