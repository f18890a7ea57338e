"""One compose service, as normalized by the loader, into the ContainerSpec of one of its
containers: what ``docker compose up`` asks Docker for. Pure.

The spec is built as ContainerSpec JSON, field for field (as ``container run`` builds it in
:mod:`composer.cli.commands.container_flags`), so that what a service asks and what a flag
asks reach the engine the same way. Values come from the canonical tree (what
``composer config --format json`` prints, ``$`` not escaped: ``Project.to_dict()``); real
names of networks and volumes, and secret sources, from the project around the service.
Whatever a container cannot be given is returned as a warning, never dropped silently; the
attributes the loader already warns about (:mod:`composer.manifest.support`) are left to it.
What the container takes from the host (mounts, files, devices, limits) is built in
:mod:`composer.engine.service_mounts`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from composer.engine.service_mounts import (
    Warn,
    byte_size,
    devices,
    files,
    mounts,
    resource_name,
    resources,
    shm_size,
    sysctls,
    ulimits,
)

if TYPE_CHECKING:
    from composer.manifest.model import Project

PROTOCOLS = ("tcp", "udp", "sctp")
LOG_DRIVERS = ("json-file", "local", "none")
_PUBLISHED = re.compile(r"(\d+)(?:-(\d+))?")
_RESTART = re.compile(r"no|always|unless-stopped|on-failure(?::\d+)?")

#: Attributes that say how composer gets to the container (building, pulling, ordering,
#: replicas) or that are already read into others (``env_file`` into ``environment``;
#: ``labels``/``label_file`` into the labels the caller gives). The lifecycle hooks are not
#: the container's own settings: :mod:`composer.engine.project_hooks` runs ``post_start`` and
#: ``pre_stop`` inside it and ``pre_start`` as init containers made with :func:`container_spec`.
ELSEWHERE = frozenset({
    "attach", "build", "container_name", "depends_on", "develop", "env_file", "extends",
    "image", "label_file", "labels", "platform", "post_start", "pre_start", "pre_stop",
    "profiles", "pull_policy", "pull_refresh_after", "scale"})

#: The attributes that are the spec's fields of the same name, as they are.
_TEXTS = ("user", "working_dir", "hostname", "domainname", "stop_signal", "runtime")
_FLAGS = ("tty", "stdin_open", "read_only", "privileged", "init")
_LISTS = ("cap_add", "cap_drop", "security_opt", "group_add", "dns", "dns_search", "dns_opt")

#: Why an attribute Compose knows cannot be carried (others get a general reason).
REASONS = {
    "annotations": "OCI annotations of their own are not supported (labels become them)",
    "cgroup": "the cgroup namespace mode cannot be chosen",
    "cpu_period": "the CPU period is fixed (100 ms); give the limit as cpus",
    "cpu_quota": "CPU quotas come from cpus only (cpus = cpu_quota / cpu_period)",
    "mem_swappiness": "the memory swappiness cannot be set",
    "oom_kill_disable": "the OOM killer cannot be disabled",
    "oom_score_adj": "the OOM score adjustment cannot be set",
    "uts": "the UTS namespace cannot be shared",
}


@dataclass(frozen=True)
class ServiceContext:
    """The project around a service: what its attributes refer to."""

    project: str  # project name
    project_dir: str  # working dir (absolute)
    #: The whole normalized project (canonical JSON form): its networks/volumes/secrets/
    #: configs sections give real names (``name``) and secret/config sources.
    tree: Mapping[str, Any]
    #: The project's interpolation environment (secrets/configs with ``environment: VAR``).
    environment: Mapping[str, str]
    #: Service name -> the name of that service's container #1 (``network_mode: service:X``,
    #: ``volumes_from: [X]``, ``links: [X[:alias]]``).
    peers: Mapping[str, str]


def project_context(project: Project) -> ServiceContext:
    """The context of the services of ``project``: peers are each service's container #1."""
    from composer.plan.reconcile import container_name

    return ServiceContext(
        project=project.name, project_dir=project.working_dir, tree=project.to_dict(),
        environment=project.environment,
        peers={name: container_name(project, service, 1)
               for name, service in project.services.items()})


