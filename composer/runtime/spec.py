"""What a container is asked to be: one plain, JSON-able description for every layer.

``composer container run`` flags and (later) compose services both become a
:class:`ContainerSpec`; the engine stores it as JSON, the bundle code turns it (with the image
config) into the OCI ``config.json``, and the supervisor reads its restart policy, health check
and stop signal from it. Values are as the user wrote them, already validated and in base units
(bytes, seconds, nanoseconds for CPU quotas are the bundle's business); ``None`` always means
"not set: use the image's or Docker's default".
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MountType = Literal["bind", "tmpfs", "volume"]

#: Docker's rule for the names of containers and volumes.
NAME_RULE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


@dataclass(frozen=True)
class Mount:
    """One mount. ``source`` is a host path for binds (a volume name for volumes), unused for
    tmpfs. ``options`` are extra mount options (``size=65536k``, ``mode=1777``, ``rprivate``).
    """

    type: MountType
    target: str
    source: str = ""
    read_only: bool = False
    options: tuple[str, ...] = ()
    #: A path inside the volume (or bind source) to mount instead of its top (``subpath``).
    subpath: str = ""
    #: Binds: make a missing host path as a directory (``-v`` does, ``--mount`` refuses).
    create_host_path: bool = False


@dataclass(frozen=True)
class Attachment:
    """One network a container joins: its name, the names it answers to there (network
    ``aliases``), and a static address (``ipv4_address``) or None for the next free one."""

    network: str
    aliases: tuple[str, ...] = ()
    ipv4_address: str | None = None
    mac_address: str | None = None


@dataclass(frozen=True)
class PortBinding:
    """One published port. ``host_port`` None: a free port the kernel picks (or one of
    ``host_port``..``host_port_end`` when a host range maps to one container port).
    ``host_ip`` "" publishes on every IPv4 address of the host."""

    container_port: int
    protocol: Literal["tcp", "udp", "sctp"] = "tcp"
    host_ip: str = ""
    host_port: int | None = None
    host_port_end: int | None = None


@dataclass(frozen=True)
class File:
    """A secret or config placed in the container: from a host file (``source``) or given
    ``content``; owner and mode as asked (None: root and 0444), whatever the source's are."""

    target: str
    source: str = ""
    content: str | None = None
    uid: str | None = None
    gid: str | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Device:
    """A host device made available inside (``--device /dev/fuse:/dev/fuse:rwm``)."""

    host: str
    container: str
    permissions: str = "rwm"


@dataclass(frozen=True)
class Healthcheck:
    """A health check. ``test`` is Docker's form: ``["CMD", ...]``, ``["CMD-SHELL", "..."]`` or
    ``["NONE"]`` (disabled). Durations are seconds; ``None`` is Docker's default (30 s
    interval, 30 s timeout, 3 retries, 0 s start period, 5 s start interval)."""

    test: tuple[str, ...]
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    start_interval: float | None = None


@dataclass(frozen=True)
class Resources:
    """cgroup limits. Memory in bytes (``memory_swap`` is memory + swap, -1 unlimited, as
    Docker's ``--memory-swap``), ``cpus`` a fraction of CPUs, ``cpu_shares`` the relative
    weight (Docker's 2..262144), ``cpuset_cpus`` as ``0-1,3``."""

    memory: int | None = None
    memory_swap: int | None = None
    memory_reservation: int | None = None
    cpus: float | None = None
    cpu_shares: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None


@dataclass(frozen=True)
class Logging:
    """Where logs go. Only ``json-file``/``local``/``k8s-file``-like file logging is real
    (conmon writes it); ``max_size`` in bytes, ``max_file`` the number of files kept."""

    driver: str = "json-file"
    max_size: int | None = None
    max_file: int = 1


