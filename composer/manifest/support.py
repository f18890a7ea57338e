"""Phase 11b: the one list of valid Compose attributes that composer does not honour yet.

Each entry warns with the file, line and attribute, so nothing is ever ignored silently.
The list shrinks as features land: delete the line in the same change that implements it.
Patterns are dotted paths where ``*`` matches one key; a value test narrows an entry to the
values that are not supported (``driver: overlay`` warns, ``driver: bridge`` does not).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from composer.errors import ManifestWarning
from composer.manifest.tree import Path, YMap, dotted, locate


@dataclass(frozen=True)
class Unsupported:
    pattern: str
    reason: str
    applies: Callable[[Any], bool] = lambda value: value is not None


def _not_in(*allowed: str) -> Callable[[Any], bool]:
    return lambda value: value is not None and str(value) not in allowed


WINDOWS = "it only applies to Windows containers"
SWARM = "it only applies to Swarm clusters"
LATER = "not implemented yet"

UNSUPPORTED: tuple[Unsupported, ...] = (
    Unsupported("services.*.blkio_config", f"{LATER} (block I/O weights and limits)"),
    Unsupported("services.*.cpu_count", WINDOWS),
    Unsupported("services.*.cpu_percent", WINDOWS),
    Unsupported("services.*.credential_spec", WINDOWS),
    Unsupported("services.*.isolation", WINDOWS),
    Unsupported("services.*.cpu_rt_period", f"{LATER} (real-time scheduling)"),
    Unsupported("services.*.cpu_rt_runtime", f"{LATER} (real-time scheduling)"),
    Unsupported("services.*.device_cgroup_rules", LATER),
    Unsupported("services.*.external_links", "links to containers outside composer are not "
                "supported"),
    Unsupported("services.*.gpus", f"{LATER} (GPU devices)"),
    Unsupported("services.*.deploy.resources.reservations.devices", f"{LATER} (GPU devices)"),
    Unsupported("services.*.deploy.resources.reservations.generic_resources", SWARM),
    Unsupported("services.*.storage_opt", f"{LATER} (per-container storage quotas)"),
    Unsupported("services.*.userns_mode", "user namespaces are not supported yet"),
    Unsupported("services.*.models", f"{LATER} (AI models)"),
    Unsupported("services.*.provider", f"{LATER} (provider services)"),
    Unsupported("services.*.use_api_socket", "composer has no Docker API socket to share"),
    Unsupported("services.*.cgroup_parent", LATER),
    # The loader adds an empty placement to every deploy section: only a real one warns.
    Unsupported("services.*.deploy.placement", SWARM, bool),
    Unsupported("services.*.deploy.update_config", SWARM),
    Unsupported("services.*.deploy.rollback_config", SWARM),
    Unsupported("services.*.deploy.endpoint_mode", SWARM),
    Unsupported("services.*.deploy.mode", SWARM, _not_in("replicated")),
    Unsupported("services.*.logging.driver", "only the json-file, local and none log drivers "
                "exist in composer", _not_in("json-file", "local", "none")),
    Unsupported("services.*.build.ssh", f"{LATER} (SSH agent forwarding in builds)"),
    Unsupported("services.*.build.cache_to", f"{LATER} (exported build caches)"),
    Unsupported("services.*.build.isolation", WINDOWS),
    Unsupported("services.*.build.entitlements", LATER),
    Unsupported("services.*.build.provenance", f"{LATER} (attestations)"),
    Unsupported("services.*.build.sbom", f"{LATER} (attestations)"),
    Unsupported("services.*.networks.*.link_local_ips", LATER),
    Unsupported("networks.*.driver", "only bridge networks exist in composer",
                _not_in("bridge", "default")),
    Unsupported("networks.*.enable_ipv6", f"{LATER} (IPv6 networks)",
                lambda value: value is True),
    Unsupported("volumes.*.driver", "only local volumes exist in composer", _not_in("local")),
    Unsupported("secrets.*.driver", SWARM),
    Unsupported("secrets.*.template_driver", SWARM),
    Unsupported("configs.*.template_driver", SWARM),
    Unsupported("models", f"{LATER} (AI models)"),
)


def warn_unimplemented(root: YMap, warn: Callable[[ManifestWarning], None]) -> None:
    """Warn once for every place where an unsupported attribute is set."""
    for entry in UNSUPPORTED:
        for path, value in _matches(root, tuple(entry.pattern.split("."))):
            if entry.applies(value):
                attribute = str(path[-1]) if path[-2:-1] != ("*",) else dotted(path)
                warn(ManifestWarning(
                    f"'{attribute}' is ignored: {entry.reason}",
                    loc=locate(root, path), path=dotted(path)))


def _matches(node: Any, pattern: tuple[str, ...], prefix: Path = ()) -> Iterator[tuple[Path, Any]]:
    if not pattern:
        yield prefix, node
        return
    if not isinstance(node, dict):
        return
    head, rest = pattern[0], pattern[1:]
    keys = sorted(node) if head == "*" else ([head] if head in node else [])
    for key in keys:
        yield from _matches(node[key], rest, (*prefix, key))
