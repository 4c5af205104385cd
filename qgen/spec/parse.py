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

The parser knows the generic keys of a type (``group``, ``size``, ``within``); what a
kind makes of its entry is the kind's :meth:`~qgen.kinds.GroupKind.parse_decl` (a
family such as escnn's reads ``group: {escnn: ...}`` and ``rep:``). The model types
live in :mod:`qgen.decls` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

import yaml

from qgen.decls import (
    FIXED,
    Axis,
    Spec,
    TensorDecl,
    TypeDecl,
    dump_spec,
    identifier_problem,
    nesting_problem,
)
from qgen.errors import SpecError
from qgen.kinds import GroupKind, get_kind, kind_names
from qgen.spec.fixed_axes import apply_fixed_axes, choice_problem
from qgen.spec.presets import Params, get_preset, preset_names

__all__ = [
    "FIXED",
    "Axis",
    "Spec",
    "TensorDecl",
    "TypeDecl",
    "dump_spec",
    "identifier_problem",
    "load_spec",
    "nesting_problem",
    "parse_spec",
]

_TOP_KEYS = ("name", "types", "tensors", "arch", "fixed_axes")
_BASE_TYPE_KEYS = ("group", "size", "within")
_SAFE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null")
)


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

    def fail(
        self, message: str, node: yaml.Node | None = None, where: str | None = None
    ) -> NoReturn:
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
        spec = Spec(
            name=name, types=types, tensors=tuple(tensors), source=self.source, text=self.text
        )
        if "fixed_axes" in top:  # declared choices for large fixed axes (qgen.spec.fixed_axes)
            spec = self.fixed_axes(spec, top["fixed_axes"][1])
        return spec

    def fixed_axes(self, spec: Spec, node: yaml.Node) -> Spec:
        choices = {}
        for name, (knode, vnode) in self.mapping(node, "fixed_axes").items():
            choice = self.scalar(vnode, f"fixed_axes.{name}")
            if problem := choice_problem(spec, name, choice):
                self.fail(problem.removeprefix(f"{name}: "), knode, f"fixed_axes.{name}")
            choices[name] = choice
        try:
            return apply_fixed_axes(spec, choices)
        except ValueError as exc:
            self.fail(str(exc).removeprefix("fixed_axes: "), node, "fixed_axes")

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
        arch_node = top["arch"][1]
        arch = self.scalar(arch_node, "arch")
        if arch not in preset_names():
            self.fail(
                f"unknown arch {arch!r}; choose one of: {', '.join(preset_names())}",
                arch_node,
                "arch",
            )
        options = {
            k: v
            for k, v in top.items()
            if k not in ("name", "arch", "types", "tensors", "fixed_axes")
        }
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
        kinds = [get_kind(k) for k in kind_names()]
        extra = {key: message for k in kinds for key, message in k.entry_keys.items()}
        allowed = _BASE_TYPE_KEYS + tuple(extra)
        types: dict[str, TypeDecl] = {}
        parsed: dict[str, _Entry] = {}
        nested_in: list[tuple[str, object, yaml.Node]] = []
        for name, (knode, vnode) in entries.items():
            where = f"types.{name}"
            if problem := identifier_problem(name, "type name"):
                self.fail(problem, knode, where)
            if vnode.tag == "tag:yaml.org,2002:null":
                self.fail("a type needs a group or a size, e.g. {group: perm}", vnode, where)
            entry = _Entry(self, name, vnode, self.mapping(vnode, where, allowed=allowed))
            kind = self.kind(entry, kinds, extra)
            decl = kind.parse_decl(entry)
            if "within" in entry.body:
                wnode = entry.body["within"][1]
                within = self.scalar(wnode, where + ".within")
                if kind.needs_size:
                    self.fail(
                        "a nested type needs a group, e.g. {group: gl, within: head}", wnode, where
                    )
                nested_in.append((name, within, wnode))
                decl = replace(decl, within=within)
            types[name] = decl
            parsed[name] = entry
        for name, entry in parsed.items():
            types[name] = get_kind(types[name].kind).link_decl(types[name], entry, types)
        outer_kinds = " or ".join(k.name for k in kinds if k.holds_nested)
        for name, outer, wnode in nested_in:
            where = f"types.{name}.within"
            if outer not in types:
                self.fail(f"'within' names undeclared type {outer!r}", wnode, where)
            if not get_kind(types[outer].kind).holds_nested or types[outer].within is not None:
                self.fail(
                    f"the outer type {outer!r} must be a {outer_kinds} type that is not itself "
                    "nested",
                    wnode,
                    where,
                )
        return types

    def kind(self, entry: _Entry, kinds: list[GroupKind], extra: dict[str, str]) -> GroupKind:
        """The kind an entry declares, with its ``group:`` value read into ``entry.group``:
        a mapping selects a family (by its name among the keys), a name a kind, no
        ``group:`` the plain fixed axis; a family's own keys need the family."""
        where = f"types.{entry.name}"
        body = entry.body
        if "group" in body and isinstance(body["group"][1], yaml.MappingNode):
            entry.group = entry.data("group")
            families = [k for k in kinds if k.family]
            if not families:
                self.fail("a group is a kind name, e.g. group: perm", body["group"][1], where)
            data = entry.group if isinstance(entry.group, dict) else {}
            # the family named among the keys; else the first, whose parser says how to write it
            return next((k for k in families if k.name in data), families[0])
        for key, (knode, _) in body.items():
            if key in extra:
                self.fail(extra[key], knode, where)
        if "group" not in body:
            return get_kind(FIXED)
        gnode = body["group"][1]
        group = entry.group = self.scalar(gnode, where + ".group")
        if not isinstance(group, str) or group not in kind_names():
            self.fail(
                f"unknown group kind {group!r}; choose one of: {', '.join(kind_names())} "
                "(or leave out 'group' for a fixed axis)",
                gnode,
                where + ".group",
            )
        return get_kind(group)

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
            if problem := nesting_problem(axes, types) or self.axes_problem(axes, types):
                self.fail(problem, vnode, where)
            tensors.append(TensorDecl(name=name, axes=axes))
        return tuple(tensors)

    @staticmethod
    def axes_problem(axes: tuple[Axis, ...], types: Mapping[str, TypeDecl]) -> str | None:
        """What a type's kind finds wrong with a tensor's axes (a grid's pairs), or None."""
        for decl in types.values():
            if problem := get_kind(decl.kind).axes_problem(decl, axes):
                return problem
        return None

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


class _Entry:
    """A type's entry, as the kinds see it (:class:`qgen.kinds.DeclEntry`)."""

    def __init__(self, parser: _Parser, name: str, node: yaml.Node, body: dict[str, tuple]) -> None:
        self.parser = parser
        self.name = name
        self.node = node
        self.body = body
        self.where = f"types.{name}"
        self.group: object = None

    def has(self, key: str) -> bool:
        return key in self.body

    def data(self, key: str) -> object:
        return self.parser.plain(self.body[key][1], f"{self.where}.{key}")

    def size(self) -> int | None:
        if "size" not in self.body:
            return None
        size = self.parser.scalar(self.body["size"][1], self.where + ".size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            self.fail(f"size must be a positive integer, got {size!r}", "size")
        return size

    def fail(self, message: str, key: str | None = None, sub: str | None = None) -> NoReturn:
        if key is None:
            self.parser.fail(message, self.node, self.where)
        else:
            where = f"{self.where}.{key}" + (f".{sub}" if sub else "")
            self.parser.fail(message, self.body[key][1], where)


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