@dataclass(frozen=True)
class ContainerSpec:
    """Everything a container is asked to be (see the module's docstring).

    ``entrypoint``/``command``: None keeps the image's; an explicit entrypoint resets the
    image's CMD unless ``command`` is given too (Docker's rule). ``env`` is applied over the
    image's Env. ``network``: ``none``, ``host``, ``bridge`` (join ``networks``, the default
    network "bridge" when empty), ``container:NAME`` or ``service:NAME`` (share its namespace).
    ``extra_hosts`` as ``NAME:IP`` (IP may be ``host-gateway``); ``links`` as ``NAME[:ALIAS]``;
    ``volumes_from`` as ``NAME[:ro|rw]``; ``files`` are secrets and configs.
    ``ipc``/``pid``: None (private), ``host``, ``shareable`` (ipc), ``container:NAME``.
    ``restart``: ``no``, ``always``, ``on-failure[:N]``, ``unless-stopped``.
    ``stop_grace_period`` in seconds (None: 10 s). ``labels`` become OCI annotations.
    """

    image: str
    name: str | None = None
    entrypoint: tuple[str, ...] | None = None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    working_dir: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    tty: bool = False
    stdin_open: bool = False
    read_only: bool = False
    privileged: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    shm_size: int | None = None
    ulimits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    sysctls: Mapping[str, str] = field(default_factory=dict)
    devices: tuple[Device, ...] = ()
    security_opt: tuple[str, ...] = ()
    group_add: tuple[str, ...] = ()
    ipc: str | None = None
    pid: str | None = None
    network: str = "none"
    networks: tuple[Attachment, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    expose: tuple[str, ...] = ()  # "80/tcp", "9000-9002/udp": more ports -P publishes
    publish_all: bool = False  # -P: every exposed port (the image's and these) on a random one
    extra_hosts: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_opt: tuple[str, ...] = ()
    links: tuple[str, ...] = ()
    volumes_from: tuple[str, ...] = ()
    files: tuple[File, ...] = ()
    resources: Resources = field(default_factory=Resources)
    init: bool = False
    stop_signal: str | None = None
    stop_grace_period: float | None = None
    healthcheck: Healthcheck | None = None
    restart: str = "no"
    labels: Mapping[str, str] = field(default_factory=dict)
    logging: Logging = field(default_factory=Logging)
    runtime: str | None = None
    auto_remove: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (tuples as lists), read back by :meth:`from_json`."""
        plain: dict[str, Any] = _plain(dataclasses.asdict(self))
        return plain

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContainerSpec:
        values = dict(data)
        values["mounts"] = tuple(Mount(**{**m, "options": tuple(m.get("options") or ())})
                                 for m in values.get("mounts") or ())
        values["networks"] = tuple(Attachment(**{**a, "aliases": tuple(a.get("aliases") or ())})
                                   for a in values.get("networks") or ())
        values["ports"] = tuple(PortBinding(**p) for p in values.get("ports") or ())
        values["files"] = tuple(File(**f) for f in values.get("files") or ())
        values["devices"] = tuple(Device(**d) for d in values.get("devices") or ())
        values["resources"] = Resources(**(values.get("resources") or {}))
        values["logging"] = Logging(**(values.get("logging") or {}))
        check = values.get("healthcheck")
        values["healthcheck"] = (None if check is None else
                                 Healthcheck(**{**check, "test": tuple(check["test"])}))
        values["ulimits"] = {k: (int(v[0]), int(v[1]))
                             for k, v in (values.get("ulimits") or {}).items()}
        for key in ("entrypoint", "command"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        for key in ("cap_add", "cap_drop", "security_opt", "group_add", "extra_hosts", "dns",
                    "dns_search", "dns_opt", "links", "volumes_from", "expose"):
            values[key] = tuple(values.get(key) or ())
        unknown = sorted(set(values) - _spec_fields())
        if unknown:
            # A newer client, or a typo in one: refuse rather than drop what was asked.
            raise ValueError(f"unknown container spec fields: {', '.join(unknown)}")
        return cls(**values)


@functools.cache
def _spec_fields() -> frozenset[str]:
    # Asked at every decode of a spec, which is often: once is enough.
    return frozenset(f.name for f in dataclasses.fields(ContainerSpec))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
