"""qgen.data: synthetic zoos written in the real formats, read back exactly.

No zoo can be downloaded here, so each test writes a few tiny networks to ``tmp_path``
in exactly the on-disk layout of its source (state_dict directories with a metadata
CSV, the Small CNN Zoo's weights.npy/layout.csv/metrics.csv.gz with TF layouts, the
DWSNets and NFN SIREN directories) and checks that every number comes back unchanged,
in torch's layout, and that the networks still compute the same functions.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

import qgen
from generated import inr_sine
from qgen.data import (
    CheckpointDataset,
    DWSNetsINRs,
    InMemoryWeights,
    NFNSirens,
    RandomGroupAction,
    SmallCNNZoo,
    Transformed,
    collate,
    nfn_split,
    tf_to_torch,
    weight_statistics,
)
from qgen.data.collate import stack_weights
from qgen.frommodel.reader import weight_space_from_module

# ------------------------------------------------------------------------------------
# (a) a directory of checkpoints


def _mlp(seed: int, widths=(3, 5, 4, 2)) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _write_checkpoints(root, n: int, safetensors: bool = False):
    models, rows = [], []
    (root / "nets").mkdir()
    for i in range(n):
        model = _mlp(i)
        rel = f"nets/net_{i:02d}." + ("safetensors" if safetensors and i % 2 else "pt")
        if rel.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(model.state_dict(), str(root / rel))
        else:
            torch.save(model.state_dict(), root / rel)
        models.append(model)
        rows.append({"file": rel, "acc": 0.5 + i / 100, "loss": float(i) * 0.25})
    rows.append({"file": "nets/not_matched.pt", "acc": 0.0, "loss": 0.0})  # extra rows are fine
    with open(root / "meta.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "acc", "loss"])
        writer.writeheader()
        writer.writerows(rows)
    return models


def test_checkpoint_directory_round_trips_values_and_targets(tmp_path):
    models = _write_checkpoints(tmp_path, 5)
    ds = CheckpointDataset(
        tmp_path, "nets/*.pt", activation="relu", metadata=tmp_path / "meta.csv", target="acc"
    )
    assert len(ds) == 5
    assert [str(t) for t in ds.space.spec.tensors][:2] == ["W1: [h1, x*]", "b1: [h1]"]
    for i, model in enumerate(models):
        weights, target = ds[i]
        params = list(model.state_dict().values())
        for name, p in zip(["W1", "b1", "W2", "b2", "W3", "b3"], params, strict=True):
            assert weights[name].shape == (1, *p.shape)
            assert torch.equal(weights[name][0], p)
        assert target.dtype == torch.float32 and target.item() == pytest.approx(0.5 + i / 100)
    # several target columns give a vector; a DataLoader batches into the layers' layout
    ds2 = CheckpointDataset(
        tmp_path, "nets/*.pt", activation="relu", metadata=tmp_path / "meta.csv",
        target=["acc", "loss"],
    )
    x, y = next(iter(DataLoader(ds2, batch_size=4, collate_fn=collate)))
    assert y.shape == (4, 2) and y[3, 1].item() == 0.75
    assert x["W2"].shape == (4, 1, 4, 5)
    space = qgen.compile(ds2.space.spec)
    assert space.sizes_of(x) == {"x": 3, "h1": 5, "h2": 4, "y": 2}  # the layers' layout
    out = space.EquivariantLayer(1, 3)(x)
    assert out["W2"].shape == (4, 3, 4, 5)


def test_checkpoints_with_a_weight_space_load_back_into_the_model(tmp_path):
    models = _write_checkpoints(tmp_path, 3)
    space = weight_space_from_module(models[0])
    ds = CheckpointDataset(tmp_path, "nets/*.pt", space)
    x = collate([ds[i] for i in range(3)])[0]
    assert x["p2_weight"].shape == (3, 1, 4, 5)
    states = space.to_state_dicts(x, models[0].state_dict())
    inp = torch.randn(7, 3)
    for model, state in zip(models, states, strict=True):
        clone = _mlp(99)
        clone.load_state_dict(state)
        assert torch.equal(clone(inp), model(inp))


def test_safetensors_checkpoints_read_like_torch_ones(tmp_path):
    pytest.importorskip("safetensors")
    models = _write_checkpoints(tmp_path, 4, safetensors=True)
    ds = CheckpointDataset(
        tmp_path, "nets/*", activation="relu", metadata=tmp_path / "meta.csv", target="acc"
    )
    assert [p.suffix for p in ds.files] == [".pt", ".safetensors", ".pt", ".safetensors"]
    for i, model in enumerate(models):
        assert torch.equal(ds[i][0]["W3"][0], model[4].weight)


def test_a_zoo_of_safetensors_files_alone_reads_in_layer_order(tmp_path):
    """safetensors stores keys sorted by name (``0.bias, 0.weight, 10.bias, ...``): the
    chain is put back in layer order, ``10`` after ``2``."""
    pytest.importorskip("safetensors")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    widths = [3, 5, 4, 6, 5, 4, 3, 4, 5, 4, 3, 2]  # 11 layers: keys 0 .. 10
    model = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths, widths[1:], strict=False)))
    (tmp_path / "nets").mkdir()
    save_file(model.state_dict(), str(tmp_path / "nets" / "a.safetensors"))
    ds = CheckpointDataset(tmp_path, "nets/*.safetensors", activation="tanh")
    weights, _ = ds[0]
    for i, layer in enumerate(model):
        assert torch.equal(weights[f"W{i + 1}"][0], layer.weight)
        assert torch.equal(weights[f"b{i + 1}"][0], layer.bias)
    assert ds.space.spec.types["h1"].kind == "signed"


def test_the_activation_is_never_guessed(tmp_path):
    """A tanh zoo read with ReLU's group would be augmented with positive scalings, which
    change tanh networks: the dataset asks for the activation, or reads it from the
    metadata (several activations: permutations, which every activation allows)."""
    _write_checkpoints(tmp_path, 3)
    with pytest.raises(ValueError, match="pass activation="):
        CheckpointDataset(tmp_path, "nets/*.pt", metadata=tmp_path / "meta.csv", target="acc")
    ds = CheckpointDataset(tmp_path, "nets/*.pt", activation="tanh")
    assert ds.space.spec.types["h1"].kind == "signed"
    for acts, kind in ((["tanh"] * 3, "signed"), (["tanh", "relu", "tanh"], "perm")):
        with open(tmp_path / "acts.csv", "w") as f:
            f.write("file,acc,activation\n")
            f.writelines(f"nets/net_{i:02d}.pt,0.5,{a}\n" for i, a in enumerate(acts))
        ds = CheckpointDataset(tmp_path, "nets/*.pt", metadata=tmp_path / "acts.csv", target="acc")
        assert ds.space.spec.types["h1"].kind == kind


def test_checkpoint_errors_say_what_and_where(tmp_path):
    _write_checkpoints(tmp_path, 2)
    with pytest.raises(FileNotFoundError, match="no files match"):
        CheckpointDataset(tmp_path, "nets/*.pth")
    with open(tmp_path / "short.csv", "w") as f:
        f.write("file,acc\nnets/net_00.pt,0.5\n")
    with pytest.raises(ValueError, match=r"no row for 1 matched file.*net_01\.pt"):
        CheckpointDataset(tmp_path, "nets/*.pt", metadata=tmp_path / "short.csv", target="acc")
    with pytest.raises(ValueError, match=r"no column\(s\) \['accuracy'\]"):
        CheckpointDataset(tmp_path, "nets/*.pt", metadata=tmp_path / "meta.csv", target="accuracy")
    torch.save(_mlp(0, widths=(3, 6, 4, 2)).state_dict(), tmp_path / "nets" / "net_09.pt")
    ds = CheckpointDataset(
        tmp_path, "nets/*.pt", spec=qgen.parse_spec("name: m\narch: mlp\nwidths: [3, 5, 4, 2]\n")
    )
    with pytest.raises(ValueError, match="no entry|expects"):
        from qgen.data.chain import check_shapes

        check_shapes(ds.space, torch.load(ds.files[-1]), "net_09")


def test_collate_refuses_mixed_architectures():
    a = {"W": torch.zeros(1, 2, 3)}
    with pytest.raises(ValueError, match="tensor W has shapes"):
        stack_weights([a, {"W": torch.zeros(1, 3, 3)}])
    with pytest.raises(ValueError, match="item 1 has tensors"):
        stack_weights([a, {"V": torch.zeros(1, 2, 3)}])


# ------------------------------------------------------------------------------------
# (b) the Small CNN Zoo (TF layouts in a flat weights.npy)

CIN, CH, KS, CLASSES = 2, (3, 4, 5), 3, 6
STEPS = (0, 1, 20, 86)


def _tf_cnn(rng) -> dict[str, np.ndarray]:
    """One random CNN in TF's layout: conv kernels HWIO, dense kernel (in, out)."""
    out, cin = {}, CIN
    for i, c in enumerate(CH):
        name = "conv2d" if i == 0 else f"conv2d_{i}"
        out[f"sequential/{name}/kernel:0"] = rng.standard_normal((KS, KS, cin, c))
        out[f"sequential/{name}/bias:0"] = rng.standard_normal(c)
        cin = c
    out["sequential/dense/kernel:0"] = rng.standard_normal((cin, CLASSES))
    out["sequential/dense/bias:0"] = rng.standard_normal(CLASSES)
    return {k: v.astype(np.float32) for k, v in out.items()}


