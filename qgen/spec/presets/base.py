"""What a preset is, and the parameter reader presets use to validate their options."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from qgen.decls import MAX_SIZE, MAX_TENSORS, MAX_TYPES, Axis, TensorDecl, TypeDecl
from qgen.kinds import get_kind, kind_names

__all__ = [
    "ACTIVATION_GROUPS",
    "HIDDEN_KINDS",
    "MAX_SIZE",
    "MAX_TENSORS",
    "Expansion",
    "Params",
    "Preset",
    "is_positive_int",
    "layers_within",
]

#: activation -> group kind of the hidden neurons it follows. Positively homogeneous
#: activations (``s(q z) = q s(z)`` for ``q > 0``) allow a positive scale per neuron, odd
#: ones (``s(-z) = -s(z)``) a sign flip, the identity any invertible change of basis;
#: the others (ReLU6 and the sigmoids saturate, GELU and SiLU are neither) permutations.
ACTIVATION_GROUPS = {
    "relu": "scaled",
    "leaky_relu": "scaled",
    "prelu": "scaled",
    "tanh": "signed",
    "sin": "signed",
    "hardtanh": "signed",
    "softsign": "signed",
    "linear": "gl",
    "identity": "gl",
    **dict.fromkeys(
        (
            "gelu",
            "silu",
            "swish",
            "mish",
            "sigmoid",
            "softplus",
            "elu",
            "selu",
            "celu",
            "relu6",
            "hardswish",
            "hardsigmoid",
            "cos",
        ),
        "perm",
    ),
}
#: group kinds a preset's ``group:`` option may give its hidden neurons: those of free size
HIDDEN_KINDS = tuple(k for k in kind_names() if not get_kind(k).needs_size)


class Params:
    """A preset's options, read with validation; ``fail(message, key)`` reports a place."""

    def __init__(self, values: dict[str, Any], fail: Callable[[str, str | None], None]) -> None:
        self.values = values
        self._fail = fail
        self.used: set[str] = set()

    def fail(self, message: str, key: str | None = None):
        self._fail(message, key)

    def get(
        self,
        key: str,
        default: Any = ...,
        check: Callable[[Any], bool] | None = None,
        expect: str = "",
    ) -> Any:
        self.used.add(key)
        if key not in self.values:
            if default is ...:
                self.fail(f"this preset needs '{key}' ({expect})", None)
            return default
        value = self.values[key]
        if check is not None and not check(value):
            self.fail(f"'{key}' must be {expect}, got {value!r}", key)
        return value

    def positive_int(self, key: str, default: Any = ..., most: int = MAX_SIZE) -> int:
        """A positive integer of at most ``most`` (a count of layers passes the most that
        keeps the expansion within :data:`MAX_TENSORS`; a width :data:`MAX_SIZE`)."""
        value = self.get(key, default, is_positive_int, "a positive integer")
        if value > most:
            self.fail(f"'{key}' is {value:,}, past the limit of {most:,}{_why(most)}", key)
        return value

    def int_list(
        self, key: str, default: Any = ..., min_len: int = 1, max_len: int = MAX_TENSORS
    ) -> list[int]:
        """A list of ``min_len`` to ``max_len`` positive integers, each at most
        :data:`MAX_SIZE`."""

        def ok(v: Any) -> bool:
            return isinstance(v, list) and len(v) >= min_len and all(map(is_positive_int, v))

        value = self.get(key, default, ok, f"a list of at least {min_len} positive integers")
        if len(value) > max_len:
            self.fail(
                f"'{key}' has {len(value):,} entries, past the limit of {max_len:,}{_why(max_len)}",
                key,
            )
        if max(value) > MAX_SIZE:
            self.fail(f"'{key}' has {max(value):,}, past the limit of {MAX_SIZE:,}", key)
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = ...) -> str:
        return self.get(key, default, lambda v: v in options, "one of " + ", ".join(options))

    def name(self, key: str, default: Any = ...) -> str:
        return self.get(key, default, lambda v: isinstance(v, str) and v.isidentifier(), "a name")

    def hidden_group(self, default_activation: str) -> str:
        """The group kind of the hidden neurons: the ``group:`` option if given, else the
        kind of ``activation:`` (:data:`ACTIVATION_GROUPS`); an unknown activation is an
        error naming the known ones, since guessing would silently drop a symmetry."""
        activation = self.name("activation", default_activation)
        group = self.get(
            "group", None, lambda v: v in HIDDEN_KINDS, "one of " + ", ".join(HIDDEN_KINDS)
        )
        if group is not None:
            return group
        if activation not in ACTIVATION_GROUPS:
            self.fail(
                f"unknown activation {activation!r}; known: {', '.join(sorted(ACTIVATION_GROUPS))} "
                f"(or set 'group:' to one of {', '.join(HIDDEN_KINDS)} for another activation)",
                "activation",
            )
        return ACTIVATION_GROUPS[activation]

    def unused(self) -> list[str]:
        return [k for k in self.values if k not in self.used]


def _why(most: int) -> str:
    if most >= MAX_SIZE:
        return ""
    return f" (so the spec stays within {MAX_TENSORS:,} tensors and {MAX_TYPES:,} types)"


def layers_within(per_layer: int, fixed: int) -> int:
    """The most layers (blocks) a preset may have when each adds ``per_layer`` tensors to
    ``fixed`` others: the expansion stays within :data:`MAX_TENSORS`."""
    return (MAX_TENSORS - fixed) // per_layer


def is_positive_int(v: Any) -> bool:
    """An ``int`` (not a ``bool``) of at least 1."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


@dataclass
class Expansion:
    """Types and tensors a preset declares (in order)."""

    types: dict[str, TypeDecl]
    tensors: list[TensorDecl]

    def type(self, name: str, kind: str, size: int | None = None) -> str:
        self.types[name] = TypeDecl(name, kind, size)
        return name

    def tensor(self, name: str, *axes: str) -> None:
        self.tensors.append(
            TensorDecl(name, tuple(Axis(a.rstrip("*"), a.endswith("*")) for a in axes))
        )


class Preset(ABC):
    """An architecture family that expands into explicit types and tensors."""

    #: the value of ``arch:`` in a spec
    name: ClassVar[str]
    #: one line for help texts
    summary: ClassVar[str]

    @abstractmethod
    def expand(self, params: Params) -> Expansion:
        """The explicit weight space for these options."""
