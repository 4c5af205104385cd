"""Shared pieces of the three task benchmarks.

* a zoo cache keyed by a hash of the zoo's config, under ``$QGEN_CACHE/tasks`` (default
  ``~/.cache/qgen/tasks``), with the zoo's written manifest (JSON) saved next to it;
* digits images at any resolution (scikit-learn's 8x8 digits, bilinearly upsampled), a
  split by image, batched SIREN initialization / fitting / rendering;
* the model table: baselines (flat MLP with and without augmentation, StatNN, NFN NP/HNP
  from PyPI ``nfn``) and qgen's generated ``MetaNetwork`` with named options;
* one training loop (Adam, warmup + cosine schedule) that keeps the epoch with the best
  validation score, then reports the test score of that epoch;
* results JSON rewritten after every model and seed, a markdown table and a PNG.

What ``bench/zoo`` already has is called, not copied: ``zoos.digits``,
``zoos.inr_forward``, ``metanets.FlatMLP`` / ``StatNN`` / ``GroupSafeNormalizer`` /
``statistics`` / ``flatten``, ``study.augmenter`` / ``study.take`` / ``study.kendall_tau``,
``distributed.optimizer``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

ZOO_DIR = Path(__file__).resolve().parent.parent / "zoo"
if str(ZOO_DIR) not in sys.path:
    sys.path.insert(0, str(ZOO_DIR))

import distributed  # noqa: E402
import metanets  # noqa: E402
import study  # noqa: E402
import zoos  # noqa: E402

import qgen  # noqa: E402
from qgen.data import chain_spec  # noqa: E402

Weights = dict[str, torch.Tensor]
RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------- cache and manifests


def cache_dir() -> Path:
    """``$QGEN_CACHE/tasks`` (default ``~/.cache/qgen/tasks``), read at each call."""
    root = Path(os.environ.get("QGEN_CACHE", Path.home() / ".cache" / "qgen"))
    return root / "tasks"


def config_key(kind: str, config) -> str:
    text = json.dumps({"kind": kind, **asdict(config)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cached(kind: str, config, build: Callable, manifest: Callable) -> dict:
    """The zoo ``build(config)`` from the cache, built and saved if absent.

    Saved as ``<kind>-<hash>.pt`` with ``<kind>-<hash>.json`` next to it: the zoo's
    manifest (``manifest(config, zoo)``: how it was made, in words and numbers) plus the
    config, the build time and the cache key. Returns the zoo with ``manifest`` and
    ``path`` set."""
    key = config_key(kind, config)
    path = cache_dir() / f"{kind}-{key}.pt"
    if path.is_file():
        zoo = torch.load(path, weights_only=False)
    else:
        start = time.time()
        zoo = build(config)
        seconds = time.time() - start
        zoo["manifest"] = {
            "kind": kind,
            "key": key,
            "config": asdict(config),
            "build_seconds": round(seconds, 1),
            "torch": torch.__version__,
            **manifest(config, zoo),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(zoo, tmp)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(zoo["manifest"], indent=2) + "\n")
    zoo["path"] = str(path)
    return zoo


# ---------------------------------------------------------------- images and SIRENs


def digit_images(resolution: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits as ``[1797, resolution**2]`` in [0, 1] (bilinear upsampling of
    the 8x8 originals, corners aligned) and the labels ``[1797]``."""
    x, y = zoos.digits()
    if resolution != 8:
        img = x.reshape(-1, 1, 8, 8)
        img = F.interpolate(img, size=(resolution, resolution), mode="bilinear", align_corners=True)
        x = img.reshape(len(y), -1).clamp(0, 1)
    return x, y


