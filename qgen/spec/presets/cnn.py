"""``arch: cnn``: convolutions, global average pooling and a linear head.

``x -> act(conv_1 x) -> ... -> act(conv_L h) -> mean over pixels -> W h + b``. Hidden
channels of conv i form type ``c<i>`` with the activation's group; the input channels
and the classes are fixed, and so are the kernel's spatial axes (type ``k<size>``).
Average pooling commutes with permutations and positive scalings of channels.
"""

from __future__ import annotations

from qgen.spec.presets.base import (
    MAX_SIZE,
    Expansion,
    Params,
    Preset,
    is_positive_int,
    layers_within,
)


class CNN(Preset):
    name = "cnn"
    summary = (
        "channels: [in, c1, ...], kernel: 3 or [3, 5, ...], classes: 10, "
        "activation: relu|... (or group: KIND)"
    )

    def expand(self, params: Params) -> Expansion:
        channels = params.int_list("channels", min_len=2, max_len=layers_within(2, 2) + 1)
        layers = len(channels) - 1
        kernel = params.get(
            "kernel",
            3,
            lambda v: (
                (is_positive_int(v) and v <= MAX_SIZE)
                or (
                    isinstance(v, list)
                    and len(v) == layers
                    and all(is_positive_int(k) and k <= MAX_SIZE for k in v)
                )
            ),
            f"a positive integer (at most {MAX_SIZE:,}) or a list of {layers} of them",
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
