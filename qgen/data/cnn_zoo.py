"""The Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from
Weights") in the layout NFN and Neural Graphs read.

One directory per image dataset (``cifar10/``, ``svhn_cropped/``, ...) holding

* ``weights.npy``: one flat float row per network checkpoint (4970 numbers for the zoo's
  CNN: three 3x3 convolutions of 16 channels on a 1-channel image, global average
  pooling, a dense layer to 10 classes); read here with ``np.load(mmap_mode="r")``, so
  only the rows asked for are ever read and a zoo larger than memory works;
* ``layout.csv``: columns ``varname, start_idx, end_idx, shape``: where each TensorFlow
  variable sits in a row, e.g. ``sequential/conv2d/kernel:0, 0, 144, "(3, 3, 1, 16)"``;
* ``metrics.csv.gz``: one row per checkpoint (same order as ``weights.npy``), with
  ``test_accuracy``, ``step`` (the epoch of the checkpoint: 0, 1, 2, 3, 20, 40, 60, 80 or
  86, the end of training) and the hyperparameters (``config.activation``, ...).

Conventions taken from the public loaders (re-implemented, not copied):

* TF stores a conv kernel ``HWIO`` ``[kh, kw, in, out]`` and a dense kernel ``[in, out]``;
  torch wants ``[out, in, kh, kw]`` and ``[out, in]``: NFN's ``ZooDataset``
  (AllanYangZhou/nfn, ``experiments/data_utils.py``) transposes a batched conv kernel by
  ``(0, 4, 3, 1, 2)`` and a dense one by ``(0, 2, 1)``; :func:`tf_to_torch` is that map
  for one network. Variables are told apart by their name ending in ``kernel:0`` or
  ``bias:0``; the i-th kernel goes with the i-th bias.
* The step filter: NFN (and Neural Graphs' ``experiments/data_generalization.py``, the
  same rule) keep only the final checkpoints, ``metrics["step"] == 86``, after reordering
  rows by a fixed shuffle file (``predict_gen_data_splits/<dataset>_split.csv``: one row
  index per line, no header). ``steps=(86,)`` is that default here; ``steps=None`` keeps
  every checkpoint.
* NFN's split (:func:`nfn_split`): of the m kept rows, the second half (from
  ``int(0.5 m)``) is the test set; the first half is shuffled by
  ``random.Random(0).shuffle`` and its first ``int(0.8 * half)`` are train, the rest val.
"""

from __future__ import annotations

import ast
import csv
import gzip
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from qgen.data.adapters import Source, WeightSpace
from qgen.data.chain import chain_spec, check_shapes
from qgen.data.collate import Item, Weights
from qgen.spec import Spec

__all__ = ["LayoutRow", "SmallCNNZoo", "nfn_split", "read_layout", "tf_to_torch"]

FINAL_STEP = 86


@dataclass(frozen=True)
class LayoutRow:
    """One TF variable of a flat row: ``row[start:end].reshape(shape)``."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        """``kernel`` or ``bias``, from the TF variable name."""
        if self.varname.endswith("kernel:0"):
            return "kernel"
        if self.varname.endswith("bias:0"):
            return "bias"
        raise ValueError(
            f"layout.csv: variable {self.varname!r} is neither a kernel:0 nor a bias:0"
        )


def read_layout(path: str | Path) -> list[LayoutRow]:
    """The rows of ``layout.csv`` (shapes parsed as Python literals, checked against the
    index ranges)."""
    rows = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"varname", "start_idx", "end_idx", "shape"}
        if not need <= set(reader.fieldnames or []):
            raise ValueError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        for line, r in enumerate(reader, start=2):
            shape = ast.literal_eval(r["shape"])
            shape = (shape,) if isinstance(shape, int) else tuple(int(n) for n in shape)
            row = LayoutRow(r["varname"], int(r["start_idx"]), int(r["end_idx"]), shape)
            if row.end - row.start != int(np.prod(shape)):
                raise ValueError(
                    f"{path}, line {line}: {row.varname} spans {row.end - row.start} "
                    f"numbers but has shape {shape}"
                )
            row.kind  # noqa: B018 - validates the name
            rows.append(row)
    return rows


def tf_to_torch(value: np.ndarray, kind: str) -> np.ndarray:
    """A TF variable in torch's layout: conv kernel ``[kh, kw, in, out] -> [out, in, kh,
    kw]``, dense kernel ``[in, out] -> [out, in]``, bias unchanged."""
    if kind == "bias":
        return value
    if value.ndim == 4:
        return value.transpose(3, 2, 0, 1)
    if value.ndim == 2:
        return value.T
    raise ValueError(f"a TF kernel of shape {value.shape}: expected HWIO (4-D) or (in, out)")


def nfn_split(m: int) -> dict[str, list[int]]:
    """NFN's iid split of ``m`` rows into ``train``/``val``/``test`` positions."""
    half = int(0.5 * m)
    trainval = list(range(half))
    cut = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    return {"train": trainval[:cut], "val": trainval[cut:], "test": list(range(half, m))}


