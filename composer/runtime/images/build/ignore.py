""".dockerignore: which files of the build context the builder sees, by Docker's rules.

Docker's patterns are Go's ``filepath.Match`` plus ``**``, not gitignore: a pattern is matched
against the whole path from the context root, so ``*.log`` excludes ``a.log`` but not
``sub/a.log`` (write ``**/*.log`` for that). Each line is trimmed, lines starting with ``#``
are comments, ``!`` makes an exception, the pattern is cleaned (``./a`` is ``a``, ``a/`` is
``a``, a leading ``/`` goes), and a pattern that matches a directory matches all below it.
The last pattern that matches a path, or one of its parent directories, decides. Docker's
shortcuts are kept too: ``**x`` at the start is a plain suffix test, ``x**`` at the end a
plain prefix test.

The patterns are translated here, one regular expression each (that also accepts anything
below a matching directory), and evaluated by pathspec's ``PathSpec``, which gives the
last-match-wins order. pathspec's own GitWildMatch patterns are not used: they are gitignore's
rules, not Docker's.

``walk`` lists what the context holds, and like Docker it does not go into an excluded
directory unless an exception pattern, read as plain text, starts with that directory's
path: so ``!sub/keep`` brings ``sub/keep`` back from an excluded ``sub``, but ``!**/keep``
does not. The Dockerfile and the ignore file are read by the builder whatever the patterns
say; like BuildKit, COPY sees them only if the patterns leave them in.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pathspec import PathSpec, RegexPattern

from composer.errors import ComposerError


class IgnoreError(ComposerError):
    """An ignore file holds a pattern Docker would reject."""


@dataclass(frozen=True)
class _Rule:
    text: str
    exception: bool
    line: int


def clean(path: str) -> str:
    """Go's ``filepath.Clean`` for slash paths (``posixpath.normpath`` keeps a leading ``//``;
    Go does not)."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


class IgnoreRules:
    """The patterns of one ignore file, ready to test paths relative to the context root."""

    def __init__(self, patterns: list[str], *, source: Path | None = None) -> None:
        self.source = source
        self._rules: list[_Rule] = []
        for number, text in enumerate(patterns, start=1):
            read = _read_pattern(text, source, number)
            if read is not None:
                self._rules.append(_Rule(*read, number))
        self._spec = PathSpec([RegexPattern(_regex(rule.text, source, rule.line),
                                            include=not rule.exception)
                               for rule in self._rules], backend="simple")

    @classmethod
    def parse(cls, text: str, *, source: Path | None = None) -> IgnoreRules:
        # Lines end at "\n" only (a "\r" before it is trimmed with the other blanks).
        return cls(text.removeprefix("\ufeff").split("\n"), source=source)

    @classmethod
    def load(cls, context_dir: Path, dockerfile: Path) -> IgnoreRules:
        """``<Dockerfile>.dockerignore`` next to the Dockerfile if there is one, else the
        context's ``.dockerignore``, else no patterns. A relative ``dockerfile`` is taken
        from the context directory."""
        dockerfile = dockerfile if dockerfile.is_absolute() else context_dir / dockerfile
        for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"),
                          context_dir / ".dockerignore"):
            if candidate.is_file():
                return cls.parse(candidate.read_text(encoding="utf-8"), source=candidate)
        return cls([])

    @property
    def patterns(self) -> tuple[str, ...]:
        """The cleaned patterns, exceptions with their ``!``."""
        return tuple(("!" if rule.exception else "") + rule.text for rule in self._rules)

    def matches(self, relpath: str) -> bool:
        """Whether the path (relative to the context, ``/``-separated) is excluded."""
        path = clean(relpath).lstrip("/")
        if path in (".", ""):
            return False
        return bool(self._spec.match_file(path))

    def walk(self, context_dir: Path) -> Iterator[str]:
        """The context's entries that are not excluded, as relative paths, parents before
        children, names sorted. Directories are listed too; symlinks are not followed."""
        yield from self._walk(context_dir, "")

    def _walk(self, directory: Path, prefix: str) -> Iterator[str]:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            rel = prefix + entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if not self.matches(rel):
                yield rel
                if is_dir:
                    yield from self._walk(Path(entry.path), rel + "/")
            elif is_dir and self._may_reinclude(rel):
                yield from self._walk(Path(entry.path), rel + "/")

    def _may_reinclude(self, directory: str) -> bool:
        # Docker's test, kept as it is: an exception pattern written as a path under the
        # directory. A wildcard exception does not open an excluded directory in Docker.
        below = directory + "/"
        return any((rule.text + "/").startswith(below) for rule in self._rules if rule.exception)