def _write_cnn_zoo(root, networks: int = 6, seed: int = 0):
    """``networks`` CNNs, each at every step of STEPS (rows interleaved), zoo format."""
    rng = np.random.default_rng(seed)
    nets, rows, metrics = [], [], []
    for k in range(networks):
        act = "relu" if k % 2 == 0 else "tanh"
        for s in STEPS:
            net = _tf_cnn(rng)
            nets.append(net)
            rows.append(np.concatenate([v.ravel() for v in net.values()]))
            metrics.append({"step": s, "test_accuracy": rng.uniform(), "config.activation": act})
    np.save(root / "weights.npy", np.stack(rows))
    with open(root / "layout.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["varname", "start_idx", "end_idx", "shape"])
        start = 0
        for name, v in nets[0].items():
            writer.writerow([name, start, start + v.size, str(v.shape)])
            start += v.size
    with gzip.open(root / "metrics.csv.gz", "wt", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "test_accuracy", "config.activation"])
        writer.writeheader()
        writer.writerows(metrics)
    return nets, metrics


def _tf_forward(net: dict[str, np.ndarray], x_nhwc: np.ndarray) -> np.ndarray:
    """The TF-layout CNN in numpy: VALID stride-2 convs + ReLU, average pool, dense."""
    h = x_nhwc.astype(np.float64)
    names = list(net)
    for i in range(len(CH)):
        k, b = net[names[2 * i]].astype(np.float64), net[names[2 * i + 1]].astype(np.float64)
        kh, kw = k.shape[:2]
        oh, ow = (h.shape[1] - kh) // 2 + 1, (h.shape[2] - kw) // 2 + 1
        out = np.zeros((h.shape[0], oh, ow, k.shape[3]))
        for a in range(kh):
            for c in range(kw):
                patch = h[:, a : a + 2 * oh : 2, c : c + 2 * ow : 2, :]
                out += np.einsum("nijc,co->nijo", patch, k[a, c])
        h = np.maximum(out + b, 0)
    h = h.mean(axis=(1, 2))
    return h @ net[names[-2]].astype(np.float64) + net[names[-1]].astype(np.float64)


