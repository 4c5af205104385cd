"""Errors qgen reports to users.

Every error a user can cause by writing a spec is a :class:`SpecError`: it
names the file, the place in the file (line and a path such as
``tensors.W1[1]``) and says what to fix. The CLI prints it on one line and
exits with status 2, without a traceback.

Messages quote the user's own text (names, values, the file name), so every message
goes through :func:`one_line` before it is shown: control characters (newlines,
carriage returns, ANSI escapes), bidirectional overrides and other invisible format
characters are escaped, long runs of text are cut with an ellipsis, and the whole
message is at most :data:`MAX_MESSAGE` characters.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_MESSAGE", "QgenError", "SpecError", "UsageError", "OutputError", "one_line"]

#: the longest message (characters) an error shows; the beginning, which names the file
#: and the place, is kept
MAX_MESSAGE = 400
#: the longest run of characters without a space that a message shows whole (a name of
#: more is cut in its middle with an ellipsis; the limit of names is 64)
MAX_RUN = 80
#: the longest file name (path) a message shows whole
MAX_SOURCE = 120

_RUN = re.compile(r"\S{" + str(MAX_RUN + 1) + ",}")


def _escape(ch: str) -> str:
    """``ch`` as shown in a message: itself when printable, else an escape."""
    if ch == " " or (ch.isprintable() and unicodedata.category(ch) not in ("Cf", "Zl", "Zp")):
        return ch
    code = ord(ch)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _cut(text: str, limit: int) -> str:
    """``text`` cut in its middle to ``limit`` characters (an ellipsis marks the cut)."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 2 // 3
    return text[:head] + "\u2026" + text[len(text) - (limit - 1 - head) :]


def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` made safe to print on one line of a terminal.

    >>> one_line("bad\\nname\\x1b[31m")
    'bad\\\\nname\\\\x1b[31m'
    """
    text = str(text)
    if len(text) > 8 * limit:  # keep the work bounded for huge messages
        text = text[: 4 * limit] + " \u2026 " + text[-4 * limit :]
    safe = "".join(_escape(ch) for ch in text)
    safe = _RUN.sub(lambda m: _cut(m.group(0), MAX_RUN), safe)
    if len(safe) > limit:
        safe = safe[: limit - 1] + "\u2026"
    return safe


class QgenError(Exception):
    """Base class of the errors qgen raises on purpose (shown with :func:`one_line`)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class SpecError(QgenError):
    """A spec that cannot be used, with where and why.

    Attributes:
        message: what is wrong and what to do about it.
        source: the spec file (or ``"<string>"``).
        line: 1-based line in the source, when YAML knows it.
        where: dotted path to the offending entry, e.g. ``types.h1.size``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        where: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        location = _cut(one_line(self.source or "<spec>", 4 * MAX_SOURCE), MAX_SOURCE)
        if self.line is not None:
            location += f":{self.line}"
        if self.where:
            return one_line(f"{location}: {one_line(self.where, 160)}: {self.message}")
        return one_line(f"{location}: {self.message}")


class UsageError(QgenError):
    """A command-line request that cannot be honoured (bad ``--sizes`` etc.)."""


class OutputError(QgenError):
    """Generated files that cannot be written where asked (``-o``): the folder, what is
    wrong with it and what to do; nothing has been written."""
