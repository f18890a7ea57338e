"""Phase 9: profiles — keep the services that are switched on.

A service without ``profiles`` is always on; one with profiles is on when one of them is
active (``*`` activates all), or when it is named on the command line. Naming a service does
NOT switch on the profiles of what it depends on: a dependency that stays off is an error, as
in Docker Compose v2.40.3. A ``depends_on`` entry with ``required: false`` to a service that is
off is not an error: it stays as written, or is dropped when services are named (as Compose's
``config SERVICE`` does). ``links``, ``volumes_from`` and ``network_mode``/``ipc``/``pid``
``service:X`` count as dependencies too (Compose turns them into ``depends_on`` later).

When services are named, only they and what they depend on (transitively) are kept, which is
what ``docker compose config SERVICE...`` prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

from composer.errors import Loc, ManifestError
from composer.manifest.tree import Path, YMap, dotted, locate

ALL = "*"


def list_profiles(root: YMap) -> list[str]:
    """Every profile any service names, sorted, once each (``config --profiles``)."""
    found: set[str] = set()
    services = root.get("services")
    if isinstance(services, dict):
        for service in services.values():
            if isinstance(service, dict) and isinstance(service.get("profiles"), list):
                found.update(str(p) for p in service["profiles"])
    return sorted(found)


def select_services(root: YMap, *, profiles: Iterable[str], requested: Iterable[str] = (),
                    only_requested: bool = True) -> None:
    """Remove from ``root`` the services that are off; raise if an on service needs one.

    ``only_requested``: when services are named, keep just them and their dependencies.
    """
    services = root.get("services")
    if not isinstance(services, dict):
        services = YMap()
    # With no profile asked for, Compose's active set is the empty profile: a service listing
    # "" among its profiles is on by default.
    active = set(profiles) or {""}
    named = list(dict.fromkeys(requested))
    for name in named:
        if name not in services:
            raise _no_such_service(root, name, list(services))

    def enabled(name: str) -> bool:
        own = _profiles(services.get(name))
        return not own or ALL in active or bool(active & set(own)) or name in named

    if named and only_requested:
        keep: list[str] = []
        pending = list(named)
        while pending:
            name = pending.pop(0)
            if name in keep:
                continue
            keep.append(name)
            for dep, path, optional in list(_dependencies(services, name)):
                if dep in services and not enabled(dep):
                    if optional:
                        _drop_dependency(root, path)
                        continue
                    raise _disabled(root, services, name, dep, path)
                if dep in services:
                    pending.append(dep)
        kept = set(keep)
    else:
        kept = {name for name in services if enabled(name)}
        for name in sorted(kept):
            for dep, path, optional in _dependencies(services, name):
                if dep in services and dep not in kept and not optional:
                    raise _disabled(root, services, name, dep, path)
    for name in [n for n in services if n not in kept]:
        del services[name]
        if isinstance(services, YMap):
            services.key_locs.pop(name, None)


def _profiles(service: Any) -> list[str]:
    if isinstance(service, dict) and isinstance(service.get("profiles"), list):
        return [str(p) for p in service["profiles"]]
    return []


def _dependencies(services: dict[str, Any], name: str) -> Iterator[tuple[str, Path, bool]]:
    """(service it needs, where that is written, whether it may be missing) for ``name``."""
    service = services.get(name)
    if not isinstance(service, dict):
        return
    base: Path = ("services", name)
    depends = service.get("depends_on")
    if isinstance(depends, dict):
        for dep, spec in depends.items():
            optional = isinstance(spec, dict) and spec.get("required") is False
            yield str(dep), (*base, "depends_on", dep), optional
    elif isinstance(depends, list):
        for i, dep in enumerate(depends):
            yield str(dep), (*base, "depends_on", i), False
    # These become depends_on entries later, unless one is written already: then its
    # ``required`` decides (Compose accepts links to an off service with required: false).
    declared = {str(d) for d in depends} if isinstance(depends, dict | list) else set()
    for dep, path in _implicit(service, base):
        if dep not in declared:
            yield dep, path, False


def _implicit(service: dict[str, Any], base: Path) -> Iterator[tuple[str, Path]]:
    for i, link in enumerate(_items(service.get("links"))):
        yield str(link).split(":", 1)[0], (*base, "links", i)
    for i, source in enumerate(_items(service.get("volumes_from"))):
        text = str(source)
        if not text.startswith("container:"):
            yield text.split(":", 1)[0], (*base, "volumes_from", i)
    for key in ("network_mode", "ipc", "pid"):
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            yield value[len("service:"):], (*base, key)


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _drop_dependency(root: YMap, path: Path) -> None:
    depends = root["services"][path[1]]["depends_on"]
    key = path[-1]
    if isinstance(depends, dict) and isinstance(key, str):
        depends.pop(key, None)
        if isinstance(depends, YMap):
            depends.key_locs.pop(key, None)
        if not depends:
            del root["services"][path[1]]["depends_on"]


def _disabled(root: YMap, services: dict[str, Any], name: str, dep: str,
              path: Path) -> ManifestError:
    own = _profiles(services.get(dep))
    if len(own) == 1:
        hint = f"enable profile {own[0]} with --profile {own[0]}"
    else:
        hint = "enable one of its profiles: " + " or ".join(f"--profile {p}" for p in own)
    loc: Loc | None = locate(root, path)
    return ManifestError(
        f"service '{name}' needs service '{dep}', which is not enabled "
        f"(profiles: {', '.join(own)})", loc=loc, path=dotted(path), hint=hint)


def _no_such_service(root: YMap, name: str, names: list[str]) -> ManifestError:
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean '{close[0]}'?" if close else (
        f"services: {', '.join(sorted(names))}" if names else "the project defines no services")
    return ManifestError(f"no such service: {name}", loc=root.loc_of("services"), hint=hint)