def _torch_forward(w: dict[str, torch.Tensor], x_nchw: torch.Tensor) -> torch.Tensor:
    h = x_nchw
    for i in range(1, len(CH) + 1):
        h = torch.relu(F.conv2d(h, w[f"K{i}"][0].double(), w[f"b{i}"][0].double(), stride=2))
    return F.linear(h.mean((2, 3)), w["W"][0].double(), w["b"][0].double())


def test_cnn_zoo_transposes_tf_layouts_into_a_network_that_computes_the_same(tmp_path):
    nets, metrics = _write_cnn_zoo(tmp_path)
    ds = SmallCNNZoo(tmp_path, steps=None)
    assert isinstance(ds.data, np.memmap)  # rows are read on demand
    assert len(ds) == len(nets)
    x = np.random.default_rng(1).standard_normal((4, 19, 23, CIN))
    for i in (0, 5, len(nets) - 1):
        weights, target = ds[i]
        assert target.item() == pytest.approx(metrics[i]["test_accuracy"], rel=1e-6)
        tf = list(nets[i].values())
        # exact values, torch layouts
        assert torch.equal(weights["K2"][0], torch.from_numpy(tf[2].transpose(3, 2, 0, 1)))
        assert weights["K1"].shape == (1, CH[0], CIN, KS, KS)
        assert torch.equal(weights["W"][0], torch.from_numpy(tf[6].T.copy()))
        assert torch.equal(weights["b"][0], torch.from_numpy(tf[7]))
        ours = _torch_forward(weights, torch.from_numpy(x).permute(0, 3, 1, 2))
        np.testing.assert_allclose(ours.numpy(), _tf_forward(nets[i], x), rtol=0, atol=1e-10)


