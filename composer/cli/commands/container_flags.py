"""``container run`` / ``container create`` flags, as Docker spells them, into a container spec.

The spec is built as the plain JSON that ``ContainerSpec.to_json`` gives (field for field),
not as a ContainerSpec: the engine makes the dataclass (and refuses an unknown field), and
the CLI, which runs once per command, is spared defining the classes (a few milliseconds of
every ``container run``).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from composer.errors import UsageError


def add_create_flags(p: Any) -> None:
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--env-file", dest="container_env_files", action="append", default=[])
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    p.add_argument("--tmpfs", action="append", default=[], metavar="PATH[:OPTIONS]")
    p.add_argument("--mount", action="append", default=[], metavar="type=..,src=..,dst=..")
    p.add_argument("--volumes-from", action="append", default=[], metavar="CONTAINER[:ro|rw]")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-h", "--hostname")
    p.add_argument("--domainname")
    p.add_argument("--read-only", action="store_true")
    p.add_argument("--cap-add", action="append", default=[])
    p.add_argument("--cap-drop", action="append", default=[])
    p.add_argument("--privileged", action="store_true")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--memory-reservation")
    p.add_argument("--cpus", type=float)
    p.add_argument("-c", "--cpu-shares", type=int)
    p.add_argument("--cpuset-cpus")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--shm-size")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    p.add_argument("--sysctl", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", action="append", default=[])
    p.add_argument("--security-opt", action="append", default=[])
    p.add_argument("--group-add", action="append", default=[])
    p.add_argument("--ipc")
    p.add_argument("--pid")
    p.add_argument("--network", "--net", action="append", default=[],
                   metavar="bridge|host|none|container:NAME|NETWORK")
    p.add_argument("--network-alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("--mac-address")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port on a random host port")
    p.add_argument("--expose", action="append", default=[], metavar="PORT[-END][/PROTOCOL]")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP")
    p.add_argument("--dns", action="append", default=[])
    p.add_argument("--dns-search", action="append", default=[])
    p.add_argument("--dns-option", action="append", default=[])
    p.add_argument("--link", action="append", default=[], metavar="NAME[:ALIAS]")
    p.add_argument("--init", action="store_true")
    p.add_argument("--stop-signal")
    p.add_argument("--stop-timeout", type=float)
    p.add_argument("--restart", default="no")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--log-opt", action="append", default=[], metavar="max-size=10m")
    p.add_argument("--runtime")
    p.add_argument("--rm", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("--health-cmd")
    p.add_argument("--health-interval")
    p.add_argument("--health-timeout")
    p.add_argument("--health-retries", type=int)
    p.add_argument("--health-start-period")
    p.add_argument("--health-start-interval")
    p.add_argument("--no-healthcheck", action="store_true")
    p.add_argument("--pull", choices=("missing", "always", "never"), default="missing")
    p.add_argument("--platform")
    p.add_argument("image")
    p.add_argument("args", nargs=argparse.REMAINDER)


def pairs(items: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` flags (``-l``, ``--sysctl``, ``--opt``) as a mapping."""
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def byte_size(text: str | None, flag: str) -> int | None:
    if text is None:
        return None
    from composer.manifest.shortsyntax import parse_bytes

    if text == "-1":
        return -1
    value = parse_bytes(text)
    if value is None:
        raise UsageError(f"invalid size {text!r} for {flag}: use a number with an optional "
                         "unit (b, k, m, g), as 512m")
    return value


