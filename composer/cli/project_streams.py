"""The project commands that stream: ``logs``, ``events`` and ``stats``.

``logs`` prefixes each line with its container's name, padded to the longest, as Compose
does (``demo-web-1  | ...``), coloured per container on a terminal. Without ``-f`` the
containers' logs are merged by time, so the output is the same from one run to the next; with
``-f`` one thread per container reads its followed log and the lines are written as they come,
until every container has stopped (the engine ends a followed log when its container stops).

The engine has no event stream, so ``events`` watches the project's containers by polling the
engine's list every half second and tells what changed as Docker's events (create, start, die,
pause, unpause, destroy), in Compose's ``events`` form; the time of each is the container's own
(created, started, finished) where the engine records it, so polling only delays an event.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, BinaryIO

from composer.cli.app import App
from composer.cli.project_select import (
    ONEOFF_INCLUDE,
    Container,
    load_target,
    project_containers,
    service_container,
)
from composer.errors import ComposerError, UsageError

# Compose's rainbow, in its order: cyan, yellow, green, magenta, blue, then their bright forms.
_RAINBOW = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")
POLL_SECONDS = 0.5


def register(commands: Any) -> None:
    p = commands.add_parser("logs", help="show the output of the project's containers")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("--no-log-prefix", action="store_true")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=run_logs)
    p = commands.add_parser("events", help="the project's container events, as they happen")
    p.add_argument("--json", action="store_true")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=run_events)
    p = commands.add_parser("stats", help="resource usage of the project's containers")
    p.add_argument("-a", "--all", action="store_true", help="stopped containers too")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="table", help="table, json, or a Go template")
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=run_stats)


def _engine(options: argparse.Namespace) -> Any:
    from composer.cli.commands.container import client

    return client(options)


# --- logs -------------------------------------------------------------------------------------


class LogWriter:
    """Writes log events with Compose's prefix; one line at a time across threads."""

    def __init__(self, names: Sequence[str], *, prefix: bool, color: bool,
                 timestamps: bool, stdout: BinaryIO, stderr: BinaryIO) -> None:
        self.width = max((len(n) for n in names), default=0) + 1
        self.prefix, self.color = prefix, color
        self.prefixes: dict[str, bytes] = {}
        self.colors: dict[str, str] = {}
        for name in names:
            self.add(name)
        self.timestamps = timestamps
        self.out, self.err = stdout, stderr
        self._partial: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()

    def add(self, name: str) -> None:
        """A container to write for (one that appeared later keeps the width of the first:
        the lines already written do not move)."""
        if name in self.prefixes:
            return
        text = f"{name:<{self.width}} | " if self.prefix else ""
        if self.color:
            self.colors[name] = _RAINBOW[len(self.colors) % len(_RAINBOW)]
            if text:
                text = f"\033[{self.colors[name]}m{text}\033[0m"
        self.prefixes[name] = text.encode()

    def write(self, name: str, event: Mapping[str, Any], *, flush: bool = True) -> None:
        stream = str(event.get("stream") or "stdout")
        data = str(event.get("line", "")).encode("utf-8", "surrogateescape")
        key = (name, stream)
        with self._lock:
            if event.get("partial"):
                # A long line the runtime split: shown whole, once its last piece arrives.
                self._partial[key] = self._partial.get(key, b"") + data
                return
            data = self._partial.pop(key, b"") + data
            head = self.prefixes.get(name, b"")
            if self.timestamps:
                head += str(event.get("time", "")).encode() + b" "
            target = self.err if stream == "stderr" else self.out
            target.write(head + data + b"\n")
            if flush:
                target.flush()

    def status(self, name: str, message: str) -> None:
        """A line about the container, not from it (Compose's ``web-1 exited with code 0``),
        in its colour."""
        text = f"{name} {message}"
        if name in self.colors:
            text = f"\033[{self.colors[name]}m{text}\033[0m"
        with self._lock:
            self.out.write(text.encode() + b"\n")
            self.out.flush()

    def close(self) -> None:
        """Flush what a stream left unfinished (a last line without its newline)."""
        for (name, stream), data in list(self._partial.items()):
            self.write(name, {"stream": stream, "line": data.decode("utf-8", "surrogateescape"),
                              "time": ""})
        self.out.flush()
        self.err.flush()


def use_color(options: argparse.Namespace, stream: Any) -> bool:
    """Compose's rule: ``--ansi always``, or ``auto`` on a terminal; never with --no-color."""
    if getattr(options, "no_color", False) or options.ansi == "never":
        return False
    return options.ansi == "always" or (stream.isatty() and not os.environ.get("NO_COLOR"))


