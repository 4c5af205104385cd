"""Python source text for generated modules: literals, and the layout by ``ruff format``.

Names from a spec reach generated code only through :func:`lit` (validated identifiers
as double-quoted strings; anything needing an escape is refused). Every rendered module
goes through :func:`format_source`, the pinned ``ruff format`` (a dependency of qgen), so
templates and the emitter write plain code and never lay out lines by hand.
"""

from __future__ import annotations

import subprocess

__all__ = ["WIDTH", "format_source", "int_tuple", "lit", "literal"]

#: the line length of generated code (ruff format's setting in this project)
WIDTH = 100
#: the Python version generated code targets (ruff's --target-version)
TARGET = "py310"


def format_source(source: str, name: str = "generated.py") -> str:
    """``source`` as ``ruff format`` lays it out (line length :data:`WIDTH`, no config file
    read: the output depends on the text and ruff's version alone). Raises ``SyntaxError``
    with ruff's message when the text does not parse."""
    from ruff.__main__ import find_ruff_bin

    command = [find_ruff_bin(), "format", "--isolated", f"--line-length={WIDTH}"]
    command += [f"--target-version={TARGET}", f"--stdin-filename={name}", "-"]
    done = subprocess.run(command, input=source, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SyntaxError(f"ruff format refused generated {name}: {done.stderr.strip()}")
    return done.stdout


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


def int_tuple(items: tuple[int, ...]) -> str:
    """``(1,)`` or ``(1, 2)``."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(map(str, items))})"


def literal(value: object) -> str:
    """``value`` (dicts, tuples, lists of literals) as one line of Python; ruff format lays
    it out afterwards."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{lit(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        items = [literal(v) for v in value]
        if not items:
            return "()"
        return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return lit(value)
