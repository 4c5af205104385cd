"""Python source text for generated modules: literals, and the layout by ``ruff format``.

Names from a spec reach generated code only through :func:`lit` (validated identifiers
as double-quoted strings; anything needing an escape is refused); other text from the
user (the spec's file name, in the module docstring) only through :func:`doc_text`.
Every rendered module goes through :func:`format_source`, the pinned ``ruff format`` (a
dependency of qgen), so templates and the emitter write plain code and never lay out lines by hand.
"""

from __future__ import annotations

import subprocess

__all__ = ["WIDTH", "doc_text", "format_source", "int_tuple", "lit", "literal"]

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


#: characters :func:`doc_text` writes as themselves
_DOC_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._+-=@,()[]")


def doc_text(value: str, limit: int = 100) -> str:
    r"""``value`` (text the user chose, such as a file name) for a docstring: letters,
    digits and a few marks as themselves, every other character as a ``\xNN`` or
    ``\uNNNN`` escape, so no quote, backslash or line break of the value reaches the
    source; at most ``limit`` characters of it.

    >>> print(doc_text('a"b\nc.yaml'))
    a\x22b\x0ac.yaml
    """
    if len(value) > limit:
        value = value[: limit - 3] + "..."
    out = []
    for ch in value:
        code = ord(ch)
        if ch in _DOC_SAFE:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


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
