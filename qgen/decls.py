"""The model of a weight space: index types, axes, tensors, the spec; plain data.

The bottom layer of qgen: this module imports nothing from qgen. Above it come the
group kinds (:mod:`qgen.kinds`), the architecture presets (:mod:`qgen.spec.presets`), the
parser (:mod:`qgen.spec`, which also re-exports these names), and the solver
(:mod:`qgen.solver.basis`). A declaration names its kind by the name specs use; what a kind
means is the business of its module in :mod:`qgen.kinds`.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "FIXED",
    "MAX_AXES",
    "MAX_AXES_OF_A_TYPE",
    "MAX_SIZE",
    "MAX_TENSORS",
    "MAX_TYPES",
    "Axis",
    "Spec",
    "TensorDecl",
    "TypeDecl",
    "dump_spec",
    "identifier_problem",
    "nesting_problem",
]

#: the kind of a type without a group (a spec's type entry with no ``group:``)
FIXED = "fixed"

# --- What one spec may ask for (checked while parsing, before any solving) -------------
#: tensors in a weight space. Counting and building cost grows with the pairs of tensors
#: (blocks); a transformer preset of 64 blocks has 1,028 tensors.
MAX_TENSORS = 1200
#: index types in a spec (a transformer preset of 64 blocks has 259)
MAX_TYPES = 600
#: axes of one tensor (a 3-d convolution kernel has 5)
MAX_AXES = 8
#: axes of one group type in one tensor. A block between two such tensors has up to twice
#: as many axes of the type, and its basis grows with the set partitions of those axes
#: (Bell numbers: 8 axes give 4,140 terms, 12 give 4.2 million).
MAX_AXES_OF_A_TYPE = 4
#: the size of a fixed axis (a preset's width or kernel included); what the layers built
#: on such axes cost is counted by the build, this only keeps numbers sane
MAX_SIZE = 1_000_000

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_NAME = 64


@dataclass(frozen=True)
class TypeDecl:
    """An index type: a group kind (``fixed`` when none) and an optional size."""

    name: str
    kind: str
    size: int | None = None
    #: the outer type this one is nested in (one element of this type's group per index
    #: of the outer type: the wreath product, e.g. per-head GL in attention)
    within: str | None = None
    #: for a fixed-axis symmetry (a kind configured by its entry, such as an escnn group
    #: and representation, :mod:`qgen.kinds.escnn`): that configuration
    rep: object = None
    #: for a symmetry acting on two fixed types' axes jointly (a grid): their names
    tie: tuple[str, str] | None = None
    #: the ``rep:`` entry as written (plain data), for dumping the spec back
    rep_data: object = field(default=None, compare=False, repr=False)
    #: the ``group:`` entry when it is a mapping (a configured kind), as plain data
    group_data: object = field(default=None, compare=False, repr=False)

    @property
    def fixed(self) -> bool:
        """Whether the size is part of the type (no group, or a fixed-axis symmetry)."""
        return self.kind == FIXED or self.rep is not None


@dataclass(frozen=True)
class Axis:
    """One axis of a tensor: its type, and whether it carries the dual action."""

    type: str
    dual: bool = False

    def __str__(self) -> str:
        return self.type + ("*" if self.dual else "")


@dataclass(frozen=True)
class TensorDecl:
    """A tensor of the weight space: a name and its axes, in storage order."""

    name: str
    axes: tuple[Axis, ...]

    def __str__(self) -> str:
        return f"{self.name}: [{', '.join(map(str, self.axes))}]"


@dataclass(frozen=True)
class Spec:
    """A validated weight-space spec."""

    name: str
    types: Mapping[str, TypeDecl]
    tensors: tuple[TensorDecl, ...]
    source: str = "<spec>"
    text: str = field(default="", repr=False, compare=False)

    @property
    def sha256(self) -> str:
        """Content hash of the spec text (identifies the spec in generated files)."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def tensor(self, name: str) -> TensorDecl:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def group_types(self) -> tuple[str, ...]:
        """Names of the types that carry a group (not fixed), in declaration order."""
        return tuple(n for n, t in self.types.items() if not t.fixed)

    def to_dict(self) -> dict:
        """The spec as plain data, in the YAML layout (explicit form)."""
        types: dict[str, dict] = {}
        for t in self.types.values():
            entry: dict = {}
            if t.group_data is not None:
                entry["group"] = t.group_data
            elif not t.fixed:
                entry["group"] = t.kind
            if t.rep_data is not None:
                entry["rep"] = t.rep_data
            if t.size is not None and t.tie is None:
                entry["size"] = t.size
            if t.within is not None:
                entry["within"] = t.within
            types[t.name] = entry
        return {
            "name": self.name,
            "types": types,
            "tensors": {t.name: [str(a) for a in t.axes] for t in self.tensors},
        }


def dump_spec(spec: Spec) -> str:
    """The explicit YAML form of ``spec`` (valid input to every command)."""
    lines = [f"name: {spec.name}", "types:"]
    for t in spec.types.values():
        entries = ([f"group: {t.kind}"] if not t.fixed else []) + (
            [f"size: {t.size}"] if t.size is not None and t.tie is None else []
        )
        if t.group_data is not None:
            entries.append("group: " + _flow(t.group_data))
        if t.rep_data is not None:
            entries.append("rep: " + _flow(t.rep_data))
        if t.within is not None:
            entries.append(f"within: {t.within}")
        lines.append(f"  {t.name}: {{{', '.join(entries)}}}")
    lines.append("tensors:")
    lines += [f"  {t.name}: [{', '.join(map(str, t.axes))}]" for t in spec.tensors]
    return "\n".join(lines) + "\n"


def _flow(data: object) -> str:
    """Plain data (names, numbers, lists, mappings) in YAML flow style."""
    return json.dumps(data).replace('"', "")


def identifier_problem(value: object, what: str) -> str | None:
    """Why ``value`` is not an acceptable name, or None.

    Names from specs end up in generated Python code; this is the gate that
    keeps them inert: short ASCII Python identifiers, no keywords, no dunders.

    >>> identifier_problem("W1", "tensor name") is None
    True
    >>> identifier_problem("__init__", "tensor name")
    "the tensor name '__init__' starts with '__', which is reserved; choose another name"
    """
    if not isinstance(value, str):
        return f"the {what} must be a name, got {value!r}"
    if not _IDENTIFIER.match(value):
        return (
            f"the {what} {value!r} is not a Python identifier "
            "(letters, digits and '_', not starting with a digit)"
        )
    if keyword.iskeyword(value):
        return f"the {what} {value!r} is a Python keyword; choose another name"
    if value.startswith("__"):
        return f"the {what} {value!r} starts with '__', which is reserved; choose another name"
    if len(value) > _MAX_NAME:
        return f"the {what} is longer than {_MAX_NAME} characters"
    return None


def nesting_problem(axes: tuple[Axis, ...], types: Mapping[str, TypeDecl]) -> str | None:
    """A tensor with an axis of a nested type needs exactly one axis of its outer type."""
    for a in axes:
        outer = types[a.type].within
        if outer is not None:
            n = sum(b.type == outer for b in axes)
            if n != 1:
                return (
                    f"axis {a} is nested in {outer!r}, so the tensor needs exactly one {outer} "
                    f"axis (the head it belongs to); it has {n}"
                )
    return None
