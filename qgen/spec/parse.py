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

import re
import sys
from collections.abc import Mapping
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import NoReturn

import yaml

from qgen.decls import (
    FIXED,
    MAX_AXES,
    MAX_AXES_OF_A_TYPE,
    MAX_SIZE,
    MAX_TENSORS,
    MAX_TYPES,
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

_TOP_KEYS = ("name", "types", "tensors", "arch")
_BASE_TYPE_KEYS = ("group", "size", "within")
_SAFE_TAGS = frozenset(
    "tag:yaml.org,2002:" + t for t in ("map", "seq", "str", "int", "float", "bool", "null")
)

# --- Bounds on the YAML itself, checked while it is read (before the work can grow) -----
#: the largest spec file (bytes; characters for a string): specs are a few hundred bytes,
#: an explicit 64-block transformer about 40 kB
MAX_SPEC_BYTES = 1 << 20
#: the deepest nesting of lists and mappings (a spec needs 6: an escnn irrep id in a sum)
MAX_DEPTH = 32
#: YAML nodes, counting every use of an alias as a copy of its anchor's node (an alias
#: bomb expands exponentially); a 64-block transformer written out has about 10,000
MAX_NODES = 200_000


def load_spec(path: str | Path) -> Spec:
    """Read and validate the spec file at ``path``."""
    path = Path(path)
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError("no such file", source=source) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file ({exc.strerror})", source=source) from None
    except ValueError:  # a NUL in the path
        raise SpecError(
            "cannot read the file (the path has a NUL character)", source=source
        ) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(), source=source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"not UTF-8 text (byte {exc.start} cannot be decoded); save the spec as UTF-8",
            source=source,
        ) from None
    return parse_spec(text, source=source)


