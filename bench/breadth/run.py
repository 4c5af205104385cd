"""Run the breadth benchmark: every architecture of ``bench/breadth/models.py`` through
import, count, build and the equivariance checks, one at a time, each in a forked child
with a memory limit and a time limit, the JSON rewritten after every model.

    nice -n 10 python -m bench.breadth.run                       # all, results.json
    python -m bench.breadth.run --only resnet18 BertModel        # a few
    python -m bench.breadth.run --tiny --out /tmp/tiny.json      # the test suite's 3
    python -m bench.breadth.table bench/breadth/results.json     # the tables

The parent imports torch, qgen, transformers and (when installed) timm once; each child is
a fork of it (no import cost per model), runs :func:`bench.breadth.steps.run_arch` with one
thread and ``RLIMIT_AS`` set, and sends its record back through a pipe. A child that
outlives ``--timeout`` is killed and recorded as such; one that dies (out of memory, a
crash) is recorded with its exit status.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.breadth.models import ARCHS, TINY, Arch, by_name, import_torchvision, torchvision_status
from bench.breadth.steps import LIMITS, REQUIRED, run_arch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _versions() -> dict:
    import qgen

    out = {"python": platform.python_version(), "torch": torch.__version__}
    out["qgen"] = qgen.__version__
    for lib in ("transformers", "torchvision", "timm"):
        try:
            if lib == "torchvision":
                out[lib] = import_torchvision().__version__
                out["torchvision_status"] = torchvision_status()
            else:
                out[lib] = __import__(lib).__version__
        except Exception as exc:  # the library is missing or cannot be imported
            out[lib] = f"unavailable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return out


def _child(arch: Arch, limits: dict, mem_bytes: int, conn) -> None:
    torch.set_num_threads(1)
    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    try:
        rec = run_arch(arch, limits)
    except MemoryError:
        rec = {"crash": "MemoryError outside a step"}
    conn.send(rec)
    conn.close()


def run_one(arch: Arch, limits: dict, timeout: float, mem_gb: float) -> dict:
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(arch, limits, int(mem_gb * 2**30), send))
    t0 = time.perf_counter()
    proc.start()
    send.close()
    rec = None
    if recv.poll(timeout):
        try:
            rec = recv.recv()
        except EOFError:
            rec = None
    proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join()
    wall = time.perf_counter() - t0
    if rec is None or "crash" in rec:
        if wall >= timeout:
            why = f"killed after {timeout:g} s (the whole model's time limit)"
        elif proc.exitcode and proc.exitcode < 0:
            why = f"child died with signal {-proc.exitcode} (memory limit {mem_gb:g} GiB?)"
        else:
            why = (rec or {}).get("crash") or f"child exited with status {proc.exitcode}"
        rec = {
            "name": arch.name,
            "family": arch.family,
            "source": arch.source,
            "config": arch.config,
            "steps": {},
            "end_to_end": False,
            "end_to_end_declared": False,
            "failed_step": "process",
            "refusal": f"process: {why}",
        }
    rec["wall_s"] = round(wall, 3)
    return rec


def _preload(archs: list[Arch]) -> None:
    """Import once in the parent what every child would import again: qgen's pipeline,
    torch.export, the transformers classes of the list."""
    import importlib

    for name in ("qgen", "qgen.frommodel.reader", "qgen.codegen.output", "torch.export"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if any(a.source == "transformers" for a in archs):
        try:
            import transformers
        except ImportError:
            return
        for a in archs:
            for cls in (a.name, a.kwargs.get("config")):
                if a.source == "transformers" and cls:
                    getattr(transformers, cls, None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these architectures only")
    ap.add_argument("--tiny", action="store_true", help="the test suite's 3 small models")
    ap.add_argument("--family", nargs="+", help="these families only")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--timeout", type=float, default=420, help="seconds per model (all steps)")
    ap.add_argument("--mem", type=float, default=6.0, help="GiB of address space per model")
    ap.add_argument("--label", default="", help="what was run against (stored in the JSON)")
    ap.add_argument("--limit", nargs="+", default=[], metavar="STEP=S", help="step time limits")
    ap.add_argument(
        "--update",
        action="store_true",
        help="rerun the chosen models into the existing --out file (other records kept)",
    )
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    limits = {k: float(v) for k, _, v in (x.partition("=") for x in args.limit)}
    archs = TINY if args.tiny else by_name(args.only) if args.only else ARCHS
    if args.family:
        archs = [a for a in archs if a.family in args.family]
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no", "qgen")),
        "label": args.label,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, 1 torch thread per model",
        "versions": _versions(),
        "limits_s": {**LIMITS, **limits, "model": args.timeout},
        "memory_gib": args.mem,
        "required": list(REQUIRED),
    }
    _preload(archs)
    if any(a.source in ("timm", "torchvision") for a in archs):
        try:
            import_torchvision()
            import timm  # noqa: F401
        except Exception:  # recorded per model by its make step
            pass
    results: list[dict] = []
    out = Path(args.out)
    if args.update and out.exists():
        old = json.loads(out.read_text())
        results = old["results"]
        meta["updated"] = [
            *old["meta"].get("updated", []),
            {"date": meta["date"], "models": [a.name for a in archs], "limits_s": meta["limits_s"]},
        ]
        meta["limits_s"] = old["meta"]["limits_s"]
        meta["date"], meta["label"] = old["meta"]["date"], old["meta"]["label"] or args.label
    for i, arch in enumerate(archs, 1):
        rec = run_one(arch, limits, args.timeout, args.mem)
        rec["run_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        at = [
            j for j, r in enumerate(results) if (r["source"], r["name"]) == (arch.source, arch.name)
        ]
        if at:
            results[at[0]] = rec
        else:
            results.append(rec)
        ok = "ok" if rec["end_to_end"] else rec["refusal"]
        print(
            f"[{i}/{len(archs)}] {arch.source}:{arch.name} {rec['wall_s']:.1f}s {ok}"[:240],
            flush=True,
        )
        order: dict = {}
        for j, a in enumerate(ARCHS + TINY):
            order.setdefault((a.source, a.name), j)
        results = [r for r in results if (r["source"], r["name"]) in order]  # the list's own
        results.sort(key=lambda r: order[r["source"], r["name"]])
        done = sum(r["end_to_end"] for r in results)
        meta["summary"] = {
            "models": len(results),
            "end_to_end": done,
            "end_to_end_declared": sum(r.get("end_to_end_declared", False) for r in results),
        }
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
        os.replace(tmp, out)
    print(
        f"{meta['summary']['end_to_end']}/{len(results)} end to end "
        f"({meta['summary']['end_to_end_declared']} with declared fixed axes); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
