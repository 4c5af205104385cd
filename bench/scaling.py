"""How qgen's own work grows with an architecture's depth: ``count``, ``build`` and
``build --tests`` of the transformer and MLP presets at depths 1 to 64.

Run from the repository root::

    .venv/bin/python -m bench.scaling                   # writes bench/scaling.json
    .venv/bin/python -m bench.scaling --root ../other    # another checkout (a baseline)
    .venv/bin/python -m bench.scaling --quick            # depths 1 and 2: the runner works

Each measurement runs in a fresh Python process that imports qgen from ``--root`` and then
times one command in process (``qgen.cli.main.main``): CPU seconds of the process and its
children (``ruff format`` runs as a child) and wall seconds, the interpreter start and the
imports left out, nothing cached from an earlier command. ``--repeat`` runs take the
median. The growth exponent ``k`` of ``time ~ depth^k`` is the least-squares slope of
log CPU time on log depth over the depths from 4 on (below that the fixed costs of a
command dominate). Timings on a shared machine are noisy: the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPTHS = (1, 2, 4, 8, 16, 32, 64)
COMMANDS = ("count", "build", "build --tests")
ARCHS = ("transformer", "mlp")

_CHILD = r"""
import contextlib, io, json, resource, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from qgen.cli.main import main
argv = json.loads(sys.argv[2])
with tempfile.TemporaryDirectory() as out:
    argv = [out if a == "{OUT}" else a for a in argv]
    wall, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += child.ru_utime + child.ru_stime
print(json.dumps({"rc": rc, "cpu_s": cpu, "wall_s": wall}))
"""


def spec_text(arch: str, depth: int) -> str:
    """The preset spec of ``arch`` with ``depth`` blocks (transformer) or layers (MLP)."""
    if arch == "transformer":
        return (
            f"name: scaling_transformer_{depth}\narch: transformer\nd_model: 8\nheads: 2\n"
            f"d_head: 4\nmlp: 16\ndepth: {depth}\ninputs: 3\noutputs: 2\nactivation: gelu\n"
        )
    if arch == "mlp":
        widths = [3, *([5] * (depth - 1)), 2]
        return f"name: scaling_mlp_{depth}\narch: mlp\nwidths: {widths}\nactivation: relu\n"
    raise ValueError(f"unknown arch {arch!r}")


def tensors_of(root: Path, text: str) -> int:
    """How many tensors the spec expands to (asked of the checkout being measured)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from qgen.spec import parse_spec; "
        "print(len(parse_spec(sys.argv[2]).tensors))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(root), text], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def measure(root: Path, spec: Path, command: str, timeout: float) -> dict | None:
    """One command on ``spec`` in a fresh process; None when it ran past ``timeout``."""
    argv = command.split()
    argv = [argv[0], str(spec), *(["-o", "{OUT}"] if argv[0] == "build" else []), *argv[1:]]
    if argv[0] == "build" and _bounds_terms(root):
        argv += ["--max-terms", "0"]  # time the deep presets that a default build refuses
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, str(root), json.dumps(argv)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"{command} {spec.name} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _bounds_terms(root: Path) -> bool:
    """Whether the checkout's build takes ``--max-terms`` (older ones have no bound)."""
    return "MAX_LAYER_TERMS" in (root / "qgen" / "codegen" / "plan.py").read_text()


def exponent(depths: list[int], seconds: list[float]) -> float | None:
    """Least-squares slope of log(seconds) on log(depth) over depths >= 4 (None with fewer
    than two such points).

    >>> round(exponent([4, 8, 16, 32], [1.0, 4.0, 16.0, 64.0]), 6)
    2.0
    """
    points = [(math.log(d), math.log(s)) for d, s in zip(depths, seconds, strict=True) if d >= 4]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def run(
    root: Path,
    depths: tuple[int, ...],
    archs: tuple[str, ...],
    repeat: int,
    timeout: float,
    log=print,
) -> dict:
    """Every (arch, depth, command) measurement, and the growth exponents."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            stopped: set[str] = set()  # commands that ran past the timeout: no deeper runs
            for depth in depths:
                text = spec_text(arch, depth)
                spec = Path(tmp) / f"scaling_{arch}_{depth}.yaml"
                spec.write_text(text)
                n = tensors_of(root, text)
                for command in COMMANDS:
                    if command in stopped:
                        continue
                    runs = [measure(root, spec, command, timeout) for _ in range(repeat)]
                    if any(r is None for r in runs):
                        stopped.add(command)
                        rows.append(
                            {"arch": arch, "depth": depth, "tensors": n, "command": command,
                             "cpu_s": None, "wall_s": None, "timeout_s": timeout}
                        )  # fmt: skip
                        log(f"{arch:12s} {depth:3d} {n:5d} {command:14s} past {timeout:.0f} s")
                        continue
                    row = {
                        "arch": arch,
                        "depth": depth,
                        "tensors": n,
                        "command": command,
                        "cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 4),
                        "wall_s": round(statistics.median(r["wall_s"] for r in runs), 4),
                    }
                    rows.append(row)
                    log(
                        f"{arch:12s} {depth:3d} {n:5d} {command:14s} "
                        f"{row['cpu_s']:8.3f} s cpu {row['wall_s']:8.3f} s wall"
                    )
    exponents: dict[str, dict[str, float | None]] = {}
    for arch in archs:
        for command in COMMANDS:
            done = [r for r in rows if r["arch"] == arch and r["command"] == command]
            done = [r for r in done if r["cpu_s"]]
            k = exponent([r["depth"] for r in done], [r["cpu_s"] for r in done])
            exponents.setdefault(arch, {})[command] = None if k is None else round(k, 2)
    return {"rows": rows, "exponents": exponents}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the qgen checkout to time")
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS))
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per point (median)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument("--quick", action="store_true", help="depths 1 and 2 only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "scaling.json")
    args = parser.parse_args(argv)
    depths = (1, 2) if args.quick else tuple(args.depths)
    load_before = os.getloadavg()
    result = run(args.root.resolve(), depths, tuple(args.archs), args.repeat, args.timeout)
    out = {
        "what": "CPU seconds (process + children) and wall seconds of one command in a fresh "
        "process, imports excluded; exponent: slope of log cpu on log depth, depths >= 4",
        "root": str(args.root.resolve()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "repeat": args.repeat,
        **result,
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"exponents (cpu ~ depth^k, depths >= 4): {json.dumps(result['exponents'])}")
    return out


if __name__ == "__main__":
    main()
