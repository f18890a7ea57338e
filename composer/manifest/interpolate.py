"""Phase 3: ``${VAR}`` interpolation in compose files, as Docker Compose v2 does it.

Forms: ``$NAME``, ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``,
``${NAME?error}``, ``${NAME:+alternate}``, ``${NAME+alternate}``, nested in the default
(``${A:-${B:-x}}``), and ``$$`` for a literal ``$``. A ``$`` not followed by a name, ``$`` or
``{`` stays as it is.

Compose's quirks kept on purpose, so a file means the same here as there:

- the text after the operator is interpolated before the variable is looked at, so
  ``${SET:-${UNSET}}`` warns about ``UNSET`` and ``${SET:-${X:?e}}`` fails when X is unset;
- the closing brace is found by counting ``${`` as openers and any ``}`` as a closer, and it
  must be on the same line as the operator (Compose's pattern does not cross newlines);
- an unset variable used with ``:+``/``+``/``:-``/``-`` is not warned about.

Keys are never interpolated; every string value is, ``x-*`` extensions and ``environment``
included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from composer.errors import Loc, ManifestError, ManifestWarning
from composer.manifest.tree import YMap, YSeq, dotted

Lookup = Callable[[str], str | None]

_NAME_START = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
_HINT_SYNTAX = ("write $$ for a literal $; variables are $NAME, ${NAME}, ${NAME:-default}, "
                "${NAME:?error} or ${NAME:+alternate}")


class InvalidTemplate(Exception):
    """The text is not valid interpolation syntax (Compose: "invalid interpolation format")."""

    def __init__(self, template: str) -> None:
        super().__init__(template)
        self.template = template


class MissingVariable(Exception):
    """A ``${NAME:?reason}`` or ``${NAME?reason}`` variable has no acceptable value."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        # Compose's exact words, which users search for.
        text = f"required variable {name} is missing a value"
        super().__init__(f"{text}: {reason}" if reason else text)


@dataclass(frozen=True, slots=True)
class _Ref:
    """One variable reference; ``arg`` is the raw text after the operator."""

    name: str
    op: str | None = None
    arg: str = ""


_Part = str | _Ref


def _parse(text: str) -> list[_Part]:
    """Split a template into literal text and references (a linear scan, no regex)."""
    parts: list[_Part] = []
    size = len(text)
    start = 0  # start of the pending literal run
    i = text.find("$")
    while i != -1:
        nxt = text[i + 1] if i + 1 < size else ""
        if nxt == "$":
            parts.append(text[start:i + 1])
            start = i + 2
        elif nxt in _NAME_START:
            end = _name_end(text, i + 1)
            parts.append(text[start:i])
            parts.append(_Ref(text[i + 1:end]))
            start = end
        elif nxt == "{":
            ref, end = _braced(text, i)
            parts.append(text[start:i])
            parts.append(ref)
            start = end
        else:
            # "$" before anything else is literal text, as in Compose.
            i = text.find("$", i + 1)
            continue
        i = text.find("$", start)
    parts.append(text[start:])
    return [p for p in parts if p != ""]


def _name_end(text: str, pos: int) -> int:
    size = len(text)
    while pos < size and text[pos] in _NAME_CHARS:
        pos += 1
    return pos


def _braced(text: str, dollar: int) -> tuple[_Ref, int]:
    """Parse ``${...}`` starting at ``dollar``; return the reference and the index after it."""
    begin = dollar + 2
    if begin >= len(text) or text[begin] not in _NAME_START:
        raise InvalidTemplate(text)
    end = _name_end(text, begin)
    name = text[begin:end]
    if text.startswith("}", end):
        return _Ref(name), end + 1
    op = next((o for o in _OPERATORS if text.startswith(o, end)), None)
    if op is None:
        raise InvalidTemplate(text)
    line_end = text.find("\n", end)
    if line_end == -1:
        line_end = len(text)
    last = text.rfind("}", end, line_end)
    if last == -1:
        raise InvalidTemplate(text)
    close = _matching_close(text, dollar, last)
    return _Ref(name, op, text[end + len(op):close]), close + 1


def _matching_close(text: str, dollar: int, last: int) -> int:
    """Compose's brace count: ``${`` opens, any ``}`` closes; ``last`` if it never balances."""
    depth = 1
    i = dollar + 2
    while i <= last:
        char = text[i]
        if char == "}":
            depth -= 1
            if depth == 0:
                return i
        elif char == "$" and text.startswith("{", i + 1):
            depth += 1
            i += 1
        i += 1
    return last


