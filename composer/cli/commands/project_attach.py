"""Foreground ``up``: every service's logs with aligned, coloured prefixes, until the end.

The end is when every attached container has exited, when one exits and
``--abort-on-container-exit`` (or ``--exit-code-from``) says so, or on Ctrl-C: the first one
stops the project gracefully (stop signal, then the timeout), a second one kills it.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from composer.cli.app import App
from composer.cli.project_select import Container, project_containers

if TYPE_CHECKING:
    from composer.cli.project_streams import LogWriter



def attach_project(app: App, engine: Any, project: Any, options: argparse.Namespace, *,
                   until_interrupted: bool = False) -> int:
    """Follow the logs to the end; ``until_interrupted`` (``up --watch``): until Ctrl-C, with
    the containers the watch makes later, even when none runs for a while."""
    from composer.cli.project_streams import LogWriter, use_color
    from composer.graph import ServiceGraph

    containers = _attached(engine, project, options)
    if not containers:
        return 0
    writer = LogWriter([c.name for c in containers], prefix=not options.no_log_prefix,
                       color=use_color(options, sys.stdout), timestamps=options.timestamps,
                       stdout=sys.stdout.buffer, stderr=sys.stdout.buffer)
    app.print("Attaching to " + ", ".join(c.name for c in containers))
    app.out.flush()  # the log lines below go to the byte stream under it
    order = ServiceGraph.from_project(project).stop_generations()
    stopper = _Stopper(app, engine, [], order, options.timeout)
    logs = _Logs(engine, writer, stopper)
    for container in containers:
        logs.follow(container)
    previous = signal.signal(signal.SIGINT, stopper.interrupt)
    try:
        return _pump(app, engine, project, logs, options, stopper, writer,
                     keep=until_interrupted)
    finally:
        signal.signal(signal.SIGINT, previous)
        writer.close()


def _attached(engine: Any, project: Any, options: argparse.Namespace) -> list[Container]:
    """The containers whose logs are shown: the services named (all when none), or those
    of ``--attach``, without those of ``--no-attach``."""
    wanted = set(options.attach or options.services_selected or project.services)
    if options.attach_dependencies and not options.attach:
        from composer.graph import ServiceGraph

        wanted = set(ServiceGraph.from_project(project).with_dependencies(sorted(wanted)))
    wanted -= set(options.no_attach)
    if not wanted:
        return []  # (no services would mean all of them to project_containers)
    return sorted(project_containers(engine, project.name, sorted(wanted)),
                  key=lambda c: c.name)


_Line = tuple[str, str, "dict[str, Any] | None"]  # container id, name, event (None: the end)


class _Logs:
    """The followed logs, one thread each, into one queue; containers that appear later (a
    recreate by ``watch``, a scale by another ``up``) are followed too, by their id."""

    def __init__(self, engine: Any, writer: LogWriter, stopper: _Stopper) -> None:
        self.engine = engine
        self.writer = writer
        self.stopper = stopper
        self.lines: queue.Queue[_Line] = queue.Queue()
        self.seen: set[str] = set()
        self.open: dict[str, str] = {}  # id -> name of the streams not ended yet
        self.services: dict[str, str] = {}  # name -> service

    def follow(self, container: Container) -> None:
        cid, name = container.id, container.name
        self.seen.add(cid)
        self.open[cid] = name
        self.services[name] = container.service
        self.writer.add(name)
        self.stopper.containers.append(container)
        threading.Thread(target=self._read, args=(cid, name), daemon=True,
                         name=f"logs-{name}").start()

    def follow_new(self, project: Any, options: argparse.Namespace) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # the engine is busy or gone: next time
            for c in _attached(self.engine, project, options):
                # Running only: a recreate's new container is created under a temporary
                # name first, and is followed once it has its own and runs.
                if c.id not in self.seen and c.status == "running":
                    self.follow(c)

    def _read(self, cid: str, name: str) -> None:
        import contextlib

        # The engine went away or the container was removed: this one ends, the others go on.
        with contextlib.suppress(Exception):
            for event in self.engine.stream("GET", f"/v1/containers/{cid}/logs",
                                            params={"follow": 1}):
                self.lines.put((cid, name, event))
        self.lines.put((cid, name, None))


_POLL_SECONDS = 1.0  # how often new containers are looked for


def _pump(app: App, engine: Any, project: Any, logs: _Logs, options: argparse.Namespace,
          stopper: _Stopper, writer: LogWriter, *, keep: bool) -> int:
    import time

    code = 0
    polled = time.monotonic()
    while logs.open or (keep and not stopper.interrupted):
        if not stopper.interrupted and time.monotonic() - polled >= _POLL_SECONDS:
            logs.follow_new(project, options)
            polled = time.monotonic()
        try:
            cid, name, event = logs.lines.get(timeout=0.2)
        except queue.Empty:
            if stopper.interrupted and stopper.done.is_set():
                break
            continue
        if event is not None:
            writer.write(name, event)
            continue
        del logs.open[cid]
        exit_code = _exit_code(engine, cid)
        writer.status(name, f"exited with code {exit_code}")
        if options.exit_code_from and logs.services[name] == options.exit_code_from:
            code = exit_code
        abort = options.abort_on_container_exit or \
            (options.abort_on_container_failure and exit_code != 0)
        if abort and not stopper.interrupted:
            if not options.exit_code_from:
                code = exit_code
            app.print("Aborting on container exit...")
            app.out.flush()
            stopper.stop_all()
            logs.open.clear()
        elif not logs.open and not stopper.interrupted:
            logs.follow_new(project, options)  # one replacing the last one may be there
    if stopper.started:
        _wait_interruptibly(stopper.done)
    return 130 if stopper.interrupted else code


def _wait_interruptibly(done: threading.Event) -> None:
    # Short waits: a second Ctrl-C must reach the handler while the stop goes on.
    while not done.wait(0.2):
        pass


def _exit_code(engine: Any, name: str) -> int:
    try:
        found = engine.request("GET", f"/v1/containers/{name}")
    except Exception:
        return 0
    return int((found.get("State") or {}).get("ExitCode") or 0)


class _Stopper:
    """Ctrl-C once: stop every container, dependents first, in the background; twice: kill."""

    def __init__(self, app: App, engine: Any, containers: list[Container],
                 order: Iterator[Any] | Any, timeout: float | None) -> None:
        self.app = app
        self.engine = engine
        self.containers = containers
        self.order = [list(generation) for generation in order]
        self.timeout = timeout
        self.interrupted = False
        self.started = False
        self.done = threading.Event()
        self._lock = threading.Lock()

    def interrupt(self, *_: Any) -> None:
        if self.interrupted:
            sys.stderr.write("Killing...\n")
            for c in self.containers:
                self._quietly("POST", f"/v1/containers/{c.id}/kill")
            return
        self.interrupted = True
        sys.stderr.write("Gracefully stopping... (press Ctrl+C again to force)\n")
        self.stop_all()

    def stop_all(self) -> None:
        self.started = True
        threading.Thread(target=self._stop, daemon=True, name="composer-stop").start()

    def _stop(self) -> None:
        with self._lock:
            by_service: dict[str, list[Container]] = {}
            for c in self.containers:
                by_service.setdefault(c.service, []).append(c)
            # hooks: the engine runs each container's pre_stop first, as `stop` does.
            params = {"hooks": 1, **({"t": self.timeout} if self.timeout is not None else {})}
            for generation in self.order:
                workers = [threading.Thread(target=self._quietly, args=(
                    "POST", f"/v1/containers/{c.id}/stop", params))
                    for name in generation for c in by_service.get(name, [])]
                for w in workers:
                    w.start()
                for w in workers:
                    w.join()
                for name in generation:
                    for c in by_service.get(name, []):
                        sys.stderr.write(f" ✔ Container {c.name}  Stopped\n")
            self.done.set()

    def _quietly(self, method: str, path: str, params: Mapping[str, Any] | None = None) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # already stopped or gone: the end is the same
            self.engine.request(method, path, params=dict(params or {}))
