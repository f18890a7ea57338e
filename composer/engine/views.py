"""What the engine shows of a container: Docker's inspect shape, the list summary, top, stats.

Docker's field names are kept (``State.Status``, ``Config.Env``, ``HostConfig.RestartPolicy``,
...) so that scripts written against ``docker inspect`` find what they look for.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(when: float | None) -> str:
    if not when:
        return ZERO_TIME
    return datetime.fromtimestamp(when, UTC).isoformat().replace("+00:00", "Z")


def command_of(manager: ContainerManager, row: ContainerRow) -> list[str]:
    from composer.runtime import bundle

    try:
        return bundle.process_args(manager.spec(row), manager.image_config(row))
    except Exception:
        return []


def summary(manager: ContainerManager, row: ContainerRow) -> dict[str, Any]:
    """One line of ``container ls`` (the list endpoint)."""
    return {"Id": row.id, "Name": row.name, "Image": row.image_ref, "ImageID": row.image_id,
            "Command": command_of(manager, row), "Created": row.created,
            "State": _state(row), "Labels": dict(row.spec.get("labels") or {})}


def _state(row: ContainerRow) -> dict[str, Any]:
    state: dict[str, Any] = {
        "Status": row.status, "Running": row.status in ("running", "paused"),
        "Paused": row.status == "paused", "Restarting": row.status == "restarting",
        "OOMKilled": row.oom_killed, "Dead": row.status == "dead", "Pid": row.pid or 0,
        "ExitCode": row.exit_code or 0, "Error": "",
        "StartedAt": rfc3339(row.started_at), "FinishedAt": rfc3339(row.finished_at),
        "StartedAtUnix": row.started_at or 0, "FinishedAtUnix": row.finished_at or 0,
    }
    if row.health is not None:
        state["Health"] = dict(row.health)
    return state


def inspect(manager: ContainerManager, row: ContainerRow) -> dict[str, Any]:
    from composer.engine.mounts import mounts_view

    spec = manager.spec(row)
    image_config = manager.image_config(row)
    from composer.runtime import bundle

    env = list(image_config.get("Env") or [])
    keys = set(spec.env)
    env = [e for e in env if e.split("=", 1)[0] not in keys] + [
        f"{k}={v}" for k, v in spec.env.items()]
    cdir = manager.layout.container_dir(row.id)
    return {
        "Id": row.id, "Created": rfc3339(row.created), "Name": f"/{row.name}",
        "Path": (command_of(manager, row) or [""])[0],
        "Args": command_of(manager, row)[1:], "State": _state(row), "Image": row.image_id,
        "RestartCount": row.restart_count, "Driver": "overlay",
        "LogPath": str(manager.log_path(row.id)),
        "HostnamePath": str(cdir / "hostname"), "HostsPath": str(cdir / "hosts"),
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "Config": {
            "Hostname": bundle.hostname_of(spec, row.id), "Domainname": spec.domainname or "",
            "User": spec.user or image_config.get("User") or "", "Env": env,
            "Cmd": list(spec.command) if spec.command is not None else
            (None if spec.entrypoint is not None else image_config.get("Cmd")),
            "Entrypoint": list(spec.entrypoint) if spec.entrypoint is not None else
            image_config.get("Entrypoint"),
            "WorkingDir": spec.working_dir or image_config.get("WorkingDir") or "",
            "Image": row.image_ref, "Labels": dict(spec.labels), "Tty": spec.tty,
            "OpenStdin": spec.stdin_open,
            "StopSignal": bundle.effective_stop_signal(spec, image_config),
        },
        "HostConfig": {
            "RestartPolicy": _restart_policy(spec.restart), "AutoRemove": spec.auto_remove,
            "Privileged": spec.privileged, "ReadonlyRootfs": spec.read_only,
            "CapAdd": list(spec.cap_add), "CapDrop": list(spec.cap_drop),
            "NetworkMode": spec.network, "Init": spec.init,
            "Memory": spec.resources.memory or 0,
            "NanoCpus": int((spec.resources.cpus or 0) * 1e9),
            "PidsLimit": spec.resources.pids_limit, "Runtime": row.runtime,
            "LogConfig": {"Type": spec.logging.driver, "Config": _log_config(spec)},
        },
        "Mounts": mounts_view(manager, row, spec),
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": str(cdir / "upper"), "WorkDir": str(cdir / "work"),
            "MergedDir": str(cdir / "merged")}},
        "NetworkSettings": network_settings(manager, row, spec),
    }


def ports(row: ContainerRow, spec: Any) -> dict[str, list[dict[str, str]] | None]:
    """Docker's ``NetworkSettings.Ports``: "80/tcp" -> the host bindings it has now (None for
    a port asked for but not published now)."""
    found: dict[str, list[dict[str, str]] | None] = {
        f"{b.container_port}/{b.protocol}": None for b in spec.ports}
    from composer.engine.publishing import host_has_ipv6

    for p in row.ports or ():
        key = f"{p['container_port']}/{p['protocol']}"
        bindings = found.get(key) or []
        # Every address is both families where the host has IPv6, as Docker shows it.
        hosts = [p["host_ip"]] if p["host_ip"] else \
            ["0.0.0.0", "::"] if host_has_ipv6() else ["0.0.0.0"]
        bindings += [{"HostIp": host, "HostPort": str(p["host_port"])} for host in hosts]
        found[key] = bindings
    return found


def network_settings(manager: ContainerManager, row: ContainerRow, spec: Any) -> dict[str, Any]:
    from composer.engine.networks import attachments

    addresses = manager.networks.addresses(row.id) if row.ports is not None else {}
    networks = {}
    for attachment in attachments(spec):
        try:
            network = manager.networks.find(attachment.network)
        except ComposerError:
            continue
        address = addresses.get(network.name, "")
        networks[network.name] = {
            "NetworkID": network.id, "Aliases": list(attachment.aliases),
            "IPAddress": address, "Gateway": network.gateway if address else "",
            "IPPrefixLen": int(network.subnet.split("/")[1]) if address else 0,
            "MacAddress": attachment.mac_address or "",
            "EndpointID": manager.networks.veth_name(row.id, network.id) if address else ""}
    first = next(iter(networks.values()), {})
    return {"Ports": ports(row, spec), "Networks": networks,
            "SandboxKey": str(manager.networks.netns_path(row.id)) if addresses else "",
            "IPAddress": first.get("IPAddress", ""), "Gateway": first.get("Gateway", "")}


def _restart_policy(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count) if count.isdigit() else 0}


def _log_config(spec: Any) -> dict[str, str]:
    out = {}
    if spec.logging.max_size is not None:
        out["max-size"] = str(spec.logging.max_size)
    if spec.logging.max_file != 1:
        out["max-file"] = str(spec.logging.max_file)
    return out


def top(manager: ContainerManager, row: ContainerRow) -> dict[str, Any]:
    """``docker top``'s default columns (as ``ps -ef``): UID PID PPID C STIME TTY TIME CMD."""
    import pwd

    pids = manager.runtime(row).ps(row.id) if row.status in ("running", "paused") else []
    ticks = os.sysconf("SC_CLK_TCK")
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    processes = []
    for pid in sorted(pids):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            uid = Path(f"/proc/{pid}").stat().st_uid
        except OSError:
            continue  # ended while we looked
        fields = stat[stat.rindex(")") + 2:].split()
        ppid, utime, stime, start = int(fields[1]), int(fields[11]), int(fields[12]), \
            int(fields[19])
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = str(uid)
        cpu = (utime + stime) // ticks
        started = time.strftime("%H:%M", time.localtime(boot + start / ticks))
        command = " ".join(a.decode(errors="replace") for a in cmdline.split(b"\0") if a)
        processes.append([user, str(pid), str(ppid), "0", started, "?",
                          time.strftime("%H:%M:%S", time.gmtime(cpu)), command])
    return {"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"],
            "Processes": processes}


