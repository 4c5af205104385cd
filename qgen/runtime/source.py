"""Copying top-level definitions out of the runtime modules' source (stdlib ``ast``).

The builder renders a generated module without its runtime, finds the names it uses but
does not define (:func:`free_names`), and pastes those definitions, with everything they
reference, from the runtime modules (:func:`runtime_for`). The text is the runtime
module's own (so it stays ruff-formatted) and the order is the modules' order (so the
output is deterministic): a generated module carries exactly the runtime its program
uses, and still imports torch alone.
"""

from __future__ import annotations

import ast
from functools import cache
from importlib import resources

__all__ = ["RUNTIME_MODULES", "definitions", "extract", "free_names", "runtime_for"]

#: where generated code's helpers live, in the order they are pasted
RUNTIME_MODULES = (
    "qgen.runtime.group",
    "qgen.runtime.quasi",
    "qgen.runtime.mixing",
    "qgen.runtime.commutant",
    "qgen.runtime.counts",
    "qgen.runtime.heads",
    "qgen.runtime.blocks",
)


@cache
def _parsed(module: str) -> tuple[str, tuple[tuple[str, ast.stmt], ...]]:
    """``module``'s text and its top-level definitions as ``(name, node)``, in order."""
    package, _, name = module.rpartition(".")
    text = resources.files(package).joinpath(f"{name}.py").read_text(encoding="utf-8")
    nodes = []
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            nodes.append((node.name, node))
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    nodes.append((t.id, node))
    return text, tuple(nodes)


def definitions(module: str) -> tuple[str, ...]:
    """Names of the top-level functions, classes and assignments of ``module``."""
    return tuple(name for name, _ in _parsed(module)[1])


def extract(module: str, names: list[str] | tuple[str, ...], skip: tuple[str, ...] = ()) -> str:
    """Source of the definitions ``names`` of ``module`` and of the top-level definitions
    they use (transitively, except ``skip``: names the generated file defines itself), in
    the module's order, separated as ruff formats top-level definitions."""
    text, nodes = _parsed(module)
    by_name = dict(nodes)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise KeyError(f"{module} defines no {unknown}; it has {sorted(by_name)}")
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in wanted or name in skip:
            continue
        wanted.add(name)
        used = {n.id for n in ast.walk(by_name[name]) if isinstance(n, ast.Name)}
        todo += sorted(u for u in used if u in by_name and u != name)
    chunks, seen = [], set()
    for name, node in nodes:
        if name in wanted and id(node) not in seen:
            seen.add(id(node))
            start = node.lineno - 1
            if getattr(node, "decorator_list", None):
                start = node.decorator_list[0].lineno - 1
            lines = text.splitlines()[start : node.end_lineno]
            chunks.append("\n".join(lines))
    return "\n\n\n".join(chunks)


def _bound(tree: ast.Module) -> set[str]:
    """Names a module binds at top level (definitions, assignments, imports)."""
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return bound


def _used(node: ast.AST) -> set[str]:
    """Every name ``node`` reads or binds (locals included: a superset of its free names)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def free_names(source: str) -> set[str]:
    """Names that ``source`` reads but does not bind at top level (builtins included)."""
    tree = ast.parse(source)
    return _used(tree) - _bound(tree)


def runtime_for(source: str, modules: tuple[str, ...] = RUNTIME_MODULES) -> str:
    """The runtime definitions that ``source`` (a generated module without its runtime)
    needs: its free names that a runtime module defines, and what those use in turn
    (across modules), pasted module by module in ``modules`` order. A name comes from the
    first module defining it; a name ``source`` binds itself is never copied."""
    owner: dict[str, str] = {}
    for module in modules:
        for name in definitions(module):
            owner.setdefault(name, module)
    tree = ast.parse(source)  # once: the module is large (a deep preset: megabytes)
    have = _bound(tree)
    wanted: set[str] = set()
    todo = sorted(_used(tree) - have)  # free_names(source), without a second parse
    while todo:
        name = todo.pop()
        if name in wanted or name in have or name not in owner:
            continue
        wanted.add(name)
        nodes = dict(_parsed(owner[name])[1])
        todo += sorted(_used(nodes[name]))
    chunks = []
    for module in modules:
        names = [n for n in definitions(module) if n in wanted and owner[n] == module]
        if names:
            chunks.append(extract(module, names, skip=tuple(sorted(have | (wanted - set(names))))))
    return "\n\n\n".join(chunks)
