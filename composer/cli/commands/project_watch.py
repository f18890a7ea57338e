"""``composer watch`` (and the watching half of ``composer up --watch``).

The project is brought up as ``up -d`` would (unless ``--no-up``), then the loop of
:mod:`composer.watch` runs until Ctrl-C. This module is its :class:`Effects` over the engine:
loading goes through ``up``'s loader, applying through the engine's ``up`` route with ``up``'s
own request and progress renderer (so a reload prints the plan's reasons as ``up`` does), a
sync through the engine's ``/v1/containers/{id}/sync`` (the engine writes the files: it is the
only component that changes the host).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from composer.cli.app import App
from composer.cli.project_select import Container, project_containers
from composer.errors import ComposerError
from composer.watch.debounce import MAX_WAIT


def register(commands: Any) -> None:
    from composer.cli.commands.plan import plan_flags

    watch = commands.add_parser("watch", help="apply manifest edits and develop.watch rules "
                                "as files change")
    watch.add_argument("--no-up", action="store_true",
                       help="do not bring the project up before watching")
    watch.add_argument("--quiet", action="store_true", help="print only errors")
    watch.add_argument("--stop", action="store_true",
                       help="stop the project's background watch ('up -d --watch')")
    # up's flags: they shape the first up, and every reload keeps those that are not a
    # one-time forcing (--scale, --no-deps, --remove-orphans, -t, ...).
    plan_flags(watch)
    watch.set_defaults(handler=run_watch)


def run_watch(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.project_up import load

    if options.stop:
        return stop_background(app, options)
    options = _with_plan_defaults(options)
    project = load(app, options, options.services_selected)
    effects = EngineEffects(app, Reconnecting(options), options)
    if not options.no_up:
        effects.apply(project, first=True)
    session = start_watch(app, effects, project)
    stop = threading.Event()
    # Ctrl-C or a plain kill ends the watch (and only the watch: what runs stays up), also
    # when the shell that started it in the background ignores SIGINT.
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        session.stop()
    return 0


def watch_attached(app: App, engine: Any, project: Any, options: argparse.Namespace) -> int:
    """``up --watch``: the logs in the foreground, the watch beside them. A recreated
    container ends its log stream; the logs are attached again to what runs then, until
    Ctrl-C (which stops the project, as ``up`` does)."""
    from composer.cli.commands.project_attach import attach_project

    effects = EngineEffects(app, engine, _with_plan_defaults(options))
    session = start_watch(app, effects, project)
    try:
        while True:
            code = attach_project(app, engine, session.watcher.project, options,
                                  until_interrupted=True)
            if code == 130 or not _running(engine, session.watcher.project.name):
                break
    finally:
        session.stop()
    if code == 130:
        # Ctrl-C stopped the containers the logs were attached to; those the watch made
        # since then (a recreate) stop too, as all of ``up``'s would.
        for c in _running(engine, session.watcher.project.name):
            with contextlib.suppress(ComposerError):
                engine.request("POST", f"/v1/containers/{c.id}/stop",
                               params={"t": options.timeout} if options.timeout else {})
                app.err.write(f" ✔ Container {c.name}  Stopped\n")
    return code


# -- in the background (``up -d --watch``): a watcher process the engine starts and tracks --------


def watch_in_background(app: App, engine: Any, project: Any,
                        options: argparse.Namespace) -> int:
    """Ask the engine to keep watching ``project`` after this command exits
    (:mod:`composer.engine.watchers`): a ``composer watch --no-up`` with this command's
    files, flags, environment and directory."""
    import os

    body = {"files": list(options.files), "project_dir": options.project_dir,
            "env_files": list(options.env_files), "profiles": list(options.profiles),
            "services": list(options.services_selected), "parallel": options.parallel,
            "options": {"no_deps": options.no_deps, "remove_orphans": options.remove_orphans,
                        "renew_anon_volumes": options.renew_anon_volumes,
                        "no_build": options.no_build, "scale": list(options.scale),
                        "timeout": options.timeout},
            "environment": dict(os.environ), "cwd": os.getcwd()}
    found = engine.request("POST", f"/v1/projects/{project.name}/watch", body)
    again = "" if found.get("Started") else f"already (pid {found['Pid']}) "
    app.err.write(f"watching {project.name} {again}in the background (composer watch --stop "
                  f"ends it; log: {found['Log']})\n")
    return 0


def stop_background(app: App, options: argparse.Namespace) -> int:
    """``composer watch --stop``: end the project's background watch."""
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.project_up import _maybe_load

    project = _maybe_load(app, options)
    name = project.name if project is not None else options.project_name
    stopped = engine_client(options).request("DELETE", f"/v1/projects/{name}/watch")
    if stopped.get("Stopped"):
        app.err.write(f"stopped watching {name} (pid {stopped['Pid']})\n")
    else:
        app.err.write(f"{name} is not watched in the background\n")
    return 0


