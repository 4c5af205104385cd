"""A griffe extension: qgen's reST-flavoured docstrings as Markdown for mkdocstrings.

qgen's docstrings are prose written for ``help()`` and Sphinx alike: ``double-backtick``
literals (already Markdown code spans), Sphinx roles such as :class:`Spec` or
:mod:`qgen.data.collate`, and ``Example::`` paragraphs followed by an indented block.
Rendered as Markdown unchanged, a role would print as ``:class:`` followed by code and
every ``::`` would stay in the text. This extension rewrites, before mkdocstrings parses:

* a role ``:kind:`target``` (``~target`` too) into an optional cross-reference: a link
  when ``target`` (tried as written, then inside the object's module and class) is an
  object rendered in the API reference, plain code otherwise (no warning: the docstrings
  also name private helpers that the reference does not render);
* ``text::`` into ``text:`` and a lone ``::`` line into nothing, leaving the indented
  block after it, which Markdown already shows as code;
* a line ending in ``:`` directly followed by a block indented four more spaces (a
  listing such as the generated module's ``W1: [h1, x*]`` lines, which reST reads as a
  block quote) gets the blank line that makes Markdown show the block as code, not as
  a paragraph whose ``*`` would turn into emphasis (Google-style section titles such as
  ``Attributes:`` excepted: the docstring parser reads those).

It also reads Sphinx's attribute comments: ``#:`` lines right above an attribute (the
way ``qgen.kinds.base.GroupKind`` documents the class attributes a kind sets) become
that attribute's docstring, as Sphinx's autodoc would read them.

It changes no file: the docstrings stay as they are for ``help()`` and the doctests.
"""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:py:)?(mod|class|func|meth|attr|data|obj|exc|const):`~?([^`]+)`")
_LITERAL_INTRO = re.compile(r"(\S)::[ \t]*$", re.M)
_LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
# Google-style section titles, which the docstring parser reads (errors.SpecError has one)
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Other Parameters|Attributes|Returns|Yields|Receives"
    r"|Raises|Warns|Examples?|Notes?|Warnings?|Methods|Functions|Classes|Modules):\s*$"
)


def _candidates(obj: griffe.Object, target: str) -> list[str]:
    """Where ``target`` may live, most specific scope first."""
    scopes = []
    scope = obj if obj.is_class or obj.is_module else obj.parent
    while scope is not None:
        scopes.append(scope.path)
        scope = scope.parent
    return [f"{s}.{target}" for s in scopes if not target.startswith(s + ".")] + [target]


def _resolve(obj: griffe.Object, target: str) -> str:
    """The first candidate griffe knows, else ``target`` (left to autorefs, optional)."""
    collection = obj.modules_collection
    for path in _candidates(obj, target):
        try:
            collection.get_member(path)
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError):
            continue
        return path
    return target


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _open_listings(text: str) -> str:
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.rstrip().endswith(":")
            and not _SECTION.match(line)
            and nxt.strip()
            and _indent(nxt) >= _indent(line) + 4
            and not nxt.lstrip().startswith(("* ", "- "))
        ):
            out.append("")
    return "\n".join(out)


def rst_to_markdown(obj: griffe.Object, text: str) -> str:
    def role(m: re.Match) -> str:
        target = m.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if m.group(0).count("`~") else target
        ident = _resolve(obj, target)
        return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'

    text = _ROLE.sub(role, text)
    text = _LONE_LITERAL.sub("", text)
    return _open_listings(_LITERAL_INTRO.sub(r"\1:", text))


def _comment_docstring(obj: griffe.Object) -> str | None:
    """The ``#:`` comment lines directly above an attribute's assignment, joined."""
    try:
        lines = obj.lines_collection[obj.filepath]
    except (KeyError, TypeError, AttributeError):
        return None
    if not obj.lineno or not isinstance(lines, list):
        return None
    doc: list[str] = []
    i = obj.lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        doc.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    return " ".join(doc) or None


class RstRoles(griffe.Extension):
    """Rewrite every docstring of every object griffe loads (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.is_attribute and obj.docstring is None:
            text = _comment_docstring(obj)
            if text:
                obj.docstring = griffe.Docstring(text, lineno=obj.lineno, parent=obj)
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj, obj.docstring.value)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)
