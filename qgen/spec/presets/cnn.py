"""``arch: cnn``: convolutions, global average pooling and a linear head.

``x -> act(conv_1 x) -> ... -> act(conv_L h) -> mean over pixels -> W h + b``. Hidden
channels of conv i form type ``c<i>`` with the activation's group; the input channels
and the classes are fixed, and so are the kernel's spatial axes (type ``k<size>``).
Average pooling commutes with permutations and positive scalings of channels.
"""

from __future__ import annotations

from qgen.spec.presets.base import Expansion, Params, Preset


class CNN(Preset):
    name = "cnn"
    summary = (
        "channels: [in, c1, ...], kernel: 3 or [3, 5, ...], classes: 10, "
        "activation: relu|... (or group: KIND)"
    )

    def expand(self, params: Params) -> Expansion:
        channels = params.int_list("channels", min_len=2)
        layers = len(channels) - 1
        kernel = params.get(
            "kernel",
            3,
            lambda v: (
                (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
                or (
                    isinstance(v, list)
                    and len(v) == layers
                    and all(isinstance(k, int) and k >= 1 for k in v)
                )
            ),
            f"a positive integer or a list of {layers} of them",
        )
        kernels = kernel if isinstance(kernel, list) else [kernel] * layers
        classes = params.positive_int("classes")
        group = params.hidden_group("relu")
        out = Expansion({}, [])
        names = ["cin", *(f"c{i}" for i in range(1, layers + 1))]
        out.type("cin", "fixed", channels[0])
        for i in range(1, layers + 1):
            out.type(names[i], group, channels[i])
        for k in sorted(set(kernels)):
            out.type(f"k{k}", "fixed", k)
        out.type("y", "fixed", classes)
        for i in range(1, layers + 1):
            k = f"k{kernels[i - 1]}"
            out.tensor(f"K{i}", names[i], names[i - 1] + "*", k, k)
            out.tensor(f"b{i}", names[i])
        out.tensor("W", "y", names[-1] + "*")
        out.tensor("b", "y")
        return out
