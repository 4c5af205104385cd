"""Task (b): generalization prediction on a CNN zoo in the Small CNN Zoo's style.

CNNs 1 -> 16 -> 16 -> 16 channels (3x3 convolutions; strides 2, 2, 1; padding 1:
8x8 -> 4x4 -> 2x2 -> 2x2), global average pooling, a dense layer to 10 classes, trained
on scikit-learn's 8x8 digits with varied learning rate, weight decay, initialization
(scheme and scale), number of steps, training-data fraction and label noise; one zoo
with ReLU and one with tanh. Every network of a zoo is trained at once (batched ``bmm``
on unfolded patches, per-network Adam).
Target: accuracy on the 797 digits no network trained on. Metric: Kendall's tau between
predicted and true test accuracy on the test networks; for the ReLU zoo also on the test
networks with every hidden channel multiplied by a random factor ~ U[1, 10] and
U[1, 1e3] (the next layer divided by it: the same functions, so the same targets); for
the tanh zoo on the test networks with every hidden channel's sign flipped at random
(tanh is odd: the next layer's input flipped too; the same functions).

    python -m bench.tasks.cnn_generalization --activation relu   # zoo (cached) + table + PNG
    python -m bench.tasks.cnn_generalization --tables-only
    python -m bench.tasks.cnn_generalization --tiny --out /tmp/t
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F

from bench.tasks import common

SHAPES = [(16, 1, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3), (10, 16)]
NAMES = ["K1", "b1", "K2", "b2", "K3", "b3", "W", "b"]
STRIDES = (2, 2, 1)
RANGES = {"U[1,10]": 10.0, "U[1,1e3]": 1e3}
SIGNS = "sign flips"


@dataclass(frozen=True)
class Config:
    activation: str = "relu"
    networks: int = 600
    max_steps: int = 200  # Adam steps (batch 32); each network draws its own count
    train_pool: int = 1000  # digits the networks may train on; the other 797 test them
    chunk: int = 600
    seed: int = 0


def forward(w: dict, x: torch.Tensor, activation: str) -> torch.Tensor:
    """Logits ``[nets, batch, 10]`` of a batch of CNNs on images ``[nets, batch, 1, 8, 8]``."""
    act = torch.relu if activation == "relu" else torch.tanh
    n, b = x.shape[:2]
    h = x.reshape(n * b, *x.shape[2:])
    for i, stride in enumerate(STRIDES, start=1):
        k = w[f"K{i}"]  # [n, out, in, 3, 3]
        side = (h.shape[-1] + 2 - 3) // stride + 1
        cols = F.unfold(h, 3, padding=1, stride=stride)  # [n*b, in*9, L]
        cols = cols.reshape(n, b, cols.shape[1], -1).transpose(2, 3).reshape(n, -1, cols.shape[1])
        out = torch.bmm(cols, k.flatten(2).transpose(1, 2)) + w[f"b{i}"][:, None]
        h = act(out).reshape(n * b, side, side, -1).permute(0, 3, 1, 2)
    pooled = h.mean((2, 3)).reshape(n, b, -1)  # global average pooling
    return pooled @ w["W"].transpose(1, 2) + w["b"][:, None]


def accuracy(w: dict, x: torch.Tensor, y: torch.Tensor, activation: str) -> torch.Tensor:
    with torch.no_grad():
        pred = forward(w, x[None].expand(w["K1"].shape[0], *x.shape), activation).argmax(-1)
    return (pred == y[None]).float().mean(-1)


def build(c: Config) -> dict:
    x, y = common.digit_images(8)
    x = x.reshape(-1, 1, 8, 8)
    gen = torch.Generator().manual_seed(c.seed)
    order = torch.randperm(len(y), generator=gen)
    pool, test = order[: c.train_pool], order[c.train_pool :]
    n = c.networks

    def log_uniform(lo, hi):
        return torch.exp(torch.empty(n).uniform_(math.log(lo), math.log(hi), generator=gen))

    hp = {
        "lr": log_uniform(3e-4, 3e-2),
        "weight_decay": log_uniform(1e-6, 1e-2),
        "init_scale": log_uniform(0.1, 3.0),
        "init_uniform": torch.rand(n, generator=gen) < 0.5,  # glorot-uniform, else he-normal
        "steps": torch.randint(min(10, c.max_steps), c.max_steps + 1, (n,), generator=gen),
        "data_fraction": torch.empty(n).uniform_(0.05, 1.0, generator=gen),
        "label_noise": torch.where(
            torch.rand(n, generator=gen) < 0.5, torch.rand(n, generator=gen) * 0.6, 0.0
        ),
    }
    subset = (hp["data_fraction"] * c.train_pool).round().long().clamp_min(10)
    perms = torch.argsort(torch.rand(n, c.train_pool, generator=gen), dim=1)
    noisy = torch.rand(n, c.train_pool, generator=gen) < hp["label_noise"][:, None]
    labels = torch.where(noisy, torch.randint(0, 10, (n, c.train_pool), generator=gen), y[pool])
    weights = {}
    for name, shape in zip(NAMES[::2], SHAPES, strict=True):
        fan_in = math.prod(shape[1:])
        fan_out = shape[0] * math.prod(shape[2:])
        he = torch.randn(n, *shape, generator=gen) * math.sqrt(2 / fan_in)
        bound = math.sqrt(6 / (fan_in + fan_out))
        glorot = (torch.rand(n, *shape, generator=gen) * 2 - 1) * bound
        pick = hp["init_uniform"].view(-1, *[1] * len(shape))
        scale = hp["init_scale"].view(-1, *[1] * len(shape))
        weights[name] = torch.where(pick, glorot, he) * scale
        weights["b" + name[1:] if name != "W" else "b"] = torch.zeros(n, shape[0])
    weights = {k: weights[k] for k in NAMES}
    batch = 32
    xpool = x[pool]
    for lo in range(0, n, c.chunk):
        sl = slice(lo, min(lo + c.chunk, n))
        m = sl.stop - sl.start
        w = {k: v[sl].clone().requires_grad_() for k, v in weights.items()}
        mom = {k: torch.zeros_like(v) for k, v in w.items()}
        sq = {k: torch.zeros_like(v) for k, v in w.items()}
        lr, wd, steps = hp["lr"][sl], hp["weight_decay"][sl], hp["steps"][sl]
        for step in range(int(steps.max())):
            pos = (torch.rand(m, batch, generator=gen) * subset[sl, None]).long()
            idx = perms[sl].gather(1, pos)
            logits = forward(w, xpool[idx], c.activation)
            target = labels[sl].gather(1, idx)
            loss = F.cross_entropy(logits.reshape(-1, 10), target.reshape(-1), reduction="sum")
            grads = torch.autograd.grad(loss / batch, list(w.values()))
            active = (step < steps).float()
            t = step + 1
            with torch.no_grad():  # Adam (decoupled weight decay), per-network lr and wd
                for (k, p), g in zip(w.items(), grads, strict=True):
                    shape = (-1,) + (1,) * (p.dim() - 1)
                    mom[k].mul_(0.9).add_(g, alpha=0.1)
                    sq[k].mul_(0.999).addcmul_(g, g, value=0.001)
                    upd = (mom[k] / (1 - 0.9**t)) / ((sq[k] / (1 - 0.999**t)).sqrt() + 1e-8)
                    upd = upd + wd.view(shape) * p
                    p.sub_((lr * active).view(shape) * upd)
        for k in weights:
            weights[k][sl] = w[k].detach()
        print(f"  CNN zoo ({c.activation}) trained {sl.stop}/{n}", flush=True)
    finite = torch.stack([v.flatten(1).isfinite().all(1) for v in weights.values()]).all(0)
    for k in weights:
        weights[k][~finite] = 0.0
    return {
        "weights": weights,
        "test_accuracy": accuracy(weights, x[test], y[test], c.activation),
        "train_accuracy": accuracy(weights, x[pool], y[pool], c.activation),
        "diverged": ~finite,
        "hparams": hp,
    }


def manifest(c: Config, zoo: dict) -> dict:
    acc = zoo["test_accuracy"]
    q = torch.quantile(acc, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])).tolist()
    return {
        "task": "generalization prediction (Small CNN Zoo style)",
        "images": "scikit-learn load_digits 8x8 /16 (in [0, 1]); "
        f"{c.train_pool} images in the training pool, the other {1797 - c.train_pool} test",
        "architecture": "conv3x3 1->16 (stride 2) -> conv3x3 16->16 (stride 2) -> conv3x3 "
        f"16->16 (stride 1), padding 1, {c.activation} after each, global average pooling, "
        "dense 16->10",
        "training": f"Adam (per-network lr, decoupled weight decay), batch 32, up to "
        f"{c.max_steps} steps, cross-entropy, {c.networks} networks trained at once",
        "varied": {
            "lr": "log-uniform 3e-4..3e-2",
            "weight_decay": "log-uniform 1e-6..1e-2",
            "init": "he-normal or glorot-uniform (1/2 each) times log-uniform 0.1..3",
            "steps": f"uniform integer 10..{c.max_steps}",
            "data_fraction": "uniform 0.05..1 of the pool",
            "label_noise": "none for half, else uniform 0..0.6",
        },
        "target": "accuracy on the held-out digits",
        "test_accuracy_quantiles": [round(v, 3) for v in q],
        "diverged": int(zoo["diverged"].sum()),
        "split": "networks: seeded permutation 70 / 15 / 15 % (train / val / test)",
    }


def zoo(c: Config) -> dict:
    return common.cached("cnn-zoo", c, build, manifest)


def rescale(space, x: dict, high: float, seed: int = 1234) -> dict:
    """Every hidden channel of every network times a factor ~ U[1, high] (the generated
    ``act`` of the scaled space: the next layer is divided by it)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = space.sizes_of(x)
    n = common.size(x)
    g = {}
    for t, (_, fixed) in space.TYPES.items():
        if fixed is None:
            u = torch.rand(n, sizes[t], generator=gen, dtype=torch.float64)
            g[t] = (torch.arange(sizes[t]), 1 + u * (high - 1))
    return space.act(g, x)