def _read_metrics(path: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; it has {header}")
        out: dict[str, list[str]] = {c: [] for c in columns}
        for row in reader:
            for c in columns:
                out[c].append(row[c])
    return out


class SmallCNNZoo(Dataset):
    """The Small CNN Zoo at ``root`` as ``(weights, target)`` items.

    ``split``: ``all`` (every kept row, in order) or NFN's ``train``/``val``/``test``
    (:func:`nfn_split`); ``order_file``: NFN's fixed shuffle CSV, applied before the
    step filter as NFN does; ``steps``: the checkpoint epochs kept (default the final one,
    86; None keeps all); ``activation``: keep only networks with this
    ``config.activation`` (applied after the split, as Neural Graphs does).

    Items: ``{K1, b1, K2, b2, K3, b3, W, b}`` (the ``arch: cnn`` preset's names, see
    :meth:`spec`) in torch layouts, each ``[1, *axes]``, with the ``target`` column(s) of
    ``metrics.csv.gz`` (default ``test_accuracy``) as float32.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        *,
        steps: Sequence[int] | None = (FINAL_STEP,),
        order_file: str | Path | None = None,
        activation: str | None = None,
        target: str | Sequence[str] = "test_accuracy",
        spec: Spec | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.root = Path(root)
        for name in ("weights.npy", "layout.csv", "metrics.csv.gz"):
            if not (self.root / name).is_file():
                raise FileNotFoundError(
                    f"{self.root / name} is missing: a Small CNN Zoo directory holds "
                    "weights.npy, layout.csv and metrics.csv.gz"
                )
        self.data = np.load(self.root / "weights.npy", mmap_mode="r")
        if self.data.ndim != 2:
            raise ValueError(f"weights.npy: expected [networks, numbers], got {self.data.shape}")
        self.layout = read_layout(self.root / "layout.csv")
        if max(r.end for r in self.layout) > self.data.shape[1]:
            raise ValueError("layout.csv reaches past the end of a weights.npy row")
        kernels = [r for r in self.layout if r.kind == "kernel"]
        biases = [r for r in self.layout if r.kind == "bias"]
        if len(kernels) != len(biases):
            raise ValueError(f"layout.csv: {len(kernels)} kernels but {len(biases)} biases")
        self.pairs = list(zip(kernels, biases, strict=True))
        self.columns = [target] if isinstance(target, str) else list(target)
        self.scalar_target = isinstance(target, str)
        wanted = ["step", *self.columns] + (["config.activation"] if activation else [])
        metrics = _read_metrics(self.root / "metrics.csv.gz", list(dict.fromkeys(wanted)))
        n = len(metrics["step"])
        if n != self.data.shape[0]:
            raise ValueError(f"metrics.csv.gz has {n} rows, weights.npy {self.data.shape[0]}")
        rows = np.arange(n)
        if order_file is not None:
            rows = np.loadtxt(order_file, dtype=np.int64, delimiter=",", ndmin=1)
            if rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"{order_file}: row indices outside [0, {n})")
        if steps is not None:
            step = np.array([int(float(s)) for s in metrics["step"]])
            rows = rows[np.isin(step[rows], list(steps))]
        if split != "all":
            parts = nfn_split(len(rows))
            if split not in parts:
                raise ValueError(f"split {split!r}: expected all, train, val or test")
            rows = rows[np.asarray(parts[split], dtype=np.int64)]
        if activation is not None:
            act = np.array(metrics["config.activation"])
            rows = rows[act[rows] == activation]
        self.rows = rows
        self.targets = np.array(
            [[float(metrics[c][i]) for c in self.columns] for i in rows], dtype=np.float32
        ).reshape(len(rows), len(self.columns))
        self.dtype = dtype
        shapes = [tf_to_torch(np.empty(k.shape), "kernel").shape for k, _ in self.pairs]
        self.spec = (
            spec
            if spec is not None
            else (
                chain_spec(shapes, activation) if activation else chain_spec(shapes, group="perm")
            )
        )
        keys = [r.varname for pair in self.pairs for r in pair]
        if len(self.spec.tensors) != len(keys):
            raise ValueError(
                f"spec {self.spec.name}: {len(self.spec.tensors)} tensors, "
                f"layout.csv {len(keys)} variables"
            )
        self.space = WeightSpace(
            self.spec, {t.name: Source(k) for t, k in zip(self.spec.tensors, keys, strict=True)}
        )
        if len(rows):
            check_shapes(self.space, self.state_dict(0), str(self.root / "layout.csv"))

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        # a pickled memmap would carry the whole array (DataLoader workers under spawn):
        # pickle the path and map the file again on the other side
        state = dict(self.__dict__)
        state["data"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.data = np.load(self.root / "weights.npy", mmap_mode="r")

    def state_dict(self, index: int) -> dict[str, torch.Tensor]:
        """The network at ``index`` as ``{TF varname: tensor in torch layout}``."""
        row = np.asarray(self.data[self.rows[index]])  # reads this one row of the memmap
        if not np.isfinite(row).all():
            raise ValueError(f"weights.npy row {self.rows[index]} holds non-finite numbers")
        out = {}
        for r in self.layout:
            value = tf_to_torch(row[r.start : r.end].reshape(r.shape), r.kind)
            t = torch.from_numpy(np.array(value, order="C"))  # a writable copy
            out[r.varname] = t if self.dtype is None else t.to(self.dtype)
        return out

    def weights(self, index: int) -> Weights:
        """``{tensor: Tensor[1, *axes]}`` of the network at ``index``."""
        return {k: v[0] for k, v in self.space.to_weights([self.state_dict(index)]).items()}

    def __getitem__(self, index: int) -> Item:
        t = torch.from_numpy(self.targets[index])
        return self.weights(index), t[0] if self.scalar_target else t
