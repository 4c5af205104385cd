"""The zoo study: metanetworks from generated layers against baselines, several seeds.

    python bench/zoo/study.py                 # full study (builds the zoos if needed)
    python bench/zoo/study.py --tiny --out /tmp/zoo   # seconds: the pipeline test
    torchrun --nproc_per_node=2 bench/zoo/study.py ... # training with DDP (distributed.py)

Task 1, generalization prediction: predict a ReLU classifier's test accuracy from its
weights (classifier zoo); metric Kendall's tau. Then robustness: the same test networks,
each hidden neuron rescaled by a random positive factor log-uniform in [1/r, r] (the
function, hence the target, is unchanged), for growing r.
Task 2, INR classification: the digit from a sine INR's weights (INR zoo); metric accuracy.

Writes ``classifier.json``, ``inr.json`` (every score of every seed), ``results.md`` (the
table) and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

import distributed  # noqa: E402
import metanets  # noqa: E402
import zoos  # noqa: E402

import qgen  # noqa: E402

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
RANGES = [1, 2, 4, 8, 16, 32]


def to_layout(w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Zoo weights ``{W1: [nets, 32, 64], ...}`` -> the generated layers' ``[nets, 1, ...]``."""
    return {k: v[:, None].float() for k, v in w.items()}


def split(n: int, train_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(round(n * train_fraction))
    return order[:cut], order[cut:]


def take(x: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in x.items()}


def augmenter(space, pieces: int = 4):
    """Moves a batch by random group elements of ``space`` (``pieces`` per batch)."""

    def augment(x, gen):
        sizes = space.sizes_of(x)
        n = next(iter(x.values())).shape[0]
        parts = []
        for idx in torch.arange(n).chunk(pieces):
            g = space.sample_group_element(sizes, gen)
            parts.append(space.act(g, take(x, idx)))
        return {k: torch.cat([p[k] for p in parts]) for k in x}

    return augment


def rescale(space, x, r: float, seed: int = 1234):
    """Every hidden neuron of every network times a factor log-uniform in [1/r, r]."""
    gen = torch.Generator().manual_seed(seed)
    sizes = space.sizes_of(x)
    n = next(iter(x.values())).shape[0]
    g = {}
    for t, (_, fixed) in space.TYPES.items():
        if fixed is None:
            u = torch.rand(n, sizes[t], generator=gen, dtype=torch.float64) * 2 - 1
            g[t] = (torch.arange(sizes[t]), torch.exp(u * math.log(r)))
    return space.act(g, x)


def predict(model, x, batch: int = 256) -> torch.Tensor:
    n = next(iter(x.values())).shape[0]
    model.eval()
    with torch.no_grad():
        parts = [model(take(x, torch.arange(i, min(i + batch, n)))) for i in range(0, n, batch)]
    out = torch.cat(parts)
    model.train()
    return out


def fit(model, x, y, *, classes: int, epochs: int, batch: int, lr: float, seed: int, desc: str):
    """Adam, constant learning rate, ``epochs`` passes; MSE on standardized y or cross-entropy."""
    if distributed.world_size() > 1:  # under torchrun: the same loop with DDP
        cfg = {"classes": classes, "epochs": epochs, "batch": batch, "lr": lr, "seed": seed}
        return distributed.fit(model, x, y, desc=desc, **cfg)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    augment = getattr(model, "augment", None)
    n = len(y)
    if classes == 0:
        mu, sd = y.mean(), y.std()
        y = (y - mu) / sd
    steps = epochs * math.ceil(n / batch)
    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=steps < 200):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i : i + batch]
            xb = take(x, idx)
            if augment is not None:
                xb = augment(xb, gen)
            out = model(xb)
            if classes == 0:
                loss = F.mse_loss(out[:, 0], y[idx])
            else:
                loss = F.cross_entropy(out, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def kendall_tau(pred: torch.Tensor, true: torch.Tensor) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(pred.numpy(), true.numpy()).statistic)