def background_status(engine: Any, name: str) -> dict[str, Any] | None:
    """The project's background watch (``ps``), or None."""
    try:
        found = engine.request("GET", f"/v1/projects/{name}/watch")
    except ComposerError:
        return None  # an engine without the route: nothing to say
    return found if isinstance(found, dict) and found.get("Watching") else None


class Reconnecting:
    """The engine client of a long watch: when no engine answers (it was stopped, or
    killed), one is started on demand, as any command would, and the request is sent again
    (what a watch sends is level-triggered: sending it twice does no harm)."""

    def __init__(self, options: argparse.Namespace) -> None:
        from composer.cli.commands.engine import engine_client

        self.options = options
        self.client = engine_client(options)

    def _again(self, exc: ComposerError) -> Any:
        from composer.cli.commands.engine import context, engine_client
        from composer.engine import daemon

        if daemon.holder(context(self.options)) is not None:
            raise exc  # an engine runs: its answer (or its silence) stands
        self.client = engine_client(self.options)
        return self.client

    def request(self, *args: Any, **kwargs: Any) -> Any:
        from composer.engine.client import EngineUnavailable

        try:
            return self.client.request(*args, **kwargs)
        except EngineUnavailable as e:
            return self._again(e).request(*args, **kwargs)

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        from composer.engine.client import EngineUnavailable

        try:
            return self.client.stream(*args, **kwargs)
        except EngineUnavailable as e:
            return self._again(e).stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class WatchSession:
    def __init__(self, watcher: Any, observation: Any) -> None:
        self.watcher = watcher
        self.observation = observation

    def stop(self) -> None:
        self.observation.stop()
        self.watcher.stop()


def start_watch(app: App, effects: EngineEffects, project: Any, *, quiet: float = 0.05,
                max_wait: float = MAX_WAIT) -> WatchSession:
    """The watch of ``project``, running in threads of its own."""
    from composer.watch.loop import Watcher
    from composer.watch.observe import Observation
    from composer.watch.sources import manifest_files

    observation: Observation | None = None

    def on_dirs(dirs: Mapping[str, bool]) -> None:
        if observation is not None:
            observation.update(dirs)

    watcher = Watcher(effects, project, manifest_files(**effects.load_args()),
                      services=effects.options.services_selected, on_dirs=on_dirs,
                      quiet=quiet, max_wait=max_wait)
    observation = Observation(watcher.changed)
    observation.start(watcher.directories())
    watcher.start()
    watcher.initial_sync()
    if not effects.quiet:
        count = len(watcher.rules)
        # In the background (the engine's watcher: no terminal) Ctrl-C means nothing; the
        # engine waits for this line to know the watch runs (composer/engine/watchers.py).
        hint = "; Ctrl-C stops watching" if sys.stdin is not None and sys.stdin.isatty() \
            else ""
        app.err.write(f"watching {project.name}: {len(watcher.manifest_files)} manifest "
                      f"file(s), {count} develop.watch rule(s){hint}\n")
        app.err.flush()
    return WatchSession(watcher, observation)


def _with_plan_defaults(options: argparse.Namespace) -> argparse.Namespace:
    """``up``'s plan flags at their defaults, under what the command line set (``watch``
    has none of its own)."""
    from composer.cli.commands.plan import plan_flags

    parser = argparse.ArgumentParser(add_help=False)
    plan_flags(parser)
    defaults = vars(parser.parse_args([]))
    merged = {**defaults, **vars(options)}
    merged.setdefault("quiet", False)
    merged.setdefault("no_up", True)
    return argparse.Namespace(**merged)


def _running(engine: Any, name: str) -> list[Container]:
    return project_containers(engine, name, stopped=False)


