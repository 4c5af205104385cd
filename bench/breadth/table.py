"""The breadth benchmark's tables (markdown) from its JSON.

    python -m bench.breadth.table bench/breadth/results.json > bench/breadth/table.md
    python -m bench.breadth.table bench/breadth/results.json --reasons   # per-reason counts

The tables: the fraction that goes through end to end (overall and per family), the
refusals grouped by reason, the slowest imports, and one row per model with its times,
counts, checks and (when it stopped) the one-line reason.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from bench.breadth.models import FAMILIES

_WHERE = re.compile(r"^(?:\S+?\.py):\d+: ")


def reason_key(refusal: str) -> str:
    """A refusal without the model-specific parts (file, line, code, names, numbers), so
    that models stopped by the same rule count together."""
    step, _, text = refusal.partition(": ")
    text = _WHERE.sub("", text)
    if "parameters per channel pair" in text:  # the budget's refusal: name, cost, options
        unfit = ("no choice of fixed_axes", "even with every fixed axis", "that helps declared")
        if any(k in text for k in unfit):
            return f"{step}: over the parameter budget; no fixed_axes choice makes it fit"
        if text.startswith("timed out"):
            return f"{step}: {text}"
        return f"{step}: over the parameter budget (fits with its fixed axes declared tied)"
    if text.startswith(("torch.fx cannot trace", "transformers.utils.fx cannot trace")):
        tracer = text.split(" cannot", 1)[0]
        rest = text.split(": ", 1)[1] if ": " in text else text
        rest = re.sub(r"\(data-dependent control flow.*\)$", "", rest).strip()
        return f"{step}: {tracer} cannot trace: {_generic(rest)}"
    parts = text.split(": ")
    # "code: operation why": keep the operation and why (the last part in words)
    tail = parts[-1] if len(parts) > 1 and len(parts[-1].split()) >= 3 else text
    return f"{step}: {_generic(tail)}"


def _generic(text: str) -> str:
    text = re.sub(r"\bModel \w+ is not supported yet.*", "Model … is not supported yet", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\b\d[\d,._]*\b", "N", text)
    text = re.sub(r"\b[a-z_]+(\.[a-z_0-9]+)+\b", lambda m: m.group(0).split(".")[-1], text)
    return text[:160]


def _fmt_s(v) -> str:
    return "" if v is None else f"{v:.2f}"


def _fmt_n(v) -> str:
    return "" if v is None else f"{v:,}"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")


def render(data: dict, top: int = 10) -> str:
    meta, results = data["meta"], data["results"]
    n = len(results)
    done = [r for r in results if r["end_to_end"]]
    out = []
    v = meta.get("versions", {})
    out.append(
        f"Breadth benchmark: {len(done)} of {n} architectures ({100 * len(done) / max(n, 1):.0f}%) "
        "go through import, count, build and the generated layer's equivariance check end to "
        f"end. Run {meta.get('date', '')} on {meta.get('branch', '')} "
        f"{meta.get('commit', '')}{' (uncommitted changes in qgen/)' if meta.get('dirty') else ''}"
        f"{' - ' + meta['label'] if meta.get('label') else ''}; torch {v.get('torch')}, "
        f"transformers {v.get('transformers')}, timm {v.get('timm')}, torchvision "
        f"{v.get('torchvision')}; {meta.get('machine', '')}."
    )
    if v.get("torchvision_status"):
        out.append(f"torchvision: {v['torchvision_status']}.")
    declared = [r for r in results if r.get("end_to_end_declared", r["end_to_end"])]
    if len(declared) > len(done):
        out.append(
            f"With the large fixed axes (vocabulary, positions, ...) of the models over the "
            f"default budget declared `tied`, as the budget refusal suggests: {len(declared)} "
            f"of {n} ({100 * len(declared) / max(n, 1):.0f}%)."
        )
    out.append("")
    out.append("| family | models | end to end | fraction | with declared fixed axes |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for fam in [f for f in FAMILIES if any(r["family"] == f for r in results)]:
        rs = [r for r in results if r["family"] == fam]
        ok = sum(r["end_to_end"] for r in rs)
        dec = sum(r.get("end_to_end_declared", r["end_to_end"]) for r in rs)
        out.append(f"| {fam} | {len(rs)} | {ok} | {100 * ok / len(rs):.0f}% | {dec} |")
    out.append(
        f"| **all** | **{n}** | **{len(done)}** | **{100 * len(done) / max(n, 1):.0f}%** "
        f"| **{len(declared)}** |"
    )
    out.append("")
    fn = [r for r in results if r["steps"].get("function", {}).get("ok")]
    out.append(
        f"The real network's function under the declared group (weights acted on, outputs "
        f"compared in float64) was checked for {len(fn)} of them."
    )
    out.append("")
    out.append("Refusals by reason (the step that stopped and its rule, model details removed):")
    out.append("")
    out.append("| count | reason | models |")
    out.append("| ---: | --- | --- |")
    for key, names in reasons(results):
        out.append(f"| {len(names)} | {_cell(key)} | {', '.join(names)} |")
    out.append("")
    imports = sorted(
        (r for r in results if "s" in r["steps"].get("import", {})),
        key=lambda r: -r["steps"]["import"]["s"],
    )[:top]
    out.append(f"Slowest imports (spec extraction), top {len(imports)}:")
    out.append("")
    out.append("| model | import s | ok |")
    out.append("| --- | ---: | --- |")
    for r in imports:
        s = r["steps"]["import"]
        out.append(f"| {r['source']}:{r['name']} | {s['s']:.2f} | {'yes' if s['ok'] else 'no'} |")
    out.append("")
    out.append(
        "Every model (times in seconds; maps: equivariant linear maps at generic sizes, one "
        "channel in and out; equivariance: relative error in float64, at the model's sizes "
        "or with group types cut down; function: relative change of the real network's "
        "outputs):"
    )
    out.append("")
    out.append(
        "| family | model | params | import | count | maps | build | equivariance | function "
        "| end to end | refusal |"
    )
    out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |")
    # end to end: "yes", "declared" (after declaring fixed axes over the budget) or "no"
    for r in results:
        st = r["steps"]
        eq = st.get("equivariance", {})
        fn = st.get("function", {})
        eq_text = f"{eq['rel_err']:.0e} in {eq['s']:.1f}s" if eq.get("ok") else ""
        if eq.get("ok") and eq.get("sizes") != "model":
            eq_text += " (cut)"
        fn_text = (
            f"{fn['rel_change']:.0e}"
            if fn.get("ok")
            else ("skipped" if fn.get("skipped") else ("FAILED" if "error" in fn else ""))
        )
        params = _fmt_n(st.get("make", {}).get("params"))
        out.append(
            f"| {r['family']} | {r['source']}:{r['name']} | {params} "
            f"| {_fmt_s(st.get('import', {}).get('s'))} | {_fmt_s(st.get('count', {}).get('s'))} "
            f"| {_fmt_n(st.get('count', {}).get('maps'))} | {_fmt_s(st.get('build', {}).get('s'))} "
            f"| {eq_text} | {fn_text} | {_verdict(r)} "
            f"| {_cell(r.get('refusal'))} |"
        )
    out.append("")
    return "\n".join(out)


def _verdict(r: dict) -> str:
    declared = r["steps"].get("import", {}).get("fixed_axes")
    if r["end_to_end"] and declared:
        return f"yes, the reader declared {len(declared)} fixed axes tied"
    if r["end_to_end"]:
        return "yes"
    if r.get("end_to_end_declared"):
        return f"with fixed_axes {r['steps']['build']['fixed_axes']}"
    return "no"


def reasons(results: list[dict]) -> list[tuple[str, list[str]]]:
    """(reason, models) for every refusal reason, most frequent first."""
    groups: dict[str, list[str]] = defaultdict(list)
    for r in results:
        if not r["end_to_end"] and r.get("refusal"):
            groups[reason_key(r["refusal"])].append(f"{r['source']}:{r['name']}")
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def reason_counts(results: list[dict]) -> str:
    lines = ["| count | step | reason |", "| ---: | --- | --- |"]
    for key, names in reasons(results):
        step, _, why = key.partition(": ")
        lines.append(f"| {len(names)} | {step} | {_cell(why)} |")
    by_step = Counter(r.get("failed_step") for r in results if not r["end_to_end"])
    lines.append("")
    lines.append("Stopped at: " + ", ".join(f"{k} {v}" for k, v in by_step.most_common()))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="?", default=str(Path(__file__).parent / "results.json"))
    ap.add_argument("--reasons", action="store_true", help="per-reason counts only")
    args = ap.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    sys.stdout.write(reason_counts(data["results"]) if args.reasons else render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