def parse_spec(text: str, source: str = "<string>") -> Spec:
    """Validate spec ``text`` (YAML) and return the :class:`Spec` it declares."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(), source=source)
    return _Parser(text, source).spec()


def _too_deep() -> str:
    return f"lists and mappings nested more than {MAX_DEPTH} deep; a spec needs a few levels"


def _too_large() -> str:
    return (
        f"the spec is larger than {MAX_SPEC_BYTES:,} bytes, the limit; a spec declares types "
        "and tensors (a few kB), use arch: presets for large networks"
    )


@cache
def reserved_module_names() -> frozenset[str]:
    """Names a spec may not take: its name is the generated module's (``<name>.py``, next
    to ``test_<name>.py``), which would shadow a module that generated code imports or
    the standard library. Read from the templates and the runtime that generated files
    are made of, so the list follows them."""
    root = Path(__file__).resolve().parent.parent
    statement = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)
    names: set[str] = set()
    for folder, pattern in (
        (root / "codegen" / "templates", "**/*.j2"),
        (root / "runtime", "*.py"),
    ):
        for path in folder.glob(pattern):
            names.update(statement.findall(path.read_text(encoding="utf-8")))
    names.discard("qgen")  # the runtime's own imports of qgen are not copied
    return frozenset(names | set(sys.stdlib_module_names))


# --------------------------------------------------------------------------- #
# Reading YAML into nodes, bounded: PyYAML's composer recurses once per level of nesting
# and walking its node graph expands aliases, so nodes are built here from the event
# stream, with the depth, the expanded node count and recursive aliases checked as the
# events arrive.

#: the event parser: LibYAML's where PyYAML has it (25 times faster on a large spec), else
#: PyYAML's own; both give marks with line numbers
_EVENTS = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_WORDS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:null")
_YAML11 = {
    "tag:yaml.org,2002:int": re.compile(r"[-+]?(0[0-9_]+|0b[01_]+|.*[_:].*)\Z"),
    "tag:yaml.org,2002:float": re.compile(r".*[_:].*\Z"),
    "tag:yaml.org,2002:bool": re.compile(r"(?i:yes|no|on|off)\Z"),
}


def _yaml11_problem(node: yaml.ScalarNode) -> str | None:
    """How YAML 1.1 reads a plain scalar unlike most readers of YAML 1.2 would (``010`` as
    8, ``1:30`` as 90, ``1_000`` as 1000, ``yes``/``no``/``on``/``off`` as booleans)."""
    pattern = _YAML11.get(node.tag)
    if node.style is not None or pattern is None or not pattern.match(node.value):
        return None
    value = yaml.constructor.SafeConstructor().construct_object(node)
    if node.tag.endswith("bool"):
        return f"{node.value!r} is read by YAML as {value}; write true or false"
    return (
        f"{node.value!r} is read by YAML 1.1 as {value!r}; write the number plainly "
        "(no leading 0, '_' or ':'), or quote it for text"
    )


class _Composer:
    """PyYAML's events made into its node graph (aliases share their anchor's node), with
    the bounds checked first."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.resolver = yaml.SafeLoader("")

    def fail(self, message: str, event: yaml.Event) -> NoReturn:
        raise SpecError(message, source=self.source, line=event.start_mark.line + 1)

    def compose(self) -> yaml.Node | None:
        anchors: dict[str, tuple[yaml.Node, int]] = {}
        # open collections: (node, anchor, expanded size so far, pending key)
        stack: list[list] = []
        total = 0
        root: yaml.Node | None = None
        documents = 0
        for event in yaml.parse(self.text, Loader=_EVENTS):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    self.fail(
                        "a spec is one YAML document; remove the '---' and what follows", event
                    )
                continue
            if isinstance(event, yaml.AliasEvent):
                if event.anchor not in anchors:
                    if any(entry[1] == event.anchor for entry in stack):
                        self.fail(
                            f"alias *{event.anchor} refers to a list or mapping that contains "
                            "it (a recursive alias); write the value out",
                            event,
                        )
                    self.fail(
                        f"alias *{event.anchor} names no anchor &{event.anchor} above it", event
                    )
                node, size = anchors[event.anchor]
            elif isinstance(event, yaml.ScalarEvent):
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self.resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
                # LibYAML marks a plain scalar's style '' where PyYAML writes None
                node = yaml.ScalarNode(
                    tag, event.value, event.start_mark, event.end_mark, style=event.style or None
                )
                size = 1
            elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                kind = (
                    yaml.SequenceNode
                    if isinstance(event, yaml.SequenceStartEvent)
                    else yaml.MappingNode
                )
                tag = event.tag
                if tag is None or tag == "!":
                    tag = self.resolver.resolve(kind, None, event.implicit)
                node = kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
                if len(stack) >= MAX_DEPTH:
                    self.fail(_too_deep(), event)
                stack.append([node, event.anchor, 1, None])
                continue
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                node, anchor, size, _ = stack.pop()
                node.end_mark = event.end_mark
                if anchor is not None:
                    anchors[anchor] = (node, size)
                self._add(stack, node, size)
                if not stack:
                    root = node
                continue
            else:
                continue
            total += size
            if total > MAX_NODES:
                self.fail(
                    f"the YAML expands to more than {MAX_NODES:,} values (aliases count "
                    "once per use); write the spec out plainly",
                    event,
                )
            if not isinstance(event, yaml.AliasEvent) and event.anchor is not None:
                anchors[event.anchor] = (node, size)
            self._add(stack, node, size)
            if not stack:
                root = node
        return root

    @staticmethod
    def _add(stack: list[list], node: yaml.Node, size: int) -> None:
        """``node`` (of expanded ``size``) as the next item of the open collection."""
        if not stack:
            return
        entry = stack[-1]
        entry[2] += size
        parent = entry[0]
        if isinstance(parent, yaml.SequenceNode):
            parent.value.append(node)
        elif entry[3] is None:
            entry[3] = node
        else:
            parent.value.append((entry[3], node))
            entry[3] = None


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
            root = _Composer(self.text, self.source).compose()
        except yaml.reader.ReaderError as exc:  # a character YAML does not allow
            line = self.text.count("\n", 0, exc.position) + 1
            code = exc.character if isinstance(exc.character, int) else ord(exc.character)
            raise SpecError(
                f"not valid YAML: {exc.reason} (U+{code:04X}); remove it",
                source=self.source,
                line=line,
            ) from None
        except UnicodeEncodeError as exc:  # a lone surrogate in a str given to parse_spec
            line = self.text.count("\n", 0, exc.start) + 1
            raise SpecError(
                f"not valid text: U+{ord(exc.object[exc.start]):04X} is half of a surrogate "
                "pair, not a character",
                source=self.source,
                line=line,
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            if "maximum nesting depth" in problem:  # LibYAML's own bound (1,000), met first
                raise SpecError(_too_deep(), source=self.source, line=line) from None
            raise SpecError(f"not valid YAML: {problem}", source=self.source, line=line) from None
        if root is None:
            self.fail("the spec is empty; it needs name:, types: and tensors:")
        top = self.mapping(root, "the spec", allowed=None if _is_preset(root) else _TOP_KEYS)
        required = ("name", "arch") if "arch" in top else ("name", "types", "tensors")
        for key in required:
            if key not in top:
                self.fail(f"missing required key '{key}'", root)

        name = self.identifier(top["name"][1], "name", what="spec name")
        if name in reserved_module_names():
            self.fail(
                f"the spec name {name!r} is the name of a Python module that generated code "
                "imports or of a standard module; the generated module would shadow it. "
                "Choose another name",
                top["name"][1],
                "name",
            )
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
        if len(types) > MAX_TYPES:
            self.fail(f"{len(types):,} types; the limit is {MAX_TYPES:,}", root, "types")
        if len(tensors) > MAX_TENSORS:
            self.fail(
                f"{len(tensors):,} tensors; the limit is {MAX_TENSORS:,} (the blocks to solve "
                "grow with their square)",
                root,
                "tensors",
            )
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

    def scalar(self, node: yaml.Node, where: str, name: bool = False) -> object:
        """A scalar's value; with ``name``, a plain scalar that YAML reads as a boolean or
        null is read as written (a type named ``on`` or ``null`` is a name, as it is as a
        key)."""
        self.check_tag(node, where)
        if not isinstance(node, yaml.ScalarNode):
            self.fail(f"expected a single value, got {_describe(node)}", node, where)
        if name and node.style is None and node.tag in _WORDS:
            return node.value
        if problem := _yaml11_problem(node):
            self.fail(problem, node, where)
        try:
            return yaml.constructor.SafeConstructor().construct_object(node)
        except (ValueError, yaml.YAMLError):  # e.g. an integer of 5,000 digits
            self.fail(
                f"cannot read a value of {len(node.value):,} characters as a "
                f"{node.tag.rpartition(':')[2]}; write a smaller number",
                node,
                where,
            )

    def identifier(self, node: yaml.Node, where: str, what: str) -> str:
        value = self.scalar(node, where, name=True)
        problem = identifier_problem(value, what)
        if problem:
            self.fail(problem, node, where)
        return value  # type: ignore[return-value]

    # -- sections -----------------------------------------------------------

    def types(self, node: yaml.Node) -> dict[str, TypeDecl]:
        entries = self.mapping(node, "types")
        if not entries:
            self.fail("declare at least one type", node, "types")
        if len(entries) > MAX_TYPES:
            self.fail(f"{len(entries):,} types; the limit is {MAX_TYPES:,}", node, "types")
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
        if len(entries) > MAX_TENSORS:
            self.fail(
                f"{len(entries):,} tensors; the limit is {MAX_TENSORS:,} (the blocks to solve "
                "grow with their square)",
                node,
                "tensors",
            )
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
            if len(vnode.value) > MAX_AXES:
                self.fail(
                    f"{len(vnode.value)} axes; the limit is {MAX_AXES} per tensor", vnode, where
                )
            axes = tuple(
                self.axis(anode, f"{where}[{i}]", types) for i, anode in enumerate(vnode.value)
            )
            if problem := (
                nesting_problem(axes, types)
                or self.axes_problem(axes, types)
                or axes_count_problem(axes, types)
            ):
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
        raw = self.scalar(node, where, name=True)
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
        if size > MAX_SIZE:
            self.fail(f"size {size:,} is past the limit of {MAX_SIZE:,}", "size")
        return size

    def fail(self, message: str, key: str | None = None, sub: str | None = None) -> NoReturn:
        if key is None:
            self.parser.fail(message, self.node, self.where)
        else:
            where = f"{self.where}.{key}" + (f".{sub}" if sub else "")
            self.parser.fail(message, self.body[key][1], where)


def axes_count_problem(axes: tuple[Axis, ...], types: Mapping[str, TypeDecl]) -> str | None:
    """A tensor with more axes of one group type than :data:`MAX_AXES_OF_A_TYPE`."""
    for name in dict.fromkeys(a.type for a in axes):
        n = sum(a.type == name for a in axes)
        if n > MAX_AXES_OF_A_TYPE and not types[name].fixed:
            return (
                f"{n} axes of the group type {name}; the limit is {MAX_AXES_OF_A_TYPE} per "
                "tensor (a block's basis grows with the set partitions of its axes)"
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
