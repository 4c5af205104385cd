"""Task (c): INR editing with a weight-space output: dilate the digit an INR represents.

The INRs are task (a)'s zoo (independent SIREN inits, split by image; every training copy
is a training example). A model maps an INR's weights ``theta`` to an edit ``F(theta)``;
the output INR is ``theta + gain * s * F(theta)`` (``s``: one RMS per tensor from the
training zoo, ``gain`` one learned scalar, so for an equivariant ``F`` the output INR moves
with the input). The loss is the MSE between the output INR rendered on the pixel grid and
the dilated image (grey-scale dilation with a 3x3 square: ``max_pool2d(3, stride 1,
padding 1)`` of the image), as NFN and ScaleGMN train it. Reported: that MSE on the test
images, in [0, 1] pixel units (``(pixel + 1) / 2``).

    python -m bench.tasks.inr_edit                      # zoo (cached) + table + PNG
    python -m bench.tasks.inr_edit --tables-only
    python -m bench.tasks.inr_edit --tiny --out /tmp/t
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.tasks import common, inr_classify


class Edit(nn.Module):
    """``theta + gain * s_T * F(theta)_T`` per tensor ``T`` (``F``: a model with a
    weight-space output; ``s_T``: one constant per tensor, ``gain``: one learned scalar,
    both commute with any linear group action). Keeps ``F``'s ``augment``."""

    def __init__(self, model: nn.Module, train: common.Weights, gain: float = 0.01):
        super().__init__()
        self.model = model
        self.augment = getattr(model, "augment", None)
        self.scales = {k: float(v.square().mean().sqrt()) for k, v in train.items()}
        self.gain = nn.Parameter(torch.tensor(gain))

    def forward(self, x: common.Weights) -> common.Weights:
        d = self.model(x)
        return {k: v + self.gain * self.scales[k] * d[k] for k, v in x.items()}


def dilate(images: torch.Tensor) -> torch.Tensor:
    """Grey-scale dilation with a 3x3 square of images ``[n, pixels]`` (square)."""
    side = int(round(math.sqrt(images.shape[1])))
    out = F.max_pool2d(images.reshape(-1, 1, side, side), 3, stride=1, padding=1)
    return out.reshape(len(images), -1)


def models(perm, full, train, channels: int, depth: int) -> dict:
    group = "signed"
    table = {
        "MLP": lambda: common.FlatToWeights(train, "flat", 256),
        "MLP + augmentation": lambda: common.FlatToWeights(
            train, "flat", 256, augment=common.study.augmenter(full)
        ),
        "StatNN": lambda: common.FlatToWeights(train, "stats", 64),
        "NFN NP": lambda: common.NFNModel(perm, train, 1, "NP", channels, depth, equivariant=True),
        "NFN HNP": lambda: common.NFNModel(
            perm, train, 1, "HNP", channels, depth, equivariant=True
        ),
        "qgen perm": lambda: common.QgenModel(
            perm, train, 1, channels, depth, output="equivariant"
        ),
        f"qgen {group}": lambda: common.QgenModel(
            full, train, 1, channels, depth, output="equivariant"
        ),
        f"qgen {group}, quasi=True": lambda: common.QgenModel(
            full, train, 1, channels, depth, output="equivariant", quasi=True
        ),
    }
    return {k: (lambda make=make: Edit(make(), train)) for k, make in table.items()}