def gbt(train_feats, train_y, test_feats, classes: int, seed: int, tiny: bool):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingClassifier if classes else HistGradientBoostingRegressor
    model = kind(max_iter=10 if tiny else 200, random_state=seed)
    model.fit(train_feats.numpy(), train_y.numpy())
    return [torch.tensor(model.predict(f.numpy())) for f in test_feats]


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def run_task(task: str, models: dict, data: dict, cfg: dict, seeds: list[int], tiny: bool) -> dict:
    """Train every model on every seed; evaluate on the test zoo and its variants."""
    x_tr, y_tr, tests = data["x_train"], data["y_train"], data["tests"]
    classes = data["classes"]
    metric = "tau" if classes == 0 else "accuracy"

    def score(pred, true):
        if classes == 0:
            return kendall_tau(pred[:, 0] if pred.dim() == 2 else pred, true)
        return float(((pred.argmax(-1) if pred.dim() == 2 else pred) == true).float().mean())

    results = {}
    for name, make in models.items():
        rec = {"scores": {k: [] for k in tests}, "seconds": [], "params": None}
        for seed in seeds if name != "StatNN (GBT)" else seeds[:1]:
            start = time.time()
            if name == "StatNN (GBT)":
                feats = [metanets.statistics(t["x"]) for t in tests.values()]
                preds = gbt(metanets.statistics(x_tr), y_tr, feats, classes, seed, tiny)
                preds = dict(zip(tests, preds, strict=True))
            else:
                torch.manual_seed(seed)
                model = make()
                rec["params"] = n_params(model)
                desc = f"{task} {name} {seed}"
                fit(model, x_tr, y_tr, classes=classes, seed=seed, desc=desc, **cfg)
                preds = {k: predict(model, t["x"]) for k, t in tests.items()}
            rec["seconds"].append(time.time() - start)
            for k, t in tests.items():
                rec["scores"][k].append(score(preds[k], t["y"]))
            if seed == seeds[0]:
                rec["pred"] = preds["test"].reshape(len(tests["test"]["y"]), -1)[:, 0].tolist()
            main = rec["scores"]["test"][-1]
            print(
                f"  {task:10s} {name:28s} seed {seed}: {metric} {main:.4f}  "
                f"({rec['seconds'][-1]:.0f} s)",
                flush=True,
            )
        results[name] = rec
    return results


def _selected(models: dict, names: str | None) -> dict:
    """The models named in ``--models`` (separated by ";"), all without it."""
    if not names:
        return models
    wanted = [n.strip() for n in names.split(";")]
    unknown = [n for n in wanted if n not in models]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; known: {list(models)}")
    return {n: models[n] for n in wanted}


