"""Python source text for generated modules: literals, and lines laid out as ruff format does.

Names from a spec reach generated code only through :func:`lit` (validated identifiers
as double-quoted strings; anything needing an escape is refused).
"""

from __future__ import annotations

__all__ = ["WIDTH", "int_tuple", "lit", "literal_lines", "wrap"]

#: the line length of generated code (ruff format's setting in this project)
WIDTH = 100


def lit(value: object) -> str:
    """A Python literal in the style ruff format writes (double-quoted strings).

    Strings here are validated identifiers, axis names and einsum subscripts; anything
    with a quote or backslash is refused rather than escaped.
    """
    if isinstance(value, str):
        if any(ch in value for ch in '"\\\n') or not value.isprintable():
            raise ValueError(f"refusing to write {value!r} into generated code")
        return f'"{value}"'
    return repr(value)


def wrap(
    indent: int, head: str, items: list[str], tail: str = "", literal: bool = False
) -> list[str]:
    """``head + items + tail`` laid out as ruff format does at line length 100.

    ``head`` ends with the opening bracket and ``tail`` starts with the closing one.
    Calls that do not fit put their arguments on one indented line if that fits;
    collection literals (``literal=True``) and longer calls get one item per line and a
    trailing comma.
    """
    pad = " " * indent
    one = f"{pad}{head}{', '.join(items)}{tail}"
    if len(one) <= WIDTH or not items:
        return [one]
    inner = f"{pad}    {', '.join(items)}"
    if not literal and len(inner) <= WIDTH:
        return [f"{pad}{head}", inner, f"{pad}{tail}"]
    return [f"{pad}{head}", *(f"{pad}    {a}," for a in items), f"{pad}{tail}"]


def int_tuple(items: tuple[int, ...]) -> str:
    """``(1,)`` or ``(1, 2)``."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(map(str, items))})"


def literal_lines(value: object, prefix: int = 0, suffix: int = 0, indent: int = 0) -> str:
    """``value`` (dicts, tuples, lists of literals) as ruff format lays it out: on one line
    if ``prefix + text + suffix`` fits in :data:`WIDTH`, else one item per line (each laid
    out the same way) with a trailing comma; ``indent`` is the enclosing line's indent."""
    one = _inline(value)
    if prefix + len(one) + suffix <= WIDTH or not isinstance(value, dict | tuple | list):
        return one
    if not value:
        return one
    pad = " " * (indent + 4)
    open_, close = {dict: "{}", tuple: "()", list: "[]"}[type(value)]
    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{lit(k)}: "
            lines.append(f"{pad}{key}{literal_lines(v, len(pad) + len(key), 1, indent + 4)},")
    else:
        for v in value:
            lines.append(f"{pad}{literal_lines(v, len(pad), 1, indent + 4)},")
    return "\n".join([open_, *lines, " " * indent + close])


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{lit(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        items = [_inline(v) for v in value]
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return lit(value)