def test_cnn_zoo_pickles_without_its_weights_and_maps_them_again(tmp_path):
    nets, _ = _write_cnn_zoo(tmp_path, networks=30)
    ds = SmallCNNZoo(tmp_path, steps=None)
    blob = pickle.dumps(ds)
    assert len(blob) < (tmp_path / "weights.npy").stat().st_size / 4
    again = pickle.loads(blob)
    assert isinstance(again.data, np.memmap)
    assert all(torch.equal(again[7][0][k], ds[7][0][k]) for k in ds[7][0])


def test_tf_to_torch_is_the_axis_permutation_and_refuses_other_ranks():
    k = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # [kh, kw, in, out]
    t = tf_to_torch(k, "kernel")
    assert t.shape == (5, 4, 2, 3) and t[4, 3, 1, 2] == k[1, 2, 3, 4]
    with pytest.raises(ValueError, match="HWIO"):
        tf_to_torch(np.zeros((2, 2, 2)), "kernel")


def test_cnn_zoo_step_filter_order_file_split_and_activation(tmp_path):
    nets, metrics = _write_cnn_zoo(tmp_path, networks=10)
    final = SmallCNNZoo(tmp_path)  # default: the final step, 86, as NFN keeps
    keep = [i for i, m in enumerate(metrics) if m["step"] == 86]
    assert final.rows.tolist() == keep
    early = SmallCNNZoo(tmp_path, steps=(0, 1))
    assert sorted(metrics[i]["step"] for i in early.rows) == [0] * 10 + [1] * 10
    # NFN's order: reorder rows by the shuffle file first, then filter, then split
    order = np.random.default_rng(3).permutation(len(metrics))
    np.savetxt(tmp_path / "split.csv", order, fmt="%d")
    parts = {
        s: SmallCNNZoo(tmp_path, s, order_file=tmp_path / "split.csv").rows
        for s in ("train", "val", "test")
    }
    kept = [i for i in order if metrics[i]["step"] == 86]
    assert parts["test"].tolist() == kept[5:]
    assert sorted(parts["train"].tolist() + parts["val"].tolist()) == sorted(kept[:5])
    assert len(parts["train"]) == 4 and len(parts["val"]) == 1
    relu_test = SmallCNNZoo(tmp_path, "test", order_file=tmp_path / "split.csv", activation="relu")
    assert set(relu_test.rows) <= set(parts["test"])
    assert all(metrics[i]["config.activation"] == "relu" for i in relu_test.rows)
    assert relu_test.spec.types["c1"].kind == "scaled"  # relu: the scaled group
    assert final.spec.types["c1"].kind == "perm"  # mixed activations: permutations only


def test_nfn_split_matches_its_definition():
    parts = nfn_split(101)
    assert parts["test"] == list(range(50, 101))
    assert len(parts["train"]) == 40 and len(parts["val"]) == 10
    assert sorted(parts["train"] + parts["val"]) == list(range(50))
    assert nfn_split(101) == parts  # seeded: the same split every time


