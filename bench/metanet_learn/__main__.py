"""The runner of :mod:`bench.metanet_learn` (see there)."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import qgen

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

Weights = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------
# The functions the weights compute (float64, batched over networks: [N, *axes] tensors)


def _mlp(w: Weights, x: torch.Tensor, layers: int, act) -> torch.Tensor:
    """``x [P, in]`` through ``W1, b1, ..., W<layers>, b<layers>``: ``[N, P, out]``."""
    h = x.unsqueeze(0)
    for i in range(1, layers + 1):
        h = h @ w[f"W{i}"].transpose(1, 2) + w[f"b{i}"].unsqueeze(1)
        if i < layers:
            h = act(h)
    return h


def _cnn(w: Weights, x: torch.Tensor) -> torch.Tensor:
    """``x [P, 1, H, W]``: conv 3x3 (padding 1), ReLU, conv, ReLU, global average pool,
    linear; every network of the batch at once (grouped convolutions)."""
    n, p = w["K1"].shape[0], x.shape[0]
    h = x.repeat(1, n, 1, 1)  # [P, N * cin, H, W]
    for k, b in (("K1", "b1"), ("K2", "b2")):
        kernel = w[k].reshape(-1, *w[k].shape[2:])  # [N * cout, cin, 3, 3]
        h = torch.relu(F.conv2d(h, kernel, w[b].reshape(-1), padding=1, groups=n))
    pooled = h.mean((2, 3)).reshape(p, n, -1).transpose(0, 1)  # [N, P, c2]
    return pooled @ w["W3"].transpose(1, 2) + w["b3"].unsqueeze(1)


def _resmlp(w: Weights, x: torch.Tensor) -> torch.Tensor:
    h = x.unsqueeze(0) @ w["W_in"].transpose(1, 2) + w["b_in"].unsqueeze(1)
    for i in (1, 2):
        z = torch.relu(h @ w[f"W{i}a"].transpose(1, 2) + w[f"b{i}a"].unsqueeze(1))
        h = h + z @ w[f"W{i}b"].transpose(1, 2) + w[f"b{i}b"].unsqueeze(1)
    return h @ w["W_out"].transpose(1, 2) + w["b_out"].unsqueeze(1)


def _layer_norm(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    h = (h - h.mean(-1, keepdim=True)) / (h.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    return h * weight[:, None, None] + bias[:, None, None]


def _transformer(w: Weights, x: torch.Tensor) -> torch.Tensor:
    """The ``arch: transformer`` preset, depth 1 (``qgen/presets/transformer.py``):
    ``x [P, T, in]`` sequences, ``[N, P, out]`` (the output of the last token)."""
    h = torch.einsum("pti,nri->nptr", x, w["W_in"]) + w["b_in"][:, None, None]
    a = _layer_norm(h, w["ln1a_w"], w["ln1a_b"])
    q = torch.einsum("nptr,nhdr->nphtd", a, w["Wq1"]) + w["bq1"][:, None, :, None]
    k = torch.einsum("nptr,nhdr->nphtd", a, w["Wk1"]) + w["bk1"][:, None, :, None]
    v = torch.einsum("nptr,nhdr->nphtd", a, w["Wv1"]) + w["bv1"][:, None, :, None]
    scores = torch.einsum("nphtd,nphsd->nphts", q, k) / math.sqrt(q.shape[-1])
    mixed = torch.einsum("nphts,nphsd->nphtd", scores.softmax(-1), v)
    h = h + torch.einsum("nphtd,nrhd->nptr", mixed, w["Wo1"]) + w["bo1"][:, None, None]
    a = _layer_norm(h, w["ln1b_w"], w["ln1b_b"])
    z = F.gelu(torch.einsum("nptr,nmr->nptm", a, w["W1_1"]) + w["b1_1"][:, None, None])
    h = h + torch.einsum("nptm,nrm->nptr", z, w["W2_1"]) + w["b2_1"][:, None, None]
    y = torch.einsum("nptr,nyr->npty", h, w["W_out"]) + w["b_out"][:, None, None]
    return y[:, :, -1]


def _rnn(w: Weights, x: torch.Tensor) -> torch.Tensor:
    """``x [P, T, in]``: ``h_t = tanh(W_ih x_t + W_hh h_{t-1} + b_h)``, ``W_out h_T + b``."""
    n, hidden = w["W_hh"].shape[0], w["W_hh"].shape[1]
    h = x.new_zeros(n, x.shape[0], hidden)
    for t in range(x.shape[1]):
        drive = x[:, t] @ w["W_ih"].transpose(1, 2) + w["b_h"].unsqueeze(1)
        h = torch.tanh(drive + h @ w["W_hh"].transpose(1, 2))
    return h @ w["W_out"].transpose(1, 2) + w["b_out"].unsqueeze(1)


@dataclass(frozen=True)
class Case:
    name: str
    spec: str  # path relative to the repository root
    sizes: dict[str, int]  # sizes of the group types
    probes: Callable[[torch.Generator], torch.Tensor]
    function: Callable[[Weights, torch.Tensor], torch.Tensor]
    #: per tensor, a multiplier of the fan-in init scale (e.g. SIREN's first-layer w0)
    gain: dict[str, float]
    note: str


def _gelu_mlp(w, x):
    return _mlp(w, x, 3, F.gelu)


def _relu_mlp(w, x):
    return _mlp(w, x, 4, torch.relu)


def _sine_mlp(w, x):
    return _mlp(w, x, 3, torch.sin)


def _points(*shape):
    return lambda g: torch.randn(*shape, generator=g, dtype=torch.float64)


CASES = [
    Case(
        "perm_mlp",
        "examples/mlp_gelu.yaml",
        {"h1": 16, "h2": 16},
        _points(32, 4),
        _gelu_mlp,
        {},
        "GELU MLP 4-16-16-3, perm hidden neurons",
    ),
    Case(
        "scaled_mlp",
        "examples/mlp_relu.yaml",
        {"h1": 12, "h2": 12, "h3": 12},
        _points(32, 2),
        _relu_mlp,
        {},
        "ReLU MLP 2-12-12-12-2, scaled hidden neurons",
    ),
    Case(
        "signed_inr",
        "examples/inr_sine.yaml",
        {"h1": 16, "h2": 16},
        lambda g: torch.rand(32, 2, generator=g, dtype=torch.float64) * 2 - 1,
        _sine_mlp,
        {"W1": 3.0, "b1": 1.0},
        "sine INR 2-16-16-1 (w0 3 folded in W1), signed hidden neurons",
    ),
    Case(
        "scaled_cnn",
        "examples/cnn_small.yaml",
        {"c1": 8, "c2": 8},
        _points(16, 1, 6, 6),
        _cnn,
        {},
        "ReLU CNN 1-8-8 3x3, GAP, 10 classes, scaled channels",
    ),
    Case(
        "perm_cnn",
        "bench/metanet_learn/cnn_perm.yaml",
        {"c1": 8, "c2": 8},
        _points(16, 1, 6, 6),
        _cnn,
        {},
        "the same CNNs, channels declared perm",
    ),
    Case(
        "gl_resmlp",
        "bench/metanet_learn/resmlp_gl.yaml",
        {"r": 8, "m1": 12, "m2": 12},
        _points(32, 3),
        _resmlp,
        {},
        "residual ReLU MLP, GL stream (8), scaled blocks (12)",
    ),
    Case(
        "attention",
        "examples/presets/transformer.yaml",
        {"r": 8, "head1": 2, "dk1": 4, "dv1": 4, "m1": 16},
        _points(16, 4, 3),
        _transformer,
        {},
        "pre-LN transformer block, 2 heads of 4 with per-head GL (q/k, v/o), perm stream",
    ),
    Case(
        "tanh_rnn",
        "bench/metanet_learn/rnn_tanh.yaml",
        {"h": 12},
        _points(16, 5, 2),
        _rnn,
        {"W_hh": 1.2},
        "tanh RNN 2-12-1 over 5 steps, signed hidden neurons",
    ),
]


# --------------------------------------------------------------------------------------
# Data


def _fan_in(shape: tuple[int, ...], axes: tuple[str, ...]) -> int:
    """The product of the dual axes' sizes (the inputs of a weight; 1 for a bias)."""
    fan = 1
    for size, axis in zip(shape, axes, strict=True):
        if axis.endswith("*"):
            fan *= size
    return fan