def _read_pattern(text: str, source: Path | None, line: int) -> tuple[str, bool] | None:
    """A line as Docker's ignore-file reader leaves it: (cleaned pattern, is exception)."""
    if text.startswith("#"):
        return None
    pattern = text.strip()
    if not pattern:
        return None
    exception = pattern.startswith("!")
    if exception:
        pattern = pattern[1:].strip()
        if not pattern:
            raise IgnoreError(f"{source or '.dockerignore'}:{line}: illegal exclusion pattern "
                              '"!"')
    pattern = clean(pattern)
    if len(pattern) > 1 and pattern.startswith("/"):
        pattern = pattern[1:]
    return pattern, exception


def _regex(pattern: str, source: Path | None, line: int) -> re.Pattern[str]:
    """One pattern as a regular expression matching a path that the pattern matches, or that
    lies below a directory it matches (pathspec searches, so it is anchored at both ends)."""
    return re.compile(r"\A(?:" + _body(pattern, source, line) + r")\Z")


def _body(pattern: str, source: Path | None, line: int) -> str:
    below = r"(?:/[\s\S]*)?"
    literal = not re.search(r"[*?\[\\]", pattern)
    if literal:
        return re.escape(pattern) + below
    if pattern.startswith("**") and not re.search(r"[*?\[\\]", pattern[2:]):
        # Docker tests "**suffix" with HasSuffix, so "**foo" matches "afoo" too.
        suffix = pattern[2:]
        alternatives = [r"[\s\S]*" + re.escape(suffix)]
        if suffix.startswith("/"):
            alternatives.append(re.escape(suffix[1:]))
        return "(?:" + "|".join(alternatives) + ")" + below
    if pattern.endswith("**") and not re.search(r"[*?\[\\]", pattern[:-2]):
        # ... and "prefix**" with HasPrefix.
        return re.escape(pattern[:-2]) + r"[\s\S]*"
    return _translate(pattern, source, line) + below


def _translate(pattern: str, source: Path | None, line: int) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if pattern.startswith("*", i):
                i += 1
                if pattern.startswith("/", i):
                    i += 1
                # "**" at the end takes everything; elsewhere any number of directories.
                out.append(".*" if i >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i >= n:
                raise _bad(pattern, source, line, "a trailing backslash escapes nothing")
            out.append(re.escape(pattern[i]))
            i += 1
        elif ch == "[":
            cls, i = _char_class(pattern, i, source, line)
            out.append(cls)
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _char_class(pattern: str, i: int, source: Path | None, line: int) -> tuple[str, int]:
    """``[...]`` from position i (after the ``[``), as filepath.Match reads it: ``^``
    negates, ``a-z`` ranges, ``\\`` escapes; every character is escaped for Python."""
    out = ["["]
    n = len(pattern)
    if pattern.startswith("^", i):
        out.append("^")
        i += 1
    items = 0
    while True:
        if i >= n:
            raise _bad(pattern, source, line, "an unclosed [")
        ch = pattern[i]
        if ch == "]" and items:
            return "".join(out) + "]", i + 1
        low, i = _class_char(pattern, i, source, line)
        out.append(re.escape(low))
        if pattern.startswith("-", i) and not pattern.startswith("-]", i):
            high, i = _class_char(pattern, i + 1, source, line)
            out.append("-" + re.escape(high))
        items += 1


def _class_char(pattern: str, i: int, source: Path | None, line: int) -> tuple[str, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        raise _bad(pattern, source, line, "a malformed [...] range")
    if pattern[i] == "\\":
        if i + 1 >= len(pattern):
            raise _bad(pattern, source, line, "a trailing backslash escapes nothing")
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


def _bad(pattern: str, source: Path | None, line: int, why: str) -> IgnoreError:
    return IgnoreError(f"{source or '.dockerignore'}:{line}: syntax error in pattern "
                       f"{pattern!r}: {why}")
