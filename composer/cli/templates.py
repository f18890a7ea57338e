"""``--format`` as Docker reads it: ``table``, ``json``, or a Go template, and its tables.

Only the part of Go's text/template that listings use is understood: ``{{.Field}}``,
``{{.Field.Key}}`` into mappings, ``{{json .}}`` and ``{{json .Field}}``, ``{{upper .F}}``,
``{{lower .F}}``, and ``{{.Label "name"}}``; anything else is refused with a clear word rather
than printed wrong. ``table TEMPLATE`` adds a header row (each field's column title) and aligns
the ``\\t``-separated cells as Go's tabwriter does with Docker's settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from composer.errors import UsageError

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}")
_LABEL = re.compile(r'^\.Label\s+"([^"]*)"$')


def _escapes(text: str) -> str:
    # A template given on a command line holds "\t" and "\n" as two characters; Docker's
    # formatter turns them into the real ones.
    return text.replace("\\t", "\t").replace("\\n", "\n")


def _lookup(row: Mapping[str, Any], path: str) -> Any:
    if path == ".":
        return row
    value: Any = row
    for part in path.lstrip(".").split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise UsageError(f"template: can't evaluate field {part}")
        value = value[part]
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<no value>"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_show(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_show(v) for v in value) + "]"
    return str(value)


def _evaluate(action: str, row: Mapping[str, Any]) -> str:
    label = _LABEL.match(action)
    if label:
        labels = row.get("LabelMap") or {}
        return str(labels.get(label[1], ""))
    words = action.split()
    if len(words) == 1 and words[0].startswith("."):
        return _show(_lookup(row, words[0]))
    if len(words) == 2 and words[1].startswith("."):
        functions: dict[str, Callable[[Any], str]] = {
            "json": lambda v: json.dumps(_public(v), ensure_ascii=False, separators=(",", ":")),
            "upper": lambda v: _show(v).upper(), "lower": lambda v: _show(v).lower()}
        if words[0] in functions:
            return functions[words[0]](_lookup(row, words[1]))
    raise UsageError(f"template: unsupported action {{{{{action}}}}}: composer understands "
                     "{{.Field}}, {{json .}}, {{json .Field}}, {{upper .F}}, {{lower .F}} "
                     'and {{.Label "name"}}')


def _public(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: v for k, v in value.items() if k != "LabelMap"}
    return value


def render(template: str, row: Mapping[str, Any]) -> str:
    """One row through a template (without its ``table`` prefix)."""
    return _ACTION.sub(lambda m: _evaluate(m[1], row), _escapes(template))


def header(template: str, titles: Mapping[str, str]) -> str:
    """The header row of a ``table`` template: each ``{{.Field}}`` becomes its title."""
    def title(m: re.Match[str]) -> str:
        words = m[1].split()
        field = words[-1].lstrip(".") if words else ""
        return titles.get(field, field.upper())
    return _ACTION.sub(title, _escapes(template))


def tabulate(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> list[str]:
    """Align ``\\t``-separated cells as Go's tabwriter (Docker's tables: minimum width 10,
    padding 3): each cell followed by a tab is padded to its column's widest plus ``padding``;
    what follows the last tab of a line is left as it is."""
    rows = [line.split("\t") for line in lines]
    columns = max((len(r) - 1 for r in rows), default=0)
    widths = [max([minwidth, *(len(r[i]) + padding for r in rows if i < len(r) - 1)])
              for i in range(columns)]
    out = []
    for r in rows:
        cells = [cell.ljust(widths[i]) if i < len(r) - 1 else cell for i, cell in enumerate(r)]
        out.append("".join(cells))
    return out


def write(rows: Sequence[Mapping[str, Any]], fmt: str, titles: Mapping[str, str],
          default_table: str, emit: Callable[[str], None]) -> None:
    """Rows as ``--format`` asks: ``table`` (``default_table``), ``json`` (one object a line,
    as Docker and Compose print it), ``table TEMPLATE`` or a bare ``TEMPLATE``."""
    if fmt in ("", "table"):
        fmt = default_table
    if fmt == "json":
        for row in rows:
            # Keys in the row's order: the callers build rows in Go's order (map keys
            # sorted, struct fields as declared).
            emit(json.dumps(_public(row), ensure_ascii=False, separators=(",", ":")))
        return
    if fmt.startswith("table"):
        template = fmt[len("table"):].lstrip()
        lines = [header(template, titles), *(render(template, row) for row in rows)]
        for line in tabulate(lines):
            emit(line)
        return
    for row in rows:
        emit(render(fmt, row))
