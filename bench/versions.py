"""Generated layers of this checkout against those of another qgen checkout, in one run.

    .venv/bin/python -m bench.versions --old PATH [--quick] [--rounds N] [--out FILE]

For each of bench/run.py's layer cases, the module is rendered by this checkout and by the
qgen at ``PATH`` (an older commit, e.g. ``git worktree add /tmp/qgen-old <commit>``; it is
run in a subprocess with ``PATH`` first on ``sys.path``). The new layer loads the old
layer's state dict (state dicts of version 1 are renamed by the layer's hook), the two
must agree (float32, 1e-5 relative), and forward and forward+backward are timed in
interleaved rounds: the ratio new/old is measured in the same process on the same inputs.
The new layer runs with ``contiguous=False`` (old layers returned permuted views too); its
``contiguous=True`` default is timed as a third entry. Lines of the generated modules are
reported as well.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types

import torch

from bench.run import _forward, _forward_backward, _inputs, _interleaved, layer_cases
from qgen.codegen.rendering import render_module


def _old_source(checkout: str, spec_text: str, name: str) -> str:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from qgen.spec import parse_spec; from qgen.codegen.rendering import render_module;"
        "sys.stdout.write(render_module(parse_spec(sys.argv[2], sys.argv[3])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, checkout, spec_text, f"<bench:{name}>"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def _load(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)  # noqa: S102 - our own output
    return module


def compare(old_checkout: str, quick: bool, rounds: int, min_time: float) -> list[dict]:
    rows = []
    for case in layer_cases(quick):
        spec = case.spec
        old_text = _old_source(old_checkout, case.spec_text, case.name)
        new_text = render_module(spec)
        old, new = _load(old_text, "old"), _load(new_text, "new")
        torch.manual_seed(0)
        a = old.EquivariantLayer(case.channels, case.channels)
        b = new.EquivariantLayer(case.channels, case.channels, contiguous=False)
        state = a.state_dict()
        state._metadata = {"": {"version": 1}}  # what an old checkpoint carries
        b.load_state_dict(state)
        c = new.EquivariantLayer(case.channels, case.channels)
        c.load_state_dict(b.state_dict())
        x = _inputs(spec, case.batch, case.channels, "cpu")
        with torch.no_grad():
            ya, yb = a(x), b(x)
        worst = max(((ya[k] - yb[k]).abs().max() / ya[k].abs().max()).item() for k in ya)
        assert worst < 1e-5, f"{case.name}: old and new layers differ by {worst:.2e}"

        def sync() -> None:
            pass

        fwd = _interleaved(
            {"old": _forward(a, x), "new": _forward(b, x), "new_contiguous": _forward(c, x)},
            sync,
            rounds,
            min_time,
        )
        both = _interleaved(
            {
                "old": _forward_backward(a, x),
                "new": _forward_backward(b, x),
                "new_contiguous": _forward_backward(c, x),
            },
            sync,
            rounds,
            min_time,
        )
        rows.append(
            {
                "case": case.name,
                "lines_old": old_text.count("\n"),
                "lines_new": new_text.count("\n"),
                "max_relative_difference": worst,
                "forward_ms": {k: v * 1e3 for k, v in fwd.items()},
                "forward_backward_ms": {k: v * 1e3 for k, v in both.items()},
                "forward_ratio": fwd["new"] / fwd["old"],
                "forward_backward_ratio": both["new"] / both["old"],
                "forward_ratio_contiguous": fwd["new_contiguous"] / fwd["old"],
                "forward_backward_ratio_contiguous": both["new_contiguous"] / both["old"],
            }
        )
        r = rows[-1]
        print(
            f"{case.name:16s} lines {r['lines_old']:5d} -> {r['lines_new']:5d}   "
            f"fwd {fwd['old'] * 1e3:7.2f} -> {fwd['new'] * 1e3:7.2f} ms "
            f"(x{r['forward_ratio']:.2f}; contiguous x{r['forward_ratio_contiguous']:.2f})   "
            f"fwd+bwd {both['old'] * 1e3:7.2f} -> {both['new'] * 1e3:7.2f} ms "
            f"(x{r['forward_backward_ratio']:.2f}; "
            f"contiguous x{r['forward_backward_ratio_contiguous']:.2f})",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="path of the other qgen checkout")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 15)
    rows = compare(args.old, args.quick, rounds, 0.002 if args.quick else 0.05)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump({"threads": args.threads, "rounds": rounds, "rows": rows}, fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
