"""MkDocs hook: the benchmark and zoo-study tables and figures, from the committed JSON.

A page writes a placeholder on a line of its own, ``<!-- results: NAME ARG... -->``, and
this hook replaces it, at every build, with a table computed from the JSON files that
the benchmark runners and the zoo study committed (nothing is retyped). The zoo study's
own table and plot functions (``bench/zoo/study.py``) are used where it has them, so the
docs show what ``study.py --tasks none`` writes. The PNGs are drawn into a temporary
directory when the build starts and added to the site under ``figures/``.

Placeholders (paths relative to the repository root):

* ``classifier PATH...``: the classifier-zoo table of one or more ``classifier*.json``;
* ``robustness PATH``: Kendall tau at every rescaling range of a ``classifier.json``;
* ``inr PATH...``: the INR table of ``inr-<zoo>.json`` files (one column per zoo);
* ``layers``, ``build``: the layer and build-time tables of ``bench/results.json``;
* ``precision``: ``bench/precision.json``; ``versions``: ``bench/versions.json``;
* ``layering``: the import order of the stages that ``tests/test_layering.py`` checks
  (its ``LAYERS``, bottom first);
* ``tree``: the package tree, each module with the first paragraph of its docstring and
  its length in lines (read from ``qgen/`` with ``ast``).

An unknown placeholder or a missing file fails the build.
"""

from __future__ import annotations

import json
import logging
import posixpath
import re
import sys
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("mkdocs.hooks.results")
PLACEHOLDER = re.compile(r"^<!-- results: (\S+)((?: \S+)*) -->$", re.M)
# figure in the site -> (zoo-study result directory, PNG the study draws there)
FIGURES = {
    "figures/zoo/scatter_accuracy.png": ("bench/zoo/results", "scatter_accuracy.png"),
    "figures/zoo/robustness_rescaling.png": ("bench/zoo/results", "robustness_rescaling.png"),
    "figures/zoo/inr_accuracy.png": ("bench/zoo/results", "inr_accuracy.png"),
}
_tmp: tempfile.TemporaryDirectory | None = None