def split_images(n: int, fractions=(0.7, 0.15), seed: int = 0) -> dict[str, torch.Tensor]:
    """Image indices for ``train`` / ``val`` / ``test`` (the rest), a seeded permutation."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a = int(round(n * fractions[0]))
    b = a + int(round(n * fractions[1]))
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}


def grid(resolution: int) -> torch.Tensor:
    """Pixel centres in [-1, 1]^2, row-major: ``[resolution**2, 2]``."""
    t = torch.linspace(-1, 1, resolution)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(-1, 2)


def siren_shapes(width: int) -> dict[str, tuple[int, ...]]:
    return {
        "W1": (width, 2),
        "b1": (width,),
        "W2": (width, width),
        "b2": (width,),
        "W3": (1, width),
        "b3": (1,),
    }


def siren_init(n: int, width: int, w0: float, gen: torch.Generator) -> Weights:
    """SIREN initialization (Sitzmann et al. 2020) of ``n`` networks 2-width-width-1, with the
    first-layer frequency ``w0`` folded into ``W1, b1`` (the stored network is exactly
    ``W3 sin(W2 sin(W1 x + b1) + b2) + b3``): ``W1, b1 ~ w0 * U(-1/2, 1/2)`` (1/fan_in, fan_in
    2), later layers ``U(-sqrt(6/fan_in), sqrt(6/fan_in))`` (SIREN's bound divided by w0,
    times the folded w0), biases with their weight's bound."""
    out = {}
    for name, shape in siren_shapes(width).items():
        fan_in = shape[1] if name.startswith("W") else siren_shapes(width)["W" + name[1:]][1]
        bound = w0 / fan_in if name in ("W1", "b1") else math.sqrt(6 / fan_in)
        out[name] = (torch.rand(n, *shape, generator=gen) * 2 - 1) * bound
    return out


def render(w: Weights, coords: torch.Tensor) -> torch.Tensor:
    """Pixels ``[nets, pixels]`` of a batch of SIRENs (``zoos.inr_forward``)."""
    return zoos.inr_forward(w, coords)


def fit_sirens(
    weights: Weights, target: torch.Tensor, steps: int, lr: float, chunk: int, desc: str = ""
) -> torch.Tensor:
    """Full-batch Adam on the pixel MSE of every SIREN at once (``chunk`` networks per
    batched program); in place. Returns each network's final MSE."""
    resolution = int(round(math.sqrt(target.shape[1])))
    coords = grid(resolution)
    n = len(target)
    mse = torch.empty(n)
    start = time.time()
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        w = {k: v[sl].clone().requires_grad_() for k, v in weights.items()}
        opt = torch.optim.Adam(w.values(), lr=lr)
        for _ in range(steps):
            err = (render(w, coords) - target[sl]).square().mean(-1)
            opt.zero_grad()
            err.sum().backward()
            opt.step()
        with torch.no_grad():
            mse[sl] = (render(w, coords) - target[sl]).square().mean(-1)
        for k in weights:
            weights[k][sl] = w[k].detach()
        print(f"  {desc} fitted {sl.stop}/{n} ({time.time() - start:.0f} s)", flush=True)
    return mse


def psnr(mse: torch.Tensor, peak_to_peak: float = 2.0) -> torch.Tensor:
    return 10 * torch.log10(peak_to_peak**2 / mse.clamp_min(1e-12))


# ---------------------------------------------------------------- spaces


def space_for(shapes: list[tuple[int, ...]], activation: str, group: str | None, name: str):
    """The generated module of the chain preset (``qgen.data.chain_spec`` + ``qgen.compile``):
    ``group="perm"`` forces permutations only; ``None`` takes the activation's full group
    (``relu``: scaled, ``tanh``/``sin``: signed)."""
    return qgen.compile(chain_spec(shapes, activation, name=name, group=group))


def layout(w: Weights) -> Weights:
    """Zoo tensors ``[nets, *shape]`` -> the generated layers' ``[nets, 1, *shape]``."""
    return {k: v[:, None].float() for k, v in w.items()}


def take(x: Weights, idx: torch.Tensor) -> Weights:
    return study.take(x, idx)


def size(x: Weights) -> int:
    return next(iter(x.values())).shape[0]


# ---------------------------------------------------------------- models


