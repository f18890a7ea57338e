"""``composer container ...``: single containers, in Docker's words, through the engine.

Every verb is a request to the engine (started on demand); the CLI only parses flags, renders
what comes back and, for interactive sessions, pumps bytes between the terminal and the file
descriptors the engine hands over. Exit codes are Docker's: 125 when composer itself fails,
126 when the command cannot be executed, 127 when it is not found, else the container's own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from composer.cli.app import App
from composer.errors import ComposerError

EXIT_COMPOSER = 125


def register(commands: Any) -> None:
    from composer.cli.commands.container_flags import add_create_flags

    container = commands.add_parser("container", help="manage single containers (run, ls, ...)")
    verbs = container.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in ("run", "create"):
        # -h is --hostname, as in Docker: only --help asks for help.
        p = verbs.add_parser(name, help=f"{name} a container from an image", add_help=False)
        p.add_argument("--help", action="help", help="show this help and exit")
        if name == "run":
            p.add_argument("-d", "--detach", action="store_true")
        add_create_flags(p)
    p = verbs.add_parser("start", help="start stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("containers", nargs="+")
    for name in ("stop", "restart"):
        p = verbs.add_parser(name, help=f"{name} containers")
        p.add_argument("-t", "--time", "--timeout", dest="timeout", type=float)
        p.add_argument("-s", "--signal")
        p.add_argument("containers", nargs="+")
    p = verbs.add_parser("kill", help="send a signal to containers (SIGKILL by default)")
    p.add_argument("-s", "--signal", default="SIGKILL")
    p.add_argument("containers", nargs="+")
    for name in ("pause", "unpause", "inspect", "wait", "top"):
        p = verbs.add_parser(name, help=f"{name} containers")
        p.add_argument("containers", nargs="+")
    p = verbs.add_parser("rm", help="remove containers")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    p = verbs.add_parser("ls", aliases=["ps", "list"], help="list containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = verbs.add_parser("logs", help="show a container's output")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("container")
    p = verbs.add_parser("exec", help="run a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-u", "--user")
    p.add_argument("-w", "--workdir")
    p.add_argument("--privileged", action="store_true")
    p.add_argument("container")
    p.add_argument("args", nargs=argparse.REMAINDER)
    p = verbs.add_parser("port", help="list a container's published ports")
    p.add_argument("container")
    p.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    p = verbs.add_parser("cp", help="copy files between a container and the host")
    p.add_argument("source")
    p.add_argument("destination")
    p = verbs.add_parser("commit", help="make an image from a container's changes")
    p.add_argument("-m", "--message", default="")
    p.add_argument("-a", "--author", default="")
    p.add_argument("-p", "--pause", choices=("true", "false"), default="true")
    p.add_argument("container")
    p.add_argument("repository", nargs="?")
    p = verbs.add_parser("stats", help="resource usage of containers")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("containers", nargs="*")
    container.set_defaults(handler=run)


def client(options: argparse.Namespace) -> Any:
    from composer.cli.commands.engine import engine_client

    return engine_client(options)


def run(app: App, options: argparse.Namespace) -> int:
    handler = _VERBS["ls" if options.verb in ("ps", "list") else options.verb]
    try:
        code: int = handler(app, options)
        return code
    except ComposerError as exc:
        # Docker's convention: the CLI's own failures exit 125, exec failures 126/127.
        app.abort(str(exc), getattr(exc, "exit_code", EXIT_COMPOSER))


def _each(app: App, options: argparse.Namespace, method: str, action: str,
          params: dict[str, Any] | None = None) -> int:
    engine = client(options)
    failed = 0
    for name in options.containers:
        try:
            engine.request(method, f"/v1/containers/{name}/{action}" if action
                           else f"/v1/containers/{name}", params=params)
            app.print(name)
        except ComposerError as exc:
            app.error(str(exc))
            failed = 1
    return failed


def _create_body(options: argparse.Namespace) -> dict[str, Any]:
    from composer.cli.commands.container_flags import spec_from_options

    return {"spec": spec_from_options(options), "pull": options.pull,
            "platform": options.platform}


def _create(app: App, options: argparse.Namespace) -> int:
    made = client(options).request("POST", "/v1/containers", _create_body(options))
    for warning in made.get("Warnings") or ():
        app.warn(warning)
    app.print(made["Id"])
    return 0


def _run(app: App, options: argparse.Namespace) -> int:
    engine = client(options)
    body = _create_body(options)
    if options.detach:
        made = engine.request("POST", "/v1/containers", {**body, "start": True})
        for warning in made.get("Warnings") or ():
            app.warn(warning)
        app.print(made["Id"])
        return 0
    if options.interactive or options.tty:
        from composer.cli import interactive

        made = engine.request("POST", "/v1/containers", body)
        for warning in made.get("Warnings") or ():
            app.warn(warning)
        return interactive.attach_and_start(engine, made["Id"], tty=options.tty,
                                            remove=options.rm)
    code = 0
    for event in engine.stream("POST", "/v1/containers/run", body):
        if "warning" in event:
            app.warn(event["warning"])
        elif "line" in event:
            _write_line(event, timestamps=False)
        elif "exit" in event:
            code = int(event["exit"])
        elif "error" in event:
            app.abort(event["error"], int(event.get("code", EXIT_COMPOSER)))
    return code


def _write_line(event: dict[str, Any], *, timestamps: bool) -> None:
    stream = sys.stderr.buffer if event.get("stream") == "stderr" else sys.stdout.buffer
    data = event["line"].encode("utf-8", "surrogateescape")
    if timestamps:
        data = event["time"].encode() + b" " + data
    stream.write(data + (b"" if event.get("partial") else b"\n"))
    stream.flush()


def _start(app: App, options: argparse.Namespace) -> int:
    if options.attach:
        from composer.cli import interactive

        engine = client(options)
        return interactive.attach_and_start(engine, options.containers[0], tty=False,
                                            remove=False)
    return _each(app, options, "POST", "start")


def _stop(app: App, options: argparse.Namespace) -> int:
    params = {k: v for k, v in (("t", options.timeout), ("signal", options.signal))
              if v is not None}
    return _each(app, options, "POST", options.verb, params)


def _kill(app: App, options: argparse.Namespace) -> int:
    return _each(app, options, "POST", "kill", {"signal": options.signal})


def _pause(app: App, options: argparse.Namespace) -> int:
    return _each(app, options, "POST", options.verb)


def _rm(app: App, options: argparse.Namespace) -> int:
    return _each(app, options, "DELETE", "", {"force": int(options.force),
                                              "volumes": int(options.volumes)})


def _inspect(app: App, options: argparse.Namespace) -> int:
    engine = client(options)
    found = []
    for name in options.containers:
        found.append(engine.request("GET", f"/v1/containers/{name}"))
    app.print(json.dumps(found, indent=4))
    return 0


def _wait(app: App, options: argparse.Namespace) -> int:
    engine = client(options)
    for name in options.containers:
        answer = engine.request("POST", f"/v1/containers/{name}/wait")
        app.print(str(answer["StatusCode"]))
    return 0


def ago(seconds: float) -> str:
    """Docker's age of a thing (go-units' HumanDuration): ``Less than a second``,
    ``1 second``, ``5 seconds``, ``About a minute``, ``3 hours``, ``2 weeks``..."""
    s = int(max(0.0, seconds))
    minutes, hours = s // 60, int(max(0.0, seconds) / 3600 + 0.5)
    steps = ((s < 1, "Less than a second"), (s == 1, "1 second"), (s < 60, f"{s} seconds"),
             (minutes == 1, "About a minute"), (minutes < 60, f"{minutes} minutes"),
             (hours == 1, "About an hour"), (hours < 48, f"{hours} hours"),
             (hours < 24 * 7 * 2, f"{hours // 24} days"),
             (hours < 24 * 30 * 2, f"{hours // 24 // 7} weeks"),
             (hours < 24 * 365 * 2, f"{hours // 24 // 30} months"))
    return next((text for hit, text in steps if hit), f"{s // 3600 // 24 // 365} years")


def status_text(c: dict[str, Any], now: float) -> str:
    """Docker's STATUS column: ``Up 5 seconds (healthy)``, ``Exited (0) 3 seconds ago``."""
    state = c["State"]
    status = state["Status"]
    if status in ("running", "paused"):
        text = f"Up {ago(now - state['StartedAtUnix'])}"
        health = (state.get("Health") or {}).get("Status")
        if status == "paused":
            text += " (Paused)"
        elif health:
            text += f" ({'health: starting' if health == 'starting' else health})"
        return text
    if status == "restarting":
        return f"Restarting ({state['ExitCode']}) {ago(now - state['FinishedAtUnix'])} ago"
    if status == "exited":
        return f"Exited ({state['ExitCode']}) {ago(now - state['FinishedAtUnix'])} ago"
    return str(status).capitalize()


