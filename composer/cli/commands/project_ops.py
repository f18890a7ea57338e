"""Compose's commands over a project's existing containers: ``ps``, ``logs``, ``exec``,
``start``, ``stop``, ``restart``, ``kill``, ``pause``, ``unpause``, ``rm``, ``top``, ``port``,
``wait``, ``cp``, ``stats`` and ``events``.

Each finds its project and containers with :mod:`composer.cli.project_select` (the compose
files, or ``-p NAME`` alone), then asks the engine per container, as ``composer container``
does; ``ps`` is in :mod:`composer.cli.project_ps`, the streaming ``logs``, ``events`` and
``stats`` in :mod:`composer.cli.project_streams`, the acting in generations in
:mod:`composer.cli.project_actions`. Flags, messages, output formats and exit codes are
Docker Compose v2's. Starting goes in dependency order, one generation at a time, waiting for
``service_healthy`` and ``service_completed_successfully`` dependencies as Compose does;
stopping in reverse order. ``start``, ``stop`` and ``restart`` ask the engine to run the
services' lifecycle hooks (``post_start``, ``pre_stop``, ``pre_start``) around them, as
``up`` and ``down`` do (:mod:`composer.engine.project_hooks`). Progress lines go to stderr,
as Compose's do, so that stdout stays the command's answer.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from composer.cli.app import App
from composer.cli.project_actions import Reporter, each, post, wait_dependencies, wait_until
from composer.cli.project_select import (
    ONEOFF_EXCLUDE,
    ONEOFF_INCLUDE,
    Container,
    Target,
    load_target,
    project_containers,
    service_container,
    start_generations,
    stop_generations,
)
from composer.errors import ComposerError, UsageError


def register(commands: Any) -> None:
    from composer.cli import project_ps, project_streams

    project_ps.register(commands)
    project_streams.register(commands)

    p = commands.add_parser("exec", help="run a command in a running service container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY[=VALUE]")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--privileged", action="store_true")
    p.add_argument("-T", "--no-tty", "--no-TTY", dest="no_tty", action="store_true",
                   help="no pseudo-terminal (the default when stdin or stdout is not one)")
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    # Compose's hidden -i/-t, both on by default: accepted, changing nothing.
    p.add_argument("-i", "--interactive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-t", "--tty", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(handler=run_exec)

    p = commands.add_parser("start", help="start the project's stopped containers")
    p.add_argument("--wait", action="store_true", help="wait until running or healthy")
    p.add_argument("--wait-timeout", type=float, metavar="SECONDS")
    _services(p)
    p.set_defaults(handler=run_start)
    p = commands.add_parser("stop", help="stop the project's containers")
    p.add_argument("-t", "--timeout", type=int, metavar="SECONDS")
    _services(p)
    p.set_defaults(handler=run_stop)
    p = commands.add_parser("restart", help="restart the project's containers")
    p.add_argument("-t", "--timeout", type=int, metavar="SECONDS")
    p.add_argument("--no-deps", action="store_true", help="not the dependents")
    _services(p)
    p.set_defaults(handler=run_restart)
    p = commands.add_parser("kill", help="send a signal to the project's containers")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("--remove-orphans", action="store_true",
                   help="also the containers of services the project no longer declares")
    _services(p)
    p.set_defaults(handler=run_kill)
    for name in ("pause", "unpause"):
        p = commands.add_parser(name, help=f"{name} the project's containers")
        _services(p)
        p.set_defaults(handler=run_pause)
    p = commands.add_parser("rm", help="remove the project's stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not ask")
    p.add_argument("-s", "--stop", action="store_true", help="stop them first")
    p.add_argument("-v", "--volumes", action="store_true", help="and their anonymous volumes")
    _services(p)
    p.set_defaults(handler=run_rm)
    p = commands.add_parser("top", help="the processes of the project's containers")
    _services(p)
    p.set_defaults(handler=run_top)
    p = commands.add_parser("port", help="the public port of a service's private port")
    p.add_argument("--protocol", choices=("tcp", "udp", "sctp"))
    p.add_argument("--index", type=int, default=0)
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("private", nargs="?", metavar="PRIVATE_PORT")
    p.set_defaults(handler=run_port)
    p = commands.add_parser("wait", help="wait until the services' containers stop")
    p.add_argument("--down-project", action="store_true")
    p.add_argument("services_selected", nargs="+", metavar="SERVICE")
    p.set_defaults(handler=run_wait)
    p = commands.add_parser("cp", help="copy files between a service container and the host")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--all", action="store_true", help="include the containers of 'run'")
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.set_defaults(handler=run_cp)


def _services(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services_selected", nargs="*", metavar="SERVICE")


def engine(options: argparse.Namespace) -> Any:
    from composer.cli.commands.container import client

    return client(options)


# --- exec -------------------------------------------------------------------------------------


def run_exec(app: App, options: argparse.Namespace) -> int:
    from composer.cli import interactive
    from composer.cli.commands.container import exec_body

    if not options.args:
        raise UsageError("exec needs a command: composer exec SERVICE COMMAND [ARG...]")
    target = load_target(app, options, [options.service])
    client = engine(options)
    c = service_container(client, target.name, options.service, options.index or None)
    env: dict[str, str] = {}
    for item in options.env:
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
        elif key in target.environment:
            env[key] = target.environment[key]
        # A bare KEY set nowhere is left out, as Compose leaves it out.
    # Compose allocates a terminal unless -T or its output is no terminal; a terminal needs
    # one at both ends here, else raw mode and the pump have nothing to work with.
    tty = not options.no_tty and sys.stdin.isatty() and sys.stdout.isatty()
    body = exec_body(options.args, env=env, user=options.user, workdir=options.workdir,
                     tty=tty, interactive=True, privileged=options.privileged,
                     detach=options.detach)
    return interactive.exec_session(client, c.id, body)


# --- start, stop, restart, kill, pause, unpause -----------------------------------------------


def run_start(app: App, options: argparse.Namespace) -> int:
    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = project_containers(client, target.name, options.services_selected)
    if target.project is not None:
        have = {c.service for c in found}
        for name in sorted(target.project.services):
            if name not in have and target.project.services[name].replicas > 0:
                raise ComposerError(f'service "{name}" has no container to start')
    reporter = Reporter(app, options)
    started: list[Container] = []
    for group in start_generations(target, found):
        if not reporter.dry_run:
            wait_dependencies(client, target, group, started)
        if not each(reporter, options, [c for c in group if not c.running],
                    post(client, "start", reporter=reporter), "Started"):
            return 1
        started += group
    if options.wait and not reporter.dry_run:
        wait_until(client, {c.id for c in started}, "running", timeout=options.wait_timeout)
    return 0


def stop_containers(app: App, options: argparse.Namespace, target: Target,
                    found: Sequence[Container], timeout: int | None) -> bool:
    """Stop what runs of ``found``, dependents first (``stop``, ``rm -s``)."""
    client = engine(options)
    reporter = Reporter(app, options)
    params = {"t": timeout} if timeout is not None else None
    return all(each(reporter, options, [c for c in group if c.running],
                    post(client, "stop", params, reporter=reporter), "Stopped")
               for group in stop_generations(target, found))


def run_stop(app: App, options: argparse.Namespace) -> int:
    target = load_target(app, options, options.services_selected)
    found = project_containers(engine(options), target.name, options.services_selected)
    return 0 if stop_containers(app, options, target, found, options.timeout) else 1


def run_restart(app: App, options: argparse.Namespace) -> int:
    from composer.cli.project_select import restarted_with

    named = options.services_selected
    target = load_target(app, options, named, whole=not options.no_deps)
    chosen = set(named) if options.no_deps else restarted_with(target, named)
    client = engine(options)
    found = [c for c in project_containers(client, target.name)
             if not named or c.service in chosen]
    reporter = Reporter(app, options)
    params = {"t": options.timeout} if options.timeout is not None else None
    done: list[Container] = []
    for group in start_generations(target, found):
        if not reporter.dry_run:
            wait_dependencies(client, target, group, done)
        if not each(reporter, options, group, post(client, "restart", params, reporter=reporter),
                    "Started"):
            return 1
        done += group
    return 0


def run_kill(app: App, options: argparse.Namespace) -> int:
    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = project_containers(client, target.name, options.services_selected, stopped=False,
                               oneoff=ONEOFF_INCLUDE)
    if target.project is not None and not options.remove_orphans:
        found = [c for c in found if c.service in target.project.services]
    if not found:
        app.err.write("no container to kill\n")
        return 0
    ok = each(Reporter(app, options), options, found,
              post(client, "kill", {"signal": options.signal}), "Killed")
    return 0 if ok else 1


def run_pause(app: App, options: argparse.Namespace) -> int:
    pausing = options.command == "pause"
    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = [c for c in project_containers(client, target.name, options.services_selected,
                                           stopped=False)
             if c.status == ("running" if pausing else "paused")]
    ok = each(Reporter(app, options), options, found, post(client, options.command),
              "Paused" if pausing else "Unpaused")
    return 0 if ok else 1


# --- rm ---------------------------------------------------------------------------------------


def run_rm(app: App, options: argparse.Namespace) -> int:
    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = project_containers(client, target.name, options.services_selected)
    if options.stop and not stop_containers(app, options, target, found, None):
        return 1
    if options.stop:
        found = project_containers(client, target.name, options.services_selected)
    # Running containers stay, even with -f: -f only skips the question (Compose's rule).
    removable = [c for c in found if not c.running]
    if not removable:
        app.err.write("No stopped containers\n")
        return 0
    message = f"Going to remove {', '.join(c.name for c in removable)}"
    if options.force:
        app.print(message)
    elif not _confirm(app, message):
        return 0
    params = {"force": int(options.force), "volumes": int(options.volumes)}

    def remove(c: Container) -> None:
        client.request("DELETE", f"/v1/containers/{c.id}", params=params)

    return 0 if each(Reporter(app, options), options, removable, remove, "Removed") else 1


def _confirm(app: App, message: str) -> bool:
    """Compose's question, answered on stdin. Without a terminal Compose still reads one line
    of stdin and removes only on a yes, so ``rm < /dev/null`` removes nothing and
    ``echo y | composer rm`` removes: scripts that relied on that keep working."""
    app.out.write(f"{message} (y/N) ")
    app.out.flush()
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        app.out.write("\n")
    return answer.strip().lower() in ("y", "yes", "t", "true", "1")


# --- top, port, wait, cp ----------------------------------------------------------------------


def run_top(app: App, options: argparse.Namespace) -> int:
    from composer.cli.templates import tabulate

    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = sorted(project_containers(client, target.name, options.services_selected,
                                      stopped=False, oneoff=ONEOFF_INCLUDE),
                   key=lambda c: c.name)
    titles: list[str] = ["SERVICE", "#"]
    rows: list[dict[str, str]] = []
    for c in found:
        table = client.request("GET", f"/v1/containers/{c.id}/top")
        for title in table["Titles"]:
            if title not in titles:
                titles.append(title)
        for process in table["Processes"]:
            rows.append({"SERVICE": c.service, "#": str(c.number),
                         **dict(zip(table["Titles"], map(str, process), strict=False))})
    if not rows:
        return 0
    if "CMD" in titles:  # the command line last: it is the one that may hold spaces
        titles.remove("CMD")
        titles.append("CMD")
    lines = ["\t".join(titles)] + ["\t".join(r.get(t, "-") for t in titles) for r in rows]
    for line in tabulate(lines, minwidth=4, padding=2):
        app.print(line)
    return 0


def run_port(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.container import port_lines

    target = load_target(app, options, [options.service])
    client = engine(options)
    c = service_container(client, target.name, options.service, options.index or None)
    ports = client.request("GET", f"/v1/containers/{c.id}")["NetworkSettings"].get("Ports") \
        or {}
    if options.private is None:
        lines = port_lines(ports, None)
        if options.protocol:
            lines = [line for line in lines if line.split(" ", 1)[0].endswith(
                f"/{options.protocol}")]
        for line in lines:
            app.print(line)
        return 0
    if not options.private.isdigit() or not 0 < int(options.private) < 65536:
        raise UsageError(f'invalid port "{options.private}": give a number from 1 to 65535')
    key = f"{int(options.private)}/{options.protocol or 'tcp'}"
    found = port_lines(ports, key)
    if not found:
        # Compose lists what the container publishes (both address families once).
        published = dict.fromkeys(f"{b['HostPort']}/{k.partition('/')[2]}"
                                  for k, bindings in sorted(ports.items()) for b in bindings or ())
        listing = f": {', '.join(published)}" if published else ""
        raise ComposerError(f"no port {key} for container {c.name}{listing}")
    app.print(found[0])
    return 0


def run_wait(app: App, options: argparse.Namespace) -> int:
    if options.down_project:
        app.warn("wait --down-project is not implemented: the project stays up; run "
                 "'composer down' afterwards")
    target = load_target(app, options, options.services_selected)
    client = engine(options)
    found = project_containers(client, target.name, options.services_selected, stopped=False,
                               oneoff=ONEOFF_INCLUDE)
    if not found:
        raise ComposerError(f'no containers for project "{target.name}"')
    lock = threading.Lock()
    codes: list[int] = []

    def wait(c: Container) -> None:
        answer = client.request("POST", f"/v1/containers/{c.id}/wait")
        with lock:
            codes.append(int(answer["StatusCode"]))
            app.print(f'container "{c.id}" exited with status code {codes[-1]}')
            app.out.flush()

    # Compose waits for every container and answers with the code of the last to exit.
    with ThreadPoolExecutor(max_workers=len(found)) as pool:
        list(pool.map(wait, found))
    return codes[-1]


def _split_cp(arg: str) -> tuple[str | None, str]:
    """Compose's reading of a cp argument: ``SERVICE:PATH``, else a local path (absolute,
    without a colon, or starting with ``.`` like ``./a:b``)."""
    if os.path.isabs(arg):
        return None, arg
    head, sep, tail = arg.partition(":")
    if not sep or head.startswith("."):
        return None, arg
    return head, tail


def _local(path: str) -> str:
    # Absolute, keeping a trailing "/" or "/." that says "into the directory" or "its content".
    absolute = os.path.abspath(path)
    for ending in ("/.", "/"):
        if path.endswith(ending) and not absolute.endswith(ending):
            return absolute.rstrip("/") + ending
    return absolute


def run_cp(app: App, options: argparse.Namespace) -> int:
    src_service, src = _split_cp(options.source)
    dst_service, dst = _split_cp(options.destination)
    if src_service and dst_service:
        raise ComposerError("copying between services is not supported")
    if not src_service and not dst_service:
        raise ComposerError("unknown copy direction")
    if "-" in ((dst,) if src_service else (src,)):
        raise ComposerError("cp to or from '-' (a tar stream) is not supported yet: name a "
                            "local path")
    if options.archive:
        app.warn("cp -a: files copied in are owned by root; uid/gid are not preserved yet")
    if options.follow_link:
        app.warn("cp -L: symbolic links are copied as links (not followed yet)")
    service = str(src_service or dst_service)
    target = load_target(app, options)
    client = engine(options)
    if options.index:
        chosen = [service_container(client, target.name, service, options.index,
                                    stopped=True)]
    else:
        chosen = project_containers(client, target.name, [service],
                                    oneoff=ONEOFF_INCLUDE if options.all else ONEOFF_EXCLUDE)
        if not chosen:
            raise ComposerError(f'no container found for service "{service}"')
        if src_service:
            chosen = chosen[:1]  # from a service: its first container
    for c in chosen:
        body = ({"direction": "from", "container_path": src, "host_path": _local(dst)}
                if src_service else
                {"direction": "to", "container_path": dst, "host_path": _local(src)})
        client.request("POST", f"/v1/containers/{c.id}/cp", body)
        what = f"{c.name}:{src} to {dst}" if src_service else f"{src} to {c.name}:{dst}"
        if options.progress != "quiet":
            app.err.write(f" ✔ Container {c.name}  Copied {what}\n")
    return 0