class QgenModel(nn.Module):
    """The generated ``space.MetaNetwork(1, channels, depth, out, **options)``, its input
    normalizer fitted on the training zoo. Nothing else: the options are in ``options``."""

    def __init__(self, space, train: Weights, out: int, channels: int, depth: int, **options):
        super().__init__()
        self.options = dict(options)
        self.net = space.MetaNetwork(1, channels, depth, out, **options)
        self.net.fit_normalizer(train)

    def forward(self, x: Weights):
        return self.net(x)


class NFNModel(nn.Module):
    """NFN (PyPI ``nfn``): ``depth`` NPLinear (``io_embed=True``) or HNPLinear layers with
    ReLU on the ``qgen.data.nfn_interop.to_nfn`` view of the input, normalized by the study's
    ``GroupSafeNormalizer`` of the perm space; invariant output: NFN's ``HNPPool`` -> MLP;
    ``equivariant=True``: a last NFN layer to ``out`` channels, back with ``from_nfn``."""

    def __init__(
        self,
        perm_space,
        train: Weights,
        out: int,
        mode: str,
        channels: int,
        depth: int,
        hidden: int = 64,
        equivariant: bool = False,
    ):
        super().__init__()
        from nfn.common import network_spec_from_wsfeat
        from nfn.layers import HNPLinear, HNPPool, NPLinear

        from qgen.data.nfn_interop import to_nfn

        self.space = perm_space
        self.normalize = metanets.GroupSafeNormalizer(perm_space, train)
        spec = network_spec_from_wsfeat(to_nfn({k: v[:2] for k, v in train.items()}, perm_space))
        if mode == "NP":
            make = lambda a, b: NPLinear(spec, a, b, io_embed=True)  # noqa: E731
        elif mode == "HNP":
            make = lambda a, b: HNPLinear(spec, a, b)  # noqa: E731
        else:
            raise ValueError(f"mode {mode!r}: expected 'NP' or 'HNP'")
        widths = [1] + [channels] * depth
        self.layers = nn.ModuleList(make(a, b) for a, b in zip(widths, widths[1:], strict=False))
        self.equivariant = equivariant
        if equivariant:
            self.out = make(channels, out)
        else:
            self.pool = HNPPool(spec)
            feats = channels * HNPPool.get_num_outs(spec)
            self.mlp = nn.Sequential(nn.Linear(feats, hidden), nn.ReLU(), nn.Linear(hidden, out))

    def forward(self, x: Weights):
        from qgen.data.nfn_interop import from_nfn, to_nfn

        f = to_nfn(self.normalize(x), self.space)
        for layer in self.layers:
            f = layer(f).map(torch.relu)
        if self.equivariant:
            return from_nfn(self.out(f), self.space)
        return self.mlp(self.pool(f).flatten(1))


class FlatToWeights(nn.Module):
    """A baseline with a weight-space output: features of the input (flattened weights, or
    StatNN's statistics) standardized -> MLP -> one number per weight, reshaped."""

    def __init__(self, train: Weights, features: str, hidden: int, augment=None):
        super().__init__()
        self.kind = features
        feats = self.features(train)
        self.register_buffer("mean", feats.mean(0))
        self.register_buffer("std", feats.std(0).clamp_min(1e-6))
        self.shapes = {k: tuple(v.shape[1:]) for k, v in train.items()}
        n_out = sum(math.prod(s) for s in self.shapes.values())
        self.mlp = nn.Sequential(
            nn.Linear(feats.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_out),
        )
        self.augment = augment

    def features(self, x: Weights) -> torch.Tensor:
        return metanets.flatten(x) if self.kind == "flat" else metanets.statistics(x)

    def forward(self, x: Weights) -> Weights:
        y = self.mlp((self.features(x) - self.mean) / self.std)
        out, i = {}, 0
        for k, s in self.shapes.items():
            n = math.prod(s)
            out[k] = y[:, i : i + n].reshape(-1, *s)
            i += n
        return out


