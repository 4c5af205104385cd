"""``arch: mlp``: a multilayer perceptron ``x -> act(W1 x + b1) -> ... -> WL h + bL``.

Hidden neurons of layer i form type ``h<i>`` with the activation's group; with
``io: fixed`` (default, the HNP setting) the input ``x`` and output ``y`` keep their
order, with ``io: perm`` (the NP setting) they are permuted too.
"""

from __future__ import annotations

from qgen.decls import MAX_TYPES
from qgen.spec.presets.base import Expansion, Params, Preset, layers_within


class MLP(Preset):
    name = "mlp"
    summary = (
        "widths: [in, hidden..., out], "
        "activation: relu|tanh|sin|linear|gelu|... (or group: KIND), io: fixed|perm"
    )

    def expand(self, params: Params) -> Expansion:
        # two tensors a layer (weight and bias), one type a width
        most = min(layers_within(2, 0) + 1, MAX_TYPES)
        widths = params.int_list("widths", min_len=2, max_len=most)
        io = params.choice("io", ("fixed", "perm"), "fixed")
        bias = params.get("bias", True, lambda v: isinstance(v, bool), "true or false")
        out = Expansion({}, [])
        hidden = params.hidden_group("relu")
        names = ["x", *(f"h{i}" for i in range(1, len(widths) - 1)), "y"]
        for i, (name, width) in enumerate(zip(names, widths, strict=True)):
            if 0 < i < len(widths) - 1:
                out.type(name, hidden, width)
            elif io == "perm":
                out.type(name, "perm", width)
            else:
                out.type(name, "fixed", width)
        for i in range(1, len(widths)):
            out.tensor(f"W{i}", names[i], names[i - 1] + "*")
            if bias:
                out.tensor(f"b{i}", names[i])
        return out