def _seconds(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    from composer.manifest.shortsyntax import parse_duration

    nanos = parse_duration(text)
    if nanos is None:
        raise UsageError(f"invalid duration {text!r} for {flag}: use e.g. 30s, 1m30s, 500ms")
    return nanos / 1e9


def _env(options: argparse.Namespace) -> dict[str, str]:
    import os

    env: dict[str, str] = {}
    if options.container_env_files:
        from composer.manifest.dotenv import read_dotenv

        for path in options.container_env_files:
            env.update(read_dotenv(path))
    for item in options.env:
        key, sep, value = item.partition("=")
        if not sep:
            # `-e NAME` passes the caller's value, and nothing when it has none (Docker).
            if key in os.environ:
                env[key] = os.environ[key]
            continue
        env[key] = value
    return env


def _mounts(options: argparse.Namespace) -> list[dict[str, Any]]:
    from composer.cli.commands.mount_flags import parse_mount, parse_volume

    mounts: list[dict[str, Any]] = [parse_volume(item) for item in options.volume]
    for item in options.tmpfs:
        target, _, opts = item.partition(":")
        mounts.append({"type": "tmpfs", "target": target, "source": "", "read_only": False,
                       "options": [o for o in opts.split(",") if o]})
    mounts += [parse_mount(item) for item in options.mount]
    return mounts


def _ulimits(items: list[str]) -> dict[str, list[int]]:
    out = {}
    for item in items:
        name, _, values = item.partition("=")
        soft, _, hard = values.partition(":")
        try:
            out[name] = [int(soft), int(hard or soft)]
        except ValueError:
            raise UsageError(f"invalid ulimit {item!r}: expected NAME=SOFT[:HARD], as "
                             "nofile=1024:2048") from None
    return out


def _healthcheck(options: argparse.Namespace) -> dict[str, Any] | None:
    if options.no_healthcheck:
        return {"test": ["NONE"]}
    tuning = (options.health_interval, options.health_timeout, options.health_retries,
              options.health_start_period, options.health_start_interval)
    if options.health_cmd is None and all(v is None for v in tuning):
        return None
    test = ["CMD-SHELL", options.health_cmd] if options.health_cmd is not None else []
    return {
        "test": test, "interval": _seconds(options.health_interval, "--health-interval"),
        "timeout": _seconds(options.health_timeout, "--health-timeout"),
        "retries": options.health_retries,
        "start_period": _seconds(options.health_start_period, "--health-start-period"),
        "start_interval": _seconds(options.health_start_interval, "--health-start-interval")}


def _logging(items: list[str]) -> dict[str, Any]:
    opts = pairs(items, "--log-opt")
    unknown = set(opts) - {"max-size", "max-file"}
    if unknown:
        raise UsageError(f"unknown --log-opt {sorted(unknown)[0]!r}: composer knows max-size "
                         "and max-file")
    max_file = int(opts.get("max-file", "1"))
    return {"driver": "json-file",
            "max_size": byte_size(opts.get("max-size"), "--log-opt max-size"),
            "max_file": max_file}


def _network(options: argparse.Namespace) -> dict[str, Any]:
    """``network``, ``networks`` and ``ports`` of the spec: Docker's default is the network
    "bridge"; ``--network-alias``/``--ip`` belong to the first network named."""
    from composer.runtime.portspec import PortSpecError, parse, parse_expose

    try:
        ports = [dataclasses.asdict(b) for text in options.publish for b in parse(text)]
    except PortSpecError as e:
        raise UsageError(f"-p: {e}") from e
    try:
        for text in options.expose:
            parse_expose(text)
    except PortSpecError as e:
        raise UsageError(f"--expose: {e}") from e
    exposing = {"expose": options.expose, "publish_all": options.publish_all}
    chosen = options.network or ["bridge"]
    modes = [n for n in chosen if n in ("none", "host") or n.startswith("container:")]
    if modes and len(chosen) > 1:
        raise UsageError(f"--network {modes[0]} cannot be combined with other networks")
    if modes:
        if options.network_alias or options.ip or ports or options.link or \
                options.publish_all:
            raise UsageError(f"--network {modes[0]}: --network-alias, --ip, -p, -P and --link "
                             "need a bridge network")
        return {"network": modes[0], "expose": options.expose}
    if chosen[0] == "bridge" and (options.network_alias or options.ip):
        raise UsageError("network-scoped aliases and --ip are supported only for containers in "
                         "user-defined networks: create one (composer network create NAME) "
                         "and use --network NAME")
    networks = [{"network": name, "aliases": options.network_alias if i == 0 else [],
                 "ipv4_address": options.ip if i == 0 else None,
                 "mac_address": options.mac_address if i == 0 else None}
                for i, name in enumerate(chosen)]
    return {"network": "bridge", "networks": networks, "ports": ports, **exposing}


def spec_from_options(options: argparse.Namespace) -> dict[str, Any]:
    """The spec the flags ask for, as ContainerSpec JSON (UsageError for a malformed value)."""
    import shlex

    network = _network(options)
    devices = []
    for item in options.device:
        host, _, rest = item.partition(":")
        inside, _, perms = rest.partition(":")
        devices.append({"host": host, "container": inside or host,
                        "permissions": perms or "rwm"})
    entrypoint = None
    if options.entrypoint is not None:
        entrypoint = shlex.split(options.entrypoint) if options.entrypoint else []
    return {
        "image": options.image, "name": options.name, "entrypoint": entrypoint,
        "command": list(options.args) if options.args else None, "env": _env(options),
        "user": options.user, "working_dir": options.workdir, "hostname": options.hostname,
        "domainname": options.domainname, "tty": options.tty,
        "stdin_open": options.interactive, "read_only": options.read_only,
        "privileged": options.privileged, "cap_add": options.cap_add,
        "cap_drop": options.cap_drop, "mounts": _mounts(options),
        "volumes_from": options.volumes_from,
        "shm_size": byte_size(options.shm_size, "--shm-size"),
        "ulimits": _ulimits(options.ulimit), "sysctls": pairs(options.sysctl, "--sysctl"),
        "devices": devices, "security_opt": options.security_opt,
        "group_add": options.group_add, "ipc": options.ipc, "pid": options.pid,
        **network,
        "extra_hosts": options.add_host, "dns": options.dns, "dns_search": options.dns_search,
        "dns_opt": options.dns_option, "links": options.link,
        "resources": {
            "memory": byte_size(options.memory, "--memory"),
            "memory_swap": byte_size(options.memory_swap, "--memory-swap"),
            "memory_reservation": byte_size(options.memory_reservation, "--memory-reservation"),
            "cpus": options.cpus, "cpu_shares": options.cpu_shares,
            "cpuset_cpus": options.cpuset_cpus, "cpuset_mems": None,
            "pids_limit": options.pids_limit},
        "init": options.init, "stop_signal": options.stop_signal,
        "stop_grace_period": options.stop_timeout, "healthcheck": _healthcheck(options),
        "restart": options.restart, "labels": pairs(options.label, "--label"),
        "logging": _logging(options.log_opt), "runtime": options.runtime,
        "auto_remove": options.rm,
    }