def substitute(text: str, lookup: Lookup, on_unset: Callable[[str], None]) -> str:
    """Interpolate ``text``; raise :class:`InvalidTemplate` or :class:`MissingVariable`."""
    if "$" not in text:
        return text
    out: list[str] = []
    for part in _parse(text):
        out.append(part if isinstance(part, str) else _evaluate(part, lookup, on_unset))
    return "".join(out)


def _evaluate(ref: _Ref, lookup: Lookup, on_unset: Callable[[str], None]) -> str:
    value = lookup(ref.name)
    if ref.op is None:
        if value is None:
            on_unset(ref.name)
            return ""
        return value
    # Compose interpolates the argument first, whether or not it ends up used.
    arg = substitute(ref.arg, lookup, on_unset)
    op = ref.op
    if op == ":-":
        return value or arg
    if op == "-":
        return arg if value is None else value
    if op == ":+":
        return arg if value else (value or "")
    if op == "+":
        return arg if value is not None else ""
    if value is None or (op == ":?" and value == ""):
        raise MissingVariable(ref.name, arg)
    return value


class Interpolator:
    """Interpolates strings and trees against one environment, warning once per unset name."""

    def __init__(self, env: Mapping[str, str], warn: Callable[[ManifestWarning], None]) -> None:
        self.env = env
        self.warn = warn
        self._warned: set[str] = set()
        self._loc: Loc | None = None
        self._path = ""

    def text(self, value: str, *, loc: Loc | None = None, path: str = "") -> str:
        """``value`` interpolated; errors carry ``loc`` and the dotted ``path``."""
        if "$" not in value:
            return value
        self._loc, self._path = loc, path
        try:
            return substitute(value, self.env.get, self._unset)
        except InvalidTemplate:
            raise ManifestError(f"invalid interpolation format in {value!r}", loc=loc,
                                path=path or None, hint=_HINT_SYNTAX) from None
        except MissingVariable as exc:
            raise ManifestError(str(exc), loc=loc, path=path or None,
                                hint=f"set {exc.name} in the environment or in the .env file"
                                ) from None

    def _unset(self, name: str) -> None:
        if name in self._warned:
            return
        self._warned.add(name)
        self.warn(ManifestWarning(
            f'The "{name}" variable is not set. Defaulting to a blank string.',
            loc=self._loc, path=self._path or None))

    def tree(self, root: YMap) -> YMap:
        """Interpolate every string value under ``root`` in place (keys stay as written)."""
        self._walk(root, ())
        return root

    def _walk(self, node: dict[str, Any] | list[Any], path: tuple[str | int, ...]) -> None:
        # Plain dicts and lists are walked too (a phase may have built some); they have no places.
        steps: Iterable[tuple[Any, Any]] = (
            node.items() if isinstance(node, dict) else enumerate(node))
        for step, value in steps:
            if isinstance(value, str):
                if "$" in value:
                    where = node.loc_of(step) if isinstance(node, YMap | YSeq) else None
                    node[step] = self.text(value, loc=where, path=dotted((*path, step)))
            elif isinstance(value, dict | list):
                self._walk(value, (*path, step))


@dataclass(frozen=True, slots=True)
class Variable:
    """A variable a project uses, for ``composer config --variables``."""

    name: str
    required: bool
    default: str | None
    alternate: str | None


def list_variables(root: YMap) -> list[Variable]:
    """Every variable the string values under ``root`` use, sorted by name.

    Like Compose, the top-level ``name:`` is left out, defaults and alternates are shown as
    written (not interpolated), and variables nested in a default are listed too. Where a name
    is used several times, it is required if any use requires it and the first default and
    alternate written win (Compose picks one use at random).
    """
    found: dict[str, Variable] = {}
    for key, value in root.items():
        if key != "name":
            for text in _strings(value):
                _collect(text, found)
    return [found[name] for name in sorted(found)]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        if "$" in node:
            yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _collect(text: str, found: dict[str, Variable]) -> None:
    try:
        parts = _parse(text)
    except InvalidTemplate:
        return  # reported by interpolation itself; nothing sensible to list
    for part in parts:
        if isinstance(part, str):
            continue
        op = part.op or ""
        new = Variable(part.name, required="?" in op,
                       default=part.arg if "-" in op else None,
                       alternate=part.arg if "+" in op else None)
        old = found.get(part.name)
        if old is not None:
            new = Variable(part.name, required=old.required or new.required,
                           default=old.default if old.default is not None else new.default,
                           alternate=old.alternate if old.alternate is not None
                           else new.alternate)
        found[part.name] = new
        if part.arg and "$" in part.arg:
            _collect(part.arg, found)
