"""Two model zoos built offline from scikit-learn's 8x8 digits (1,797 images), cached on disk.

* classifier zoo: ReLU MLPs 64 -> 32 -> 32 -> 10 trained on digits with varied learning
  rate, weight decay, initialization scale, number of steps, training-subset size and label
  noise, so that their test accuracies spread widely. Target: test accuracy.
* INR zoo: sine networks 2 -> 32 -> 32 -> 1 (SIREN-style), each fitted to one digit image
  (``per_image`` fits from different random initializations). Target: the digit.
* shared-init INR zoos: the same sine networks, all fitted from ONE seeded SIREN
  initialization, then each moved by its own random element of the declared symmetry
  group (``group="perm"``: hidden-neuron permutations; ``group="signed"``: permutations
  and sign flips), ``copies`` random elements per fit. Every moved INR computes exactly
  the function of its fit. Target: the digit.

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


@dataclass(frozen=True)
class SharedINRFitConfig:
    """The fits of a shared-init zoo: every image fitted from the same initialization."""

    images: int = 1797
    steps: int = 300  # full-batch Adam steps on the 64 pixels
    w0: float = 8.0
    chunk: int = 2000
    seed: int = 0  # seeds the one shared initialization


@dataclass(frozen=True)
class SharedINRZooConfig:
    fit: SharedINRFitConfig = SharedINRFitConfig()
    group: str = "perm"  # "perm": S_32 x S_32; "signed": (Z_2^32 x| S_32) x (Z_2^32 x| S_32)
    copies: int = 1  # random group elements per fit (INRs per image)
    seed: int = 1  # seeds the group elements


GROUPS = ("perm", "signed")


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


def siren_init(n: int, w0: float, gen: torch.Generator) -> dict:
    """SIREN initialization of ``n`` sine networks: first layer U(-1/2, 1/2) * w0 (w0 folded
    into the weights), hidden layers U(-sqrt(6/fan_in), sqrt(6/fan_in)); biases like the
    weights' first row."""
    weights = {}
    for name, shape in INR_SHAPES.items():
        fan_in = shape[1] if name.startswith("W") else INR_SHAPES["W" + name[1:]][1]
        bound = w0 / 2 if name in ("W1", "b1") else math.sqrt(6 / fan_in)
        weights[name] = (torch.rand(n, *shape, generator=gen) * 2 - 1) * bound
    return weights


def _fit(weights: dict, target: torch.Tensor, steps: int, chunk: int, desc: str, progress: bool):
    """Full-batch Adam (lr 3e-3) on the pixel MSE, ``chunk`` networks at once; in place.
    Returns each network's final MSE."""
    coords = grid()
    n = len(target)
    mse = torch.empty(n)
    bar = tqdm(total=n * steps, desc=desc, unit="net-step", disable=not progress)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(lo + chunk, n))
        w = {k: v[sl].clone().requires_grad_() for k, v in weights.items()}
        opt = torch.optim.Adam(w.values(), lr=3e-3)
        for _ in range(steps):
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
    return mse


def _fit_inrs(c: INRZooConfig, progress: bool) -> dict:
    x, y = digits()
    x, y = x[: c.images], y[: c.images]
    gen = torch.Generator().manual_seed(c.seed)
    image = torch.arange(c.images).repeat_interleave(c.per_image)
    target = x[image] * 2 - 1  # pixels in [-1, 1]
    weights = siren_init(len(image), c.w0, gen)  # one random initialization per INR
    mse = _fit(weights, target, c.steps, c.chunk, "INR zoo", progress)
    return {"weights": weights, "label": y[image], "image": image, "mse": mse}


def inr_zoo(config: INRZooConfig | None = None, progress: bool = True) -> dict:
    """``weights`` ({W1..b3: [networks, *shape]}), ``label``, ``image``, ``mse``."""
    return _cached("inr", config or INRZooConfig(), _fit_inrs, progress)


def _fit_shared(c: SharedINRFitConfig, progress: bool) -> dict:
    x, y = digits()
    x, y = x[: c.images], y[: c.images]
    template = siren_init(1, c.w0, torch.Generator().manual_seed(c.seed))
    weights = {k: v.expand(c.images, *v.shape[1:]).clone() for k, v in template.items()}
    mse = _fit(weights, x * 2 - 1, c.steps, c.chunk, "shared-init INR fits", progress)
    return {"weights": weights, "template": template, "label": y, "mse": mse}