def _study():
    """bench/zoo/study.py as a module (it puts its own directory on sys.path)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from bench.zoo import study

    return study


def _load(path: str) -> dict:
    file = ROOT / path
    if not file.is_file():
        raise PluginError(f"results hook: no file {path}")
    return json.loads(file.read_text())


def _merged(paths: list[str]) -> dict:
    out: dict = {}
    for p in paths:
        out.update(_load(p)["results"])
    return out


def _inr(paths: list[str]) -> dict:
    return {Path(p).stem.removeprefix("inr-"): _load(p)["results"] for p in paths}


def _robustness(path: str) -> str:
    study = _study()
    cls = _load(path)["results"]
    keys = ["test"] + [f"r={r}" for r in study.RANGES[1:]]
    head = "| metanetwork | " + " | ".join(f"r={r}" for r in study.RANGES) + " |"
    lines = [head, "|---|" + "---|" * len(keys)]
    for name, rec in cls.items():
        cells = [f"{study.mean_std(rec['scores'][k])[0]:.3f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms"


def _layers() -> str:
    data = _load("bench/results.json")
    lines = [
        "| case (batch, channels) | weights | generated fwd | / HNP | / floor | / fixed floor "
        "| generated fwd+bwd | / HNP | / floor | peak mem / io |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in data["layers"]:
        cells = [f"`{row['case']}` ({row['batch']}, {row['channels']})", str(row["numel"])]
        for mode in ("forward", "forward_backward"):
            t = row[mode]
            gen = t["generated"]
            cells += [_ms(gen), f"{gen / t['hnp']:.2f}" if "hnp" in t else "–"]
            cells.append(f"{gen / t['floor']:.2f}")
            if mode == "forward":
                cells.append(f"{gen / t['floor_fixed']:.2f}")
        cells.append(f"{row['peak_memory_over_io']['generated']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return (
        f"Machine: {data['machine']}; allocator: {data['allocator']}.\n\n" + "\n".join(lines) + "\n"
    )


def _build() -> str:
    data = _load("bench/results.json")
    lines = [
        "| architecture | depth | tensors | `count` | `build` |",
        "|---|---|---|---|---|",
    ]
    for r in data["build"]:
        lines.append(
            f"| {r['family']} | {r['depth']} | {r['tensors']} "
            f"| {r['count_s']:.3f} s ({r['count_command_s']:.2f} s) "
            f"| {r['build_s']:.2f} s ({r['build_command_s']:.2f} s) |"
        )
    return "\n".join(lines) + "\n"


def _precision() -> str:
    data = _load("bench/precision.json")
    lines = [
        "| case | fp32 fwd | AMP fwd / fp32 | AMP fwd+bwd / fp32 | AMP max rel. deviation "
        "| compiled fwd / fp32 | compiled fwd+bwd / fp32 | compiled deviation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["results"]:
        f, fb, d = r["forward"], r["forward_backward"], r["deviation"]
        lines.append(
            f"| `{r['case']}` | {f['fp32_ms']:.2f} ms | {f['amp/fp32']:.2f} | {fb['amp/fp32']:.2f} "
            f"| {d['amp']:.1e} | {f['compiled/fp32']:.2f} | {fb['compiled/fp32']:.2f} "
            f"| {d['compiled']:.1e} |"
        )
    return f"AMP dtype: {data['results'][0]['amp_dtype']}, device {data['device']}.\n\n" + (
        "\n".join(lines) + "\n"
    )


def _versions() -> str:
    data = _load("bench/versions.json")
    lines = [
        "| case | forward old / new | ratio | contiguous | fwd+bwd old / new | ratio "
        "| contiguous |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        f, fb = r["forward_ms"], r["forward_backward_ms"]
        lines.append(
            f"| `{r['case']}` | {f['old']:.2f} / {f['new']:.2f} ms | {r['forward_ratio']:.2f} "
            f"| {r['forward_ratio_contiguous']:.2f} | {fb['old']:.2f} / {fb['new']:.2f} ms "
            f"| {r['forward_backward_ratio']:.2f} | {r['forward_backward_ratio_contiguous']:.2f} |"
        )
    return f"{data['threads']} thread(s), {data['rounds']} rounds.\n\n" + "\n".join(lines) + "\n"


def _first_paragraph(path: Path) -> str:
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.split("\n\n")[0].split())
    text = re.sub(r":(?:mod|class|func|meth|attr):`~?([^`]+)`", r"``\1``", text)
    return text.replace("``", "`").replace("|", "\\|").rstrip(":")


def _layering() -> str:
    import ast

    tree = ast.parse((ROOT / "tests/test_layering.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LAYERS" for t in node.targets
        ):
            layers = ast.literal_eval(node.value)
            return "".join(
                f"{i}. " + ", ".join(f"`{name}`" for name in names) + "\n"
                for i, names in enumerate(layers, start=1)
            )
    raise PluginError("results hook: no LAYERS in tests/test_layering.py")


def _tree() -> str:
    pkg = ROOT / "qgen"
    lines = ["| module | lines | what it is |", "|---|---|---|"]
    for path in sorted(pkg.rglob("*.py"), key=lambda p: (p.parent != pkg, str(p))):
        rel = path.relative_to(ROOT)
        if "templates" in rel.parts or path.name == "__main__.py":
            continue
        shown = str(rel.parent) + "/" if path.name == "__init__.py" else str(rel)
        n = len(path.read_text(encoding="utf-8").splitlines())
        lines.append(f"| `{shown}` | {n} | {_first_paragraph(path)} |")
    return "\n".join(lines) + "\n"


def _render(name: str, args: list[str]) -> str:
    if name == "classifier":
        return _study().classifier_table(_merged(args))
    if name == "robustness":
        return _robustness(*args)
    if name == "inr":
        return _study().inr_table(_inr(args))
    simple = {
        "layers": _layers,
        "build": _build,
        "precision": _precision,
        "versions": _versions,
        "tree": _tree,
        "layering": _layering,
    }
    if name in simple and not args:
        return simple[name]()
    raise PluginError(f"results hook: unknown placeholder {name} {' '.join(args)}")


def on_page_markdown(markdown: str, **kwargs) -> str:
    return PLACEHOLDER.sub(lambda m: _render(m.group(1), m.group(2).split()), markdown)


_HREF = re.compile(r'href="([^"]*)"')
_page_urls: set[str] = set()


def on_post_page(output: str, page, **kwargs) -> str:
    """Check the links of the executed tutorials, which MkDocs does not: their HTML comes
    from nbconvert, so a link there must be a page URL of the site (``../../guide/spec/``,
    not ``../guide/spec.md``). A link to a ``.md`` file, or a relative link to a directory
    URL that is no page, is a warning (so fails a strict build)."""
    if not page.file.src_uri.endswith(".py"):
        return output
    for href in _HREF.findall(output):
        if re.match(r"[a-z]+:|#", href):
            continue
        path = href.split("#", 1)[0]
        target = posixpath.normpath(posixpath.join("/" + page.url, path)).lstrip("/")
        target = "" if target == "." else target
        if path.endswith(".md") or (path.endswith("/") and target + "/" not in _page_urls):
            if not (path.endswith("/") and target == ""):
                log.warning("%s: link %s is not a page of the site", page.file.src_uri, href)
    return output


def on_files(files, config, **kwargs):
    """Draw the zoo study's figures from its JSON and add them to the site."""
    global _tmp
    _page_urls.clear()
    _page_urls.update(f.url for f in files if f.url.endswith("/"))
    _tmp = tempfile.TemporaryDirectory(prefix="qgen-docs-")
    out = Path(_tmp.name)
    study = _study()
    for result_dir in sorted({d for d, _ in FIGURES.values()}):
        results, meta = {}, {}
        directory = ROOT / result_dir
        cls = directory / "classifier.json"
        if cls.is_file():
            payload = json.loads(cls.read_text())
            results["classifier"], meta["classifier"] = payload["results"], payload["meta"]
        for path in sorted(directory.glob("inr-*.json")):
            payload = json.loads(path.read_text())
            results.setdefault("inr", {})[path.stem.removeprefix("inr-")] = payload["results"]
        target = out / result_dir
        target.mkdir(parents=True, exist_ok=True)
        study.plots(results, meta, target)
    _layers_plot(out / "layers.png")
    files.append(
        File.generated(config, "figures/bench/layers.png", abs_src_path=str(out / "layers.png"))
    )
    for uri, (result_dir, png) in FIGURES.items():
        drawn = out / result_dir / png
        if not drawn.is_file():
            raise PluginError(f"results hook: the study drew no {png} from {result_dir}")
        files.append(File.generated(config, uri, abs_src_path=str(drawn)))
    return files


