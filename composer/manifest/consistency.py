"""Phase 11a: cross references that no schema can check, on the normalized tree.

Each problem is reported at the place the user wrote it: the service's own entry for
undefined networks, volumes, secrets, configs and services, the ``depends_on`` entry that
closes a cycle, the second of two services publishing the same host port.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from composer.errors import CycleError, ManifestError
from composer.manifest.tree import Path, YMap, dotted, locate

_NAMESPACE_KEYS = ("network_mode", "ipc", "pid")


def check(root: YMap) -> None:
    """Raise the first inconsistency found, in a stable order (services sorted by name)."""
    services: dict[str, Any] = root.get("services") or {}
    for name in sorted(services):
        service = services[name]
        if not isinstance(service, dict):
            continue
        _check_image_or_build(root, name, service)
        _check_references(root, name, service)
        _check_network_mode(root, name, service)
        _check_container_name(root, name, service)
        _check_platforms(root, name, service)
        _check_build(root, name, service)
        _check_mounts(root, name, service)
        _check_watch(root, name, service)
    _check_cycles(root, services)
    _check_port_conflicts(root, services)


def _error(root: YMap, path: Path, message: str, hint: str | None = None) -> ManifestError:
    return ManifestError(message, loc=locate(root, path), path=dotted(path), hint=hint)


def _did_you_mean(word: str, choices: Any) -> str | None:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"did you mean '{close[0]}'?" if close else None


def _check_image_or_build(root: YMap, name: str, service: dict[str, Any]) -> None:
    if not service.get("image") and not service.get("build") and not service.get("provider"):
        raise _error(root, ("services", name),
                     f'service "{name}" has neither an image nor a build context specified',
                     hint="add 'image: NAME' or 'build: DIRECTORY' to the service")


def _service_refs(service: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """(path inside the service, referenced service name) for every service reference.

    The implicit references come first: normalization copies them into ``depends_on``, and
    the error should point at what the user wrote (``network_mode: service:vpn``)."""
    for i, link in enumerate(service.get("links") or []):
        yield ("links", i), str(link).split(":", 1)[0]
    for i, source in enumerate(service.get("volumes_from") or []):
        text = str(source)
        if not text.startswith("container:"):
            yield ("volumes_from", i), text.split(":", 1)[0]
    for key in _NAMESPACE_KEYS:
        value = service.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            yield (key,), value.split(":", 1)[1]
    for dep in service.get("depends_on") or {}:
        yield ("depends_on", dep), dep


def _check_references(root: YMap, name: str, service: dict[str, Any]) -> None:
    services = root.get("services") or {}
    for sub, target in _service_refs(service):
        required = True
        if sub[0] == "depends_on":
            required = bool((service["depends_on"].get(target) or {}).get("required", True))
        if target not in services and required:
            raise _error(root, ("services", name, *sub),
                         f'service "{name}" depends on undefined service "{target}"',
                         hint=_did_you_mean(target, services) or
                         "define that service, or remove the reference")
    kinds = (("networks", "network"), ("secrets", "secret"), ("configs", "config"),
             ("models", "model"))
    for key, word in kinds:
        defined = root.get(key) or {}
        entries = service.get(key) or ()
        for i, entry in enumerate(entries):
            keyed = key in ("networks", "models")  # mappings by name; the others are lists
            ref = entry if keyed else (entry or {}).get("source")
            where: Path = (key, str(ref)) if keyed else (key, i)
            if ref is not None and ref not in defined:
                raise _error(root, ("services", name, *where),
                             f'service "{name}" refers to undefined {word} {ref}',
                             hint=_did_you_mean(ref, defined) or
                             f"declare it under the top-level '{key}:'")
    build = service.get("build")
    secrets = root.get("secrets") or {}
    for i, entry in enumerate((build.get("secrets") if isinstance(build, dict) else None) or ()):
        ref = entry.get("source") if isinstance(entry, dict) else entry
        if ref is not None and ref not in secrets:
            raise _error(root, ("services", name, "build", "secrets", i),
                         f'service "{name}" refers to undefined build secret {ref}',
                         hint=_did_you_mean(str(ref), secrets) or
                         "declare it under the top-level 'secrets:'")
    volumes = root.get("volumes") or {}
    for i, mount in enumerate(service.get("volumes") or ()):
        if isinstance(mount, dict) and mount.get("type") == "volume" and mount.get("source"):
            if mount["source"] not in volumes:
                raise _error(root, ("services", name, "volumes", i),
                             f'service "{name}" refers to undefined volume {mount["source"]}',
                             hint=_did_you_mean(mount["source"], volumes) or
                             "declare it under the top-level 'volumes:', or write a path "
                             "starting with ./ or / for a bind mount")


def _check_network_mode(root: YMap, name: str, service: dict[str, Any]) -> None:
    if service.get("network_mode") and service.get("networks"):
        raise _error(root, ("services", name, "network_mode"),
                     f"service {name} declares mutually exclusive `network_mode` and `networks`",
                     hint="keep one of them: network_mode replaces the service's networks")


def _replicas(service: dict[str, Any]) -> tuple[Path, int] | None:
    deploy = service.get("deploy") or {}
    if isinstance(deploy, dict) and deploy.get("replicas") is not None:
        return ("deploy", "replicas"), int(deploy["replicas"])
    if service.get("scale") is not None:
        return ("scale",), int(service["scale"])
    return None


def _check_container_name(root: YMap, name: str, service: dict[str, Any]) -> None:
    replicas = _replicas(service)
    if service.get("container_name") and replicas and replicas[1] > 1:
        raise _error(root, ("services", name, *replicas[0]),
                     f"can't set container_name and {replicas[1]} replicas: "
                     "a container name must be unique",
                     hint="remove container_name, or run a single replica")


def _check_build(root: YMap, name: str, service: dict[str, Any]) -> None:
    build = service.get("build")
    if isinstance(build, dict) and build.get("dockerfile") and build.get("dockerfile_inline"):
        raise _error(root, ("services", name, "build", "dockerfile_inline"),
                     f'service "{name}" declares mutually exclusive dockerfile and '
                     "dockerfile_inline", hint="keep one of them")


def _check_platforms(root: YMap, name: str, service: dict[str, Any]) -> None:
    build = service.get("build")
    platform = service.get("platform")
    if isinstance(build, dict) and platform and build.get("platforms"):
        if platform not in build["platforms"]:
            raise _error(root, ("services", name, "platform"),
                         f'service.build.platforms must include service.platform "{platform}"',
                         hint="add it to build.platforms, or change platform")


def _check_cycles(root: YMap, services: dict[str, Any]) -> None:
    """depends_on must be acyclic; the error names the whole cycle."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    trail: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        trail.append(name)
        deps = (services.get(name) or {}).get("depends_on") or {}
        for dep in sorted(deps):
            if dep not in services:
                continue
            if state.get(dep) == 1:
                cycle = [*trail[trail.index(dep):], dep]
                raise CycleError("dependency", cycle,
                                 loc=locate(root, ("services", name, "depends_on", dep)),
                                 path=dotted(("services", name, "depends_on", dep)),
                                 hint="remove one of these depends_on entries")
            if dep not in state:
                visit(dep)
        trail.pop()
        state[name] = 2

    for name in sorted(services):
        if name not in state:
            visit(name)