def classifier_task(args, seeds):
    zoo = zoos.classifier_zoo(zoos.TINY_CLASSIFIER if args.tiny else None)
    x = to_layout(zoo["weights"])
    y = zoo["test_accuracy"].float()
    tr, te = split(len(y), 0.7)
    x_tr, x_te = take(x, tr), take(x, te)
    relu = qgen.compile(SPECS / "mlp_relu.yaml")
    perm = qgen.compile(SPECS / "mlp_perm.yaml")
    tests = {"test": {"x": x_te, "y": y[te]}}
    for r in RANGES[1:]:
        tests[f"r={r}"] = {"x": rescale(relu, x_te, r), "y": y[te]}
    scales = metanets.tensor_scales(x_tr)
    canon_scales = metanets.tensor_scales(metanets.canonicalize_scales(relu, x_tr))
    c, h = (2, 8) if args.tiny else (args.channels, args.hidden)
    models = {
        "MLP": lambda: metanets.FlatMLP(x_tr, 1),
        "MLP + augmentation": lambda: metanets.FlatMLP(x_tr, 1, augment=augmenter(relu)),
        "StatNN (MLP)": lambda: metanets.StatNN(x_tr, 1),
        "StatNN (GBT)": None,
        "Equivariant, perm (HNP)": lambda: metanets.EquivariantMetaNet(
            perm, 1, c, hidden=h, scales=scales
        ),
        "Equivariant, scaled": lambda: metanets.EquivariantMetaNet(
            relu, 1, c, head="nonlinear", hidden=h, scales=scales
        ),
        "Quasi-equivariant, scaled": lambda: metanets.EquivariantMetaNet(
            relu, 1, c, head="nonlinear", quasi=True, hidden=h, scales=scales
        ),
        "Canonicalized + perm (HNP)": lambda: metanets.Canonicalized(
            relu, metanets.EquivariantMetaNet(perm, 1, c, hidden=h, scales=canon_scales)
        ),
        # the generated MetaNetwork (building blocks), same channels, depth and head width
        "MetaNetwork, perm": lambda: metanets.BlocksMetaNet(perm, x_tr, 1, c, head_hidden=h),
        "MetaNetwork, scaled": lambda: metanets.BlocksMetaNet(relu, x_tr, 1, c, head_hidden=h),
        "MetaNetwork, scaled, direction head": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, head_canonical=False
        ),
        "MetaNetwork, scaled, gated": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, gated=True
        ),
        "MetaNetwork, scaled, DeepSets head": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, pool_hidden=h
        ),
        "MetaNetwork, scaled + degree-2": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, degree2=True
        ),
        "MetaNetwork, quasi (scaled)": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, quasi=True
        ),
        "MetaNetwork, scaled, canonicalized": lambda: metanets.BlocksMetaNet(
            relu, x_tr, 1, c, head_hidden=h, canonicalize=True
        ),
        "MetaNetwork, perm on weights + canonicalized": lambda: metanets.WithCanonical(
            relu,
            metanets.BlocksMetaNet(
                perm, metanets.WithCanonical.stack(relu, x_tr), 1, c, head_hidden=h
            ),
        ),
        # relu.canonicalize (generated) makes the input scale-invariant; then the perm blocks
        "MetaNetwork, canonicalized + perm": lambda: metanets.Canonicalized(
            relu, metanets.BlocksMetaNet(perm, relu.canonicalize(x_tr), 1, c, head_hidden=h)
        ),
    }
    models = _selected(models, args.models)
    cfg = {"epochs": 2 if args.tiny else args.epochs, "batch": 32, "lr": 1e-3}
    data = {"x_train": x_tr, "y_train": y[tr], "tests": tests, "classes": 0}
    out = run_task("classifier", models, data, cfg, seeds, args.tiny)
    zoo_info = {
        "networks": len(y),
        "train": len(tr),
        "test": len(te),
        "build_seconds": zoo["build_seconds"],
        "test_accuracy_quantiles": torch.quantile(y, torch.linspace(0, 1, 5)).tolist(),
        "config": zoo["config"],
    }
    return out, {"true": y[te].tolist(), **cfg, "channels": c, "zoo": zoo_info}


