"""Generated layers under automatic mixed precision and torch.compile, against float32 eager.

For each benchmark weight space (``bench.run.layer_cases``) the same generated
``EquivariantLayer`` (shared parameters) runs three ways, timed in interleaved rounds:

* ``fp32``: eager float32, the reference;
* ``amp``: eager under ``torch.autocast`` (bfloat16 on CPU, float16 on CUDA): matmuls and
  bmms in the low precision, reductions as autocast decides;
* ``compiled``: ``torch.compile`` (inductor) of the float32 layer.

Reported: time ratios against ``fp32`` (forward, and forward + backward) and the largest
relative deviation of each output from float32 eager, ``max|y - y_fp32| / max|y_fp32|``
over the output tensors. Run: ``.venv/bin/python -m bench.precision [--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.run import _forward, _forward_backward, _inputs, _interleaved, layer_cases
from qgen.codegen.output import compile_spec

OUT = Path(__file__).resolve().parent / "precision.json"


def deviation(y: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    """``max_k max|y_k - ref_k| / max|ref_k|`` in float64."""
    return max(
        float((y[k].double() - ref[k].double()).abs().max() / ref[k].double().abs().max())
        for k in ref
    )


def bench_case(case, device: str, rounds: int, compiled: bool) -> dict:
    module = compile_spec(case.spec)
    layer = module.EquivariantLayer(case.channels, case.channels).to(device)
    x = _inputs(case.spec, case.batch, case.channels, device)
    amp_dtype = torch.bfloat16 if device == "cpu" else torch.float16

    def autocast(fn):
        def run():
            with torch.autocast(device_type=device, dtype=amp_dtype):
                return fn()

        return run

    variants = {"fp32": layer, "amp": layer}
    if compiled:
        variants["compiled"] = torch.compile(layer)
    with torch.no_grad():
        ref = layer(x)
        outputs = {"amp": autocast(lambda: layer(x))()}
        if compiled:
            outputs["compiled"] = variants["compiled"](x)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    result = {"case": case.name, "amp_dtype": str(amp_dtype).removeprefix("torch.")}
    result["deviation"] = {k: deviation(v, ref) for k, v in outputs.items()}
    for label, make in (("forward", _forward), ("forward_backward", _forward_backward)):
        fns = {k: autocast(make(m, x)) if k == "amp" else make(m, x) for k, m in variants.items()}
        times = _interleaved(fns, sync, rounds, min_time=0.02)
        result[label] = {
            "fp32_ms": times["fp32"] * 1e3,
            **{f"{k}/fp32": times[k] / times["fp32"] for k in times if k != "fp32"},
        }
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="tiny cases (a smoke test)")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = []
    for case in layer_cases(args.quick):
        r = bench_case(case, args.device, args.rounds, compiled=not args.no_compile)
        results.append(r)
        fwd, both = r["forward"], r["forward_backward"]
        cells = [f"{r['case']:12s} fp32 fwd {fwd['fp32_ms']:7.2f} ms"]
        for k in ("amp", "compiled"):
            if f"{k}/fp32" in fwd:
                cells.append(
                    f"{k} {fwd[f'{k}/fp32']:.2f}x fwd, {both[f'{k}/fp32']:.2f}x fwd+bwd, "
                    f"dev {r['deviation'][k]:.1e}"
                )
        print(" | ".join(cells), flush=True)
    args.out.write_text(json.dumps({"device": args.device, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
