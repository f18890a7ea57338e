"""``.env`` files and service ``env_file`` files, read as Docker Compose v2 reads them.

The default syntax (Compose's dotenv): ``KEY=VALUE`` or ``KEY: VALUE``, an optional ``export``
in front, ``#`` comments, blank lines; values unquoted (trimmed, cut at `` #``, interpolated),
'single-quoted' (literal, may span lines), or "double-quoted" (``\\n``-style escapes, then
interpolation; may span lines); a bare ``KEY`` takes its value from the lookup, or is left out.
Interpolation looks in the lookup first and then at keys set earlier in the same file.

Compose's surprises kept on purpose: text after a closing quote on the same line starts a new
statement (``A='x'y=2`` sets A and y); a tab before ``#`` does not start a comment; ``=1`` sets
an empty-named key. One deliberate difference: a bare key on the last line without a newline
is inherited like any bare key (Compose sets the empty-named key to it).

``format: raw`` files (Docker's ``--env-file`` syntax) take everything after the first ``=``
literally.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Callable

from composer.errors import Loc, ManifestError, ManifestWarning
from composer.manifest.interpolate import InvalidTemplate, MissingVariable, substitute

Lookup = Callable[[str], str | None]
Warn = Callable[[ManifestWarning], None]

#: Go's unicode.IsSpace minus the line breaks: what may sit around keys and values.
_BLANKS = frozenset("\t\v\f\r \x85\xa0")
_KEY_PUNCTUATION = frozenset("_.-[]")
_EXPORT = re.compile(r"export[\t\n\f\r ]+")
_ESCAPE = re.compile(r"\\(?:[abcfnrtv$\"\\]|0[0-9]{0,3})")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", '"': '"', "\\": "\\", "$": "$$"}
_HINT_LINE = "write KEY=VALUE, one per line; quote values that need spaces or '#'"


def parse_dotenv(text: str, filename: str, lookup: Lookup | None = None, *,
                 warn: Warn | None = None) -> dict[str, str]:
    """The variables a dotenv text sets, in file order."""
    return _Parser(text.removeprefix("\ufeff"), filename, lookup, warn).run()


def read_dotenv(path: str, lookup: Lookup | None = None, *, required: bool = True,
                warn: Warn | None = None) -> dict[str, str]:
    """Read and parse a dotenv file; a missing optional file sets nothing."""
    text = _read(path, required)
    return {} if text is None else parse_dotenv(text, path, lookup, warn=warn)


def read_env_file(path: str, *, fmt: str | None, lookup: Lookup | None, required: bool,
                  warn: Warn | None = None) -> dict[str, str]:
    """A service ``env_file`` entry: dotenv syntax, or ``format: raw``."""
    if fmt not in (None, "raw"):
        raise ManifestError(f'unsupported env_file format "{fmt}"',
                            hint='leave format out for dotenv syntax, or write "raw"')
    text = _read(path, required)
    if text is None:
        return {}
    if fmt == "raw":
        return parse_raw(text, path, lookup)
    return parse_dotenv(text, path, lookup, warn=warn)


def _read(path: str, required: bool) -> str | None:
    try:
        # newline="" keeps "\r" as written: Compose keeps it inside quoted values.
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        if not required:
            return None
        raise ManifestError(f"env file {path} not found",
                            hint="create the file, fix the path, or mark it 'required: false'"
                            ) from None
    except IsADirectoryError:
        raise ManifestError(f"env file {path} is a directory",
                            hint="name a file of KEY=VALUE lines") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"env file {path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ManifestError(f"cannot read env file {path}: {exc.strerror}") from None


def parse_raw(text: str, filename: str, lookup: Lookup | None = None) -> dict[str, str]:
    """Docker's ``--env-file`` syntax: no quotes, escapes, comments after values or ``$``."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = line.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, has_value, value = line.partition("=")
        if " " in key or "\t" in key:
            raise ManifestError(f"variable name {key!r} contains whitespace",
                                loc=Loc(filename, number, 1), hint=_HINT_LINE)
        if not key:
            raise ManifestError(f"no variable name on line {line!r}",
                                loc=Loc(filename, number, 1), hint=_HINT_LINE)
        if has_value:
            out[key] = value
        elif lookup is not None and (inherited := lookup(key)) is not None:
            out[key] = inherited
    return out