def inr_task(args, seeds):
    zoo = zoos.inr_zoo(zoos.TINY_INR if args.tiny else None)
    x = to_layout(zoo["weights"])
    y = zoo["label"]
    images = int(zoo["image"].max()) + 1
    tr_img, _ = split(images, 0.7)
    in_train = torch.zeros(images, dtype=torch.bool)
    in_train[tr_img] = True
    tr = torch.nonzero(in_train[zoo["image"]])[:, 0]
    te = torch.nonzero(~in_train[zoo["image"]])[:, 0]
    x_tr = take(x, tr)
    sine = qgen.compile(SPECS / "inr_sine.yaml")
    perm = qgen.compile(SPECS / "inr_perm.yaml")
    tests = {"test": {"x": take(x, te), "y": y[te]}}
    scales = metanets.tensor_scales(x_tr)
    c, h = (2, 8) if args.tiny else (args.inr_channels, args.hidden)
    models = {
        "MLP": lambda: metanets.FlatMLP(x_tr, 10),
        "MLP + augmentation": lambda: metanets.FlatMLP(x_tr, 10, augment=augmenter(sine)),
        "StatNN (MLP)": lambda: metanets.StatNN(x_tr, 10),
        "StatNN (GBT)": None,
        "Equivariant, perm (HNP)": lambda: metanets.EquivariantMetaNet(
            perm, 10, c, hidden=h, scales=scales
        ),
        "Equivariant, signed": lambda: metanets.EquivariantMetaNet(
            sine, 10, c, nonlinearity="tanh", head="nonlinear", hidden=h, scales=scales
        ),
    }
    models = _selected(models, args.models)
    cfg = {"epochs": 2 if args.tiny else args.inr_epochs, "batch": 32, "lr": 1e-3}
    data = {"x_train": x_tr, "y_train": y[tr], "tests": tests, "classes": 10}
    out = run_task("inr", models, data, cfg, seeds, args.tiny)
    psnr = 10 * torch.log10(4 / zoo["mse"])
    zoo_info = {
        "inrs": len(y),
        "train": len(tr),
        "test": len(te),
        "build_seconds": zoo["build_seconds"],
        "psnr_median": float(psnr.median()),
        "config": zoo["config"],
    }
    return out, {**cfg, "channels": c, "zoo": zoo_info}


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def table(results: dict) -> str:
    lines = [
        "| metanetwork | classifier zoo: Kendall tau | tau, rescaled r=8 | INR zoo: accuracy "
        "| params (cls / INR) | train s/seed (cls / INR) |",
        "|---|---|---|---|---|---|",
    ]
    cls, inr = results["classifier"], results["inr"]
    for name in dict.fromkeys([*cls, *inr]):
        cells = [name]
        for task, key in (("classifier", "test"), ("classifier", "r=8"), ("inr", "test")):
            rec = results[task].get(name)
            if rec is None or key not in rec["scores"]:
                cells.append("n/a")
                continue
            m, s = mean_std(rec["scores"][key])
            n = len(rec["scores"][key])
            cells.append(f"{m:.3f} ± {s:.3f}" + (" (1 run)" if n == 1 else ""))
        params = [str(r[name]["params"] or "n/a") if name in r else "n/a" for r in (cls, inr)]
        secs = [f"{mean_std(r[name]['seconds'])[0]:.0f}" if name in r else "-" for r in (cls, inr)]
        cells += [" / ".join(params), " / ".join(secs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plots(results: dict, meta: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cls = results["classifier"]
    true = torch.tensor(meta["classifier"]["true"])
    names = [n for n in cls if "pred" in cls[n]]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        pred = torch.tensor(cls[name]["pred"])
        ax.scatter(true, pred, s=3, alpha=0.4)
        ax.set_title(f"{name}: tau {cls[name]['scores']['test'][0]:.3f}", fontsize=8)
        ax.set_xlabel("true test accuracy", fontsize=8)
        ax.set_ylabel("prediction", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Classifier zoo: predicted vs true test accuracy (first seed)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "scatter_accuracy.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    keys = ["test"] + [f"r={r}" for r in RANGES[1:]]
    for name, rec in cls.items():
        ms = [mean_std(rec["scores"][k]) for k in keys]
        m = torch.tensor([a for a, _ in ms])
        s = torch.tensor([b for _, b in ms])
        ax.plot(RANGES, m, marker="o", label=name)
        ax.fill_between(RANGES, m - s, m + s, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rescaling range r (factors log-uniform in [1/r, r] per hidden neuron)")
    ax.set_ylabel("Kendall tau on the test zoo")
    ax.set_title("Robustness to function-preserving rescaling (mean ± std over seeds)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "robustness_rescaling.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few networks, a few steps")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="classifier task")
    parser.add_argument("--inr-epochs", type=int, default=30)
    parser.add_argument("--channels", type=int, default=8, help="classifier task")
    parser.add_argument("--inr-channels", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=32, help="head width of equivariant nets")
    parser.add_argument(
        "--tasks", default="classifier,inr", help="'none': only the table and plots from --out"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", default=None, help="model names, separated by ';' (all)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    distributed.setup()  # joins the process group under torchrun; rank 0 writes results
    seeds = list(range(1 if args.tiny else args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for task, run in (("classifier", classifier_task), ("inr", inr_task)):
        if task in args.tasks.split(","):
            t0 = time.time()
            res, meta = run(args, seeds)
            meta.update(seconds=time.time() - t0, seeds=seeds, threads=args.threads)
            payload = {"results": res, "meta": meta}
            if distributed.is_rank0():
                (args.out / f"{task}.json").write_text(json.dumps(payload, indent=1))
    if not distributed.is_rank0():  # under torchrun, rank 0 alone writes the results
        distributed.cleanup()
        return {"results": {}, "meta": {}}
    # the table and plots, once both tasks have results (they may run as separate processes)
    results, meta = {}, {}
    for task in ("classifier", "inr"):
        path = args.out / f"{task}.json"
        if path.is_file():
            payload = json.loads(path.read_text())
            results[task], meta[task] = payload["results"], payload["meta"]
    if "classifier" in results and "inr" in results:
        md = table(results)
        (args.out / "results.md").write_text(md)
        print(md)
        plots(results, meta, args.out)
    meta["seconds"] = time.time() - start
    print(f"study: {meta['seconds']:.0f} s; wrote {args.out}")
    distributed.cleanup()
    return {"results": results, "meta": meta}


if __name__ == "__main__":
    main()