def parse_options(text: str | None) -> dict:
    """``"pool_hidden=32,degree2=True"`` -> ``{"pool_hidden": 32, "degree2": True}``."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, _, value = item.partition("=")
        value = value.strip().replace("True", "true").replace("False", "false")
        out[key.strip()] = json.loads(value)
    return out


def invariant_models(
    perm,
    full,
    train: Weights,
    out: int,
    channels: int,
    depth: int,
    quasi: bool,
    options: dict | None = None,
    canonical: bool = False,
) -> dict[str, Callable[[], nn.Module]]:
    """The model table of an invariant task (classification or regression). ``perm``: the
    permutation-only space; ``full``: the activation's full group (augmentation uses it).
    ``options``: more ``MetaNetwork`` options for the qgen rows, named in their names.
    ``canonical``: also the full group's ``MetaNetwork`` with ``canonicalize=True,
    canonical_space=perm`` (perm layers on the canonicalized weights)."""
    group = full.TYPES[next(t for t, (_, s) in full.TYPES.items() if s is None)][0]
    options = dict(options or {})
    named = "".join(f", {k}={v}" for k, v in options.items())
    models = {
        "MLP": lambda: metanets.FlatMLP(train, out),
        "MLP + augmentation": lambda: metanets.FlatMLP(train, out, augment=study.augmenter(full)),
        "StatNN": lambda: metanets.StatNN(train, out),
        "NFN NP": lambda: NFNModel(perm, train, out, "NP", channels, depth),
        "NFN HNP": lambda: NFNModel(perm, train, out, "HNP", channels, depth),
        f"qgen perm{named}": lambda: QgenModel(perm, train, out, channels, depth, **options),
        f"qgen {group}{named}": lambda: QgenModel(full, train, out, channels, depth, **options),
    }
    if quasi:
        models[f"qgen {group}, quasi=True{named}"] = lambda: QgenModel(
            full, train, out, channels, depth, quasi=True, **options
        )
    if canonical:
        models[f"qgen {group}, canonicalize=True, canonical_space=perm{named}"] = lambda: QgenModel(
            full,
            train,
            out,
            channels,
            depth,
            canonicalize=True,
            canonical_space=perm,
            **options,
        )
    return models


# ---------------------------------------------------------------- training


def predict(model: nn.Module, x: Weights, batch: int = 256):
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, size(x), batch):
            outs.append(model(take(x, torch.arange(i, min(i + batch, size(x))))))
    model.train()
    if isinstance(outs[0], dict):
        return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    return torch.cat(outs)


def train(
    model: nn.Module,
    x: Weights,
    y,
    *,
    loss_fn: Callable,
    evaluate: Callable[[nn.Module], float],
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    warmup: float = 0.05,
    eval_every: int = 1,
) -> dict:
    """Adam, warmup + cosine schedule (``distributed.optimizer``); ``evaluate(model)`` (the
    validation score, higher is better) every ``eval_every`` epochs and at the end; the
    parameters of the best validation score are restored at the end. ``y`` is indexed
    with the batch indices (a tensor, or anything ``loss_fn`` reads by index)."""
    gen = torch.Generator().manual_seed(seed)
    augment = getattr(model, "augment", None)
    n = size(x)
    steps = epochs * math.ceil(n / batch)
    opt, sched = distributed.optimizer(model, steps, lr, schedule="cosine", warmup=warmup)
    best, best_state, best_epoch, curve = -math.inf, None, -1, []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            xb = take(x, idx)
            if augment is not None:
                xb = augment(xb, gen)
            loss = loss_fn(model(xb), idx, xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % eval_every == 0 or epoch == epochs - 1:
            score = evaluate(model)
            curve.append(score)
            if score > best or best_state is None:
                best, best_epoch = score, epoch
                best_state = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return {"val": best, "best_epoch": best_epoch, "val_curve": curve}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- results


def load_results(path: Path, meta: dict) -> dict:
    """The results JSON at ``path`` if its ``meta`` equals ``meta`` (resume), else fresh."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("meta") == meta:
            return old
        print(f"  {path.name}: another configuration; starting afresh", flush=True)
    return {"meta": meta, "models": {}}


