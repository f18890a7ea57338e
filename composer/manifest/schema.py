"""Phase 4: coerce scalar types, then check one file against ``schemas/compose.schema.json``.

The schema describes a file *after* interpolation, so booleans and numbers have their own
types there. Strings still reach those places (``privileged: ${PRIV}``, ``scale: "3"``), and
Compose converts them; :func:`validate` does the same first, finding the places by walking the
schema beside the tree, so the schema stays the one list of what is allowed and typed.

Alternatives in the schema are type unions (``"type": ["string", "object"]``) rather than
``oneOf``: every keyword then applies to one kind of value, and a failure has one cause that
can be named in YAML words, with the file, line and column of the culprit.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from composer.errors import ManifestError, ManifestWarning
from composer.manifest import known_valid
from composer.manifest.tree import Path, YMap, dotted, locate

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

Warn = Callable[[ManifestWarning], None]
Schema = dict[str, Any]

_SCHEMA_FILE = "compose.schema.json"
_TRUE_WORDS = frozenset({"y", "yes", "on"})
_FALSE_WORDS = frozenset({"n", "no", "off"})
# Go's strconv.Atoi / ParseFloat syntax, which is what Compose accepts (no spaces, no hex).
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KIND_WORDS = {
    "string": "a string", "boolean": "a boolean", "integer": "an integer",
    "number": "a number", "object": "a mapping", "array": "a sequence", "null": "null",
}
_UNSET_HINT = "an unset variable gives an empty string: set it, or give a default like ${VAR:-%s}"


def schema_path() -> FilePath:
    """Where ``compose.schema.json`` is: ``composer/_schemas`` when installed, else ``schemas``."""
    package = FilePath(__file__).resolve().parent.parent
    installed = package / "_schemas" / _SCHEMA_FILE
    if installed.is_file():
        return installed
    return package.parent / "schemas" / _SCHEMA_FILE


@functools.cache
def load_schema() -> Schema:
    """The parsed schema (read once per process)."""
    with schema_path().open(encoding="utf-8") as handle:
        schema: Schema = json.load(handle)
    return schema


@functools.cache
def _schema_bytes() -> bytes:
    return schema_path().read_bytes()


@functools.cache
def _inlined() -> Schema:
    """The schema with every ``$ref`` replaced by its target: validates about 40% faster."""
    defs = load_schema()["$defs"]

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: inline(v) for k, v in node.items() if k not in ("$ref", "$defs")}
            ref = node.get("$ref")
            if isinstance(ref, str):
                # Siblings of a $ref (a title, a `required`) never clash with its target's keys.
                out = {**inline(defs[ref.removeprefix("#/$defs/")]), **out}
            return out
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    inlined: Schema = inline(load_schema())
    return inlined


@functools.cache
def _validator() -> Validator:
    from jsonschema import Draft202012Validator

    # The schema is checked against the meta-schema by the tests, not on every start.
    return Draft202012Validator(_inlined())


def validate(root: YMap, *, warn: Warn, raw: bool = False) -> None:
    """Coerce strings to the booleans and numbers the schema asks for, then check ``root``.

    ``raw``: the file was not interpolated (``config --no-interpolate``), so a string holding
    a variable may stand where the schema wants something else; only those are let through.
    Raises the first problem in file order as a :class:`ManifestError`.
    """
    plan = _root_plan()
    if plan.live:
        _coerce(root, root, plan, (), warn, raw)
    key = None if raw else known_valid.digest(root, _schema_bytes())
    if key is not None and known_valid.known(key):
        return
    if _validator().is_valid(root):
        if key is not None:
            known_valid.remember(key)
        return
    found = problems(root, raw=raw)
    if raw and not found:
        return
    raise found[0] if found else ManifestError("does not match the compose file schema",
                                                loc=getattr(root, "loc", None))


def problems(root: Any, *, raw: bool = False) -> list[ManifestError]:
    """Every schema problem of ``root``, one error each, in file order (no coercion here)."""
    out: list[ManifestError] = []
    for error in _validator().iter_errors(root):
        if raw and isinstance(error.instance, str) and "$" in error.instance:
            continue
        out.extend(_explain(root, _most_specific(error)))
    out.sort(key=lambda e: (e.loc.line, e.loc.column) if e.loc else (0, 0))
    return out


# --- coercion: a plan per schema node, walked beside the tree --------------------------------

@dataclass(eq=False)
class _Plan:
    """What the schema says about one place: children, and the scalar type a string becomes."""

    props: dict[str, _Plan] = field(default_factory=dict)
    patterns: list[tuple[re.Pattern[str], _Plan]] = field(default_factory=list)
    extra: _Plan | None = None
    items: _Plan | None = None
    target: str | None = None
    live: bool = False

    def child(self, key: str) -> _Plan | None:
        found = self.props.get(key)
        if found is not None:
            return found
        for pattern, plan in self.patterns:
            if pattern.search(key):
                return plan
        return self.extra


# Schema nodes by id: plans are cached per tuple of node ids (dicts are not hashable).
_NODES: dict[int, Any] = {}


def _register(node: Any) -> int:
    _NODES[id(node)] = node
    return id(node)


def _flatten(node: Any) -> Iterator[Schema]:
    """``node`` and every schema it pulls in through the combinators."""
    if not isinstance(node, dict):
        return
    yield node
    for word in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(word, ()):
            yield from _flatten(branch)


@functools.cache
def _root_plan() -> _Plan:
    return _plan_for((_register(_inlined()),))


@functools.cache
def _plan_for(ids: tuple[int, ...]) -> _Plan:
    nodes = [n for i in ids for n in _flatten(_NODES[i])]
    plan = _Plan()
    types: set[str] | None = set()
    props: dict[str, list[int]] = {}
    patterns: dict[str, list[int]] = {}
    extra: list[int] = []
    items: list[int] = []
    for node in nodes:
        kind = node.get("type")
        if kind is None:
            if not any(k in node for k in ("allOf", "anyOf", "oneOf")):
                types = None  # accepts anything, strings included
        elif types is not None:
            types.update([kind] if isinstance(kind, str) else kind)
        for key, sub in node.get("properties", {}).items():
            props.setdefault(key, []).append(_register(sub))
        for key, sub in node.get("patternProperties", {}).items():
            patterns.setdefault(key, []).append(_register(sub))
        if isinstance(node.get("additionalProperties"), dict):
            extra.append(_register(node["additionalProperties"]))
        if isinstance(node.get("items"), dict):
            items.append(_register(node["items"]))
    if types is not None and "string" not in types:
        plan.target = next((t for t in ("boolean", "number", "integer") if t in types), None)
    plan.props = {k: _plan_for(tuple(v)) for k, v in props.items()}
    plan.patterns = [(re.compile(k), _plan_for(tuple(v))) for k, v in patterns.items()]
    plan.extra = _plan_for(tuple(extra)) if extra else None
    plan.items = _plan_for(tuple(items)) if items else None
    children = [*plan.props.values(), *(p for _, p in plan.patterns), plan.extra, plan.items]
    plan.live = plan.target is not None or any(c is not None and c.live for c in children)
    return plan


def _coerce(root: YMap, node: Any, plan: _Plan, path: Path, warn: Warn,
            raw: bool = False) -> None:
    entries: Iterable[tuple[Any, Any, _Plan | None]]
    if isinstance(node, dict):
        entries = ((k, v, plan.child(k)) for k, v in node.items() if isinstance(k, str))
    elif isinstance(node, list) and plan.items is not None:
        entries = ((i, v, plan.items) for i, v in enumerate(node))
    else:
        return
    for key, value, sub in list(entries):
        if sub is None or not sub.live:
            continue
        if isinstance(value, str):
            if sub.target is not None and not (raw and "$" in value):
                node[key] = _convert(value, sub.target, root, (*path, key), warn)
        elif isinstance(value, (dict, list)):
            _coerce(root, value, sub, (*path, key), warn, raw)


def _convert(text: str, target: str, root: YMap, path: Path, warn: Warn) -> bool | int | float:
    """``text`` read as Compose reads a string where a boolean or a number belongs."""
    lowered = text.lower()
    if target == "boolean":
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered in _TRUE_WORDS or lowered in _FALSE_WORDS:
            value = lowered in _TRUE_WORDS
            word = "true" if value else "false"
            warn(ManifestWarning(
                f'YAML 1.2 has no boolean "{text}": read as {word} (write {word})',
                loc=locate(root, path), path=dotted(path)))
            return value
        raise _bad_scalar(text, "a boolean", "use true or false", "false", root, path)
    if _INT_TEXT.fullmatch(text):
        return int(text)
    if target == "number" and _FLOAT_TEXT.fullmatch(text):
        return float(text)
    noun = "an integer" if target == "integer" else "a number"
    hint = "write a whole number" if target == "integer" else "write a number like 2 or 0.5"
    raise _bad_scalar(text, noun, hint, "0", root, path)


def _bad_scalar(text: str, noun: str, hint: str, default: str, root: YMap,
                path: Path) -> ManifestError:
    if text == "":
        return ManifestError(f"must be {noun}, got an empty string", loc=locate(root, path),
                             path=dotted(path), hint=_UNSET_HINT % default)
    return ManifestError(f"must be {noun}, got '{text}'", loc=locate(root, path),
                         path=dotted(path), hint=hint)


# --- errors: one per problem, in YAML words ------------------------------------------------

def _most_specific(error: ValidationError) -> ValidationError:
    """For an anyOf/oneOf failure, the deepest error of the branch that fits the value best."""
    while error.context:
        branches: dict[Any, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)

        def score(errs: list[ValidationError]) -> tuple[bool, int]:
            # A branch that failed only on the kind of value does not fit; deeper is better.
            wrong_kind = all(e.validator == "type" and not e.relative_path for e in errs)
            return (not wrong_kind, max(len(e.absolute_path) for e in errs))

        best = max(branches.values(), key=score)
        error = max(best, key=lambda e: len(e.absolute_path))
    return error


def _schema_trail(error: ValidationError) -> list[Schema]:
    """The schema nodes from the root to the failing keyword (in the inlined schema)."""
    node: Any = _inlined()
    trail: list[Schema] = [node]
    for step in error.absolute_schema_path:
        node = node[step]
        if isinstance(node, dict):
            trail.append(node)
    return trail


def _title(error: ValidationError, default: str = "value") -> str:
    title = _schema_trail(error)[-1].get("title")
    return str(title) if title is not None else default


def _description(error: ValidationError) -> str | None:
    description = _schema_trail(error)[-1].get("description")
    return str(description) if description is not None else None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a mapping" if isinstance(value, dict) else "a sequence"


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _close(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _explain(root: Any, error: ValidationError) -> list[ManifestError]:
    path: Path = tuple(error.absolute_path)
    where = dotted(path) or None
    value: Any = error.instance
    word: Any = error.validator
    expected: Any = error.validator_value

    def problem(message: str, hint: str | None = None, at: Path = path) -> ManifestError:
        return ManifestError(message, loc=locate(root, at), path=where, hint=hint)

    if "propertyNames" in error.absolute_schema_path:
        key = str(value)
        if word == "minLength":
            return [problem("empty key", "give the entry a name", at=(*path, key))]
        return [problem(f"invalid {_title(error, 'name')} '{key}'", _description(error),
                        at=(*path, key))]
    if word == "additionalProperties":
        return [_unknown_key(root, error, path, key) for key in _unknown_keys(error)]
    if word == "type":
        names = [_KIND_WORDS[t] for t in ([expected] if isinstance(expected, str) else expected)]
        hint = "write a value, or remove the key" if value is None else _description(error)
        return [problem(f"must be {_either(names)}, got {_kind(value)}", hint)]
    if word == "required":
        missing = [k for k in expected if k not in value]
        return [problem(f"missing required key '{k}'", _add_key_hint(error, k)) for k in missing]
    if word == "enum":
        choices = [str(c) for c in expected]
        near = _close(str(value), choices) if isinstance(value, str) else None
        hint = f"use one of: {', '.join(choices)}"
        hint = f"did you mean '{near}'? ({hint})" if near else hint
        return [problem(f"invalid {_title(error)} '{value}'", hint)]
    if word == "pattern":
        return [problem(f"invalid {_title(error)} '{value}'", _description(error))]
    if word in ("minimum", "maximum"):
        bound = "at least" if word == "minimum" else "at most"
        bounds: Any = error.schema
        low, high = bounds.get("minimum"), bounds.get("maximum")
        hint = f"use a value from {low} to {high}" if None not in (low, high) else None
        return [problem(f"must be {bound} {expected}, got {value}", hint)]
    if word == "minLength":
        return [problem("must not be empty")]
    if word == "uniqueItems" and isinstance(value, list):
        seen: dict[str, int] = {}
        for i, item in enumerate(value):
            first = seen.setdefault(repr(item), i)
            if first != i:
                return [problem(f"items {first} and {i} are the same ({item!r})",
                                "list each entry once", at=(*path, i))]
    text = error.message.replace("object", "mapping").replace("array", "sequence")
    return [problem(text)]


def _add_key_hint(error: ValidationError, key: str) -> str:
    schema: Any = error.schema
    choices = schema.get("properties", {}).get(key, {}).get("enum")
    if choices:
        return f"add '{key}:' (one of: {', '.join(map(str, choices))})"
    return f"add '{key}:'"


def _unknown_keys(error: ValidationError) -> list[str]:
    schema: Any = error.schema
    instance: Any = error.instance
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [k for k in instance
            if k not in known and not any(re.search(p, k) for p in patterns)]


def _unknown_key(root: Any, error: ValidationError, path: Path, key: str) -> ManifestError:
    schema: Any = error.schema
    instance: Any = error.instance
    allowed = sorted(schema.get("properties", {}))
    value = instance[key]
    hint: str | None
    service_keys = load_schema()["$defs"]["service"]["properties"]
    near = _close(key, allowed)
    if not path and isinstance(value, dict) and any(k in service_keys for k in value):
        hint = "services go under 'services:' (this looks like a version 1 file)"
    elif near:
        hint = f"did you mean '{near}'?"
    elif len(allowed) <= 12:
        hint = f"use one of: {', '.join(allowed)} (or a key starting with 'x-')"
    else:
        hint = "only keys starting with 'x-' are free for your own use"
    return ManifestError(f"unknown key '{key}'", loc=locate(root, (*path, key)),
                         path=dotted(path) or None, hint=hint)