def stats(manager: ContainerManager, row: ContainerRow) -> dict[str, Any]:
    """Memory, CPU and pids of a running container, read from its cgroup."""
    from composer.runtime import cgroups

    settings = manager.cgroup(row)
    dirs = cgroups.cgroup_dirs(settings, manager.cgroup_host)

    def read(name: str) -> int | None:
        # v1 keeps each file in its controller's hierarchy, v2 all in one directory: the
        # file's name says where it is either way.
        for path in dirs:
            if (path / name).exists():
                try:
                    text = (path / name).read_text().split()[0]
                    return None if text == "max" else int(text)
                except (OSError, ValueError, IndexError):
                    return None
        return None

    usage = read("memory.usage_in_bytes") or read("memory.current")
    limit = read("memory.limit_in_bytes") or read("memory.max")
    pids = read("pids.current") or 0
    cpu1 = read("cpuacct.usage")
    t1 = time.monotonic()
    time.sleep(0.1)
    cpu2 = read("cpuacct.usage")
    elapsed = time.monotonic() - t1
    percent = 0.0 if cpu1 is None or cpu2 is None else (cpu2 - cpu1) / 1e9 / elapsed * 100
    return {"id": row.id, "name": row.name, "memory_usage": usage,
            "memory_limit": limit if limit and limit < (1 << 62) else None,
            "pids": pids, "cpu_percent": percent}
