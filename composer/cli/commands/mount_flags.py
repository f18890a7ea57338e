"""``--mount`` and ``-v`` of ``container run``/``create``, as Docker reads them, into the JSON of
a spec ``Mount``.

``--mount`` is a CSV list of ``KEY[=VALUE]`` fields::

    type=volume|bind|tmpfs            (default volume)
    src|source=NAME|/host/path        (a volume without one is anonymous)
    dst|destination|target=/path      (required)
    readonly|ro[=true|false]
    volume-subpath=PATH  volume-nocopy[=true|false]
    bind-propagation=rprivate|private|rshared|shared|rslave|slave
    bind-nonrecursive[=true|false]  bind-create-src[=true|false]
    tmpfs-size=64m  tmpfs-mode=1770
    consistency=...                   (accepted and ignored, as Docker does on Linux)

Unlike ``-v``, a bind's missing source is an error (unless ``bind-create-src``).
"""

from __future__ import annotations

import csv
import os
from typing import Any

from composer.errors import UsageError

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
_KEYS = {"src": "source", "source": "source", "dst": "target", "destination": "target",
         "target": "target", "readonly": "readonly", "ro": "readonly"}


def _fail(text: str, why: str) -> UsageError:
    return UsageError(f'invalid argument "{text}" for "--mount" flag: {why}')


def _bool(text: str, key: str, value: str | None) -> bool:
    if value is None or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _fail(text, f"invalid value for {key}: {value!r} (true or false)")


def parse_mount(text: str) -> dict[str, Any]:
    """One ``--mount`` value as Mount JSON (UsageError naming what is wrong)."""
    try:
        fields = next(csv.reader([text]), [])
    except csv.Error as e:
        raise _fail(text, str(e)) from None
    kind = "volume"
    values: dict[str, str | None] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not key:
            raise _fail(text, f"invalid field {item!r}")
        if key == "type":
            if value not in ("volume", "bind", "tmpfs"):
                raise _fail(text, f"type {value!r} is not supported (volume, bind or tmpfs)")
            kind = value
            continue
        values[_KEYS.get(key, key)] = value if sep else None
    source = values.pop("source", None) or ""
    target = values.pop("target", None) or ""
    if not target:
        raise _fail(text, "target is required")
    if not target.startswith("/"):
        raise _fail(text, f"target {target!r} must be an absolute path")
    read_only = "readonly" in values and _bool(text, "readonly", values.pop("readonly"))
    values.pop("consistency", None)
    mount: dict[str, Any] = {"type": kind, "target": target, "source": "",
                             "read_only": read_only, "options": [], "subpath": "",
                             "create_host_path": False}
    for key in values:
        prefix = key.split("-", 1)[0]
        if prefix in ("volume", "bind", "tmpfs") and "-" in key and prefix != kind:
            raise _fail(text, f"cannot mix '{prefix}-*' options with mount type '{kind}'")
    if kind == "volume":
        mount["source"] = source
        if "volume-subpath" in values:
            mount["subpath"] = values.pop("volume-subpath") or ""
        if "volume-nocopy" in values and _bool(text, "volume-nocopy",
                                               values.pop("volume-nocopy")):
            mount["options"].append("nocopy")
    elif kind == "bind":
        if not source:
            raise _fail(text, "source is required when specifying bind mounts")
        mount["source"] = os.path.abspath(source)
        propagation = values.pop("bind-propagation", None)
        if propagation is not None:
            if propagation not in PROPAGATIONS:
                raise _fail(text, f"invalid bind-propagation {propagation!r} "
                                  f"({', '.join(PROPAGATIONS)})")
            mount["options"].append(propagation)
        if "bind-nonrecursive" in values and _bool(text, "bind-nonrecursive",
                                                   values.pop("bind-nonrecursive")):
            mount["options"].append("bind")
        if "bind-create-src" in values:
            mount["create_host_path"] = _bool(text, "bind-create-src",
                                              values.pop("bind-create-src"))
    else:
        if source:
            raise _fail(text, "source is not allowed for tmpfs mounts")
        size = values.pop("tmpfs-size", None)
        if size is not None:
            from composer.manifest.shortsyntax import parse_bytes

            parsed = parse_bytes(size)
            if parsed is None or parsed <= 0:
                raise _fail(text, f"invalid tmpfs-size {size!r} (a size, as 64m)")
            mount["options"].append(f"size={parsed}")
        mode = values.pop("tmpfs-mode", None)
        if mode is not None:
            try:
                number = int(mode, 8)
            except ValueError:
                number = -1
            if not 0 <= number <= 0o7777:
                raise _fail(text, f"invalid tmpfs-mode {mode!r} (octal, as 1777)")
            mount["options"].append(f"mode={number:o}")
    if values:
        raise _fail(text, f"unknown option {sorted(values)[0]!r} for a {kind} mount")
    return mount


def parse_volume(text: str) -> dict[str, Any]:
    """One ``-v`` value: ``/path`` (an anonymous volume), ``NAME:/path[:OPTS]`` (a named
    volume) or ``/host/path:/path[:OPTS]`` (a bind, its missing source made as Docker does);
    OPTS ``ro``, ``rw``, ``nocopy``, a propagation, ``z``/``Z``."""
    parts = text.split(":")
    if len(parts) == 1 and text.startswith("/"):
        return {"type": "volume", "target": text, "source": "", "read_only": False,
                "options": [], "subpath": "", "create_host_path": False}
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise UsageError(f"invalid volume {text!r}: expected /container/path, "
                         "/host/path:/container/path[:ro] or NAME:/container/path[:ro]")
    source, target, *rest = parts
    if not target.startswith("/"):
        raise UsageError(f"invalid volume {text!r}: the container path {target!r} must be "
                         "absolute")
    flags = ",".join(rest).split(",") if rest else []
    named = not source.startswith(("/", "."))
    return {"type": "volume" if named else "bind", "target": target,
            "source": source if named else os.path.abspath(source),
            "read_only": "ro" in flags, "subpath": "", "create_host_path": not named,
            "options": [f for f in flags if f not in ("ro", "rw", "")]}
