"""Errors qgen reports to users.

Every error a user can cause by writing a spec is a :class:`SpecError`: it
names the file, the place in the file (line and a path such as
``tensors.W1[1]``) and says what to fix. The CLI prints it on one line and
exits with status 2, without a traceback.
"""

from __future__ import annotations


class QgenError(Exception):
    """Base class of the errors qgen raises on purpose."""


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
        location = self.source or "<spec>"
        if self.line is not None:
            location += f":{self.line}"
        if self.where:
            return f"{location}: {self.where}: {self.message}"
        return f"{location}: {self.message}"


class UsageError(QgenError):
    """A command-line request that cannot be honoured (bad ``--sizes`` etc.)."""