def test_cnn_zoo_feeds_generated_layers_and_its_group_keeps_the_function(tmp_path):
    nets, _ = _write_cnn_zoo(tmp_path, networks=2)
    ds = SmallCNNZoo(tmp_path, steps=None, activation="relu")
    space = qgen.compile(ds.spec)
    x, y = collate([ds[i] for i in range(len(ds))])
    assert space.EquivariantLayer(1, 2)(x)["K3"].shape == (len(ds), 2, CH[2], CH[1], KS, KS)
    # a random element of the zoo's group (channel permutations, positive scalings) keeps
    # what each network computes
    moved = RandomGroupAction(space, torch.Generator().manual_seed(0))
    img = torch.randn(3, CIN, 19, 23, dtype=torch.float64)
    w0 = ds[0][0]
    w1 = moved(w0)
    assert not torch.equal(w1["K1"], w0["K1"])
    torch.testing.assert_close(
        _torch_forward(w1, img), _torch_forward(w0, img), rtol=1e-5, atol=1e-5
    )


# ------------------------------------------------------------------------------------
# (c) the DWSNets and NFN SIREN INR zoos


class _DWSInr(nn.Module):
    """DWSNets' INR layout: ``seq.i`` layers, sine hidden layers, a linear last layer."""

    def __init__(self, hidden: int = 6) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            nn.Linear(2, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.seq[:-1]:
            x = torch.sin(30 * layer(x))
        return self.seq[-1](x) + 0.5


def _siren_forward(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    for i in (1, 2):
        x = torch.sin(30 * F.linear(x, w[f"W{i}"][0], w[f"b{i}"][0]))
    return F.linear(x, w["W3"][0], w["b3"][0]) + 0.5


def test_dwsnets_splits_json_with_foreign_absolute_paths(tmp_path):
    torch.manual_seed(0)
    inrs, table = [], {s: {"path": [], "label": []} for s in ("train", "val", "test")}
    for i in range(6):
        split = ("train", "train", "train", "val", "test", "test")[i]
        part = "testing" if split == "test" else "training"
        rel = f"mnist_png_{part}_{i % 10}_{100 + i}/checkpoints/model_final.pth"
        (tmp_path / "inrs" / rel).parent.mkdir(parents=True)
        inr = _DWSInr().double()
        torch.save(inr.state_dict(), tmp_path / "inrs" / rel)
        inrs.append(inr)
        table[split]["path"].append("/home/someone/dwsnets/dataset/" + rel)  # another machine
        table[split]["label"].append(str(i % 10))
    (tmp_path / "mnist_splits.json").write_text(json.dumps(table))
    with pytest.raises(FileNotFoundError, match="not found, nor as"):
        DWSNetsINRs(tmp_path / "mnist_splits.json", "train")  # root defaults to the JSON's dir
    ds = DWSNetsINRs(tmp_path / "mnist_splits.json", "train", root=tmp_path / "inrs")
    assert len(ds) == 3 and [ds[i][1].item() for i in range(3)] == [0, 1, 2]
    test = DWSNetsINRs(tmp_path / "mnist_splits.json", "test", root=tmp_path / "inrs")
    coords = torch.rand(9, 2, dtype=torch.float64) * 2 - 1
    for j, i in enumerate((4, 5)):
        w, label = test[j]
        assert label.item() == i and torch.equal(w["W2"][0], inrs[i].seq[1].weight)
        assert torch.equal(_siren_forward(w, coords), inrs[i](coords))
    with pytest.raises(ValueError, match="no split 'holdout'"):
        DWSNetsINRs(tmp_path / "mnist_splits.json", "holdout", root=tmp_path / "inrs")


def _write_nfn_sirens(root, n: int = 7, prefix: str = "randinit_test"):
    torch.manual_seed(1)
    labels, inrs = [], []
    for i in range(n):
        label = (3 * i) % 10
        d = root / f"{prefix}_{label}s"
        d.mkdir(exist_ok=True)
        inr = _DWSInr().double()
        state = {
            f"net.{j}.linear.{p}": v
            for j, layer in enumerate(inr.seq)
            for p, v in (("weight", layer.weight), ("bias", layer.bias))
        }
        torch.save({k: v.detach().clone() for k, v in state.items()}, d / f"net{i}.pth")
        labels.append(label)
        inrs.append(inr)
    return inrs, labels


def test_nfn_sirens_index_order_labels_and_split_points(tmp_path):
    root = tmp_path / "zoo_5s_dir"  # a "_5s" outside the zoo must not be read as a label
    root.mkdir()
    inrs, labels = _write_nfn_sirens(root)
    ds = NFNSirens(root)
    assert [ds[i][1].item() for i in range(len(ds))] == labels
    coords = torch.rand(5, 2, dtype=torch.float64)
    for i in range(len(ds)):
        assert torch.equal(_siren_forward(ds[i][0], coords), inrs[i](coords))
    test = NFNSirens(root, split="test", split_points=(4, 6))
    assert [t.item() for _, t in (test[0],)] == [labels[6]] and len(test) == 1
    assert len(NFNSirens(root, split="val", split_points=(4, 6))) == 2
    zero = root / "randinit_test_0s"
    (zero / "net9.pth").write_bytes((zero / "net0.pth").read_bytes())
    with pytest.raises(ValueError, match=r"not 0\.\.7"):
        NFNSirens(root)


def test_inr_augmentation_by_sign_flips_and_permutations_keeps_the_function(tmp_path):
    inrs, _ = _write_nfn_sirens(tmp_path, n=3)
    ds = Transformed(NFNSirens(tmp_path), RandomGroupAction(inr_sine))
    coords = torch.rand(8, 2, dtype=torch.float64)
    torch.manual_seed(5)
    for i in range(3):
        w, _ = ds[i]
        assert not torch.equal(w["W2"][0], inrs[i].seq[1].weight)
        torch.testing.assert_close(_siren_forward(w, coords), inrs[i](coords), rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------
# statistics and in-memory data


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), batch=st.integers(1, 17), seed=st.integers(0, 2**31 - 1))
def test_streaming_statistics_equal_the_direct_ones(n, batch, seed):
    gen = torch.Generator().manual_seed(seed)
    x = {
        "W": torch.randn(n, 1, 3, 4, generator=gen, dtype=torch.float64) * 3 + 1,
        "b": torch.rand(n, 1, 3, generator=gen, dtype=torch.float64),
    }
    stats = weight_statistics(InMemoryWeights(x), batch_size=batch)
    for k, v in x.items():
        s = stats[k]
        assert s.count == n
        assert math.isclose(s.mean, float(v.mean()), rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(s.rms, float(v.square().mean().sqrt()), rel_tol=1e-12)
        assert math.isclose(s.std, float(v.std(correction=0)), rel_tol=1e-10, abs_tol=1e-12)
        torch.testing.assert_close(s.entry_mean, v.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s.entry_std, v.std(0, correction=0), rtol=1e-10, atol=1e-12)


def test_statistics_over_a_cnn_zoo_stream_through_a_dataloader(tmp_path):
    _write_cnn_zoo(tmp_path, networks=3)
    ds = SmallCNNZoo(tmp_path, steps=None, dtype=torch.float64)
    stats = weight_statistics(ds, batch_size=5)
    all_k2 = torch.stack([ds[i][0]["K2"] for i in range(len(ds))])
    assert stats["K2"].count == len(ds)
    assert math.isclose(stats["K2"].rms, float(all_k2.square().mean().sqrt()), rel_tol=1e-12)
    assert stats["K2"].entry_mean.shape == (1, CH[1], CH[0], KS, KS)


def test_in_memory_weights_round_trip_through_collate():
    x = {"W": torch.randn(5, 1, 2, 3), "b": torch.randn(5, 1, 2)}
    y = torch.arange(5)
    bx, by = collate([InMemoryWeights(x, y)[i] for i in (4, 0, 2)])
    assert torch.equal(bx["W"], x["W"][[4, 0, 2]]) and torch.equal(by, y[[4, 0, 2]])
    with pytest.raises(ValueError, match=r"expected \[networks, 1, \*axes\]"):
        InMemoryWeights({"W": torch.randn(5, 2, 3)})
