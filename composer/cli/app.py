"""The application object: owns the console streams, warnings and exit codes.

Commands are thin functions over it; core code never prints, it raises or reports warnings.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import NoReturn, TextIO

from composer.errors import ComposerError, ManifestWarning, UsageError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class Abort(Exception):
    """Raised by :meth:`App.abort`; carries the exit code to ``main``."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class App:
    def __init__(self, stdout: TextIO | None = None, stderr: TextIO | None = None,
                 color: bool | None = None) -> None:
        self.out = stdout or sys.stdout
        self.err = stderr or sys.stderr
        if color is None:
            color = self.err.isatty() and not os.environ.get("NO_COLOR")
        self.color = color

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def warn(self, message: str) -> None:
        self.err.write(f"{self._paint('warning', '33')}: {message}\n")

    def warnings(self, items: Iterable[ManifestWarning]) -> None:
        for item in items:
            self.warn(str(item))

    def error(self, message: str) -> None:
        self.err.write(f"{self._paint('error', '31;1')}: {message}\n")

    def abort(self, message: str, code: int = EXIT_ERROR) -> NoReturn:
        self.error(message)
        raise Abort(code)

    def fail(self, exc: ComposerError) -> NoReturn:
        self.abort(str(exc), EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR)
