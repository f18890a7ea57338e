"""``composer run SERVICE [COMMAND...]``: a one-off container of a service.

As Docker Compose: the service's dependencies are brought up first (unless ``--no-deps``),
the container is named ``<project>-<service>-run-<id>`` and labelled as a one-off (``ps``
and ``up`` leave it alone), ports are published only with ``--service-ports`` or ``-p``, and
the exit code is the container's.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError


def add_run_parser(commands: Any) -> None:
    p = commands.add_parser("run", help="run a one-off command in a new container of a service")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name")
    p.add_argument("--entrypoint")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    p.add_argument("-p", "--publish", action="append", default=[])
    p.add_argument("-P", "--service-ports", action="store_true",
                   help="publish the service's ports")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true", default=None)
    p.add_argument("--use-aliases", action="store_true")
    p.add_argument("--build", action="store_true")
    p.add_argument("--pull", choices=("always", "missing", "never"))
    p.add_argument("--quiet-pull", action="store_true")
    p.add_argument("service")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p.set_defaults(handler=run)


def run(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.project_up import Progress, load, request_of

    project = load(app, options, [options.service])
    if options.service not in project.services:
        raise UsageError(f"no such service: {options.service}")
    engine = engine_client(options)
    quiet = "quiet" if options.progress == "quiet" else options.progress
    base = request_of(project, pull_always=options.pull == "always")
    edges = project.services[options.service].depends_on
    dependencies = sorted(d for d in edges if d in project.services)
    if dependencies and not options.no_deps:
        # Each dependency waited for as the service's depends_on says (a migration must have
        # completed, a database be healthy), not merely running.
        body = {**base, "options": {"services": dependencies, "wait": True,
                                    "wait_conditions": {d: edges[d].condition
                                                        for d in dependencies},
                                    "pull": options.pull, "build": options.build}}
        progress = Progress(app, quiet)
        if not progress.show(engine.stream("POST", f"/v1/projects/{project.name}/up", body)):
            return 1
    tty = not options.no_tty and not options.detach and sys.stdin.isatty()
    interactive = options.interactive if options.interactive is not None else tty
    body = {**base, "service": options.service, "name": options.name, "remove": options.rm,
            "use_aliases": options.use_aliases, "labels": _pairs(options.label, "--label"),
            "overrides": _overrides(project.services[options.service], options,
                                    tty=tty, interactive=interactive)}
    progress = Progress(app, quiet)
    made = progress.show(engine.stream("POST", f"/v1/projects/{project.name}/run", body))
    if not made or progress.created is None:
        return 1
    created = progress.created
    if options.detach:
        engine.request("POST", f"/v1/containers/{created['Id']}/start")
        app.print(created["Name"])
        return 0
    from composer.cli import interactive as sessions

    return sessions.attach_and_start(engine, created["Id"], tty=tty, remove=options.rm)


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    from composer.cli.commands.container_flags import pairs

    return pairs(items, flag)


def _overrides(service: Any, options: argparse.Namespace, *, tty: bool,
               interactive: bool) -> dict[str, Any]:
    """The flags, in compose words, laid over the service's config."""
    from composer.runtime.portspec import PortSpecError, parse

    overrides: dict[str, Any] = {"tty": tty, "stdin_open": interactive, "restart": "no"}
    if options.args:
        overrides["command"] = list(options.args)
    if options.entrypoint is not None:
        overrides["entrypoint"] = shlex.split(options.entrypoint)
    environment = {k: v for k, v in (service.spec.get("environment") or {}).items()}
    for item in options.env:
        key, sep, value = item.partition("=")
        if sep:
            environment[key] = value
        else:
            import os

            if key in os.environ:
                environment[key] = os.environ[key]
    overrides["environment"] = environment
    if options.user:
        overrides["user"] = options.user
    if options.workdir:
        overrides["working_dir"] = options.workdir
    ports: list[dict[str, Any]] = list(service.spec.get("ports") or ()) \
        if options.service_ports else []
    for text in options.publish:
        try:
            bindings = parse(text)
        except PortSpecError as e:
            raise UsageError(f"-p: {e}") from e
        for b in bindings:
            published = (f"{b.host_port}-{b.host_port_end}" if b.host_port_end else
                         str(b.host_port) if b.host_port else None)
            ports.append({"target": b.container_port, "protocol": b.protocol,
                          "host_ip": b.host_ip or None, "published": published,
                          "mode": "ingress"})
    overrides["ports"] = ports
    if options.volume:
        overrides["volumes"] = [*(service.spec.get("volumes") or ()),
                                *(_volume(text) for text in options.volume)]
    return overrides


def _volume(text: str) -> dict[str, Any]:
    """``-v SRC:DST[:ro]`` in the long syntax the service's own volumes use."""
    import os

    parts = text.split(":")
    if len(parts) == 1:
        return {"type": "volume", "target": parts[0]}
    source, target = parts[0], parts[1]
    read_only = len(parts) > 2 and "ro" in parts[2].split(",")
    if source.startswith((".", "/", "~")):
        return {"type": "bind", "source": os.path.abspath(os.path.expanduser(source)),
                "target": target, "read_only": read_only, "bind": {"create_host_path": True}}
    return {"type": "volume", "source": source, "target": target, "read_only": read_only}
