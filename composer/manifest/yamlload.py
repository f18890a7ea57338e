"""Phase 2: YAML text -> located tree, read the way Compose reads it.

Compose uses YAML 1.2's core schema: only ``true``/``false`` are booleans (``yes``, ``no``,
``on`` and ``off`` stay strings), ``0o17`` and ``0x1F`` are integers. PyYAML speaks YAML 1.1,
so this module brings its own resolver and builds the tree from PyYAML's node graph itself:
that is where every node's line and column are known. Duplicate keys are errors, ``<<``
merge keys and aliases work, and the ``!reset``/``!override`` tags are kept on the mapping
that holds the tagged value (see :mod:`composer.manifest.tree`).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar

import yaml

from composer.errors import Loc, ManifestError
from composer.manifest.tree import OVERRIDE, RESET, YMap, YSeq

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_MERGE_TAGS = {"!reset": RESET, "!override": OVERRIDE}

# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_CORE_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    (_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    (_NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN"),
    # Integers as Compose's YAML library reads them (Go's integer syntax): a leading 0 means
    # octal (file modes such as 0440), 0b/0o/0x prefixes and "_" between digits.
    (_INT, re.compile(r"^[-+]?(?:[0-9][0-9_]*|0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+)$"),
     "-+0123456789"),
    (_FLOAT, re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+0123456789."),
    (_MERGE, re.compile(r"^<<$"), "<"),
]


class _CoreLoader(_BaseLoader):  # type: ignore[misc]
    """PyYAML's (C) parser with the YAML 1.2 core resolver instead of 1.1's."""

    yaml_implicit_resolvers: ClassVar[dict[str | None, list[tuple[str, re.Pattern[str]]]]] = {}


for _tag, _regexp, _first in _CORE_RESOLVERS:
    for _ch in _first:
        _CoreLoader.yaml_implicit_resolvers.setdefault(_ch, []).append((_tag, _regexp))
_CoreLoader.yaml_implicit_resolvers.setdefault("", []).append(
    (_NULL, re.compile(r"^$")))


def parse_documents(text: str, filename: str) -> list[YMap]:
    """Every document of ``text`` as a located mapping (an empty document gives an empty one)."""
    loader = _CoreLoader(text)
    try:
        docs: list[YMap] = []
        while loader.check_node():
            node = loader.get_node()
            docs.append(_Builder(filename).top(node))
        return docs
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, filename, text) from None
    except yaml.YAMLError as exc:  # pragma: no cover - reader errors without marks
        raise ManifestError(f"not valid YAML: {exc}", loc=Loc(filename, 1, 1)) from None
    finally:
        loader.dispose()


def _loc(filename: str, node: yaml.Node) -> Loc:
    return Loc(filename, node.start_mark.line + 1, node.start_mark.column + 1)


def _yaml_error(exc: yaml.MarkedYAMLError, filename: str, text: str) -> ManifestError:
    mark = exc.problem_mark or exc.context_mark
    loc = Loc(filename, mark.line + 1, mark.column + 1) if mark else Loc(filename, 1, 1)
    problem = exc.problem or "not valid YAML"
    hint = None
    line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if "\\t" in problem or "\t" in line[: max(len(line) - len(line.lstrip()), 1)]:
        problem = "a tab character is used for indentation"
        hint = "YAML indents with spaces only: replace the tabs at the start of this line"
    elif "mapping values are not allowed" in problem:
        hint = "a value that contains ': ' must be quoted, or the line above is mis-indented"
    elif any(text in problem for text in ("could not find expected ':'", "expected <block end>",
                                          "did not find expected key")):
        hint = "check the indentation of this line against the lines above it"
    elif "end of stream" in problem:
        hint = "a quote or bracket opened earlier is not closed"
    elif "cannot start any token" in problem:
        hint = "quote the value: characters such as @ and ` cannot start a plain YAML value"
    elif "unknown escape character" in problem:
        hint = "in double quotes a backslash starts an escape: use single quotes, or write \\\\"
    elif "found undefined alias" in problem:
        name = re.match(r"\*([^\s,\]}]+)", line[mark.column:]) if mark else None
        problem = f"found undefined alias '{name.group(1)}'" if name else problem
        hint = "define the anchor (&name) before using it as *name"
    return ManifestError(f"invalid YAML: {problem}", loc=loc, hint=hint)


class _Builder:
    """Turns PyYAML nodes into the located tree; one per document."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.active: set[int] = set()

    def top(self, node: yaml.Node) -> YMap:
        value = self.build(node)
        if value is None:
            return YMap(loc=_loc(self.filename, node))
        if not isinstance(value, YMap):
            raise ManifestError(
                "a compose file must be a mapping at the top level",
                loc=_loc(self.filename, node),
                hint="start the file with keys such as 'services:'")
        return value

    def build(self, node: yaml.Node) -> Any:
        if id(node) in self.active:
            raise ManifestError("an alias refers to itself (recursive anchor)",
                                loc=_loc(self.filename, node))
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node)
            if isinstance(node, yaml.SequenceNode):
                items = [self.build(child) for child in node.value]
                return YSeq(items, loc=_loc(self.filename, node),
                            item_locs=[_loc(self.filename, c) for c in node.value])
            assert isinstance(node, yaml.ScalarNode)
            return self.scalar(node)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag in _MERGE_TAGS or tag == "!":
            tag = _STR if node.style else _CoreLoader.resolve(
                _CoreLoader, yaml.ScalarNode, node.value, (True, False))
        value: str = node.value
        if tag == _STR:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return value.lower() == "true"
        if tag == _INT:
            return _to_int(value)
        if tag == _FLOAT:
            return _to_float(value)
        raise ManifestError(f"unsupported YAML tag {node.tag}", loc=_loc(self.filename, node),
                            hint="Compose files use plain YAML values; remove the tag")

    def mapping(self, node: yaml.MappingNode) -> YMap:
        out = YMap(loc=_loc(self.filename, node))
        merged: list[YMap] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.extend(self._merge_sources(value_node))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise ManifestError("a mapping key must be a plain value, not a "
                                    + ("mapping" if isinstance(key_node, yaml.MappingNode)
                                       else "sequence"), loc=_loc(self.filename, key_node))
            key = key_node.value
            if not key_node.style and key_node.tag != _STR:
                kind = _CoreLoader.resolve(_CoreLoader, yaml.ScalarNode, key, (True, False))
                if kind != _STR:
                    word = {_INT: "an integer", _FLOAT: "a number", _BOOL: "a boolean",
                            _NULL: "null"}.get(kind, "not a string")
                    raise ManifestError(
                        f"a mapping key must be a string, but {key or '(empty)'} is {word}",
                        loc=_loc(self.filename, key_node),
                        hint=f'quote the key: "{key}":')
            if key in out:
                first = out.key_locs[key]
                raise ManifestError(
                    f"duplicate key '{key}' (first defined at line {first.line})",
                    loc=_loc(self.filename, key_node),
                    hint="a mapping may name each key once: remove or merge one of them")
            out[key] = self.build(value_node)
            out.key_locs[key] = _loc(self.filename, key_node)
            if value_node.tag in _MERGE_TAGS:
                out.tags[key] = _MERGE_TAGS[value_node.tag]
        # ``<<`` keys fill in what the mapping does not say itself, earliest source first.
        for source in merged:
            for key, value in source.items():
                if key not in out:
                    out[key] = value
                    out.key_locs[key] = source.key_locs.get(key, source.loc or out.loc)  # type: ignore[assignment]
                    if key in source.tags:
                        out.tags[key] = source.tags[key]
        return out

    def _merge_sources(self, node: yaml.Node) -> list[YMap]:
        value = self.build(node)
        sources = value if isinstance(value, YSeq) else [value]
        if not all(isinstance(s, YMap) for s in sources):
            raise ManifestError("a '<<' merge key takes a mapping or a list of mappings",
                                loc=_loc(self.filename, node),
                                hint="write '<<: *anchor' where the anchor names a mapping")
        return list(sources)


def _to_int(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    try:
        return sign * int(body, 0)
    except ValueError:
        pass
    digits = body.replace("_", "")
    try:
        return sign * int(digits, 8 if digits.startswith("0") else 10)
    except ValueError:  # "089": not octal, so Go falls back to reading it as a number
        return sign * int(digits, 10)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)