def sample(space, case: Case, n: int, g: torch.Generator) -> Weights:
    """``n`` random networks ``{tensor: [n, 1, *axes]}`` (float64)."""
    x = torch.zeros(1, 1)  # shapes come from the space's tensors at the case's sizes
    out = {}
    fixed = {t: size for t, (kind, size) in space.TYPES.items() if size is not None}
    sizes = {**fixed, **case.sizes}
    for name, axes in space.TENSORS.items():
        shape = tuple(sizes[a.rstrip("*")] for a in axes)
        std = case.gain.get(name, 1.0) / math.sqrt(_fan_in(shape, axes))
        # one log-uniform scale per network and tensor (a factor 4 in all)
        scale = torch.exp((torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * math.log(4))
        v = torch.randn(n, *shape, generator=g, dtype=torch.float64) * std
        out[name] = (v * scale.reshape(n, *[1] * len(shape))).unsqueeze(1)
    del x
    return out


def target(case: Case, w: Weights, probes: torch.Tensor) -> torch.Tensor:
    """The log standard deviation of the first output over the probes, ``[N]``."""
    flat = {k: v[:, 0] for k, v in w.items()}
    y = case.function(flat, probes)[..., 0]
    return torch.log(y.std(1) + 1e-3)


def check_invariance(space, case: Case, w: Weights, probes, g: torch.Generator) -> float:
    """The largest relative change of the target under random group elements."""
    worst = 0.0
    base = target(case, w, probes)
    sizes = space.sizes_of(w)
    for _ in range(3):
        moved = space.act(space.sample_group_element(sizes, g), w)
        change = (target(case, moved, probes) - base).abs().max() / base.abs().max()
        worst = max(worst, float(change))
    return worst


# --------------------------------------------------------------------------------------
# Models


class FlatMLP(nn.Module):
    def __init__(self, train: Weights, hidden: int = 128) -> None:
        super().__init__()
        flat = self.flatten(train)
        self.register_buffer("mean", flat.mean(0))
        self.register_buffer("std", flat.std(0).clamp_min(1e-6))
        self.net = nn.Sequential(
            nn.Linear(flat.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    @staticmethod
    def flatten(x: Weights) -> torch.Tensor:
        return torch.cat([v.flatten(1) for v in x.values()], 1)

    def forward(self, x: Weights) -> torch.Tensor:
        return self.net((self.flatten(x) - self.mean) / self.std)


#: model name -> MetaNetwork options (None: the flat MLP); "before": the options that give
#: the defaults before issue 22 (no Gram tensors, pooled statistics in the head)
MODELS = {
    "default": {},
    "before": {"gram": False, "pool_hidden": None},
    "degree2": {"degree2": True},
    "mlp": None,
}


def make_model(space, name: str, train: Weights, hidden: int, depth: int, options: dict):
    if MODELS.get(name, options) is None:
        return FlatMLP(train)
    net = space.MetaNetwork(1, hidden, depth, 1, **options)
    net.fit_normalizer(train)
    return net


def train_and_score(model, train, y_train, test, y_test, steps, batch, lr, seed) -> dict:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = y_train.shape[0]
    start = time.perf_counter()
    done = 0
    for _ in range(steps):
        idx = torch.randint(n, (batch,), generator=g)
        xb = {k: v[idx] for k, v in train.items()}
        loss = (model(xb)[:, 0] - y_train[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if not torch.isfinite(loss):
            break
    elapsed = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [
                model({k: v[i : i + 256] for k, v in test.items()})[:, 0]
                for i in range(0, y_test.shape[0], 256)
            ]
        )
        mse = float((pred - y_test).square().mean() / y_test.var())
        train_pred = model({k: v[:512] for k, v in train.items()})[:, 0]
        train_mse = float((train_pred - y_train[:512]).square().mean() / y_train.var())
    return {
        "test_nmse": mse,
        "train_nmse": train_mse,
        "ms_per_step": 1000 * elapsed / max(done, 1),
        "steps": done,
        "params": sum(p.numel() for p in model.parameters()),
    }


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if not args.cases or c.name in args.cases.split(",")]
    models = args.models.split(",")
    results = {
        "meta": {
            "train": args.train,
            "test": args.test,
            "steps": args.steps,
            "batch": args.batch,
            "lr": args.lr,
            "hidden": args.hidden,
            "depth": args.depth,
            "seeds": args.seeds,
            "threads": args.threads,
            "options": args.options,
        },
        "cases": {},
    }
    options = json.loads(args.options) if args.options else {}
    for case in cases:
        space = qgen.compile(ROOT / case.spec)
        g = torch.Generator().manual_seed(1234)
        probes = case.probes(g)
        w = sample(space, case, args.train + args.test, g)
        y = target(case, w, probes)
        drift = check_invariance(space, case, {k: v[:64] for k, v in w.items()}, probes, g)
        if drift > 1e-8:
            raise AssertionError(f"{case.name}: the target is not invariant ({drift:.2e})")
        y = ((y - y[: args.train].mean()) / y[: args.train].std()).float()
        w = {k: v.float() for k, v in w.items()}
        train = {k: v[: args.train] for k, v in w.items()}
        test = {k: v[args.train :] for k, v in w.items()}
        row = {"note": case.note, "invariance_drift": drift, "models": {}}
        for name in models:
            runs = []
            for seed in range(args.seeds):
                torch.manual_seed(seed)
                try:
                    model = make_model(
                        space,
                        name,
                        train,
                        args.hidden,
                        args.depth,
                        {**(MODELS.get(name) or {}), **options},
                    )
                except ValueError as e:  # an option the space does not offer
                    runs.append({"error": str(e)})
                    break
                runs.append(
                    train_and_score(
                        model,
                        train,
                        y[: args.train],
                        test,
                        y[args.train :],
                        args.steps,
                        args.batch,
                        args.lr,
                        seed,
                    )
                )
            row["models"][name] = runs
            ok = [r for r in runs if "error" not in r]
            if ok:
                nmse = sum(r["test_nmse"] for r in ok) / len(ok)
                ms = sum(r["ms_per_step"] for r in ok) / len(ok)
                print(f"{case.name:12s} {name:10s} nmse {nmse:.3f}  {ms:6.1f} ms/step", flush=True)
            else:
                print(f"{case.name:12s} {name:10s} {runs[0]['error']}", flush=True)
        results["cases"][case.name] = row
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return results


def table(results: dict) -> str:
    """The markdown table of a results JSON: per case and model, the normalized test MSE
    (mean over seeds, and each seed) and ms per training step (mean over seeds)."""
    models = list(next(iter(results["cases"].values()))["models"])
    head = "| case | " + " | ".join(f"{m}: nMSE | {m}: ms/step" for m in models) + " |"
    lines = [head, "|---" * (1 + 2 * len(models)) + "|"]
    for name, row in results["cases"].items():
        cells = [f"`{name}`"]
        for m in models:
            runs = [r for r in row["models"][m] if "error" not in r]
            if not runs:
                cells += ["n/a", "n/a"]
                continue
            scores = [r["test_nmse"] for r in runs]
            each = ", ".join(f"{v:.3f}" for v in scores)
            cells.append(f"{sum(scores) / len(scores):.3f} ({each})")
            cells.append(f"{sum(r['ms_per_step'] for r in runs) / len(runs):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.metanet_learn")
    p.add_argument("--cases", default="")
    p.add_argument("--models", default="default,mlp")
    p.add_argument("--options", default="", help="JSON MetaNetwork options for every model")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=500)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the runner")
    p.add_argument("--out", default="")
    p.add_argument("--table", default="", help="print the markdown table of a results JSON")
    args = p.parse_args(argv)
    if args.table:
        results = json.loads(Path(args.table).read_text())
        print(table(results))
        return results
    if args.quick:
        args.train, args.test, args.steps, args.hidden = 64, 32, 3, 4
    return run(args)


if __name__ == "__main__":
    main()
