"""Default weight spaces for plain chains of layers (MLPs, INRs, small CNNs).

A chain is ``[(weight, bias), ...]`` in layer order, with torch layouts: ``[out, in]`` for
a linear layer, ``[out, in, kh, kw]`` for a convolution (NFN's and DWSNets' convention
that the state_dict order is ``0.weight, 0.bias, 1.weight, 1.bias, ...``). Its spec comes
from qgen's presets, so the tensor names are the presets' own:

* all layers linear: ``arch: mlp`` -> ``W1, b1, ..., WL, bL``;
* convolutions then one linear head (global average pooling between): ``arch: cnn`` ->
  ``K1, b1, ..., KL, bL, W, b``.

Anything else (residual blocks, normalization, attention) needs its own spec: build a
:class:`~qgen.data.adapters.WeightSpace` (e.g. with
:func:`qgen.frommodel.reader.weight_space_from_module`) and pass that to the dataset instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch

from qgen.data.adapters import Source, WeightSpace
from qgen.spec import Spec, parse_spec

__all__ = ["chain_keys", "chain_space", "chain_spec", "check_shapes"]


def chain_keys(state: Mapping[str, torch.Tensor]) -> list[tuple[str, str]]:
    """``[(weight_key, bias_key), ...]`` from a state_dict ordered ``w, b, w, b, ...``.

    A file whose keys come sorted by name (``.safetensors`` stores them so:
    ``0.bias, 0.weight, 10.bias, ..., 2.bias``) is put back in layer order: the keys are
    paired by their module prefix and the layers ordered by that prefix read as
    numbers where it has numbers (``layers.2`` before ``layers.10``).
    Keys that end neither in ``weight`` nor ``bias`` (buffers) are an error: such a
    network is not a plain chain.
    """
    keys = list(state)
    if not _is_chain_order(keys):
        keys = _layer_order(keys)
    pairs = []
    for i in range(0, len(keys), 2):
        w, b = keys[i], keys[i + 1] if i + 1 < len(keys) else None
        if not w.endswith("weight") or b is None or not b.endswith("bias"):
            raise ValueError(
                f"state_dict keys {keys[i : i + 2]} at position {i}: expected a "
                "'...weight', '...bias' pair (a plain chain of layers with biases); for "
                "another architecture pass a WeightSpace for it"
            )
        pairs.append((w, b))
    return pairs


def _is_chain_order(keys: list[str]) -> bool:
    return len(keys) % 2 == 0 and all(
        keys[i].endswith("weight") and keys[i + 1].endswith("bias") for i in range(0, len(keys), 2)
    )


def _natural(text: str) -> list:
    """``layers.10.weight`` after ``layers.2.weight``: digit runs compare as numbers."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p]


def _layer_order(keys: list[str]) -> list[str]:
    """``w, b, w, b, ...`` by module prefix in natural order, when every prefix has
    exactly one weight and one bias; else the keys as they are (the caller refuses)."""
    prefixes: dict[str, dict[str, str]] = {}
    for k in keys:
        prefix, _, leaf = k.rpartition(".")
        kind = "weight" if leaf.endswith("weight") else "bias" if leaf.endswith("bias") else None
        if kind is None or kind in prefixes.setdefault(prefix, {}):
            return keys
        prefixes[prefix][kind] = k
    if any(len(v) != 2 for v in prefixes.values()):
        return keys
    return [prefixes[p][k] for p in sorted(prefixes, key=_natural) for k in ("weight", "bias")]


def chain_spec(
    weight_shapes: Sequence[Sequence[int]],
    activation: str = "relu",
    name: str = "chain",
    group: str | None = None,
) -> Spec:
    """The preset spec of a chain with these weight shapes (torch layout).

    ``activation`` decides the hidden neurons' group (``relu``: permutations with positive
    scalings, ``tanh``/``sin``: with sign flips; see ``qgen.spec.presets.ACTIVATION_GROUPS``);
    ``group`` overrides it (e.g. ``perm`` for a zoo of several activations).
    """
    shapes = [tuple(int(n) for n in s) for s in weight_shapes]
    if not shapes:
        raise ValueError("chain_spec: no layers")
    for i, (a, b) in enumerate(zip(shapes, shapes[1:], strict=False)):
        if b[1] != a[0]:
            raise ValueError(
                f"layer {i + 2} takes {b[1]} inputs but layer {i + 1} has {a[0]} outputs"
            )
    extra = f"group: {group}\n" if group is not None else ""
    if all(len(s) == 2 for s in shapes):
        widths = [shapes[0][1], *(s[0] for s in shapes)]
        text = f"name: {name}\narch: mlp\nwidths: {widths}\nactivation: {activation}\n" + extra
    elif all(len(s) == 4 for s in shapes[:-1]) and len(shapes[-1]) == 2 and len(shapes) > 1:
        if any(s[2] != s[3] for s in shapes[:-1]):
            raise ValueError(f"chain_spec: non-square kernels {shapes[:-1]}; write a spec")
        channels = [shapes[0][1], *(s[0] for s in shapes[:-1])]
        kernels = [s[2] for s in shapes[:-1]]
        text = (
            f"name: {name}\narch: cnn\nchannels: {channels}\nkernel: {kernels}\n"
            f"classes: {shapes[-1][0]}\nactivation: {activation}\n" + extra
        )
    else:
        raise ValueError(
            f"chain_spec: weight shapes {shapes} are neither all linear nor convolutions "
            "followed by one linear layer; write a spec for this architecture"
        )
    return parse_spec(text, source=f"<{name}>")


def check_shapes(space: WeightSpace, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise if a tensor read from ``state`` does not have its spec's sizes."""
    for t in space.spec.tensors:
        try:
            value = space.sources[t.name].read(state)
        except KeyError as exc:
            raise ValueError(f"{where}: no entry {exc} for spec tensor {t.name}") from exc
        want = tuple(space.spec.types[a.type].size for a in t.axes)
        got = tuple(value.shape)
        wrong = len(got) != len(want) or any(
            w is not None and w != g for w, g in zip(want, got, strict=True)
        )
        if wrong:
            shown = ", ".join(str(a) for a in t.axes)
            raise ValueError(f"{where}: tensor {t.name} [{shown}] expects {want}, got {got}")


def chain_space(
    state: Mapping[str, torch.Tensor],
    spec: Spec | None = None,
    activation: str = "relu",
    group: str | None = None,
) -> WeightSpace:
    """A :class:`WeightSpace` for a chain state_dict: ``spec``'s tensors (default
    :func:`chain_spec` of its shapes, ``activation`` and ``group``) mapped in layer
    order onto ``w, b, w, b, ...``."""
    pairs = chain_keys(state)
    if spec is None:
        spec = chain_spec([state[w].shape for w, _ in pairs], activation, group=group)
    keys = [k for pair in pairs for k in pair]
    if len(keys) != len(spec.tensors):
        raise ValueError(
            f"spec {spec.name} has {len(spec.tensors)} tensors, the state_dict {len(keys)} "
            "weights and biases"
        )
    space = WeightSpace(spec, {t.name: Source(k) for t, k in zip(spec.tensors, keys, strict=True)})
    check_shapes(space, state, f"spec {spec.name}")
    return space