def run_logs(app: App, options: argparse.Namespace) -> int:
    target = load_target(app, options, options.services_selected)
    client = _engine(options)
    if options.index:
        if len(options.services_selected) != 1:
            raise UsageError("--index needs exactly one service: composer logs --index N "
                             "SERVICE")
        found = [service_container(client, target.name, options.services_selected[0],
                                   options.index, stopped=True)]
    else:
        found = project_containers(client, target.name, options.services_selected)
    if not found:
        return 0
    writer = LogWriter([c.name for c in found], prefix=not options.no_log_prefix,
                       color=use_color(options, sys.stdout), timestamps=options.timestamps,
                       stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    params = {"follow": int(options.follow), "tail": options.tail,
              **{k: v for k, v in (("since", options.since), ("until", options.until)) if v}}
    try:
        if options.follow:
            _follow(client, found, params, writer)
        else:
            streams = [_tagged(client, c, params) for c in found]
            for _, name, event in heapq.merge(*streams, key=lambda item: item[0]):
                writer.write(name, event, flush=False)
    finally:
        writer.close()
    return 0


def _tagged(client: Any, c: Container, params: Mapping[str, Any]
            ) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    try:
        for event in client.stream("GET", f"/v1/containers/{c.id}/logs", params=params):
            # RFC 3339 in UTC with nine digits of fraction: its text sorts as its time does.
            yield str(event.get("time", "")), c.name, event
    except ComposerError as exc:
        if getattr(exc, "status", None) != 404:  # removed meanwhile: nothing more to show
            raise


def _follow(client: Any, found: Sequence[Container], params: Mapping[str, Any],
            writer: LogWriter) -> None:
    lines: queue.Queue[tuple[str, Mapping[str, Any] | None, BaseException | None]] = \
        queue.Queue()

    def read(c: Container) -> None:
        try:
            for _, name, event in _tagged(client, c, params):
                lines.put((name, event, None))
        except BaseException as exc:  # handed to the main thread, which raises it
            lines.put((c.name, None, exc))
            return
        lines.put((c.name, None, None))

    for c in found:
        # Daemon threads: Ctrl-C ends the command at once, not when every log has ended.
        threading.Thread(target=read, args=(c,), daemon=True, name=f"logs {c.name}").start()
    remaining = len(found)
    while remaining:
        name, event, error = lines.get()
        if error is not None:
            raise error
        if event is None:
            remaining -= 1
            continue
        writer.write(name, event)


# --- events -----------------------------------------------------------------------------------


def _go_time(when: float) -> str:
    """A time as Go's encoding/json writes a local time.Time (RFC 3339, fraction trimmed)."""
    stamp = datetime.fromtimestamp(when).astimezone()
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    offset = stamp.strftime("%z")
    return text + ("Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}")


def _attributes(summary: Mapping[str, Any]) -> dict[str, str]:
    # Docker's attributes are the labels plus image and name; Compose drops its own labels.
    found = {k: str(v) for k, v in (summary.get("Labels") or {}).items()
             if not k.startswith("com.docker.compose.")}
    found.update(image=str(summary.get("Image") or ""), name=str(summary["Name"]))
    return found


def changes(before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]],
            now: float) -> list[tuple[float, str, Mapping[str, Any]]]:
    """What happened between two listings of the same containers, as Docker's container
    events ``(time, action, summary)``, oldest first. Pure: the polling loop only feeds it."""
    found: list[tuple[float, int, str, Mapping[str, Any]]] = []

    def add(when: float, action: str, summary: Mapping[str, Any]) -> None:
        found.append((when or now, len(found), action, summary))

    for cid, c in after.items():
        state = c["State"]
        started, finished = state.get("StartedAtUnix") or 0, state.get("FinishedAtUnix") or 0
        old = before.get(cid)
        if old is None:
            add(float(c.get("Created") or now), "create", c)
            was_started, was_finished, was_status = 0, 0, "created"
        else:
            was = old["State"]
            was_started = was.get("StartedAtUnix") or 0
            was_finished = was.get("FinishedAtUnix") or 0
            was_status = was["Status"]
        new_start = bool(started) and started != was_started
        new_finish = bool(finished) and finished != was_finished
        # A start and an exit in one interval: their own times say which came first.
        events = []
        if new_finish:
            events.append((finished, "die"))
        if new_start:
            events.append((started, "start"))
        for when, action in sorted(events):
            add(when, action, c)
        if was_status == "running" and state["Status"] == "paused":
            add(now, "pause", c)
        elif was_status == "paused" and state["Status"] == "running":
            add(now, "unpause", c)
    for cid, c in before.items():
        if cid not in after:
            if c["State"]["Status"] in ("running", "paused", "restarting"):
                add(now, "die", c)
            add(now, "destroy", c)
    return [(when, action, summary) for when, _, action, summary in sorted(found)]