def container_spec(ctx: ServiceContext, service: str, config: Mapping[str, Any], *,
                   name: str, image: str,
                   labels: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The ContainerSpec JSON for container `name` of `service` (config = the service's
    canonical dict), and warnings (plain strings) for what could not be carried over."""
    warnings: list[str] = []

    def warn(attribute: str, message: str) -> None:
        warnings.append(f"services.{service}.{attribute}: {message}")

    raw, config = config, _Reads(config)
    network = _network(ctx, service, config, warn)
    bridged = network["network"] == "bridge"
    spec = {
        "image": image, "name": name,
        "entrypoint": _words(config.get("entrypoint")), "command": _words(config.get("command")),
        "env": _environment(config.get("environment")),
        **{key: _text(config.get(key)) for key in _TEXTS},
        **{key: bool(config.get(key)) for key in _FLAGS},
        **{key: _texts(config.get(key)) for key in _LISTS},
        "mounts": mounts(ctx, config, warn),
        "shm_size": shm_size(config, warn),
        "ulimits": ulimits(config.get("ulimits"), warn),
        "sysctls": sysctls(config.get("sysctls")),
        "devices": devices(config.get("devices"), warn),
        "ipc": _namespace(ctx, config.get("ipc"), "ipc", warn),
        "pid": _namespace(ctx, config.get("pid"), "pid", warn),
        **network,
        "ports": _ports(config.get("ports"), network["network"], warn),
        "expose": _expose(config.get("expose"), warn), "publish_all": False,
        "extra_hosts": _extra_hosts(config.get("extra_hosts")),
        "links": _links(ctx, config.get("links"), bridged, warn),
        "volumes_from": _volumes_from(ctx, config.get("volumes_from"), warn),
        "files": files(ctx, config, warn),
        "resources": resources(config, warn),
        "stop_grace_period": _seconds(config.get("stop_grace_period"), "stop_grace_period",
                                      warn),
        "healthcheck": _healthcheck(config.get("healthcheck"), warn),
        "restart": _restart(config, warn),
        "labels": dict(labels),
        "logging": _logging(config.get("logging"), warn),
        "auto_remove": False,
    }
    _warn_uncarried(raw, config.read, warn)
    return spec, warnings


# -- plain values --------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _texts(value: Any) -> list[str]:
    # A single string is one item (`dns: 8.8.8.8`), as Compose reads it.
    return [value] if isinstance(value, str) else [str(v) for v in value or ()]


def _words(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        from composer.manifest.shortsyntax import shell_split

        return shell_split(value)
    return [str(v) for v in value]


def _environment(value: Any) -> dict[str, str]:
    # A variable without a value (None) is unset in Compose: it does not reach the container.
    return {str(k): str(v) for k, v in (value or {}).items() if v is not None}


def _seconds(value: Any, attribute: str, warn: Warn) -> float | None:
    """Seconds of a Go duration (``1m30s``, ``500ms``, ``2us``); plain numbers are seconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    from composer.manifest.shortsyntax import parse_duration

    nanos = parse_duration(str(value).strip())
    if nanos is None or nanos < 0:
        warn(attribute, f"{value!r} is not a duration (as 30s, 1m30s, 500ms): not set")
        return None
    return nanos / 1e9


def _namespace(ctx: ServiceContext, value: Any, attribute: str, warn: Warn) -> str | None:
    """``service:X`` as ``container:<X's container>`` (what Compose resolves it to)."""
    if value is None or value == "":
        return None
    text = str(value)
    if not text.startswith("service:"):
        return text
    peer = ctx.peers.get(text.removeprefix("service:"))
    if peer is None:
        warn(attribute, f"{text}: that service has no container to share with")
        return text
    return f"container:{peer}"


# -- networking ----------------------------------------------------------------------------------


def _network(ctx: ServiceContext, service: str, config: Mapping[str, Any],
             warn: Warn) -> dict[str, Any]:
    """``network`` and ``networks``: a mode, or one attachment per network by priority."""
    mode = config.get("network_mode")
    if mode == "default":
        mode = "bridge"  # Docker's name for its default on Linux
    if mode:
        if config.get("networks"):
            warn("networks", f"not joined: network_mode {mode} is set")
        if mode in ("bridge", "host", "none") or str(mode).startswith(("container:",
                                                                      "service:")):
            return {"network": _namespace(ctx, mode, "network_mode", warn), "networks": []}
        # Docker takes any other mode as the name of a network to join.
        return {"network": "bridge", "networks": [_attachment(str(mode), [])]}
    joined: Mapping[str, Any] = config.get("networks") or {"default": None}
    # Compose's order (NetworksByPriority): the highest priority first, then by key.
    keys = sorted(joined, key=lambda k: (-int((joined[k] or {}).get("priority") or 0), k))
    attachments = []
    for index, key in enumerate(keys):
        settings: Mapping[str, Any] = joined[key] or {}
        _warn_leftovers(f"networks.{key}", settings,
                        {"aliases", "ipv4_address", "mac_address", "priority"}, warn)
        aliases = [service, *_texts(settings.get("aliases"))]
        attachment = _attachment(resource_name(ctx, "networks", key), aliases,
                                 settings.get("ipv4_address"), settings.get("mac_address"))
        if index == 0 and not attachment["mac_address"]:
            # The service-level mac_address is the primary network's (Compose, API >= 1.44).
            attachment["mac_address"] = _text(config.get("mac_address"))
        attachments.append(attachment)
    return {"network": "bridge", "networks": attachments}


def _attachment(network: str, aliases: list[str], ipv4: Any = None,
                mac: Any = None) -> dict[str, Any]:
    return {"network": network, "aliases": list(dict.fromkeys(aliases)),
            "ipv4_address": _text(ipv4), "mac_address": _text(mac) or None}


def _ports(value: Any, network: str, warn: Warn) -> list[dict[str, Any]]:
    ports = list(value or ())
    if ports and network != "bridge":
        # Docker drops them too (host) or refuses them (none, container:): nothing to publish.
        warn("ports", f"not published: network_mode {network} has no ports of its own")
        return []
    out = []
    for index, port in enumerate(ports):
        binding = _port(port) if isinstance(port, Mapping) else None
        if binding is None:
            warn(f"ports[{index}]", f"{port!r} is not a port composer can publish: skipped")
        else:
            out.append(binding)
    return out


def _port(port: Mapping[str, Any]) -> dict[str, Any] | None:
    protocol = str(port.get("protocol") or "tcp").lower()
    published = str(port.get("published") or "")
    match = _PUBLISHED.fullmatch(published) if published else None
    if protocol not in PROTOCOLS or (published and match is None):
        return None
    try:
        target = int(port["target"])
    except (KeyError, TypeError, ValueError):
        return None
    low = int(match[1]) if match else None
    high = int(match[2]) if match and match[2] else None
    if low == 0:
        low = None  # "0": a random port, as Docker reads it
    return {"container_port": target, "protocol": protocol,
            "host_ip": str(port.get("host_ip") or ""), "host_port": low,
            "host_port_end": high if low is not None and high != low else None}


def _expose(value: Any, warn: Warn) -> list[str]:
    from composer.runtime.portspec import PortSpecError, parse_expose

    out = []
    for text in _texts(value):
        try:
            parse_expose(text)
        except PortSpecError as e:
            warn("expose", f"{e}: skipped")
            continue
        out.append(text)
    return out


def _extra_hosts(value: Any) -> list[str]:
    """``NAME:IP`` for each entry; Compose writes ``NAME=IP`` (or the older ``NAME:IP``)."""
    out = []
    for item in _texts(value):
        host, sep, ip = item.partition("=")
        if not sep:
            host, _, ip = item.partition(":")
        out.append(f"{host}:{ip.removeprefix('[').removesuffix(']')}")
    return out


def _links(ctx: ServiceContext, value: Any, bridged: bool, warn: Warn) -> list[str]:
    """``SERVICE[:ALIAS]`` as ``<its container>:ALIAS`` (the alias defaults to the service)."""
    links = _texts(value)
    if links and not bridged:
        warn("links", "not linked: links need a bridge network (network_mode is set)")
        return []
    out = []
    for link in links:
        other, _, alias = link.partition(":")
        peer = ctx.peers.get(other)
        if peer is None:
            warn("links", f"{link}: service {other} has no container: not linked")
            continue
        out.append(f"{peer}:{alias or other}")
    return out


def _volumes_from(ctx: ServiceContext, value: Any, warn: Warn) -> list[str]:
    """``SERVICE[:ro|rw]`` as ``<its container>[:ro|rw]``; ``container:NAME[:ro|rw]`` as
    ``NAME[:ro|rw]``."""
    out = []
    for ref in _texts(value):
        head, sep, mode = ref.rpartition(":")
        source, suffix = (head, f":{mode}") if sep and mode in ("ro", "rw") else (ref, "")
        if source.startswith("container:"):
            out.append(source.removeprefix("container:") + suffix)
            continue
        peer = ctx.peers.get(source)
        if peer is None:
            warn("volumes_from", f"{ref}: service {source} has no container: not shared")
            continue
        out.append(peer + suffix)
    return out


# -- lifecycle -----------------------------------------------------------------------------------


def _healthcheck(check: Any, warn: Warn) -> dict[str, Any] | None:
    """Docker's form; without ``test`` the image's test runs with these timings (the
    bundle merges a spec's empty test with the image's, as Docker does)."""
    if not check:
        return None
    if check.get("disable"):
        return {"test": ["NONE"]}
    test = check.get("test")
    try:
        retries = None if check.get("retries") is None else int(check["retries"]) or None
    except (TypeError, ValueError):
        warn("healthcheck.retries", f"{check['retries']!r} is not a number: not set")
        retries = None
    return {
        "test": ["CMD-SHELL", test] if isinstance(test, str) else _texts(test),
        **{key: _seconds(check.get(key), f"healthcheck.{key}", warn)
           for key in ("interval", "timeout", "start_period", "start_interval")},
        "retries": retries,
    }


def _restart(config: Mapping[str, Any], warn: Warn) -> str:
    """``restart``, overridden by ``deploy.restart_policy`` when both are set, as Compose
    does (getRestartPolicy); ``no`` when neither is."""
    chosen = "no"
    restart = config.get("restart")
    if restart:
        if _RESTART.fullmatch(str(restart)):
            chosen = str(restart)
        else:
            warn("restart", f"{restart!r} is not a restart policy: no is used")
    policy = (config.get("deploy") or {}).get("restart_policy")
    if policy is not None:
        deployed = _deploy_restart(policy, warn)
        if restart and deployed != chosen:
            warn("restart", f"{restart} is overridden by deploy.restart_policy ({deployed}), "
                 "as Compose does")
        chosen = deployed
    return chosen


def _deploy_restart(policy: Mapping[str, Any], warn: Warn) -> str:
    _warn_leftovers("deploy.restart_policy", policy, {"condition", "max_attempts"}, warn, {
        "delay": "the delay between restarts is Docker's (100 ms, doubling up to 1 minute)",
        "window": "every restart counts towards max_attempts (there is no window)"})
    # The Compose specification's default condition is `any`.
    condition = str(policy.get("condition") or "any")
    attempts = policy.get("max_attempts")
    if condition == "on-failure":
        return f"on-failure:{int(attempts)}" if attempts else "on-failure"
    if attempts:
        warn("deploy.restart_policy.max_attempts", f"applies only to on-failure, not "
             f"{condition}: not set")
    named = {"any": "always", "always": "always", "none": "no", "no": "no",
             "unless-stopped": "unless-stopped"}
    if condition not in named:
        warn("deploy.restart_policy.condition", f"{condition!r} is not a condition "
             "(none, on-failure, any): no is used")
    return named.get(condition, "no")


def _logging(value: Any, warn: Warn) -> dict[str, Any]:
    settings = value or {}
    driver = str(settings.get("driver") or "json-file")
    options = dict(settings.get("options") or {})
    if driver not in LOG_DRIVERS:
        # The loader said it is ignored: its options belong to it and go with it.
        return {"driver": "json-file", "max_size": None, "max_file": 1}
    size = options.pop("max-size", None)
    max_size = byte_size(size)
    if size is not None and max_size is None:
        warn("logging.options.max-size", f"{size!r} is not a size (as 10m): no limit is set")
    try:
        max_file = int(options.pop("max-file", 1))
    except (TypeError, ValueError):
        warn("logging.options.max-file", "not a number: 1 is used")
        max_file = 1
    for key in sorted(options):
        warn(f"logging.options.{key}", "not supported by composer (only max-size and "
             "max-file are): not set")
    return {"driver": driver, "max_size": max_size, "max_file": max_file}


# -- what is left --------------------------------------------------------------------------------


@cache
def _loader_warned(prefix: tuple[str, ...]) -> frozenset[str]:
    """The keys under ``prefix`` (a path under ``services.*``) that the loader's list of
    unsupported attributes covers: it warns about them with file and line, and saying it
    again here would be noise."""
    from composer.manifest.support import UNSUPPORTED

    where = ("services", "*", *prefix)
    found = set()
    for entry in UNSUPPORTED:
        parts = entry.pattern.split(".")
        if len(parts) == len(where) + 1 and all(
                p in ("*", w) for p, w in zip(parts, where, strict=False)):
            found.add(parts[-1])
    return frozenset(found)


def _warn_leftovers(path: str, mapping: Mapping[str, Any], known: Iterable[str],
                    warn: Warn, reasons: Mapping[str, str] | None = None) -> None:
    """A warning for each key of ``mapping`` (at ``path`` under the service) that is set and
    neither ``known`` nor the loader's to warn about."""
    skip = set(known) | _loader_warned(tuple(path.split(".")) if path else ())
    for key in sorted(set(mapping) - skip):
        if mapping[key] and not key.startswith("x-"):
            reason = (reasons or {}).get(key, "composer does not support it yet")
            warn(f"{path}.{key}" if path else key, f"not carried over: {reason}")


class _Reads(Mapping[str, Any]):
    """The service's mapping, noting the attributes read: those nothing read are the ones
    no field carries (no second list of attributes to keep in step with the code)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def _warn_uncarried(config: Mapping[str, Any], read: set[str], warn: Warn) -> None:
    """Every service attribute that is set and that nothing above read."""
    deploy = config.get("deploy") or {}
    _warn_leftovers("deploy", deploy, {"resources", "restart_policy", "replicas"}, warn,
                    {"labels": "they label a Swarm service, not its containers (use labels)"})
    resources = deploy.get("resources") or {}
    _warn_leftovers("deploy.resources.limits", resources.get("limits") or {},
                    {"cpus", "memory", "pids"}, warn)
    _warn_leftovers("deploy.resources.reservations", resources.get("reservations") or {},
                    {"memory"}, warn, {"cpus": "only a Swarm cluster schedules by reserved CPUs"})
    _warn_leftovers("", config, read | ELSEWHERE, warn, REASONS)
