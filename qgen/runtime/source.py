"""Copying named top-level definitions out of a runtime module's source (stdlib ``ast``).

The builder pastes the definitions a spec needs, with everything they reference among
the module's top-level definitions, into the generated file; the text is the runtime
module's own (so it stays ruff-formatted) and its order is the module's order (so the
output is deterministic).
"""

from __future__ import annotations

import ast
from functools import cache
from importlib import resources

__all__ = ["definitions", "extract"]


@cache
def _parsed(module: str) -> tuple[str, tuple[tuple[str, ast.stmt], ...]]:
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