def run(args) -> dict:
    c = inr_classify.Config(
        resolution=args.resolution, copies=args.copies, steps=args.fit_steps, images=args.images
    )
    z = inr_classify.zoo(c)
    x = common.layout(z["weights"])
    images, _ = common.digit_images(c.resolution)
    target = dilate(images[z["image"]]) * 2 - 1  # [-1, 1], as the INRs were fitted
    coords = common.grid(c.resolution)
    parts = {k: torch.nonzero(z["part"] == i)[:, 0] for i, k in enumerate(["train", "val", "test"])}
    xs = {k: common.take(x, v) for k, v in parts.items()}
    ts = {k: target[v] for k, v in parts.items()}
    shapes = [tuple(z["weights"][k].shape[1:]) for k in ("W1", "W2", "W3")]
    perm = common.space_for(shapes, "sin", "perm", "inr_edit_perm")
    full = common.space_for(shapes, "sin", None, "inr_edit_sine")
    table = models(perm, full, xs["train"], args.channels, args.depth)
    if args.models:
        table = {k: table[k] for k in args.models.split(";")}

    def pixels(w: common.Weights) -> torch.Tensor:
        return common.render({k: v[:, 0] for k, v in w.items()}, coords)

    def mse01(w: common.Weights, t: torch.Tensor) -> float:  # in [0, 1] pixel units
        return float((pixels(w) - t).square().mean() / 4)

    identity = {k: mse01(v, ts[k]) for k, v in xs.items()}
    meta = {
        "title": f"INR editing: dilation ({c.resolution}x{c.resolution})",
        "zoo": z["manifest"],
        "target": "max_pool2d(3, stride 1, padding 1) of the (upsampled) image",
        "metric": "MSE of the rendered output INR against the dilated image, pixels in [0, 1]",
        "unedited_mse": identity,
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "channels": args.channels,
        "depth": args.depth,
        "selection": "epoch of best validation MSE; test MSE at that epoch",
    }
    path = Path(args.out) / f"inr_edit-r{c.resolution}-c{c.copies}-s{c.steps}.json"
    results = common.load_results(path, meta)
    if "reference" not in results:
        results["reference"] = references(x, parts, target, coords)
        common.save_results(path, results)

    def score(model, part):
        return mse01(common.predict(model, xs[part]), ts[part])

    def fit_one(name, model, seed):
        rec = common.train(
            model,
            xs["train"],
            ts["train"],
            loss_fn=lambda out, idx, xb: (pixels(out) - ts["train"][idx]).square().mean(),
            evaluate=lambda m: -score(m, "val"),
            epochs=args.epochs,
            batch=args.batch,
            lr=args.lr,
            seed=seed,
        )
        return {"test": score(model, "test"), "val": -rec["val"], "best_epoch": rec["best_epoch"]}

    common.run_models(path, results, table, list(range(args.seeds)), fit_one)
    write_tables(path)
    return results


def references(x: common.Weights, parts: dict, target: torch.Tensor, coords) -> dict:
    """Not weight-space models, for scale: (1) the best global affine intensity edit
    ``a * pixels + b`` of the rendered INRs (least squares on the training INRs: what
    scaling ``W3, b3`` alone can do); (2) the rendered INR dilated in pixel space (the
    edit done exactly on the function; what is left is the INRs' own fitting error).
    Test MSE in [0, 1] pixel units."""
    with torch.no_grad():
        px = common.render({k: v[:, 0] for k, v in x.items()}, coords)
    a, b = px[parts["train"]].flatten(), target[parts["train"]].flatten()
    sol = torch.linalg.lstsq(torch.stack([a, torch.ones_like(a)], 1), b[:, None]).solution[:, 0]
    test, t = px[parts["test"]], target[parts["test"]]
    return {
        "affine_test": float(((sol[0] * test + sol[1] - t) ** 2).mean() / 4),
        "affine": [float(sol[0]), float(sol[1])],
        "dilated_rendering_test": float(((dilate(test.clamp(-1, 1)) - t) ** 2).mean() / 4),
    }


def write_tables(path: Path) -> str:
    results = json.loads(path.read_text())
    text = common.table(results, {"test": "test MSE", "val": "val MSE"}, fmt="{:.3e}")
    unedited = results["meta"]["unedited_mse"]
    text += f"\n(unedited INRs against the dilated images: test MSE {unedited['test']:.2e}"
    ref = results.get("reference")
    if ref:
        text += (
            f"; best global affine intensity edit of the rendering {ref['affine_test']:.2e}; "
            f"the rendering dilated in pixel space {ref['dilated_rendering_test']:.2e}"
        )
    text += ")\n"
    path.with_suffix(".md").write_text(text)
    common.bar_plot(results, "test", "test MSE (pixels in [0, 1])", path.with_suffix(".png"))
    print(text)
    return text


def parser() -> argparse.ArgumentParser:
    p = inr_classify.parser()
    p.description = __doc__.split("\n")[0]
    return p


def main(argv: list[str] | None = None) -> dict | None:
    args = parser().parse_args(argv)
    return common.task_main("inr_edit", args, inr_classify.tiny, run, write_tables)


if __name__ == "__main__":
    main()
