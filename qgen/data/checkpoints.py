"""A directory of checkpoints as a weight-space dataset.

Files matching a glob under ``root`` (sorted by path), each a torch state_dict
(``.pt``/``.pth``, read with ``torch.load(weights_only=True)``: tensors only, no pickled
code runs) or a ``.safetensors`` file (needs the optional ``safetensors`` package: extra
``data``). Each is read when its item is asked for, so the zoo never sits in memory. Targets come
from a metadata CSV with a file column (paths relative to ``root``, as the glob gives
them) and one or more target columns.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from qgen.data.adapters import WeightSpace
from qgen.data.chain import chain_space, check_shapes
from qgen.data.collate import Item, Weights
from qgen.spec import Spec

__all__ = ["CheckpointDataset", "load_state_dict", "read_targets"]


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one checkpoint file, on the CPU, in the file's key order.

    ``.safetensors`` via ``safetensors.torch.load_file``; anything else via
    ``torch.load(..., weights_only=True)``, which also unwraps ``{"state_dict": ...}``.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise ImportError(
                f"{path}: reading .safetensors needs the safetensors package "
                "(pip install 'qgen[data]' or pip install safetensors)"
            ) from exc
        return dict(load_file(str(path), device="cpu"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many kinds
        raise ValueError(
            f"{path}: not a tensors-only torch checkpoint ({exc}); save the model's "
            "state_dict() rather than the model object"
        ) from exc
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors)")
    return dict(state)


def read_targets(
    path: str | Path, file_column: str, columns: Sequence[str]
) -> dict[str, list[float]]:
    """``{file: [value per target column]}`` from a CSV with a header row."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in (file_column, *columns) if c not in header]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing}; the header has {header}")
        out: dict[str, list[float]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                values = [float(row[c]) for c in columns]
            except ValueError as exc:
                raise ValueError(f"{path}, line {line}: target not a number ({exc})") from exc
            key = Path(row[file_column]).as_posix()
            if key in out:
                raise ValueError(f"{path}, line {line}: file {key} listed twice")
            out[key] = values
    return out


class CheckpointDataset(Dataset):
    """Checkpoints under ``root`` matching ``pattern``, as ``(weights, target)`` items.

    ``space`` says where each spec tensor lives in a checkpoint (e.g. from
    :func:`qgen.frommodel.reader.weight_space_from_module` of the model class); without it the
    checkpoints must be plain chains and get :func:`qgen.data.chain.chain_space`'s spec
    (``spec`` overrides that spec). That spec's group depends on the networks'
    activation (ReLU: scalings, tanh: sign flips, augmenting a tanh zoo with ReLU's
    scalings changes the networks' functions), so it is never guessed: pass
    ``activation`` (``"relu"``, ``"tanh"``, ``"sin"``, ``"gelu"``, ...), or give the
    metadata CSV an ``activation_column`` (default ``activation``): one value for all
    matched files is used; several values give the group they share, permutations.

    ``metadata``: a CSV whose ``file_column`` holds each file's path relative to ``root``
    and whose ``target`` column(s) the target (one column: a scalar, several: a vector,
    as ``target_dtype``). Every matched file must have a row; rows for other files are
    ignored (one CSV may serve several globs). Without metadata the target is None.
    """

    def __init__(
        self,
        root: str | Path,
        pattern: str = "*.pt",
        space: WeightSpace | None = None,
        *,
        spec: Spec | None = None,
        activation: str | None = None,
        metadata: str | Path | None = None,
        target: str | Sequence[str] = "target",
        file_column: str = "file",
        activation_column: str = "activation",
        target_dtype: torch.dtype = torch.float32,
        loader: Callable[[Path], Mapping[str, torch.Tensor]] = load_state_dict,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"checkpoint directory {self.root} does not exist")
        self.files = sorted(p for p in self.root.glob(pattern) if p.is_file())
        if not self.files:
            raise FileNotFoundError(f"no files match {pattern!r} under {self.root}")
        self.loader = loader
        self.target_dtype = target_dtype
        columns = [target] if isinstance(target, str) else list(target)
        self.scalar_target = isinstance(target, str)
        self.targets: list[list[float]] | None = None
        if metadata is not None:
            table = read_targets(metadata, file_column, columns)
            rel = [p.relative_to(self.root).as_posix() for p in self.files]
            missing = [r for r in rel if r not in table]
            if missing:
                raise ValueError(
                    f"{metadata}: no row for {len(missing)} matched file(s), e.g. "
                    f"{missing[:3]} (the {file_column!r} column holds paths relative to "
                    f"{self.root})"
                )
            self.targets = [table[r] for r in rel]
        first = self.loader(self.files[0])
        if space is None:
            group = None
            if spec is None and activation is None:
                activation, group = self._activation(metadata, file_column, activation_column)
            space = chain_space(first, spec, activation or "relu", group)
        self.space = space
        check_shapes(self.space, first, str(self.files[0]))

    def _activation(self, metadata, file_column: str, column: str) -> tuple[str, str | None]:
        """The activation from the metadata's ``column`` (one value), or ``("relu",
        "perm")`` when the files have several; an error when there is none."""
        values = set()
        if metadata is not None:
            with open(metadata, newline="") as f:
                reader = csv.DictReader(f)
                if column in (reader.fieldnames or []):
                    rel = {p.relative_to(self.root).as_posix() for p in self.files}
                    values = {
                        row[column].strip()
                        for row in reader
                        if Path(row[file_column]).as_posix() in rel
                    }
        if not values:
            raise ValueError(
                "CheckpointDataset: pass activation= (e.g. 'relu', 'tanh', 'sin', 'gelu'): "
                "the hidden neurons' symmetry depends on it, and a wrong one corrupts "
                f"augmented networks; or add an {column!r} column to the metadata CSV, or "
                "pass spec= or a WeightSpace"
            )
        if len(values) == 1:
            return values.pop(), None
        return "relu", "perm"  # several activations: the permutations they all allow

    def __len__(self) -> int:
        return len(self.files)

    def weights(self, index: int) -> Weights:
        """The network at ``index`` as ``{tensor: Tensor[1, *axes]}``."""
        path = self.files[index]
        state = self.loader(path)
        try:
            batch = self.space.to_weights([state])
        except KeyError as exc:
            raise ValueError(f"{path}: no entry {exc} (expected by the weight space)") from exc
        return {k: v[0] for k, v in batch.items()}

    def __getitem__(self, index: int) -> Item:
        target = None
        if self.targets is not None:
            t = torch.tensor(self.targets[index], dtype=self.target_dtype)
            target = t[0] if self.scalar_target else t
        return self.weights(index), target