def _ls(app: App, options: argparse.Namespace) -> int:
    listed = client(options).request("GET", "/v1/containers", params={"all": int(options.all)})
    if options.quiet:
        for c in listed:
            app.print(c["Id"] if options.no_trunc else c["Id"][:12])
        return 0
    if options.format == "json":
        app.print(json.dumps(listed, indent=2))
        return 0
    now = time.time()
    app.print(f"{'CONTAINER ID':<14}{'IMAGE':<28}{'COMMAND':<24}{'CREATED':<18}"
              f"{'STATUS':<30}NAMES")
    for c in listed:
        command = " ".join(c["Command"])
        if not options.no_trunc and len(command) > 20:
            command = command[:19] + "…"
        app.print(f"{c['Id'][:12]:<14}{c['Image'][:26]:<28}{json.dumps(command):<24}"
                  f"{ago(now - c['Created']) + ' ago':<18}{status_text(c, now):<30}{c['Name']}")
    return 0


def _logs(app: App, options: argparse.Namespace) -> int:
    params = {"follow": int(options.follow), "tail": options.tail,
              **{k: v for k, v in (("since", options.since), ("until", options.until)) if v}}
    for event in client(options).stream("GET", f"/v1/containers/{options.container}/logs",
                                        params=params):
        _write_line(event, timestamps=options.timestamps)
    return 0


