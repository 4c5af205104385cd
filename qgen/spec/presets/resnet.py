"""``arch: resnet``: a residual convolutional network.

``h = act(stem x)``; each block ``h = h + conv_b(act(conv_a(h)))`` (optionally
LayerNorm'd first: ``h + conv_b(act(conv_a(ln(h))))`` with LayerNorm over channels);
then mean over pixels and a linear head. The skip connections tie every block's
input and output channels to one residual-stream type ``r``: one permutation (and,
for ReLU without normalization, one positive scaling) acts on the whole stream.
LayerNorm normalizes across the stream's channels, so with ``norm: layer`` the stream
keeps permutations only; its weight and bias are tensors on ``r``.
"""

from __future__ import annotations

from qgen.spec.presets.base import Expansion, Params, Preset, layers_within


class ResNet(Preset):
    name = "resnet"
    summary = (
        "in_channels, width, hidden, blocks, kernel, classes, "
        "activation (or group: KIND), norm: none|layer"
    )

    def expand(self, params: Params) -> Expansion:
        cin = params.positive_int("in_channels")
        width = params.positive_int("width")
        hidden = params.positive_int("hidden", width)
        # up to six tensors a block (with norm: layer), five more around them
        blocks = params.positive_int("blocks", most=layers_within(6, 5))
        kernel = params.positive_int("kernel", 3)
        classes = params.positive_int("classes")
        group = params.hidden_group("relu")
        norm = params.choice("norm", ("none", "layer"), "none")
        stream = "perm" if norm == "layer" else group
        out = Expansion({}, [])
        out.type("cin", "fixed", cin)
        out.type("r", stream, width)
        k = out.type(f"k{kernel}", "fixed", kernel)
        out.type("y", "fixed", classes)
        out.tensor("K0", "r", "cin*", k, k)
        out.tensor("b0", "r")
        for i in range(1, blocks + 1):
            m = out.type(f"m{i}", group, hidden)
            if norm == "layer":
                out.tensor(f"ln{i}_w", "r")
                out.tensor(f"ln{i}_b", "r")
            out.tensor(f"K{i}a", m, "r*", k, k)
            out.tensor(f"b{i}a", m)
            out.tensor(f"K{i}b", "r", m + "*", k, k)
            out.tensor(f"b{i}b", "r")
        out.tensor("W", "y", "r*")
        out.tensor("b", "y")
        return out
