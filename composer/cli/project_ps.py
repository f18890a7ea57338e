"""``composer ps``: the project's containers, in Compose's table, JSON or template.

Compose lists by name; each container is inspected for what the engine's list does not carry
(published ports, networks, mounts). The JSON keys and their order are Compose v2's
(``docker compose ps --format json``: one object a line).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from composer.cli.app import App
from composer.cli.project_select import (
    ONEOFF_EXCLUDE,
    ONEOFF_INCLUDE,
    Container,
    load_target,
    project_containers,
)
from composer.errors import ComposerError, UsageError

_PS_TABLE = ("table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t"
             "{{.Status}}\t{{.Ports}}")
_PS_TITLES = {"ID": "CONTAINER ID", "Name": "NAME", "Names": "NAMES", "Project": "PROJECT",
              "Service": "SERVICE", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED AT", "RunningFor": "CREATED", "Ports": "PORTS",
              "State": "STATE", "Status": "STATUS", "Size": "SIZE", "Labels": "LABELS",
              "Health": "HEALTH", "ExitCode": "EXIT CODE", "Networks": "NETWORKS",
              "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Publishers": "PUBLISHERS"}
_STATUSES = ("paused", "restarting", "removing", "running", "dead", "created", "exited")


def register(commands: Any) -> None:
    p = commands.add_parser("ps", help="list the project's containers")
    p.add_argument("-a", "--all", action="store_true",
                   help="show stopped containers too (and those of 'run')")
    p.add_argument("-q", "--quiet", action="store_true", help="only the IDs")
    p.add_argument("--services", dest="list_services", action="store_true",
                   help="only the services")
    p.add_argument("--format", default="table", help="table, json, or a Go template")
    p.add_argument("--filter", action="append", default=[], metavar="status=STATUS")
    p.add_argument("--status", action="append", default=[], choices=_STATUSES)
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--orphans", type=_boolean, nargs="?", const=True, default=True,
                   metavar="BOOL", help="include services the project no longer declares")
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=run_ps)


def run_ps(app: App, options: argparse.Namespace) -> int:
    statuses = list(options.status)
    for item in options.filter:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError("arguments to --filter should be in form KEY=VAL")
        if key == "status":
            statuses.append(value)
        elif key == "source":
            raise UsageError("--filter source: not implemented")
        else:
            raise UsageError(f"unknown filter {key}")
    target = load_target(app, options, options.services_selected)
    services = list(options.services_selected)
    if not services and target.project is not None and not options.orphans:
        services = list(target.declared())
    from composer.cli.commands.container import client as engine_client

    client = engine_client(options)
    found = project_containers(client, target.name, services,
                               stopped=options.all or bool(statuses),
                               oneoff=ONEOFF_INCLUDE if options.all else ONEOFF_EXCLUDE)
    if statuses:
        found = [c for c in found if c.status in statuses]
    found.sort(key=lambda c: c.name)  # Compose lists by name
    if options.quiet:
        for c in found:
            app.print(c.id)
        return 0
    if options.list_services:
        app.print("\n".join(dict.fromkeys(c.service for c in found)))
        return 0
    from composer.cli import templates

    now = time.time()
    rows = [ps_row(c, _inspect(client, c), now, trunc=not options.no_trunc,
                   project=target.name) for c in found]
    templates.write(rows, options.format, _PS_TITLES, _PS_TABLE, app.print)
    if options.format == "table" or options.format.startswith("table "):
        _say_watching(app, client, target.name)
    return 0


def _say_watching(app: App, client: Any, name: str) -> None:
    """A background watch (``up -d --watch``) is the project's, not a container's: one line
    under the table, on stderr (the table stays what Compose prints)."""
    from composer.cli.commands.project_watch import background_status

    found = background_status(client, name)
    if found is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(found["StartedAt"])))
        app.err.write(f"watching: pid {found['Pid']} since {since} (log: {found['Log']})\n")


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true", "yes", "y"):
        return True
    if value in ("0", "f", "false", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def _inspect(client: Any, c: Container) -> dict[str, Any]:
    try:
        found: dict[str, Any] = client.request("GET", f"/v1/containers/{c.id}")
        return found
    except ComposerError:
        return {}  # removed since the listing: shown as listed, without ports or networks


def ps_row(c: Container, inspected: dict[str, Any], now: float, *, trunc: bool,
           project: str) -> dict[str, Any]:
    """One container as ``docker compose ps --format json`` shows it (keys in its order)."""
    from composer.cli.commands.container import ago, status_text

    summary = dict(c.summary)
    command = " ".join(summary.get("Command") or ())
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    # Docker shows the ports of running containers only: a stopped one publishes nothing.
    publishers = _publishers((inspected.get("NetworkSettings") or {}).get("Ports") or {}) \
        if c.running else []
    mounts = inspected.get("Mounts") or []
    state = summary["State"]
    created = float(summary.get("Created") or 0)
    return {
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)),
        "ExitCode": int(state.get("ExitCode") or 0),
        "Health": str((state.get("Health") or {}).get("Status") or ""),
        "ID": c.id[:12] if trunc else c.id,
        "Image": str(summary.get("Image") or ""),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Type") == "volume")),
        "Mounts": ",".join(str(m.get("Name") or m.get("Source") or "") for m in mounts),
        "Name": c.name,
        "Names": c.name,
        "Networks": ",".join(sorted((inspected.get("NetworkSettings") or {})
                                    .get("Networks") or {})),
        "Ports": ports_text(publishers),
        "Project": project,
        "Publishers": publishers,
        "RunningFor": ago(now - created) + " ago",
        "Service": c.service,
        "Size": "0B",
        "State": c.status,
        "Status": status_text(summary, now),
        "LabelMap": dict(c.labels),  # for {{.Label "key"}}, never printed
    }


def _publishers(ports: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for key, bindings in ports.items():
        number, _, protocol = key.partition("/")
        target = int(number) if number.isdigit() else 0
        for b in bindings or [{"HostIp": "", "HostPort": "0"}]:
            found.append({"URL": b.get("HostIp", ""), "TargetPort": target,
                          "PublishedPort": int(b.get("HostPort") or 0),
                          "Protocol": protocol or "tcp"})
    return sorted(found, key=lambda p: (p["TargetPort"], p["Protocol"], ":" in p["URL"],
                                        p["URL"], p["PublishedPort"]))


def ports_text(publishers: Sequence[dict[str, Any]]) -> str:
    """Docker's PORTS column: ``0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 9000/tcp``."""
    def one(p: dict[str, Any]) -> str:
        if not p["URL"] and not p["PublishedPort"]:
            return f"{p['TargetPort']}/{p['Protocol']}"
        host = f"[{p['URL']}]" if ":" in p["URL"] else p["URL"]
        return f"{host}:{p['PublishedPort']}->{p['TargetPort']}/{p['Protocol']}"
    return ", ".join(one(p) for p in publishers)