def _check_port_conflicts(root: YMap, services: dict[str, Any]) -> None:
    """Two containers cannot publish one host port: found here rather than at ``up``."""
    owners: dict[tuple[str, str, str], tuple[str, int]] = {}
    for name in sorted(services):
        for i, port in enumerate((services[name] or {}).get("ports") or ()):
            if not isinstance(port, dict):
                continue
            published = str(port.get("published") or "")
            if not published or "-" in published:
                continue
            key = (str(port.get("host_ip") or ""), published, str(port.get("protocol") or "tcp"))
            if key in owners:
                first, j = owners[key]
                raise _error(root, ("services", name, "ports", i),
                             f"host port {published}/{key[2]} is already published by "
                             f"services.{first}.ports[{j}]",
                             hint="publish a different host port, or leave 'published' empty "
                             "for a random one")
            owners[key] = (name, i)


def _check_mounts(root: YMap, name: str, service: dict[str, Any]) -> None:
    tmpfs = {str(entry).split(":", 1)[0]: i for i, entry in enumerate(service.get("tmpfs") or ())}
    for i, mount in enumerate(service.get("volumes") or ()):
        if isinstance(mount, dict) and mount.get("target") in tmpfs:
            raise _error(root, ("services", name, "volumes", i),
                         f"target {mount['target']} already mounted as "
                         f"services.{name}.tmpfs[{tmpfs[mount['target']]}]",
                         hint="mount one thing per container path")
        if not isinstance(mount, dict):
            continue
        if not mount.get("target"):
            raise _error(root, ("services", name, "volumes", i), "the mount has no target",
                         hint="add 'target:', the path inside the container")
        if mount.get("type") == "bind" and not mount.get("source"):
            raise _error(root, ("services", name, "volumes", i),
                         "a bind mount needs a 'source'",
                         hint="add 'source:', the host path to mount")


# develop.watch actions that copy files need to know where to.
_SYNC_ACTIONS = ("sync", "sync+restart", "sync+exec")


def _check_watch(root: YMap, name: str, service: dict[str, Any]) -> None:
    develop = service.get("develop") or {}
    rules = develop.get("watch") if isinstance(develop, dict) else None
    for i, rule in enumerate(rules or ()):
        if isinstance(rule, dict) and rule.get("action") in _SYNC_ACTIONS \
                and not rule.get("target"):
            raise _error(root, ("services", name, "develop", "watch", i),
                         f"action '{rule['action']}' needs a 'target'",
                         hint="add 'target:', the path in the container to sync to")