def _is_key_char(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char in _KEY_PUNCTUATION
    return unicodedata.category(char)[0] in "LN"


def _expand_escape(match: re.Match[str]) -> str:
    body = match.group()[1:]
    if body[0] != "0":
        return _SIMPLE_ESCAPES.get(body, match.group())
    digits = body[1:]
    # Compose drops the 0 and reads exactly three octal digits up to 255; else keeps the text.
    if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
        return chr(int(digits, 8))
    return "\\" + digits


class _Parser:
    def __init__(self, text: str, filename: str, lookup: Lookup | None,
                 warn: Warn | None) -> None:
        self.text = text
        self.filename = filename
        self.lookup = lookup
        self.warn = warn
        self.out: dict[str, str] = {}
        self.pos = 0
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._warned: set[str] = set()
        self._value_pos = 0

    def loc(self, pos: int) -> Loc:
        line = bisect_right(self._line_starts, pos)
        return Loc(self.filename, line, pos - self._line_starts[line - 1] + 1)

    def fail(self, message: str, pos: int, hint: str = _HINT_LINE) -> ManifestError:
        return ManifestError(message, loc=self.loc(pos), hint=hint)

    def run(self) -> dict[str, str]:
        while self._skip_to_statement():
            self._statement()
        return self.out

    def _skip_to_statement(self) -> bool:
        """Skip blanks, line breaks and comment lines; False at the end of the text."""
        text, size = self.text, len(self.text)
        while self.pos < size:
            char = text[self.pos]
            if char == "#":
                newline = text.find("\n", self.pos)
                self.pos = size if newline == -1 else newline
            elif char.isspace():
                self.pos += 1
            else:
                return True
        return False

    def _statement(self) -> None:
        text, size = self.text, len(self.text)
        if match := _EXPORT.match(text, self.pos):
            self.pos = match.start() + len("export")
            while self.pos < size and text[self.pos] in _BLANKS:
                self.pos += 1
        start = i = self.pos
        while i < size and text[i] not in "=:\n":
            char = text[i]
            if char not in _BLANKS and not _is_key_char(char):
                line_end = text.find("\n", start)
                line = text[start:line_end if line_end != -1 else size]
                raise self.fail(f'unexpected character "{char}" in variable name "{line}"', i,
                                hint="variable names use letters, digits, '_', '.', '-', "
                                     "'[' and ']'; " + _HINT_LINE)
            i += 1
        key = text[start:i].rstrip()
        if " " in key:
            raise self.fail(f'variable name "{key}" contains a space', start)
        if i >= size or text[i] == "\n":
            self.pos = i + 1
            value = self.lookup(key) if self.lookup is not None else None
            if value is not None:
                self.out[key] = value
            return
        i += 1
        while i < size and text[i] in _BLANKS:
            i += 1
        self.pos = i
        if i < size and text[i] in "'\"":
            self.out[key] = self._quoted()
        else:
            self.out[key] = self._unquoted()

    def _unquoted(self) -> str:
        start = self.pos
        end = self.text.find("\n", start)
        if end == -1:
            end = len(self.text)
        self.pos = end + 1
        value = self.text[start:end]
        comment = value.find(" #")
        if comment != -1:
            value = value[:comment]
        return self._interpolate(value.rstrip(), start)

    def _quoted(self) -> str:
        text, size = self.text, len(self.text)
        opening = self.pos
        quote = text[opening]
        chars: list[str] = []
        escaped = False
        i = opening + 1
        while i < size:
            char = text[i]
            i += 1
            if char == quote and not escaped:
                break
            if escaped:
                escaped = False
                if char != quote:
                    chars.append("\\")
            elif char == "\\":
                escaped = True
                continue
            chars.append(char)
        else:
            line_end = text.find("\n", opening)
            shown = text[opening:line_end if line_end != -1 else size]
            raise self.fail(f"unterminated quoted value {shown}", opening,
                            hint=f"close the {quote} opened here")
        self.pos = i
        value = "".join(chars)
        if quote == "'":
            return value
        return self._interpolate(_ESCAPE.sub(_expand_escape, value), opening)

    def _interpolate(self, value: str, pos: int) -> str:
        if "$" not in value:
            return value
        self._value_pos = pos
        try:
            return substitute(value, self._resolve, self._unset)
        except InvalidTemplate:
            raise self.fail(f"invalid interpolation format in {value!r}", pos,
                            hint="write $$ for a literal $, or use single quotes") from None
        except MissingVariable as exc:
            raise self.fail(str(exc), pos,
                            hint=f"set {exc.name} in the environment or earlier in this file"
                            ) from None

    def _resolve(self, name: str) -> str | None:
        # Compose asks the lookup (the environment) before the file's own earlier keys.
        if self.lookup is not None:
            value = self.lookup(name)
            if value is not None:
                return value
        return self.out.get(name)

    def _unset(self, name: str) -> None:
        if self.warn is not None and name not in self._warned:
            self._warned.add(name)
            self.warn(ManifestWarning(
                f'The "{name}" variable is not set. Defaulting to a blank string.',
                loc=self.loc(self._value_pos)))
