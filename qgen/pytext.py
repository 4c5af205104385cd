"""Python source text for generated modules: literals, and lines laid out as ruff format does.

Names from a spec reach generated code only through :func:`lit` (validated identifiers
as double-quoted strings; anything needing an escape is refused).
"""

from __future__ import annotations

__all__ = ["WIDTH", "int_tuple", "lit", "wrap"]

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