def shared_fits(config: SharedINRFitConfig | None = None, progress: bool = True) -> dict:
    """Every image fitted from one shared SIREN init: ``weights``, ``template`` (that init,
    ``[1, *shape]``), ``label``, ``mse``; in image order, not yet moved by the group."""
    return _cached("inr-shared-fit", config or SharedINRFitConfig(), _fit_shared, progress)


def sample_element(group: str, n: int, gen: torch.Generator, width: int = 32) -> dict:
    """``n`` random elements of the declared group of the 2-32-32-1 sine INRs: for each hidden
    layer ``l``, a permutation ``p_l`` (``[n, width]``, uniform) and signs ``s_l`` (``[n,
    width]``; all +1 for ``group="perm"``, independent uniform +-1 for ``"signed"``)."""
    if group not in GROUPS:
        raise ValueError(f"group {group!r}: expected one of {GROUPS}")
    g = {}
    for layer in ("1", "2"):
        g["p" + layer] = torch.argsort(torch.rand(n, width, generator=gen), dim=1)
        if group == "signed":
            g["s" + layer] = torch.randint(0, 2, (n, width), generator=gen).float() * 2 - 1
        else:
            g["s" + layer] = torch.ones(n, width)
    return g


def move(w: dict, g: dict) -> dict:
    """The group element ``g`` (from :func:`sample_element`) acting on INR weights::

        W1'[i] = s1[i] W1[p1[i]]              b1'[i] = s1[i] b1[p1[i]]
        W2'[i, j] = s2[i] W2[p2[i], p1[j]] s1[j]    b2'[i] = s2[i] b2[p2[i]]
        W3'[:, j] = W3[:, p2[j]] s2[j]        b3' = b3

    New neuron ``i`` of layer ``l`` is old neuron ``p_l[i]`` times ``s_l[i]``. Since sine is
    odd, ``sin(-z) = -sin(z)``: flipping a neuron's incoming weights *and bias* flips its
    output, which the flipped outgoing weights undo, so the function is unchanged.
    """
    p1, s1, p2, s2 = g["p1"], g["s1"], g["p2"], g["s2"]
    rows1 = p1[:, :, None]
    W1 = w["W1"].gather(1, rows1.expand_as(w["W1"])) * s1[:, :, None]
    b1 = w["b1"].gather(1, p1) * s1
    W2 = w["W2"].gather(1, p2[:, :, None].expand_as(w["W2"]))
    W2 = W2.gather(2, p1[:, None, :].expand_as(W2)) * s2[:, :, None] * s1[:, None, :]
    b2 = w["b2"].gather(1, p2) * s2
    W3 = w["W3"].gather(2, p2[:, None, :].expand_as(w["W3"])) * s2[:, None, :]
    return {"W1": W1, "b1": b1, "W2": W2, "b2": b2, "W3": W3, "b3": w["b3"].clone()}


def _move_shared(c: SharedINRZooConfig, progress: bool) -> dict:
    fits = shared_fits(c.fit, progress)
    n = len(fits["label"])
    image = torch.arange(n).repeat_interleave(c.copies)
    g = sample_element(group=c.group, n=len(image), gen=torch.Generator().manual_seed(c.seed))
    weights = move({k: v[image] for k, v in fits["weights"].items()}, g)
    return {
        "weights": weights,
        "label": fits["label"][image],
        "image": image,
        "mse": fits["mse"][image],
        "element": g,
        "template": fits["template"],
        "fit_seconds": fits["build_seconds"],
    }


def shared_inr_zoo(config: SharedINRZooConfig | None = None, progress: bool = True) -> dict:
    """The shared-init zoo moved by the group: ``weights``, ``label``, ``image`` (which fit),
    ``mse``, ``element`` (the group element applied to each INR), ``template``."""
    return _cached("inr-shared", config or SharedINRZooConfig(), _move_shared, progress)


TINY_CLASSIFIER = ClassifierZooConfig(networks=24, max_steps=20, chunk=12)
TINY_INR = INRZooConfig(images=40, per_image=1, steps=20)
TINY_SHARED_FIT = SharedINRFitConfig(images=40, steps=20)


def tiny_shared(group: str) -> SharedINRZooConfig:
    return SharedINRZooConfig(fit=TINY_SHARED_FIT, group=group, copies=2)


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
    for group in GROUPS:
        sz = shared_inr_zoo(tiny_shared(group) if args.tiny else SharedINRZooConfig(group=group))
        psnr = 10 * torch.log10(4 / sz["mse"])
        print(
            f"shared-init INR zoo ({group}): {len(sz['label'])} INRs; fits in "
            f"{sz['fit_seconds']:.0f} s; PSNR median {psnr.median():.1f} dB (min {psnr.min():.1f})"
        )


if __name__ == "__main__":
    main()