def _layers_plot(path: Path) -> None:
    """Time of the generated layer over each reference, per case (bench/results.json)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _load("bench/results.json")["layers"]
    refs = [
        ("hnp", "hand-written NFN HNP"),
        ("floor_fixed", "floor with fixed axes mixed"),
        ("floor", "floor (one matmul per tensor)"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, mode, title in zip(
        axes, ("forward", "forward_backward"), ("forward", "forward + backward"), strict=True
    ):
        width = 0.8 / len(refs)
        for j, (key, label) in enumerate(refs):
            xs = [i + (j - 1) * width for i, r in enumerate(rows) if key in r[mode]]
            ys = [r[mode]["generated"] / r[mode][key] for r in rows if key in r[mode]]
            ax.bar(xs, [y - 1 for y in ys], width, bottom=1, label=label)  # from 1
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([r["case"] for r in rows], rotation=20, fontsize=8)
        ax.set_yscale("log")
        ticks = [0.8, 1, 1.5, 2, 3, 5, 8]
        ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_title(f"{title}: generated layer time / reference time", fontsize=9)
    axes[0].set_ylabel("ratio (log scale; 1 = same time)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def on_post_build(**kwargs) -> None:
    global _tmp
    if _tmp is not None:
        _tmp.cleanup()
        _tmp = None
