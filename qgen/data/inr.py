"""The SIREN INR zoos of DWSNets and NFN: one ``.pth`` state_dict per INR, read lazily.

* DWSNets (AvivNavon/DWSNets, ``experiments/data.py`` ``INRDataset`` and
  ``experiments/mnist/generate_data_splits.py``): a splits JSON
  ``{"train": {"path": [...], "label": [...]}, "val": {...}, "test": {...}}`` listing
  each INR's ``.pth`` and its class (labels stored as strings, read with ``int``). The
  INR is ``seq.0`` ... ``seq.L-1`` with keys ``seq.i.weight`` ``[out, in]`` and
  ``seq.i.bias``; sine layers ``sin(w0 (W x + b))`` with ``w0 = 30`` kept outside the
  weights, a linear last layer. (DWSNets itself transposes weights to ``[in, out]``;
  qgen keeps torch's ``[out, in]``.) Paths in the JSON are often absolute paths of the
  machine that wrote it: ``root`` re-bases them (see :class:`DWSNetsINRs`).
* NFN (AllanYangZhou/nfn ``SirenDataset``, also Neural Graphs'
  ``experiments/data_nfn.py``): files ``<root>/<prefix>_<digit>s/net<index>.pth``, the
  index from ``net(\\d+)\\.pth``, the label from ``_(\\d)s`` in the path; state_dict keys
  ordered ``weight, bias, weight, bias, ...``; indices must be ``0 .. n-1``; splits by
  two points ``(val_point, test_point)``: train ``[0, val)``, val ``[val, test)``, test
  ``[test, n)``. (The label pattern is matched on the path relative to ``root`` here, so
  a ``_3s`` in a parent directory's name cannot leak in.)

Both are plain chains of linear layers: their default weight space is the ``arch: mlp``
preset with ``activation: sin`` (hidden neurons permuted and sign-flipped;
``W1, b1, ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from qgen.data.adapters import WeightSpace
from qgen.data.chain import chain_space, check_shapes
from qgen.data.checkpoints import load_state_dict
from qgen.data.collate import Item, Weights
from qgen.spec import Spec

__all__ = ["DWSNetsINRs", "NFNSirens"]


class _INRFiles(Dataset):
    """INR files with integer labels; one ``.pth`` read per item."""

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        space: WeightSpace | None,
        spec: Spec | None,
        activation: str,
    ) -> None:
        if not files:
            raise ValueError("no INR files")
        self.files, self.labels = files, labels
        first = load_state_dict(files[0])
        self.space = space if space is not None else chain_space(first, spec, activation)
        check_shapes(self.space, first, str(files[0]))

    def __len__(self) -> int:
        return len(self.files)

    def weights(self, index: int) -> Weights:
        """``{tensor: Tensor[1, *axes]}`` of the INR at ``index``."""
        state = load_state_dict(self.files[index])
        return {k: v[0] for k, v in self.space.to_weights([state]).items()}

    def __getitem__(self, index: int) -> Item:
        return self.weights(index), torch.tensor(self.labels[index])


class DWSNetsINRs(_INRFiles):
    """DWSNets' INR zoo: ``split`` of the ``splits`` JSON.

    Relative paths are taken relative to ``root`` (default: the JSON's directory). An
    absolute path that does not exist is re-based onto ``root`` by its last
    ``relative_parts`` components, so a JSON written on another machine still works.
    The default 3 fits DWSNets' MNIST layout, ``<inr dir>/checkpoints/<file>.pth`` with
    the label in the INR directory's name (their split script reads it from
    ``p.parent.parent``); pass ``root`` = the directory holding those INR directories.
    """

    def __init__(
        self,
        splits: str | Path,
        split: str = "train",
        space: WeightSpace | None = None,
        *,
        spec: Spec | None = None,
        activation: str = "sin",
        root: str | Path | None = None,
        relative_parts: int = 3,
    ) -> None:
        splits = Path(splits)
        table = json.loads(splits.read_text())
        if split not in table:
            raise ValueError(f"{splits}: no split {split!r}; it has {sorted(table)}")
        entry = table[split]
        if not {"path", "label"} <= set(entry) or len(entry["path"]) != len(entry["label"]):
            raise ValueError(f"{splits}: split {split!r} needs equal-length 'path' and 'label'")
        base = Path(root) if root is not None else splits.parent
        files = [self._resolve(Path(p), base, relative_parts) for p in entry["path"]]
        try:
            labels = [int(label) for label in entry["label"]]
        except ValueError as exc:
            raise ValueError(f"{splits}: split {split!r} has a non-integer label") from exc
        super().__init__(files, labels, space, spec, activation)

    @staticmethod
    def _resolve(path: Path, base: Path, parts: int) -> Path:
        if not path.is_absolute():
            return base / path
        if path.exists():
            return path
        moved = base.joinpath(*path.parts[-parts:])
        if not moved.exists():
            raise FileNotFoundError(f"INR {path} not found, nor as {moved}")
        return moved


class NFNSirens(_INRFiles):
    """NFN's SIREN zoo: ``<root>/<prefix>_<digit>s/net<index>.pth``, in index order."""

    def __init__(
        self,
        root: str | Path,
        prefix: str = "randinit_test",
        split: str = "all",
        split_points: Sequence[int] | None = None,
        space: WeightSpace | None = None,
        *,
        spec: Spec | None = None,
        activation: str = "sin",
    ) -> None:
        root = Path(root)
        found: dict[int, tuple[Path, int]] = {}
        for path in root.glob(f"{prefix}_*/*.pth"):
            rel = path.relative_to(root).as_posix()
            idx, label = re.search(r"net(\d+)\.pth", path.name), re.search(r"_(\d)s", rel)
            if idx is None or label is None:
                raise ValueError(f"{path}: expected <prefix>_<digit>s/net<index>.pth")
            if int(idx.group(1)) in found:
                raise ValueError(f"{path}: index {idx.group(1)} appears twice")
            found[int(idx.group(1))] = (path, int(label.group(1)))
        if not found:
            raise FileNotFoundError(f"no {prefix}_*/*.pth under {root}")
        if sorted(found) != list(range(len(found))):
            raise ValueError(f"{root}: net indices are not 0..{len(found) - 1}")
        order = list(range(len(found)))
        if split != "all":
            if split_points is None or len(split_points) != 2:
                raise ValueError("split train/val/test needs split_points=(val, test)")
            val, test = split_points
            ranges = {"train": (0, val), "val": (val, test), "test": (test, len(found))}
            if split not in ranges:
                raise ValueError(f"split {split!r}: expected all, train, val or test")
            order = order[slice(*ranges[split])]
        files = [found[i][0] for i in order]
        labels = [found[i][1] for i in order]
        super().__init__(files, labels, space, spec, activation)
