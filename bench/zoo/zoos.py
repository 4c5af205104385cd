"""Two model zoos built offline from scikit-learn's 8x8 digits (1,797 images), cached on disk.

* classifier zoo: ReLU MLPs 64 -> 32 -> 32 -> 10 trained on digits with varied learning
  rate, weight decay, initialization scale, number of steps, training-subset size and label
  noise, so that their test accuracies spread widely. Target: test accuracy.
* INR zoo: sine networks 2 -> 32 -> 32 -> 1 (SIREN-style), each fitted to one digit image
  (``per_image`` fits from different random initializations). Target: the digit.

Every network of a zoo is trained at once as one batched tensor program (``torch.bmm``),
seeded, so a zoo is a deterministic function of its config. Zoos are cached as ``.pt``
files under ``$QGEN_ZOO_CACHE`` (default ``~/.cache/qgen/zoo``), keyed by a hash of the
config::

    python bench/zoo/zoos.py            # build (or load) both zoos at the study's size
    python bench/zoo/zoos.py --tiny     # a few networks, a few steps (what the test runs)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm


def cache_dir() -> Path:
    """``$QGEN_ZOO_CACHE``, default ``~/.cache/qgen/zoo`` (read at each call)."""
    return Path(os.environ.get("QGEN_ZOO_CACHE", Path.home() / ".cache" / "qgen" / "zoo"))


MLP_SHAPES = {"W1": (32, 64), "b1": (32,), "W2": (32, 32), "b2": (32,), "W3": (10, 32), "b3": (10,)}
INR_SHAPES = {"W1": (32, 2), "b1": (32,), "W2": (32, 32), "b2": (32,), "W3": (1, 32), "b3": (1,)}


@dataclass(frozen=True)
class ClassifierZooConfig:
    networks: int = 2000
    max_steps: int = 400  # SGD steps (batch 64); each network draws its own count <= this
    chunk: int = 500  # networks trained together
    train_pool: int = 1000  # digits images the networks may train on; the other 797 test them
    seed: int = 0


@dataclass(frozen=True)
class INRZooConfig:
    images: int = 1797
    per_image: int = 3  # INRs per image, from different random initializations
    steps: int = 300  # full-batch Adam steps on the 64 pixels
    w0: float = 8.0  # first-layer frequency (folded into W1: the stored net is sin(W1 x + b1))
    chunk: int = 2000
    seed: int = 0


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[1797, 64]`` in [0, 1] and labels ``[1797]``, in sklearn's order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.data, dtype=torch.float32) / 16.0, torch.tensor(d.target)


def _cache_path(kind: str, config: object) -> Path:
    key = json.dumps({"kind": kind, **asdict(config)}, sort_keys=True)
    return cache_dir() / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def _cached(kind: str, config: object, build, progress: bool) -> dict:
    path = _cache_path(kind, config)
    if path.is_file():
        return torch.load(path)
    start = time.time()
    zoo = build(config, progress)
    zoo["build_seconds"] = time.time() - start
    zoo["config"] = asdict(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(zoo, tmp)
    os.replace(tmp, path)
    return zoo


def _init(shapes: dict, n: int, gen: torch.Generator, scale: torch.Tensor) -> dict:
    """Kaiming-uniform weights (times a per-network ``scale``), zero biases."""
    out = {}
    for name, shape in shapes.items():
        if name.startswith("W"):
            bound = math.sqrt(6 / shape[1]) * scale.view(-1, 1, 1)
            out[name] = (torch.rand(n, *shape, generator=gen) * 2 - 1) * bound
        else:
            out[name] = torch.zeros(n, *shape)
    return out


def mlp_forward(w: dict, x: torch.Tensor) -> torch.Tensor:
    """Logits ``[nets, samples, 10]`` of a batch of ReLU MLPs on ``[nets or 1, samples, 64]``."""
    h = torch.relu(x @ w["W1"].mT + w["b1"][:, None])
    h = torch.relu(h @ w["W2"].mT + w["b2"][:, None])
    return h @ w["W3"].mT + w["b3"][:, None]


def mlp_accuracy(w: dict, x: torch.Tensor, y: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """Accuracy of each network of a batch on ``(x, y)``."""
    accs = []
    n = w["W1"].shape[0]
    with torch.no_grad():
        for i in range(0, n, chunk):
            part = {k: v[i : i + chunk] for k, v in w.items()}
            pred = mlp_forward(part, x[None]).argmax(-1)
            accs.append((pred == y[None]).float().mean(-1))
    return torch.cat(accs)


def _train_classifiers(c: ClassifierZooConfig, progress: bool) -> dict:
    x, y = digits()
    gen = torch.Generator().manual_seed(c.seed)
    order = torch.randperm(len(y), generator=gen)
    pool, test = order[: c.train_pool], order[c.train_pool :]
    xp, yp, xt, yt = x[pool], y[pool], x[test], y[test]
    n = c.networks

    def log_uniform(lo, hi):
        return torch.exp(torch.empty(n).uniform_(math.log(lo), math.log(hi), generator=gen))

    hp = {
        "lr": log_uniform(3e-3, 0.3),  # SGD with momentum 0.9
        "weight_decay": log_uniform(1e-5, 3e-2),
        "init_scale": log_uniform(0.25, 2.5),
        "steps": torch.randint(20, c.max_steps + 1, (n,), generator=gen),
        "subset": log_uniform(30, c.train_pool).round().long(),
        "label_noise": torch.where(
            torch.rand(n, generator=gen) < 0.5, torch.rand(n, generator=gen) * 0.8, 0.0
        ),
    }
    # per network: a random order of the pool (its subset is the first `subset` of them)
    # and its own noisy labels on the pool
    perms = torch.argsort(torch.rand(n, c.train_pool, generator=gen), dim=1)
    noisy = torch.rand(n, c.train_pool, generator=gen) < hp["label_noise"][:, None]
    labels = torch.where(noisy, torch.randint(0, 10, (n, c.train_pool), generator=gen), yp)
    weights = _init(MLP_SHAPES, n, gen, hp["init_scale"])

    batch = 64
    chunks = [slice(lo, min(lo + c.chunk, n)) for lo in range(0, n, c.chunk)]
    total = sum((sl.stop - sl.start) * int(hp["steps"][sl].max()) for sl in chunks)
    bar = tqdm(total=total, desc="classifier zoo", unit="net-step", disable=not progress)
    for sl in chunks:
        m = sl.stop - sl.start
        w = {k: v[sl].clone().requires_grad_() for k, v in weights.items()}
        mom = {k: torch.zeros_like(v) for k, v in w.items()}
        lr, wd = hp["lr"][sl], hp["weight_decay"][sl]
        subset, steps = hp["subset"][sl], hp["steps"][sl]
        top = int(steps.max())
        for step in range(top):
            pos = (torch.rand(m, batch, generator=gen) * subset[:, None]).long()
            idx = perms[sl].gather(1, pos)  # pool indices
            logits = mlp_forward(w, xp[idx])
            target = labels[sl].gather(1, idx)
            loss = F.cross_entropy(logits.reshape(-1, 10), target.reshape(-1), reduction="sum")
            grads = torch.autograd.grad(loss / batch, list(w.values()))
            active = (step < steps).float()
            with torch.no_grad():
                for (k, p), g in zip(w.items(), grads, strict=True):
                    shape = (-1,) + (1,) * (p.dim() - 1)
                    g = g + wd.view(shape) * p
                    mom[k].mul_(0.9).add_(g)
                    p.sub_((lr * active).view(shape) * mom[k])
            bar.update(m)
        for k in weights:
            weights[k][sl] = w[k].detach()
    bar.close()
    finite = torch.stack([v.flatten(1).isfinite().all(1) for v in weights.values()]).all(0)
    for k in weights:  # diverged networks: kept, as constant predictors with zero weights
        weights[k][~finite] = 0.0
    return {
        "weights": weights,
        "test_accuracy": mlp_accuracy(weights, xt, yt),
        "train_accuracy": mlp_accuracy(weights, xp, yp),
        "diverged": ~finite,
        "hparams": hp,
    }


def classifier_zoo(config: ClassifierZooConfig | None = None, progress: bool = True) -> dict:
    """``weights`` ({W1..b3: [networks, *shape]}), ``test_accuracy``, ``hparams``, ..."""
    return _cached("classifier", config or ClassifierZooConfig(), _train_classifiers, progress)


def inr_forward(w: dict, coords: torch.Tensor) -> torch.Tensor:
    """Pixel values ``[nets, pixels]`` of a batch of sine networks at ``coords`` ``[pixels, 2]``."""
    h = torch.sin(coords @ w["W1"].mT + w["b1"][:, None])
    h = torch.sin(h @ w["W2"].mT + w["b2"][:, None])
    return (h @ w["W3"].mT + w["b3"][:, None])[..., 0]


def grid() -> torch.Tensor:
    """The 8 x 8 pixel centres in [-1, 1]^2, row-major as in the digits data."""
    t = torch.linspace(-1, 1, 8)
    return torch.stack(torch.meshgrid(t, t, indexing="ij"), dim=-1).reshape(64, 2)


def _fit_inrs(c: INRZooConfig, progress: bool) -> dict:
    x, y = digits()
    x, y = x[: c.images], y[: c.images]
    gen = torch.Generator().manual_seed(c.seed)
    image = torch.arange(c.images).repeat_interleave(c.per_image)
    n = len(image)
    target = x[image] * 2 - 1  # pixels in [-1, 1]
    coords = grid()
    # SIREN initialization: first layer U(-1/2, 1/2) * w0 (w0 folded into the weights),
    # hidden layers U(-sqrt(6/fan_in), sqrt(6/fan_in)); biases like the weights' first row
    weights = {}
    for name, shape in INR_SHAPES.items():
        fan_in = shape[1] if name.startswith("W") else INR_SHAPES["W" + name[1:]][1]
        bound = c.w0 / 2 if name in ("W1", "b1") else math.sqrt(6 / fan_in)
        weights[name] = (torch.rand(n, *shape, generator=gen) * 2 - 1) * bound
    mse = torch.empty(n)
    bar = tqdm(total=n * c.steps, desc="INR zoo", unit="net-step", disable=not progress)
    for lo in range(0, n, c.chunk):
        sl = slice(lo, min(lo + c.chunk, n))
        w = {k: v[sl].clone().requires_grad_() for k, v in weights.items()}
        opt = torch.optim.Adam(w.values(), lr=3e-3)
        for _ in range(c.steps):
            err = (inr_forward(w, coords) - target[sl]).square().mean(-1)
            opt.zero_grad()
            err.sum().backward()
            opt.step()
            bar.update(sl.stop - sl.start)
        with torch.no_grad():
            mse[sl] = (inr_forward(w, coords) - target[sl]).square().mean(-1)
        for k in weights:
            weights[k][sl] = w[k].detach()
    bar.close()
    return {"weights": weights, "label": y[image], "image": image, "mse": mse}


def inr_zoo(config: INRZooConfig | None = None, progress: bool = True) -> dict:
    """``weights`` ({W1..b3: [networks, *shape]}), ``label``, ``image``, ``mse``."""
    return _cached("inr", config or INRZooConfig(), _fit_inrs, progress)


TINY_CLASSIFIER = ClassifierZooConfig(networks=24, max_steps=20, chunk=12)
TINY_INR = INRZooConfig(images=40, per_image=1, steps=20)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a few networks, a few steps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cz = classifier_zoo(TINY_CLASSIFIER if args.tiny else None)
    acc = cz["test_accuracy"]
    q = torch.quantile(acc, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])).tolist()
    print(
        f"classifier zoo: {len(acc)} networks in {cz['build_seconds']:.0f} s; test accuracy "
        f"min/q1/median/q3/max {' / '.join(f'{v:.3f}' for v in q)}; "
        f"{int(cz['diverged'].sum())} diverged"
    )
    iz = inr_zoo(TINY_INR if args.tiny else None)
    psnr = 10 * torch.log10(4 / iz["mse"])  # pixel range [-1, 1]
    print(
        f"INR zoo: {len(iz['label'])} INRs in {iz['build_seconds']:.0f} s; "
        f"PSNR median {psnr.median():.1f} dB (min {psnr.min():.1f})"
    )


if __name__ == "__main__":
    main()
