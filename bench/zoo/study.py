"""The zoo study: metanetworks from generated layers against baselines, several seeds.

    python bench/zoo/study.py                 # full study (builds the zoos if needed)
    python bench/zoo/study.py --tiny --out /tmp/zoo   # seconds: the pipeline test
    torchrun --nproc_per_node=2 bench/zoo/study.py ... # training with DDP (distributed.py)

Task 1, generalization prediction: predict a ReLU classifier's test accuracy from its
weights (classifier zoo); metric Kendall's tau. Then robustness: the same test networks,
each hidden neuron rescaled by a random positive factor log-uniform in [1/r, r] (the
function, hence the target, is unchanged), for growing r.
Task 2, INR classification: the digit from a sine INR's weights; metric test accuracy, on
three zoos (``--inr-zoos``): ``independent`` (each INR from its own random init: the
negative result), ``shared-perm`` and ``shared-signed`` (one shared init, each INR moved by
a random permutation, or permutation and sign flip, of its hidden neurons). The model table
is :func:`inr_models`: MLPs, StatNN, NFN (NP, HNP), canonicalization + MLP, and qgen
metanetworks from the generated layers; adding a model is one entry there.

Writes ``classifier.json``, ``inr-<zoo>.json`` (every score of every seed), ``results.md``
(the tables) and PNG plots into ``--out``.
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


def fit(
    model,
    x,
    y,
    *,
    classes: int,
    epochs: int,
    batch: int,
    lr: float,
    seed: int,
    desc: str,
    schedule: str = "constant",
    warmup: float = 0.0,
    weight_decay: float = 0.0,
    on_epoch=None,
):
    """Adam (AdamW with ``weight_decay``), ``epochs`` passes, the learning rate constant or
    on a cosine schedule with linear warmup (``distributed.optimizer``, stepped per batch);
    MSE on standardized y or cross-entropy. ``on_epoch(epoch, model)`` after every epoch."""
    sched_cfg = {"schedule": schedule, "warmup": warmup, "weight_decay": weight_decay}
    if distributed.world_size() > 1:  # under torchrun: the same loop with DDP
        cfg = {"classes": classes, "epochs": epochs, "batch": batch, "lr": lr, "seed": seed}
        return distributed.fit(model, x, y, desc=desc, **cfg, **sched_cfg)
    gen = torch.Generator().manual_seed(seed)
    augment = getattr(model, "augment", None)
    n = len(y)
    if classes == 0:
        mu, sd = y.mean(), y.std()
        y = (y - mu) / sd
    steps = epochs * math.ceil(n / batch)
    opt, sched = distributed.optimizer(model, steps, lr, **sched_cfg)
    for epoch in tqdm(range(epochs), desc=desc, leave=False, disable=steps < 200):
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
            sched.step()
        if on_epoch is not None:
            on_epoch(epoch, model)
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


def run_task(
    task: str,
    models: dict,
    data: dict,
    cfg: dict,
    seeds: list[int],
    tiny: bool,
    seeds_of=None,
    save=None,
    trace: bool = False,
) -> dict:
    """Train every model on every seed (``seeds_of(name)`` if given); evaluate on the test
    zoo and its variants; ``save(results)`` after each model (partial results survive).
    ``trace``: also the test score after every epoch (``rec["trace"]``, one list a seed)."""
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
        own = seeds_of(name) if seeds_of else seeds
        for seed in own if name != "StatNN (GBT)" else own[:1]:
            start = time.time()
            if name == "StatNN (GBT)":
                feats = [metanets.statistics(t["x"]) for t in tests.values()]
                preds = gbt(metanets.statistics(x_tr), y_tr, feats, classes, seed, tiny)
                preds = dict(zip(tests, preds, strict=True))
            else:
                torch.manual_seed(seed)
                xs_tr, xs = x_tr, {k: t["x"] for k, t in tests.items()}
                if isinstance(make, Prepared):  # a fixed map (canonicalization) first
                    if "prepared" not in rec:
                        rec["prepared"] = (
                            make.prepare(x_tr),
                            {k: make.prepare(v) for k, v in xs.items()},
                        )
                    xs_tr, xs = rec["prepared"]
                    model = make.build(xs_tr)
                else:
                    model = make(x_tr)
                rec["params"] = n_params(model)
                desc = f"{task} {name} {seed}"
                on_epoch = None
                if trace:
                    curve = rec.setdefault("trace", [])
                    curve.append([])

                    def on_epoch(epoch, m, curve=curve[-1], xt=xs["test"]):
                        curve.append(score(predict(m, xt), tests["test"]["y"]))

                fit(
                    model,
                    xs_tr,
                    y_tr,
                    classes=classes,
                    seed=seed,
                    desc=desc,
                    on_epoch=on_epoch,
                    **cfg,
                )
                preds = {k: predict(model, v) for k, v in xs.items()}
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
        rec.pop("prepared", None)
        results[name] = rec
        if save is not None:
            save(results)
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
        "MLP": lambda x: metanets.FlatMLP(x, 1),
        "MLP + augmentation": lambda x: metanets.FlatMLP(x, 1, augment=augmenter(relu)),
        "StatNN (MLP)": lambda x: metanets.StatNN(x, 1),
        "StatNN (GBT)": None,
        "Equivariant, perm (HNP)": lambda x: metanets.EquivariantMetaNet(
            perm, 1, c, hidden=h, scales=scales
        ),
        "Equivariant, scaled": lambda x: metanets.EquivariantMetaNet(
            relu, 1, c, head="nonlinear", hidden=h, scales=scales
        ),
        "Quasi-equivariant, scaled": lambda x: metanets.EquivariantMetaNet(
            relu, 1, c, head="nonlinear", quasi=True, hidden=h, scales=scales
        ),
        "Canonicalized + perm (HNP)": lambda x: metanets.Canonicalized(
            relu, metanets.EquivariantMetaNet(perm, 1, c, hidden=h, scales=canon_scales)
        ),
        # scale-aware, not scale-invariant: the perm model on two input channels, the
        # weights and their (generated) scale canonicalization, each channel its own RMS
        "Equivariant, perm (HNP) on weights + canonicalized": lambda x: metanets.WithCanonical(
            relu,
            metanets.EquivariantMetaNet(
                perm,
                1,
                c,
                hidden=h,
                in_channels=2,
                scales={k: [scales[k], canon_scales[k]] for k in scales},
            ),
        ),
        # the generated MetaNetwork (building blocks), same channels, depth and head width
        "MetaNetwork, perm": lambda x: metanets.BlocksMetaNet(perm, x, 1, c, head_hidden=h),
        "MetaNetwork, scaled": lambda x: metanets.BlocksMetaNet(relu, x, 1, c, head_hidden=h),
        "MetaNetwork, scaled, direction head": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, head_canonical=False
        ),
        "MetaNetwork, scaled, gated": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, gated=True
        ),
        "MetaNetwork, scaled, DeepSets head": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, pool_hidden=h
        ),
        "MetaNetwork, scaled + degree-2": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, degree2=True
        ),
        "MetaNetwork, quasi (scaled)": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, quasi=True
        ),
        "MetaNetwork, scaled, canonicalized": lambda x: metanets.BlocksMetaNet(
            relu, x, 1, c, head_hidden=h, canonicalize=True
        ),
        "MetaNetwork, perm on weights + canonicalized": lambda x: metanets.WithCanonical(
            relu,
            metanets.BlocksMetaNet(
                perm, metanets.WithCanonical.stack(relu, x), 1, c, head_hidden=h
            ),
        ),
        # relu.canonicalize (generated) makes the input scale-invariant; then the perm blocks
        "MetaNetwork, canonicalized + perm": lambda x: metanets.Canonicalized(
            relu, metanets.BlocksMetaNet(perm, relu.canonicalize(x), 1, c, head_hidden=h)
        ),
    }
    models = _selected(models, args.models)
    cfg = {"epochs": 2 if args.tiny else args.epochs, "batch": 32, "lr": 1e-3, **schedule(args)}
    data = {"x_train": x_tr, "y_train": y[tr], "tests": tests, "classes": 0}
    zoo_info = {
        "networks": len(y),
        "train": len(tr),
        "test": len(te),
        "build_seconds": zoo["build_seconds"],
        "test_accuracy_quantiles": torch.quantile(y, torch.linspace(0, 1, 5)).tolist(),
        "config": zoo["config"],
    }
    meta = {"true": y[te].tolist(), **cfg, "channels": c, "zoo": zoo_info}
    start = time.time()

    def save(results):  # after every model, so a run cut short keeps what it finished
        if distributed.is_rank0():
            part = {**meta, "seconds": time.time() - start, "seeds": seeds, "partial": True}
            payload = {"results": results, "meta": {**part, "threads": args.threads}}
            (args.out / "classifier.json").write_text(json.dumps(payload, indent=1))

    out = run_task("classifier", models, data, cfg, seeds, args.tiny, save=save, trace=args.trace)
    return out, meta


INR_ZOOS = ("independent", "shared-perm", "shared-signed")


def schedule(args) -> dict:
    """The optimizer settings every neural model of a run shares (recorded in the JSON)."""
    return {"schedule": args.schedule, "warmup": args.warmup, "weight_decay": args.weight_decay}


def load_inr_zoo(kind: str, tiny: bool) -> dict:
    """``independent``: every INR from its own random init (the negative result);
    ``shared-perm`` / ``shared-signed``: one shared init, each INR moved by a random
    permutation (and sign flip) of its hidden neurons."""
    if kind == "independent":  # the first fit of each image: as many INRs as the shared zoos
        zoo = dict(zoos.inr_zoo(zoos.TINY_INR if tiny else None))
        first = torch.ones(len(zoo["image"]), dtype=torch.bool)
        first[1:] = zoo["image"][1:] != zoo["image"][:-1]
        for k in ("label", "image", "mse"):
            zoo[k] = zoo[k][first]
        zoo["weights"] = {k: v[first] for k, v in zoo["weights"].items()}
        return zoo
    group = {"shared-perm": "perm", "shared-signed": "signed"}.get(kind)
    if group is None:
        raise ValueError(f"INR zoo {kind!r}: expected one of {INR_ZOOS}")
    return zoos.shared_inr_zoo(
        zoos.tiny_shared(group) if tiny else zoos.SharedINRZooConfig(group=group)
    )


def split_by_image(image: torch.Tensor, train_fraction: float = 0.7):
    """Train / test indices with every INR of one image (all its fits and copies) on one side."""
    images = int(image.max()) + 1
    tr_img, _ = split(images, train_fraction)
    in_train = torch.zeros(images, dtype=torch.bool)
    in_train[tr_img] = True
    return torch.nonzero(in_train[image])[:, 0], torch.nonzero(~in_train[image])[:, 0]


class Prepared(torch.nn.Module):
    """A model whose input is first mapped by ``prepare`` (a fixed, non-learned map such as
    canonicalization); :func:`run_task` applies it once to whole zoos."""

    def __init__(self, prepare, make) -> None:
        super().__init__()
        self.prepare = prepare
        self.make = make

    def build(self, x_train):
        return self.make(x_train)


def inr_models(kind: str, x_tr: dict, template, args) -> dict:
    """The model table of the INR task: name -> factory of a fresh model (``None``: the
    gradient-boosting baseline). The zoo's declared group picks the normalizer of the qgen
    and NFN models, the augmentation and the canonicalization; a new model is one entry."""
    sine = qgen.compile(SPECS / "inr_sine.yaml")
    perm = qgen.compile(SPECS / "inr_perm.yaml")
    declared = perm if kind == "shared-perm" else sine
    signed = declared is sine
    c, h, d = (2, 8, 1) if args.tiny else (args.inr_channels, args.hidden, args.inr_depth)
    common = {"channels": c, "hidden": h, "depth": d}
    models = {
        "MLP": lambda x: metanets.FlatMLP(x, 10),
        "MLP + augmentation": lambda x: metanets.FlatMLP(x, 10, augment=augmenter(declared)),
        "StatNN (MLP)": lambda x: metanets.StatNN(x, 10),
        "StatNN (GBT)": None,
        "NFN NP": lambda x: metanets.NFNClassifier(declared, x, 10, mode="NP", **common),
        "NFN HNP": lambda x: metanets.NFNClassifier(declared, x, 10, mode="HNP", **common),
        "qgen perm (linear head)": lambda x: metanets.MetaNet(perm, x, 10, **common),
        "qgen perm (entry-pool head)": lambda x: metanets.MetaNet(
            perm, x, 10, head="entrypool", **common
        ),
        "qgen signed (entry-pool head)": lambda x: metanets.MetaNet(
            sine, x, 10, nonlinearity="tanh", head="entrypool", **common
        ),
        "qgen signed (nonlinear head)": lambda x: metanets.MetaNet(
            sine, x, 10, nonlinearity="tanh", head="nonlinear", **common
        ),
    }
    # the generated MetaNetwork (InputNormalizer, EquivariantNorm between the layers,
    # pooled entry invariants and the InvariantHead into an MLP), same width and depth
    models["qgen MetaNetwork perm (generated blocks)"] = lambda x: metanets.BlocksMetaNet(
        perm, x, 10, c, d, head_hidden=h
    )
    models["qgen MetaNetwork perm (generated blocks; DeepSets head)"] = lambda x: (
        metanets.BlocksMetaNet(perm, x, 10, c, d, head_hidden=h, pool_hidden=h)
    )
    models["qgen perm (entry-pool head; tanh)"] = lambda x: metanets.MetaNet(
        perm, x, 10, nonlinearity="tanh", head="entrypool", **common
    )
    models["qgen perm (entry-pool + linear head)"] = lambda x: metanets.MetaNet(
        perm, x, 10, head="both", **common
    )
    models["qgen perm (entry-pool head + input skip)"] = lambda x: metanets.MetaNet(
        perm, x, 10, head="entrypool", skip=True, **common
    )
    if signed:  # the generated sign canonicalization, then the perm model: sign-invariant
        models["qgen sign-canonicalized + perm (entry-pool head + input skip)"] = Prepared(
            sine.canonicalize,
            lambda x: metanets.MetaNet(perm, x, 10, head="entrypool", skip=True, **common),
        )
        models["qgen sign-canonicalized + perm (entry-pool head)"] = Prepared(
            sine.canonicalize, lambda x: metanets.MetaNet(perm, x, 10, head="entrypool", **common)
        )
    if template is not None:  # shared-init zoos: canonicalize to the template, flat MLP
        models["Canonicalized + MLP"] = Prepared(
            lambda x: canonical(x, template, signed), lambda x: metanets.FlatMLP(x, 10)
        )
    # the normalization ablation (run on its own: --inr-models with these names)
    models["qgen perm (linear head; RMS scaling; no BatchNorm)"] = lambda x: metanets.MetaNet(
        perm, x, 10, batchnorm=False, centre=False, **common
    )
    models["qgen perm (linear head; no BatchNorm)"] = lambda x: metanets.MetaNet(
        perm, x, 10, batchnorm=False, **common
    )
    if args.inr_models:
        keep = args.inr_models.split(",")
        unknown = sorted(set(keep) - set(models))
        if unknown:
            raise ValueError(f"--inr-models: unknown {unknown}; known: {sorted(models)}")
        return {k: models[k] for k in keep}  # in the order given
    return {k: v for k, v in models.items() if k not in ABLATION}


ABLATION = (
    "qgen perm (linear head; RMS scaling; no BatchNorm)",
    "qgen perm (linear head; no BatchNorm)",
)


def canonical(x: dict, template: dict, signed: bool) -> dict:
    zoo = metanets.align_to_template({k: v[:, 0] for k, v in x.items()}, template, signed)
    return to_layout(zoo)


def inr_task(args, seeds):
    """Every model of :func:`inr_models` on each zoo of ``--inr-zoos``; equivariant and NFN
    models on the first ``--heavy-seeds`` seeds, the ablation on one. Each zoo's JSON is
    rewritten after every model, so a run cut short keeps what it finished."""
    out = {}
    for kind in args.inr_zoos.split(","):
        start = time.time()
        zoo = load_inr_zoo(kind, args.tiny)
        x = to_layout(zoo["weights"])
        y = zoo["label"]
        tr, te = split_by_image(zoo["image"])
        x_tr = take(x, tr)
        models = inr_models(kind, x_tr, zoo.get("template"), args)
        tests = {"test": {"x": take(x, te), "y": y[te]}}
        cfg = {"epochs": 2 if args.tiny else args.inr_epochs, "batch": 32, "lr": args.inr_lr}
        cfg.update(schedule(args))
        data = {"x_train": x_tr, "y_train": y[tr], "tests": tests, "classes": 10}
        print(f"INR zoo {kind}: {len(y)} INRs ({len(tr)} train / {len(te)} test)", flush=True)
        psnr = 10 * torch.log10(4 / zoo["mse"])
        meta = {**cfg, "channels": args.inr_channels, "depth": args.inr_depth}
        meta.update(hidden=args.hidden, seeds=seeds, heavy_seeds=seeds[: args.heavy_seeds])
        meta["zoo"] = {
            "inrs": len(y),
            "images": int(zoo["image"].max()) + 1,
            "train": len(tr),
            "test": len(te),
            "build_seconds": zoo.get("fit_seconds", zoo["build_seconds"]),  # fits dominate
            "psnr_median": float(psnr.median()),
            "config": zoo["config"],
        }

        path = args.out / f"inr-{kind}.json"
        if args.append and path.is_file():  # refuse to mix configurations in one file
            old = json.loads(path.read_text())["meta"]
            keys = [*cfg, "channels", "depth", "hidden", "seeds", "heavy_seeds"]
            differ = {k: (old.get(k), meta.get(k)) for k in keys if old.get(k) != meta.get(k)}
            if differ:
                raise SystemExit(f"--append: {path} has another configuration: {differ}")

        def save(results, kind=kind, meta=meta, start=start, path=path):
            meta.update(seconds=time.time() - start, threads=args.threads)
            if distributed.is_rank0():
                if args.append and path.is_file():  # the file's models, then this run's
                    old = json.loads(path.read_text())
                    results = {**old["results"], **results}
                    added = old["meta"].get("appended", [])
                    new = [n for n in results if n not in old["results"]]
                    meta["appended"] = added + [{"models": new, "seconds": meta["seconds"]}]
                    meta["seconds"] = old["meta"]["seconds"]  # the first process's time
                path.write_text(json.dumps({"results": results, "meta": meta}, indent=1))

        def seeds_of(name):
            if name in ABLATION:
                return seeds[:1]
            heavy = name.startswith(("qgen", "NFN"))
            return seeds[: args.heavy_seeds] if heavy else seeds

        res = run_task(
            f"inr {kind}", models, data, cfg, seeds, args.tiny, seeds_of, save, args.trace
        )
        out[kind] = (res, meta)
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0


def _cell(rec: dict | None, key: str = "test") -> str:
    if rec is None or key not in rec["scores"]:
        return "n/a"
    m, s = mean_std(rec["scores"][key])
    return f"{m:.3f} ± {s:.3f}" + (" (1 run)" if len(rec["scores"][key]) == 1 else "")


def classifier_table(cls: dict) -> str:
    lines = [
        "| metanetwork | Kendall tau | tau, rescaled r=8 | params | train s/seed |",
        "|---|---|---|---|---|",
    ]
    for name, rec in cls.items():
        secs = f"{mean_std(rec['seconds'])[0]:.0f}"
        cells = [name, _cell(rec), _cell(rec, "r=8"), str(rec["params"] or "n/a"), secs]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def inr_table(inr: dict) -> str:
    """Rows: models; columns: test accuracy on each INR zoo, params, seconds per seed."""
    kinds = list(inr)
    lines = [
        "| metanetwork | "
        + " | ".join(f"{k}: accuracy" for k in kinds)
        + " | params | train s/seed |",
        "|---|" + "---|" * (len(kinds) + 2),
    ]
    for name in dict.fromkeys(n for k in kinds for n in inr[k]):
        recs = [inr[k].get(name) for k in kinds]
        params = next((str(r["params"]) for r in recs if r and r["params"]), "n/a")
        secs = " / ".join(f"{mean_std(r['seconds'])[0]:.0f}" if r else "-" for r in recs)
        lines.append("| " + " | ".join([name, *map(_cell, recs), params, secs]) + " |")
    return "\n".join(lines) + "\n"


def table(results: dict) -> str:
    md = ""
    if "classifier" in results:
        md += "Classifier zoo (600 test networks):\n\n" + classifier_table(results["classifier"])
    if "inr" in results:
        md += "\nINR zoos (test accuracy, 10 digits):\n\n" + inr_table(results["inr"])
    return md


def plots(results: dict, meta: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "inr" in results:
        inr_plot(results["inr"], out, plt)
    if "classifier" not in results:
        return
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


def inr_plot(inr: dict, out: Path, plt) -> None:
    """Test accuracy per model on each INR zoo: mean ± std over seeds, each seed a dot."""
    kinds = list(inr)
    names = list(dict.fromkeys(n for k in kinds for n in inr[k]))
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(names)), 4.2))
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        xs, ms, ss = [], [], []
        for i, name in enumerate(names):
            rec = inr[kind].get(name)
            if rec is None:
                continue
            m, s = mean_std(rec["scores"]["test"])
            xs.append(i + (j - (len(kinds) - 1) / 2) * width)
            ms.append(m)
            ss.append(s)
            ax.scatter([xs[-1]] * len(rec["scores"]["test"]), rec["scores"]["test"], s=6, c="k")
        ax.bar(xs, ms, width, yerr=ss, capsize=2, label=kind, alpha=0.8)
    ax.axhline(0.1, color="gray", lw=0.8, ls="--")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (10 digits)")
    ax.set_ylim(0, 1)
    ax.set_title(
        "INR classification: mean ± std over seeds (dots: seeds; dashed: chance)", fontsize=9
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "inr_accuracy.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few networks, a few steps")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="classifier task")
    parser.add_argument("--inr-epochs", type=int, default=30)
    parser.add_argument("--channels", type=int, default=8, help="classifier task")
    parser.add_argument("--inr-channels", type=int, default=16)
    parser.add_argument("--inr-depth", type=int, default=2, help="equivariant layers (INR task)")
    parser.add_argument("--inr-lr", type=float, default=1e-3)
    parser.add_argument("--inr-zoos", default=",".join(INR_ZOOS), help="comma-separated")
    parser.add_argument("--inr-models", default="", help="comma-separated subset (default all)")
    parser.add_argument(
        "--heavy-seeds", type=int, default=3, help="seeds of qgen and NFN models (INR task)"
    )
    parser.add_argument("--hidden", type=int, default=32, help="head width of equivariant nets")
    parser.add_argument(
        "--tasks", default="classifier,inr", help="'none': only the table and plots from --out"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="constant",
        help="learning rate of every neural model: constant, or warmup then cosine decay to 0",
    )
    parser.add_argument("--warmup", type=float, default=0.0, help="warmup fraction (cosine)")
    parser.add_argument("--weight-decay", type=float, default=0.0, help="> 0: AdamW")
    parser.add_argument("--trace", action="store_true", help="test score after every epoch")
    parser.add_argument(
        "--append",
        action="store_true",
        help="INR task: add this run's models to the zoo's JSON in --out (same configuration)",
    )
    parser.add_argument(
        "--models", default=None, help="classifier model names, separated by ';' (all)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    distributed.setup()  # joins the process group under torchrun; rank 0 writes results
    seeds = list(range(1 if args.tiny else args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    tasks = args.tasks.split(",")
    if "classifier" in tasks:
        t0 = time.time()
        res, meta = classifier_task(args, seeds)
        meta.update(seconds=time.time() - t0, seeds=seeds, threads=args.threads)
        payload = {"results": res, "meta": meta}
        if distributed.is_rank0():
            (args.out / "classifier.json").write_text(json.dumps(payload, indent=1))
    if "inr" in tasks:  # one JSON per INR zoo: zoos may run as separate processes
        inr_task(args, seeds)  # writes inr-<zoo>.json itself (rank 0), after every model
    if not distributed.is_rank0():  # under torchrun, rank 0 alone writes the results
        distributed.cleanup()
        return {"results": {}, "meta": {}}
    # the table and plots from every result file present (written by this or other runs)
    results, meta = {}, {}
    path = args.out / "classifier.json"
    if path.is_file():
        payload = json.loads(path.read_text())
        results["classifier"], meta["classifier"] = payload["results"], payload["meta"]
    for kind in INR_ZOOS:
        path = args.out / f"inr-{kind}.json"
        if path.is_file():
            payload = json.loads(path.read_text())
            results.setdefault("inr", {})[kind] = payload["results"]
            meta.setdefault("inr", {})[kind] = payload["meta"]
    if results:
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