def event_line(when: float, action: str, summary: Mapping[str, Any], service: str, *,
               as_json: bool) -> str:
    attributes = _attributes(summary)
    if action == "die":
        attributes["exitCode"] = str(summary["State"].get("ExitCode") or 0)
    if as_json:
        return json.dumps({"action": action, "attributes": dict(sorted(attributes.items())),
                           "id": summary["Id"], "service": service, "time": _go_time(when),
                           "type": "container"}, ensure_ascii=False, separators=(",", ":"))
    stamp = datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S.%f")
    pairs = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
    return f"{stamp} container {action} {summary['Id']} ({pairs})"


def run_events(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.logs import parse_since

    target = load_target(app, options, options.services_selected)
    client = _engine(options)
    if options.since:
        app.warn("events --since: the engine keeps no history of events; showing those from "
                 "now on")
    until = None if not options.until else parse_since(options.until, time.time()) / 1e9

    def listing() -> dict[str, Mapping[str, Any]]:
        # One-off containers are left out, as Compose leaves their events out.
        return {c.id: c.summary for c in project_containers(
            client, target.name, options.services_selected)}

    before = listing()
    while until is None or time.time() < until:
        time.sleep(POLL_SECONDS if until is None else
                   max(0.0, min(POLL_SECONDS, until - time.time())))
        after = listing()
        for when, action, summary in changes(before, after, time.time()):
            service = Container.from_summary(summary).service
            app.print(event_line(when, action, summary, service, as_json=options.json))
        app.out.flush()
        before = after
    return 0


# --- stats ------------------------------------------------------------------------------------

_STATS_TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t"
                "{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
_STATS_TITLES = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
                 "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
                 "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}


def bytes_size(value: float) -> str:
    """go-units' BytesSize, as ``docker stats`` prints sizes: ``3.508MiB``, ``64MiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    i = 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.4g}{units[i]}"


def _host_memory() -> int:
    # No limit: Docker shows the host's memory as the limit. The CLI runs on the engine's host.
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def stats_row(c: Container, sample: Mapping[str, Any] | None, *, trunc: bool,
              memory: int) -> dict[str, Any]:
    """One line of ``docker stats`` (keys in Go's order); ``sample`` None for a stopped one.
    The engine measures no network or block I/O: those show as ``--``."""
    usage = (sample or {}).get("memory_usage") or 0
    limit = (sample or {}).get("memory_limit") or (memory if sample else 0)
    short = c.id[:12] if trunc else c.id
    return {
        "BlockIO": "--", "CPUPerc": f"{(sample or {}).get('cpu_percent', 0.0):.2f}%",
        "Container": short, "ID": short,
        "MemPerc": f"{usage / limit * 100:.2f}%" if limit else "0.00%",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}", "Name": c.name,
        "NetIO": "--", "PIDs": str((sample or {}).get("pids") or 0),
    }


def run_stats(app: App, options: argparse.Namespace) -> int:
    from composer.cli import templates

    target = load_target(app, options, options.services_selected)
    client = _engine(options)
    memory = _host_memory()
    clear = not options.no_stream and sys.stdout.isatty()

    def sample(c: Container) -> dict[str, Any]:
        if not c.running:
            return stats_row(c, None, trunc=not options.no_trunc, memory=memory)
        try:
            measured = client.request("GET", f"/v1/containers/{c.id}/stats")
        except ComposerError:
            measured = None  # it stopped between the listing and the sample
        return stats_row(c, measured, trunc=not options.no_trunc, memory=memory)

    while True:
        found = project_containers(client, target.name, options.services_selected,
                                   stopped=options.all, oneoff=ONEOFF_INCLUDE)
        rows: list[dict[str, Any]] = []
        if found:
            # The engine measures CPU over a tenth of a second: all at once, not one by one.
            with ThreadPoolExecutor(max_workers=len(found)) as pool:
                rows = list(pool.map(sample, found))
        if clear:
            app.out.write("\033[2J\033[H")
        templates.write(rows, options.format, _STATS_TITLES, _STATS_TABLE, app.print)
        app.out.flush()
        if options.no_stream:
            return 0
        time.sleep(1)