def _exec(app: App, options: argparse.Namespace) -> int:
    from composer.cli import interactive

    if not options.args:
        app.abort("exec needs a command: composer container exec CONTAINER COMMAND [ARG...]",
                  EXIT_COMPOSER)
    env = dict(item.partition("=")[::2] for item in options.env)
    body = exec_body(options.args, env=env, user=options.user, workdir=options.workdir,
                     tty=options.tty, interactive=options.interactive,
                     privileged=options.privileged, detach=options.detach)
    return interactive.exec_session(client(options), options.container, body)


def exec_body(args: list[str], *, env: dict[str, str], user: str | None,
              workdir: str | None, tty: bool, interactive: bool, privileged: bool,
              detach: bool) -> dict[str, Any]:
    """The engine's ``exec`` request (``container exec`` and the project's ``exec``)."""
    return {"args": args, "env": env, "user": user, "working_dir": workdir, "tty": tty,
            "interactive": interactive, "privileged": privileged, "detach": detach}


def _top(app: App, options: argparse.Namespace) -> int:
    engine = client(options)
    for name in options.containers:
        table = engine.request("GET", f"/v1/containers/{name}/top")
        widths = [max(len(str(row[i])) for row in [table["Titles"], *table["Processes"]])
                  for i in range(len(table["Titles"]))]
        for row in [table["Titles"], *table["Processes"]]:
            app.print("   ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
                      .rstrip())
    return 0


def port_lines(ports: dict[str, list[dict[str, str]] | None],
               private: str | None) -> list[str]:
    """``container port`` output from ``NetworkSettings.Ports``: ``80/tcp -> 0.0.0.0:8080``
    for each binding, or just the host addresses of ``private`` (``80`` means ``80/tcp``)."""
    def where(binding: dict[str, str]) -> str:
        host = binding["HostIp"]
        return f"[{host}]:{binding['HostPort']}" if ":" in host else \
            f"{host}:{binding['HostPort']}"

    if private is not None:
        key = private if "/" in private else f"{private}/tcp"
        return [where(b) for b in ports.get(key) or ()]
    return [f"{key} -> {where(b)}"
            for key, bindings in sorted(ports.items(), key=lambda kv: _port_order(kv[0]))
            for b in bindings or ()]


def _port_order(key: str) -> tuple[int, str]:
    number, _, proto = key.partition("/")
    return int(number) if number.isdigit() else 0, proto


def _port(app: App, options: argparse.Namespace) -> int:
    found = client(options).request("GET", f"/v1/containers/{options.container}")
    lines = port_lines(found["NetworkSettings"].get("Ports") or {}, options.private)
    if options.private is not None and not lines:
        key = options.private if "/" in options.private else f"{options.private}/tcp"
        app.abort(f"no public port '{key}' published for {options.container}", 1)
    for line in lines:
        app.print(line)
    return 0


def _cp(app: App, options: argparse.Namespace) -> int:
    def split(text: str) -> tuple[str | None, str]:
        head, sep, tail = text.partition(":")
        if sep and head and "/" not in head:
            return head, tail
        return None, text

    src_c, src = split(options.source)
    dst_c, dst = split(options.destination)
    if (src_c is None) == (dst_c is None):
        app.abort("cp copies between a container and the host: one side must be "
                  "CONTAINER:PATH", EXIT_COMPOSER)
    if src_c is not None:
        body = {"direction": "from", "container_path": src,
                "host_path": os.path.abspath(dst)}
        name = src_c
    else:
        body = {"direction": "to", "container_path": dst, "host_path": os.path.abspath(src)}
        name = str(dst_c)
    client(options).request("POST", f"/v1/containers/{name}/cp", body)
    return 0


def _commit(app: App, options: argparse.Namespace) -> int:
    made = client(options).request("POST", f"/v1/containers/{options.container}/commit", {
        "repository": options.repository, "message": options.message,
        "author": options.author, "pause": options.pause == "true"})
    app.print(made["Id"])
    return 0


def _stats(app: App, options: argparse.Namespace) -> int:
    engine = client(options)
    names = options.containers or [c["Name"] for c in engine.request("GET", "/v1/containers")]
    app.print(f"{'CONTAINER ID':<14}{'NAME':<24}{'CPU %':<9}{'MEM USAGE / LIMIT':<24}PIDS")
    for name in names:
        s = engine.request("GET", f"/v1/containers/{name}/stats")
        mem = f"{_mib(s['memory_usage'])} / {_mib(s['memory_limit'])}"
        app.print(f"{s['id'][:12]:<14}{s['name']:<24}{s['cpu_percent']:<9.2f}{mem:<24}"
                  f"{s['pids']}")
    return 0


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / (1 << 20):.2f}MiB"


_VERBS = {"run": _run, "create": _create, "start": _start, "stop": _stop, "restart": _stop,
          "kill": _kill, "pause": _pause, "unpause": _pause, "rm": _rm, "inspect": _inspect,
          "wait": _wait, "ls": _ls, "logs": _logs, "exec": _exec, "top": _top, "cp": _cp,
          "commit": _commit, "stats": _stats, "port": _port}
