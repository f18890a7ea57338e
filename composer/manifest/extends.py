"""Phase 6b: ``extends`` — a service built on another one, in the same file or another.

The child's own values merge over its base's with the rules of :mod:`composer.manifest.merge`
(so ``!reset`` and ``!override`` work here too). Compose v2 inherits everything, including
``depends_on``, ``links`` and ``volumes_from`` (checked against Docker Compose v2.40.3).

Where paths are read from: ``extends.file`` of the loaded files is relative to the project
directory (``base_dir``), and in a file reached through ``extends.file`` to that file's
directory. A base service from a file in another directory has its relative paths made
absolute against that directory, so they keep pointing where its author meant.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from composer.errors import CycleError, Loc, ManifestError, ManifestWarning
from composer.manifest.merge import clone, merge
from composer.manifest.tree import YMap, dotted

LoadFile = Callable[[str], YMap]


@dataclass(frozen=True)
class _Where:
    """One compose file as seen from extends: its tree, path, shown name and base directory."""

    root: YMap
    path: str
    shown: str
    base_dir: str


_EXTENDS_KEYS = ("service", "file")


def drop_unknown_extends_keys(root: YMap, warn: Callable[[ManifestWarning], None]) -> None:
    """Compose reads only ``service`` and ``file`` of ``extends`` and ignores the rest: so
    does composer, saying so (a typo such as ``servce`` then fails as a missing service)."""
    services = root.get("services")
    for name, service in (services.items() if isinstance(services, dict) else ()):
        extends = service.get("extends") if isinstance(service, dict) else None
        if not isinstance(extends, YMap):
            continue
        for key in [k for k in extends if k not in _EXTENDS_KEYS and not str(k).startswith("x-")]:
            warn(ManifestWarning(f"unknown key '{key}' is ignored (extends takes service and file)",
                                 loc=extends.key_locs.get(key),
                                 path=dotted(("services", name, "extends"))))
            del extends[key]


def resolve_extends(root: YMap, *, filename: str, load_file: LoadFile,
                    base_dir: str | None = None) -> None:
    """Replace every service of ``root`` that has ``extends`` by the merged result, in place.

    ``base_dir`` is where ``extends.file`` is resolved from (the project directory; by
    default the directory of ``filename``).
    """
    services = root.get("services")
    if not isinstance(services, dict):
        return
    here = _Where(root, os.path.abspath(filename), filename,
                  os.path.abspath(base_dir or os.path.dirname(os.path.abspath(filename))))
    resolver = _Resolver(load_file, here.path)
    for name in list(services):
        service = services[name]
        if isinstance(service, dict) and "extends" in service:
            services[name] = resolver.resolve(here, name, [])


class _Resolver:
    """Resolves services one by one, remembering finished ones (chains share their bases)."""

    def __init__(self, load_file: LoadFile, top_path: str) -> None:
        self.load_file = load_file
        self.top_path = top_path
        self.done: dict[tuple[str, str], YMap] = {}

    def resolve(self, where: _Where, name: str, trail: list[tuple[_Where, str, Loc | None]]
                ) -> YMap:
        """``name`` of ``where`` with its whole extends chain merged in (a fresh copy)."""
        key = (where.path, name)
        if key in self.done:
            return clone(self.done[key])
        services = where.root["services"]
        service = services[name]
        if service is None:
            service = YMap(loc=services.loc_of(name) if isinstance(services, YMap) else None)
        extends = service.get("extends") if isinstance(service, dict) else None
        if extends is None:
            result: YMap = clone(service)
            self.done[key] = result
            return clone(result)
        if isinstance(extends, str):
            extends = YMap([("service", extends)], loc=service.loc_of("extends"))
        ext_loc = service.loc_of("extends") if isinstance(service, YMap) else None
        for seen, seen_name, _ in trail:
            if (seen.path, seen_name) == key:
                names = [self._label(w, n) for w, n, _ in trail] + [self._label(where, name)]
                raise CycleError("extends", names, loc=ext_loc,
                                 path=dotted(("services", name, "extends")),
                                 hint="a service cannot extend itself, even through others")
        trail = [*trail, (where, name, ext_loc)]
        base_where = self._base_file(where, name, extends, ext_loc)
        target = extends.get("service")
        base_services = base_where.root.get("services")
        if not isinstance(base_services, dict) or target not in base_services:
            raise self._missing(where, name, extends, base_where, target, ext_loc)
        base = self.resolve(base_where, str(target), trail)
        if base_where.base_dir != where.base_dir:
            from composer.manifest.paths import resolve_service_paths

            resolve_service_paths(base, base_where.base_dir)
        child = clone(service)
        child.pop("extends", None)
        child.key_locs.pop("extends", None)
        child.tags.pop("extends", None)
        base.pop("extends", None)
        result = merge(base, child, at=("services", name))
        result.loc = child.loc or base.loc
        self.done[key] = result
        return clone(result)

    def _base_file(self, where: _Where, name: str, extends: YMap,
                   service_loc: Loc | None) -> _Where:
        file = extends.get("file")
        if not isinstance(file, str) or not file:
            return where
        path = os.path.normpath(os.path.join(where.base_dir, os.path.expanduser(file)))
        if path == where.path:
            return where
        if not os.path.isfile(path):
            loc = extends.key_locs.get("file") or service_loc
            raise ManifestError(f"cannot extend service '{name}': file {path} not found",
                                loc=loc, path=dotted(("services", name, "extends", "file")),
                                hint="extends.file is relative to the directory of the file "
                                     "that names it (the project directory for the files "
                                     "given to compose)")
        tree = self.load_file(path)
        return _Where(tree, path, file, os.path.dirname(path))

    def _label(self, where: _Where, name: str) -> str:
        return name if where.path == self.top_path else f"{name} ({where.shown})"

    def _missing(self, where: _Where, name: str, extends: YMap, base_where: _Where,
                 target: Any, ext_loc: Loc | None) -> ManifestError:
        services = base_where.root.get("services")
        names = sorted(services) if isinstance(services, dict) else []
        other = "" if base_where is where else f" in {base_where.shown}"
        close = difflib.get_close_matches(str(target), names, n=1)
        listed = (f"services{other or ' in this file'}: {', '.join(names)}" if names
                  else f"{base_where.shown} defines no services")
        hint = f"did you mean '{close[0]}'? {listed}" if close else listed
        loc = extends.key_locs.get("service") or ext_loc
        return ManifestError(
            f"cannot extend service '{name}': service '{target}' not found{other}",
            loc=loc, path=dotted(("services", name, "extends", "service")), hint=hint)