class EngineEffects:
    """:class:`composer.watch.loop.Effects` over the engine."""

    def __init__(self, app: App, engine: Any, options: argparse.Namespace) -> None:
        self.app = app
        self.engine = engine
        self.options = options
        self.quiet = bool(options.quiet) or options.progress == "quiet"
        self._out = threading.Lock()

    # -- the manifest ---------------------------------------------------------------------------

    def load_args(self) -> dict[str, Any]:
        o = self.options
        return {"files": o.files, "project_dir": o.project_dir,
                "project_name": o.project_name, "env_files": o.env_files,
                "profiles": o.profiles}

    def load(self) -> tuple[Any, frozenset[str]]:
        from composer.cli.commands.project_up import load
        from composer.watch.sources import manifest_files

        project = load(self.app, self.options, self.options.services_selected)
        return project, manifest_files(**self.load_args())

    def apply(self, project: Any, *, first: bool = False) -> None:
        """``up -d`` of the project. A reload never forces what the command line forced
        once (``--force-recreate``, ``--build``): only what changed is touched."""
        from composer.cli.commands.project_up import up_options

        options = self.options if first else argparse.Namespace(**{
            **vars(self.options), "force_recreate": False, "no_recreate": False,
            "always_recreate_deps": False, "build": False, "pull": None, "no_start": False})
        self._up(project, up_options(options, project), say_empty=not first)

    def rebuild(self, project: Any, service: str) -> None:
        from composer.cli.commands.project_up import up_options

        options = argparse.Namespace(**{
            **vars(self.options), "services_selected": [service], "no_deps": True,
            "build": True, "force_recreate": False, "no_recreate": False,
            "always_recreate_deps": False, "no_start": False})
        self._up(project, up_options(options, project), say_empty=False)

    def _up(self, project: Any, options: dict[str, Any], *, say_empty: bool) -> None:
        from composer.cli.commands.project_up import Progress, request_of

        body = {**request_of(project), "options": {**options, "wait": False}}
        mode = "quiet" if self.quiet else self.options.progress
        progress = Progress(self.app, mode)
        changes: list[int] = []

        def tap(events: Any) -> Iterator[Mapping[str, Any]]:
            for event in events:
                if "plan" in event and event.get("round") == 1:
                    changes.append(len(event["plan"].get("changes") or ()))
                yield event

        with self._out:
            ok = progress.show(tap(self.engine.stream(
                "POST", f"/v1/projects/{project.name}/up", body)))
            self.app.out.flush()  # a long-running command: its lines must not wait in a buffer
        if not ok:
            raise ComposerError(f"project {project.name}: the changes were not all applied")
        if say_empty and changes == [0]:
            self.say("nothing to change: what runs matches the manifest")

    # -- develop.watch actions ------------------------------------------------------------------

    def _containers(self, project: Any, service: str,
                    running: bool = True) -> list[Container]:
        return project_containers(self.engine, project.name, [service], stopped=not running)

    def sync(self, project: Any, service: str, entries: Sequence[Any]) -> None:
        body = {"entries": [e.to_json() for e in entries]}
        containers = self._containers(project, service)
        if not containers:
            raise ComposerError("no running container to sync to")
        for c in containers:
            done = self.engine.request("POST", f"/v1/containers/{c.id}/sync", body)
            for failure in (done or {}).get("failed") or ():
                self.error(f"{c.name}: cannot sync {failure}")

    def restart(self, project: Any, service: str) -> None:
        timeout = self.options.timeout
        params = {"t": timeout} if timeout is not None else {}
        for c in self._containers(project, service, running=False):
            self.engine.request("POST", f"/v1/containers/{c.id}/restart", params=params)
            if not self.quiet:
                self.app.err.write(f" ✔ Container {c.name}  Restarted\n")

    def exec(self, project: Any, service: str, hook: Mapping[str, Any]) -> None:
        from composer.cli import interactive
        from composer.cli.commands.container import exec_body

        command = [str(a) for a in hook.get("command") or ()]
        env = {str(k): str(v) for k, v in (hook.get("environment") or {}).items()
               if v is not None}
        for c in self._containers(project, service):
            body = exec_body(command, env=env, user=hook.get("user"),
                             workdir=hook.get("working_dir"), tty=False, interactive=False,
                             privileged=bool(hook.get("privileged")), detach=False)
            code = interactive.exec_session(self.engine, c.id, body)
            if code != 0:
                raise ComposerError(f"{c.name}: {' '.join(command)} exited {code}")

    # -- output ---------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        if not self.quiet:
            with self._out:
                self.app.err.write(f"watch: {text}\n")
                self.app.err.flush()

    def error(self, text: str) -> None:
        with self._out:
            self.app.error(text)
            self.app.err.flush()
