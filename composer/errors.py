"""The error and warning types every layer raises or reports.

One root, ``ComposerError``; manifest problems carry where they are (file, line, column),
the dotted path in YAML words, and a hint saying what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Loc:
    """A place in a source file: 1-based line and column, as editors show them."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class ComposerError(Exception):
    """The root of every error composer raises on purpose."""


class UsageError(ComposerError):
    """The command line itself is wrong (exit code 2)."""


class ManifestError(ComposerError):
    """A compose file, or a file it names, is wrong.

    Rendered as ``FILE:LINE:COLUMN: path: message`` and, on the next line, ``hint: ...``.
    """

    def __init__(
        self,
        message: str,
        *,
        loc: Loc | None = None,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        head = f"{self.loc}: " if self.loc else ""
        where = f"{self.path}: " if self.path else ""
        text = f"{head}{where}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class CycleError(ManifestError):
    """A cycle (depends_on, extends, include): ``trail`` names every member, first repeated last."""

    def __init__(self, kind: str, trail: list[str], *, loc: Loc | None = None,
                 path: str | None = None, hint: str | None = None) -> None:
        self.trail = trail
        super().__init__(f"{kind} cycle: {' -> '.join(trail)}", loc=loc, path=path, hint=hint)


@dataclass(frozen=True, slots=True)
class ManifestWarning:
    """Something valid that the user should know about (unset variable, unimplemented key...)."""

    message: str
    loc: Loc | None = None
    path: str | None = None

    def __str__(self) -> str:
        head = f"{self.loc}: " if self.loc else ""
        where = f"{self.path}: " if self.path else ""
        return f"{head}{where}{self.message}"