def flip_signs(space, x: dict, seed: int = 1234) -> dict:
    """Every hidden channel of every network times a random sign (1/2 each; the generated
    ``act`` of the signed space: for tanh the next layer's input is flipped too)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = space.sizes_of(x)
    n = common.size(x)
    g = {}
    for t, (_, fixed) in space.TYPES.items():
        if fixed is None:
            s = torch.randint(0, 2, (n, sizes[t]), generator=gen).to(torch.float64) * 2 - 1
            g[t] = (torch.arange(sizes[t]), s)
    return space.act(g, x)


def run(args) -> dict:
    c = Config(activation=args.activation, networks=args.networks, max_steps=args.max_steps)
    z = zoo(c)
    x = common.layout(z["weights"])
    y = z["test_accuracy"].float()
    parts = common.split_images(len(y))
    xs = {k: common.take(x, v) for k, v in parts.items()}
    ys = {k: y[v] for k, v in parts.items()}
    perm = common.space_for(SHAPES, args.activation, "perm", f"cnn_{args.activation}_perm")
    full = common.space_for(SHAPES, args.activation, None, f"cnn_{args.activation}_full")
    models = common.invariant_models(
        perm,
        full,
        xs["train"],
        1,
        args.channels,
        args.depth,
        quasi=True,
        options=common.parse_options(args.qgen_options),
        canonical=True,
    )
    if args.models:
        models = {k: models[k] for k in args.models.split(";")}
    tests = {"test": xs["test"]}
    if args.activation == "relu":
        for label, high in RANGES.items():
            tests[label] = rescale(full, xs["test"], high)
    else:
        tests[SIGNS] = flip_signs(full, xs["test"])
    mu, sd = ys["train"].mean(), ys["train"].std()
    meta = {
        "title": f"CNN zoo ({args.activation}): generalization prediction",
        "zoo": z["manifest"],
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "channels": args.channels,
        "depth": args.depth,
        "selection": "epoch of best validation Kendall tau; test scores at that epoch",
    }
    path = Path(args.out) / f"cnn_generalization-{args.activation}-n{c.networks}.json"
    results = common.load_results(path, meta)

    def tau(model, xx, yy):
        return common.study.kendall_tau(common.predict(model, xx)[:, 0], yy)

    def fit_one(name, model, seed):
        rec = common.train(
            model,
            xs["train"],
            ys["train"],
            loss_fn=lambda out, idx, xb: F.mse_loss(out[:, 0], (ys["train"][idx] - mu) / sd),
            evaluate=lambda m: tau(m, xs["val"], ys["val"]),
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            seed=seed,
        )
        scores = {k: tau(model, v, ys["test"]) for k, v in tests.items()}
        scores.update(val=rec["val"], best_epoch=rec["best_epoch"])
        return scores

    common.run_models(path, results, models, list(range(args.seeds)), fit_one)
    write_tables(path)
    return results


def write_tables(path: Path) -> str:
    results = json.loads(path.read_text())
    columns = {"test": "Kendall tau", SIGNS: f"tau, {SIGNS}", "val": "val tau"}
    if results["meta"]["zoo"]["config"]["activation"] == "relu":
        columns = {"test": "Kendall tau", **{k: f"tau, {k}" for k in RANGES}, "val": "val tau"}
    text = common.table(results, columns)
    path.with_suffix(".md").write_text(text)
    common.bar_plot(results, "test", "Kendall tau (test networks)", path.with_suffix(".png"))
    print(text)
    return text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--activation", choices=["relu", "tanh"], default="relu")
    p.add_argument("--networks", type=int, default=600)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--models", default=None, help="model names separated by ';'")
    p.add_argument(
        "--qgen-options", default=None, help="more MetaNetwork options, e.g. pool_hidden=32"
    )
    p.add_argument("--out", default=str(common.RESULTS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--tiny", action="store_true", help="a few networks, a few steps (the test)")
    return p


def tiny(args) -> None:
    """A few networks, a few steps (the test suite's configuration)."""
    args.networks, args.max_steps, args.epochs, args.channels, args.seeds = 40, 5, 1, 2, 1


def main(argv: list[str] | None = None) -> dict | None:
    args = parser().parse_args(argv)
    return common.task_main("cnn_generalization", args, tiny, run, write_tables)


if __name__ == "__main__":
    main()
