"""Phase 6a: ``include`` — other compose projects copied into this one.

Each entry is loaded as a project of its own (its own directory, its own ``.env``), by the
``load_subproject`` callback the loader gives, which returns its merged tree with absolute
paths. Its resources are then copied in, not merged: a name that this file defines too is an
error unless both definitions are equal (Docker Compose v2.40.3 accepts the same file included
twice, and rejects ``./d:/d`` here against the included ``/abs/d:/d``, as composer does).

Relative ``path``, ``project_directory`` and ``env_file`` are read from the project directory
of the including project, not from the including file's directory (as Compose does).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from composer.errors import CycleError, Loc, ManifestError
from composer.manifest.tree import YMap, YSeq, dotted, plain

LoadSubproject = Callable[[list[str], str, list[str], tuple[str, ...]], YMap]

#: The top-level sections an included project contributes.
SECTIONS = ("services", "networks", "volumes", "secrets", "configs", "models")


def apply_includes(root: YMap, *, filename: str, project_dir: str,
                   load_subproject: LoadSubproject, chain: tuple[str, ...] = ()) -> None:
    """Load every ``include`` entry of ``root``, copy its resources in, drop ``include``."""
    if "include" not in root:
        return
    entries = root["include"]
    include_loc = root.loc_of("include")
    del root["include"]
    root.key_locs.pop("include", None)
    root.tags.pop("include", None)
    if entries is None:
        return
    if not isinstance(entries, list):
        entries = YSeq([entries], loc=include_loc)
    here = os.path.abspath(filename)
    trail = (*chain, here) if here not in chain else chain
    for index, entry in enumerate(entries):
        loc = entries.loc_of(index) if isinstance(entries, YSeq) else include_loc
        files, sub_dir, env_files = _read_entry(entry, project_dir, loc, index)
        for path in files:
            if path in trail:
                shown = [_show(p, project_dir) for p in (*trail, path)]
                raise CycleError("include", shown, loc=loc, path=dotted(("include", index)),
                                 hint="an included file cannot include, directly or through "
                                      "others, a file that includes it")
            if not os.path.isfile(path):
                raise ManifestError(f"included file {path} not found", loc=loc,
                                    path=dotted(("include", index)),
                                    hint="include paths are relative to the project directory")
        sub = load_subproject(files, sub_dir, env_files, trail)
        _copy_resources(root, sub, files[0])


def _read_entry(entry: Any, project_dir: str, loc: Loc | None,
                index: int) -> tuple[list[str], str, list[str]]:
    """The absolute files, project directory and env files of one ``include`` entry."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not entry.get("path"):
        raise ManifestError("an include entry needs a path", loc=loc,
                            path=dotted(("include", index)),
                            hint="write '- path/to/compose.yaml' or '- path: ...'")
    files = [_absolute(p, project_dir) for p in _strings(entry["path"])]
    sub_dir = entry.get("project_directory")
    sub_dir = (_absolute(sub_dir, project_dir) if isinstance(sub_dir, str) and sub_dir
               else os.path.dirname(files[0]))
    env_files = [_absolute(p, project_dir) for p in _strings(entry.get("env_file"))]
    return files, sub_dir, env_files


def _copy_resources(root: YMap, sub: YMap, source: str) -> None:
    for section in SECTIONS:
        incoming = sub.get(section)
        if not isinstance(incoming, dict) or not incoming:
            continue
        target = root.get(section)
        if not isinstance(target, YMap):
            target = YMap(target or (), loc=root.loc_of(section) if section in root else None)
            root[section] = target
            if isinstance(sub, YMap) and section in sub.key_locs and section not in root.key_locs:
                root.key_locs[section] = sub.key_locs[section]
        for name, value in incoming.items():
            theirs = incoming.loc_of(name) if isinstance(incoming, YMap) else None
            if name in target:
                if plain(target[name]) == plain(value):
                    continue
                where = f" (at {theirs})" if theirs else ""
                raise ManifestError(
                    f"defined here and, differently, by included file {source}{where}",
                    loc=target.loc_of(name), path=dotted((section, name)),
                    hint="rename one of them, or remove it here and use the included one "
                         "(an included project's resources are copied, never merged)")
            target[name] = value
            if theirs is not None:
                target.key_locs[name] = theirs


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(v) for v in items]


def _absolute(path: str, base: str) -> str:
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _show(path: str, project_dir: str) -> str:
    rel = os.path.relpath(path, project_dir)
    return path if rel.startswith("..") else rel