def save_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def run_models(
    path: Path,
    results: dict,
    models: dict[str, Callable[[], nn.Module]],
    seeds: list[int],
    fit_one: Callable[[str, nn.Module, int], dict],
) -> dict:
    """For every seed, then every model (so a run cut short has every model on its first
    seeds) not yet in ``results``: build it under ``torch.manual_seed(seed)``,
    ``fit_one(name, model, seed)`` (a dict of scores), record seconds and parameters, and
    rewrite the JSON. A model whose construction raises ``ValueError`` is recorded as
    refused, with the message."""
    for seed in seeds:
        for name, make in models.items():
            rec = results["models"].setdefault(name, {"seeds": {}})
            if str(seed) in rec["seeds"] or "refused" in rec:
                continue
            torch.manual_seed(seed)
            start = time.time()
            try:
                model = make()
            except ValueError as exc:
                rec["refused"] = str(exc)
                print(f"  {name}: refused: {exc}", flush=True)
                save_results(path, results)
                continue
            rec["params"] = n_params(model)
            scores = fit_one(name, model, seed)
            scores["seconds"] = round(time.time() - start, 1)
            rec["seeds"][str(seed)] = scores
            shown = {k: round(v, 4) for k, v in scores.items() if isinstance(v, float)}
            print(f"  {name:28s} seed {seed}: {shown}", flush=True)
            save_results(path, results)
    return results


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(correction=0)) if len(values) > 1 else 0.0


def table(results: dict, columns: dict[str, str], fmt: str = "{:.3f}") -> str:
    """Markdown: one row per model, ``columns`` {score key: header}: mean ± std over seeds,
    then params and mean training seconds per seed."""
    head = "| model | " + " | ".join(columns.values()) + " | params | train s/seed | seeds |"
    lines = [head, "|" + "---|" * (len(columns) + 4)]
    for name, rec in results["models"].items():
        if "refused" in rec:
            cells = ["refused"] * len(columns)
            lines.append(f"| {name} | " + " | ".join(cells) + " | - | - | 0 |")
            continue
        seeds = list(rec["seeds"].values())
        if not seeds:
            continue
        cells = []
        for key in columns:
            m, s = mean_std([r[key] for r in seeds])
            cells.append(f"{fmt.format(m)} ± {fmt.format(s)}")
        secs = sum(r["seconds"] for r in seeds) / len(seeds)
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {rec['params']} | {secs:.0f} | {len(seeds)} |"
        )
    return "\n".join(lines) + "\n"


def bar_plot(results: dict, key: str, label: str, path: Path, log: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, means, stds = [], [], []
    for name, rec in results["models"].items():
        seeds = list(rec.get("seeds", {}).values())
        if seeds:
            m, s = mean_std([r[key] for r in seeds])
            names.append(name)
            means.append(m)
            stds.append(s)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(names) + 1.2))
    ax.barh(names[::-1], means[::-1], xerr=stds[::-1], color="tab:blue")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_title(results["meta"].get("title", path.stem))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def task_main(
    task: str,
    args,
    tiny: Callable[[object], None],
    run: Callable[[object], dict],
    write_tables: Callable[[Path], None],
) -> dict | None:
    """What every task's ``main`` does with its parsed arguments: the thread count, the
    ``--tiny`` configuration (``tiny`` sets it on ``args``), ``--tables-only`` (tables and
    PNGs redrawn from the committed ``<task>-*.json``), else the run."""
    torch.set_num_threads(args.threads)
    if args.tiny:
        tiny(args)
    if args.tables_only:
        for path in sorted(Path(args.out).glob(f"{task}-*.json")):
            write_tables(path)
        return None
    return run(args)
