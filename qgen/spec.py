"""Weight-space specs: parsing and validating the YAML format (v1).

A spec declares index *types* and the *tensors* of a weight space::

    name: mlp_relu
    types:
      x:  {size: 2}           # fixed axis (no group): size required
      h1: {group: scaled}     # hidden neurons of a ReLU layer
      y:  {size: 1}
    tensors:
      W1: [h1, x*]            # "*" marks the dual (inverse-transpose) action
      b1: [h1]
      W2: [y, h1*]
      b2: [y]

The group of a type acts with one element on every axis of that type: by
``g`` on a plain axis and by ``g^{-T}`` on a dual axis. The whole weight-space
group is the direct product over types.

YAML is read with PyYAML's *safe* composer only (no object construction from
tags), and the node tree is walked by hand so that every error can name its
line. Names become identifiers in generated code, so they are restricted to
ASCII Python identifiers that are not keywords.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from qgen.errors import SpecError
from qgen.groups import kind_names
from qgen.groups.escnn import EscnnRep, parse_group, parse_rep, rep_size

__all__ = ["Axis", "Spec", "TensorDecl", "TypeDecl", "dump_spec", "load_spec", "parse_spec"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_NAME = 64
_TOP_KEYS = ("name", "types", "tensors", "arch")
_TYPE_KEYS = ("group", "size", "within", "rep")
FIXED = "fixed"
ESCNN = "escnn"
_SAFE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null")
)


@dataclass(frozen=True)
class TypeDecl:
    """An index type: a group kind (``fixed`` when none) and an optional size."""

    name: str
    kind: str
    size: int | None = None
    #: the outer type this one is nested in (one element of this type's group per index
    #: of the outer type: the wreath product, e.g. per-head GL in attention)
    within: str | None = None
    #: for an escnn type: the group and representation (see :mod:`qgen.groups.escnn`)
    rep: EscnnRep | None = None
    #: for a grid type: the two fixed types whose axes it acts on jointly
    tie: tuple[str, str] | None = None
    #: the ``rep:`` entry as written (plain data), for dumping the spec back
    rep_data: object = field(default=None, compare=False, repr=False)

    @property
    def fixed(self) -> bool:
        """Whether the size is part of the type (no group, or an escnn group on it)."""
        return self.kind in (FIXED, ESCNN)


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
            if t.rep is not None:
                entry["group"] = {"escnn": t.rep.family, **({"N": t.rep.N} if t.rep.N else {})}
                entry["rep"] = t.rep_data
            elif not t.fixed:
                entry["group"] = t.kind
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
        if t.rep is not None:
            n = f", N: {t.rep.N}" if t.rep.N else ""
            entries.append(f"group: {{escnn: {t.rep.family}{n}}}")
            entries.append("rep: " + json.dumps(t.rep_data).replace('"', ""))
        if t.within is not None:
            entries.append(f"within: {t.within}")
        lines.append(f"  {t.name}: {{{', '.join(entries)}}}")
    lines.append("tensors:")
    lines += [f"  {t.name}: [{', '.join(map(str, t.axes))}]" for t in spec.tensors]
    return "\n".join(lines) + "\n"


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the file: {exc}", source=str(path)) from None
    return parse_spec(text, source=str(path))


def parse_spec(text: str, source: str = "<string>") -> Spec:
    """Validate spec ``text`` (YAML) and return the :class:`Spec` it declares."""
    return _Parser(text, source).spec()


# --------------------------------------------------------------------------- #
# The parser walks PyYAML's node tree so every message can carry a line.


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, message: str, node: yaml.Node | None = None, where: str | None = None):
        line = node.start_mark.line + 1 if node is not None else None
        raise SpecError(message, source=self.source, line=line, where=where)

    def spec(self) -> Spec:
        try:
            root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise SpecError(f"not valid YAML: {problem}", source=self.source, line=line) from None
        if root is None:
            self.fail("the spec is empty; it needs name:, types: and tensors:")
        top = self.mapping(root, "the spec", allowed=None if _is_preset(root) else _TOP_KEYS)
        required = ("name", "arch") if "arch" in top else ("name", "types", "tensors")
        for key in required:
            if key not in top:
                self.fail(f"missing required key '{key}'", root)

        name = self.identifier(top["name"][1], "name", what="spec name")
        types: dict[str, TypeDecl] = {}
        tensors: list[TensorDecl] = []
        if "arch" in top:
            expansion = self.preset(top)
            types, tensors = dict(expansion.types), list(expansion.tensors)
        if "types" in top:
            types.update(self.types(top["types"][1]))
        if "tensors" in top:
            own = self.tensors(top["tensors"][1], types)
            names = {t.name for t in own}
            tensors = [t for t in tensors if t.name not in names] + list(own)
        for t in tensors:
            for a in t.axes:
                if a.type not in types:
                    self.fail(f"tensor {t.name} uses type '{a.type}', which is not declared")
        return Spec(
            name=name, types=types, tensors=tuple(tensors), source=self.source, text=self.text
        )

    def plain(self, node: yaml.Node, where: str) -> object:
        """Plain data (scalars, lists, mappings) from a node, refusing tags."""
        self.check_tag(node, where)
        if isinstance(node, yaml.MappingNode):
            return {
                k: self.plain(v, f"{where}.{k}") for k, (_, v) in self.mapping(node, where).items()
            }
        if isinstance(node, yaml.SequenceNode):
            return [self.plain(v, f"{where}[{i}]") for i, v in enumerate(node.value)]
        return self.scalar(node, where)

    def preset(self, top: dict[str, tuple[yaml.Node, yaml.Node]]):
        from qgen.presets import Params, get_preset, preset_names

        arch_node = top["arch"][1]
        arch = self.scalar(arch_node, "arch")
        if arch not in preset_names():
            self.fail(
                f"unknown arch {arch!r}; choose one of: {', '.join(preset_names())}",
                arch_node,
                "arch",
            )
        options = {k: v for k, v in top.items() if k not in ("name", "arch", "types", "tensors")}
        values = {k: self.plain(v, k) for k, (_, v) in options.items()}

        def fail(message: str, key: str | None) -> None:
            node = options[key][1] if key in options else arch_node
            self.fail(message, node, key or "arch")

        params = Params(values, fail)
        expansion = get_preset(arch).expand(params)
        for key in params.unused():
            self.fail(
                f"unknown option '{key}' for arch {arch}; {arch}: {get_preset(arch).summary}",
                options[key][0],
                key,
            )
        return expansion

    # -- shapes -------------------------------------------------------------

    def check_tag(self, node: yaml.Node, where: str) -> None:
        """Only YAML's plain data tags: a spec is data and never names Python objects."""
        if node.tag not in _SAFE_TAGS:
            self.fail(
                f"YAML tag {node.tag!r} is not allowed in a spec; write plain values", node, where
            )

    def _fail_at(self, node: yaml.Node, where: str):
        return lambda message: self.fail(message, node, where)

    def mapping(
        self, node: yaml.Node, where: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """A YAML mapping as {key: (key node, value node)}, rejecting duplicates."""
        self.check_tag(node, where)
        if not isinstance(node, yaml.MappingNode):
            self.fail(
                f"expected a mapping (key: value entries), got {_describe(node)}", node, where
            )
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.fail("keys must be plain names", knode, where)
            key = knode.value
            if key in out:
                first = out[key][0].start_mark.line + 1
                self.fail(f"duplicate name '{key}' (first defined on line {first})", knode, where)
            if allowed is not None and key not in allowed:
                self.fail(f"unknown key '{key}'; allowed keys: {', '.join(allowed)}", knode, where)
            out[key] = (knode, vnode)
        return out

    def scalar(self, node: yaml.Node, where: str) -> object:
        self.check_tag(node, where)
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a single value, got {_describe(node)}", node, where)
        return yaml.constructor.SafeConstructor().construct_object(node)

    def identifier(self, node: yaml.Node, where: str, what: str) -> str:
        value = self.scalar(node, where)
        problem = identifier_problem(value, what)
        if problem:
            self.fail(problem, node, where)
        return value  # type: ignore[return-value]

    # -- sections -----------------------------------------------------------

    def types(self, node: yaml.Node) -> dict[str, TypeDecl]:
        entries = self.mapping(node, "types")
        if not entries:
            self.fail("declare at least one type", node, "types")
        kinds = kind_names()
        types: dict[str, TypeDecl] = {}
        nested_in: list[tuple[str, object, yaml.Node]] = []
        ties: list[tuple[str, tuple[str, str], yaml.Node]] = []
        for name, (knode, vnode) in entries.items():
            where = f"types.{name}"
            if problem := identifier_problem(name, "type name"):
                self.fail(problem, knode, where)
            if vnode.tag == "tag:yaml.org,2002:null":
                self.fail("a type needs a group or a size, e.g. {group: perm}", vnode, where)
            body = self.mapping(vnode, where, allowed=_TYPE_KEYS)
            kind = FIXED
            rep = tie = rep_data = None
            if "group" in body and isinstance(body["group"][1], yaml.MappingNode):
                gnode = body["group"][1]
                kind = ESCNN
                family, n = parse_group(
                    self.plain(gnode, where + ".group"), self._fail_at(gnode, where + ".group")
                )
                if "rep" not in body:
                    self.fail(
                        "an escnn type needs a representation, e.g. rep: standard", vnode, where
                    )
                rnode = body["rep"][1]
                rep_data = self.plain(rnode, where + ".rep")
                rep, tie = parse_rep(family, n, rep_data, self._fail_at(rnode, where + ".rep"))
            elif "rep" in body:
                self.fail(
                    "'rep' needs an escnn group, e.g. group: {escnn: dihedral, N: 4}",
                    body["rep"][0],
                    where,
                )
            elif "group" in body:
                gnode = body["group"][1]
                group = self.scalar(gnode, where + ".group")
                if group == ESCNN:
                    self.fail(
                        "an escnn group is a mapping, e.g. group: {escnn: dihedral, N: 4}, "
                        "with rep: standard",
                        gnode,
                        where + ".group",
                    )
                if not isinstance(group, str) or group not in kinds:
                    self.fail(
                        f"unknown group kind {group!r}; choose one of: {', '.join(kinds)} "
                        "(or leave out 'group' for a fixed axis)",
                        gnode,
                        where + ".group",
                    )
                kind = group
            size = None
            if "size" in body:
                snode = body["size"][1]
                size = self.scalar(snode, where + ".size")
                if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                    self.fail(
                        f"size must be a positive integer, got {size!r}", snode, where + ".size"
                    )
            if rep is not None and tie is None:
                dim = rep_size(rep, self._fail_at(body["rep"][1], where + ".rep"))
                if size is not None and size != dim:
                    self.fail(
                        f"size {size} does not match the representation's dimension {dim}",
                        body["size"][1],
                        where + ".size",
                    )
                size = dim
            if tie is not None:
                if size is not None:
                    self.fail(
                        "a grid type takes its size from its two axes; drop 'size'",
                        body["size"][1],
                        where + ".size",
                    )
                ties.append((name, tie, body["rep"][1]))
            if kind == FIXED and size is None:
                self.fail(
                    "a fixed type (no group) needs a size, e.g. {size: 3}; "
                    "or give it a group such as {group: perm}",
                    vnode,
                    where,
                )
            within = None
            if "within" in body:
                wnode = body["within"][1]
                within = self.scalar(wnode, where + ".within")
                if kind in (FIXED, ESCNN):
                    self.fail(
                        "a nested type needs a group, e.g. {group: gl, within: head}", wnode, where
                    )
                nested_in.append((name, within, wnode))
            types[name] = TypeDecl(
                name=name, kind=kind, size=size, within=within, rep=rep, tie=tie, rep_data=rep_data
            )
        tied: dict[str, str] = {}
        for name, tie, rnode in ties:
            where = f"types.{name}.rep.grid"
            for t in tie:
                if t not in types:
                    self.fail(f"grid names undeclared type {t!r}", rnode, where)
                if types[t].kind != FIXED:
                    self.fail(
                        f"grid axis type {t!r} must be a fixed type (a size, no group)",
                        rnode,
                        where,
                    )
                if t in tied and tied[t] != name:
                    self.fail(f"type {t!r} is already tied to grid {tied[t]!r}", rnode, where)
                tied[t] = name
            k0, k1 = (types[t].size for t in tie)
            if k0 != k1:
                self.fail(
                    f"a grid needs a square kernel; {tie[0]} has size {k0}, {tie[1]} size {k1}",
                    rnode,
                    where,
                )
            types[name] = TypeDecl(
                name=name,
                kind=ESCNN,
                size=k0 * k0,
                rep=EscnnRep(types[name].rep.family, types[name].rep.N, grid=k0),
                tie=tie,
                rep_data=types[name].rep_data,
            )
        for name, outer, wnode in nested_in:
            where = f"types.{name}.within"
            if outer not in types:
                self.fail(f"'within' names undeclared type {outer!r}", wnode, where)
            if types[outer].kind != "perm" or types[outer].within is not None:
                self.fail(
                    f"the outer type {outer!r} must be a perm type that is not itself nested",
                    wnode,
                    where,
                )
        return types

    def tensors(self, node: yaml.Node, types: Mapping[str, TypeDecl]) -> tuple[TensorDecl, ...]:
        entries = self.mapping(node, "tensors")
        if not entries:
            self.fail("the tensor list is empty; declare at least one tensor", node, "tensors")
        tensors = []
        for name, (knode, vnode) in entries.items():
            where = f"tensors.{name}"
            if problem := identifier_problem(name, "tensor name"):
                self.fail(problem, knode, where)
            self.check_tag(vnode, where)
            if not isinstance(vnode, yaml.SequenceNode):
                self.fail(
                    f"expected a list of axes such as [h1, x*], got {_describe(vnode)}",
                    vnode,
                    where,
                )
            if not vnode.value:
                self.fail("a tensor needs at least one axis, e.g. [h1]", vnode, where)
            axes = tuple(
                self.axis(anode, f"{where}[{i}]", types) for i, anode in enumerate(vnode.value)
            )
            if problem := nesting_problem(axes, types) or grid_problem(axes, types):
                self.fail(problem, vnode, where)
            tensors.append(TensorDecl(name=name, axes=axes))
        return tuple(tensors)

    def axis(self, node: yaml.Node, where: str, types: Mapping[str, TypeDecl]) -> Axis:
        raw = self.scalar(node, where)
        if not isinstance(raw, str):
            self.fail(f"an axis is a type name, optionally with '*', got {raw!r}", node, where)
        base = raw.rstrip("*")
        stars = len(raw) - len(base)
        if stars > 1:
            self.fail(
                f"axis {raw!r} has {stars} stars; write '{base}*' for the dual action", node, where
            )
        if base not in types:
            known = ", ".join(types)
            self.fail(
                f"axis {raw!r} names undeclared type '{base}'; declared types: {known}", node, where
            )
        return Axis(type=base, dual=stars == 1)


def identifier_problem(value: object, what: str) -> str | None:
    """Why ``value`` is not an acceptable name, or None.

    Names from specs end up in generated Python code; this is the gate that
    keeps them inert: short ASCII Python identifiers, no keywords, no dunders.
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


def grid_problem(axes: tuple[Axis, ...], types: Mapping[str, TypeDecl]) -> str | None:
    """A grid acts on pairs of axes: a tensor with an axis of a grid's types has exactly
    one axis of each (two axes when both are the same type); the grid type is no axis."""
    for decl in types.values():
        if decl.tie is None:
            continue
        if any(a.type == decl.name for a in axes):
            return (
                f"type {decl.name!r} is a grid over {decl.tie[0]} and {decl.tie[1]}; "
                "use those axes in tensors"
            )
        kx, ky = decl.tie
        nx, ny = (sum(a.type == t for a in axes) for t in decl.tie)
        if (nx or ny) and ((kx != ky and (nx, ny) != (1, 1)) or (kx == ky and nx != 2)):
            return (
                f"grid {decl.name!r} acts on one {kx} axis and one {ky} axis together; "
                f"this tensor has {nx} {kx} and {ny} {ky} axes"
            )
    return None


def _is_preset(root: yaml.Node) -> bool:
    return isinstance(root, yaml.MappingNode) and any(
        isinstance(k, yaml.ScalarNode) and k.value == "arch" for k, _ in root.value
    )


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(node.value) if node.value != "" else "nothing"
