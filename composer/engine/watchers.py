"""Background watchers: ``composer up -d --watch`` keeps watching after the CLI exits.

The engine starts one ``composer watch --no-up`` process per project, detached (a session of
its own, nobody's child, its output appended to ``<root>/watch/<project>.log``), and records
it in the store (:mod:`composer.state.watchers`). The watcher is a client like any other: it
loads the files, and asks the engine to apply and to sync. It is a process of its own, not a
thread of the engine, so that killing or restarting the engine (``kill -9``, an upgrade)
leaves it watching; the next engine knows it from its row.

A pid is only believed with the start time and the boot id recorded beside it, so a pid
reused by another process is never reported as watching nor signalled; a watcher found dead
loses its row. Signals go through a pidfd opened before the identity check, so the process
checked is the process signalled.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.state.layout import Layout
    from composer.state.store import Store
    from composer.state.watchers import WatcherRow

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
LOG_ROTATE_SIZE = 16 << 20
READY_TIMEOUT = 60.0  # loading the project and the first sync, on a slow machine
STOP_TIMEOUT = 10.0

# The watcher is started through a short-lived middle process (as the engine itself is, in
# composer/engine/daemon.py): it is then nobody's child (no zombie in the engine), in a
# session of its own, with no terminal. argv: log file, working directory, command...
_SPAWN = """\
import subprocess, sys
log = open(sys.argv[1], "ab")
child = subprocess.Popen(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         cwd=sys.argv[2], start_new_session=True, close_fds=True)
print(child.pid)
"""


class WatcherError(ComposerError):
    """A background watcher cannot be started or stopped as asked."""


def watcher_argv(python: str, root: Path, name: str, request: Mapping[str, Any]) -> list[str]:
    """The command line of the watcher of project ``name``: the CLI's loading flags (files,
    project directory, env files, profiles), the project's name always (the watcher must
    not derive another one), and the flags of ``up`` that every reload keeps."""
    def strings(key: str) -> list[str]:
        value = request.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsageError(f"watch: {key} must be a list of strings")
        return list(value)

    files = strings("files")
    if "-" in files:
        raise UsageError("a project read from stdin cannot be watched: name its files")
    argv = [python, "-m", "composer", "--root", str(root)]
    for f in files:
        argv += ["-f", f]
    argv += ["-p", name]
    if request.get("project_dir"):
        argv += ["--project-directory", str(request["project_dir"])]
    for e in strings("env_files"):
        argv += ["--env-file", e]
    for p in strings("profiles"):
        argv += ["--profile", p]
    parallel = int(request.get("parallel") or 0)
    if parallel > 0:
        argv += ["--parallel", str(parallel)]
    # Plain progress: the log is the only place a background watch reports what it did.
    argv += ["--progress", "plain", "watch", "--no-up"]
    options = request.get("options") or {}
    for flag in ("no_deps", "remove_orphans", "renew_anon_volumes", "no_build"):
        if options.get(flag):
            argv.append("--" + flag.replace("_", "-"))
    for scale in options.get("scale") or ():
        argv += ["--scale", str(scale)]
    if options.get("timeout") is not None:
        argv += ["--timeout", f"{float(options['timeout']):g}"]
    services = strings("services")
    if any(s.startswith("-") for s in services):
        raise UsageError(f"watch: invalid service names: {services}")
    return [*argv, *services]


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it does not run (a zombie
    does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5); fields here start at 3 (state)


class Watchers:
    """The background watchers of one engine's state root."""

    def __init__(self, layout: Layout, db: Store, *, python: str = sys.executable,
                 boot_id: Callable[[], str] | None = None) -> None:
        from composer.engine.containers import boot_id as current_boot

        self.layout = layout
        self.db = db
        self.python = python
        self._boot_id = boot_id or current_boot
        self._lock = threading.Lock()  # one start or stop at a time: never two watchers

    def log_path(self, name: str) -> Path:
        return self.layout.root / "watch" / f"{name}.log"

    # -- status ---------------------------------------------------------------------------------

    def _alive(self, row: WatcherRow) -> bool:
        return row.boot_id == self._boot_id() and start_ticks(row.pid) == row.start_ticks

    def status(self, name: str) -> dict[str, Any] | None:
        """The project's watcher, or None (a recorded one found dead loses its row)."""
        from composer.state import watchers

        row = watchers.get(self.db, name)
        if row is None:
            return None
        if not self._alive(row):
            watchers.forget(self.db, name, row.pid)
            return None
        return _view(row)

    def watched(self) -> dict[str, dict[str, Any]]:
        """project -> its live watcher, for ``ls``."""
        from composer.state import watchers

        found = {}
        for row in watchers.all_rows(self.db):
            view = self.status(row.project)
            if view is not None:
                found[row.project] = view
        return found

    # -- start and stop -------------------------------------------------------------------------

    def start(self, name: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Start the project's watcher (``request``: what :func:`watcher_argv` reads, plus
        ``environment`` and ``cwd``, the CLI's, for interpolation and relative paths) and
        wait until it watches. A watcher of the same command already running is kept (a
        second ``up -d --watch`` changes nothing); one of another command is replaced."""
        from composer.state import watchers
        from composer.state.watchers import WatcherRow

        if not _NAME.match(name):
            raise UsageError(f"invalid project name: {name!r}")
        argv = watcher_argv(self.python, self.layout.root, name, request)
        with self._lock:
            running = self.status(name)
            if running is not None and running["Argv"] == argv:
                return {**running, "Started": False}
            if running is not None:
                self._stop(name)
            log_path = self.log_path(name)
            offset = _open_log(log_path)
            pid = self._spawn(argv, log_path, request)
            ticks = start_ticks(pid)
            if ticks is None:
                raise WatcherError(f"the watcher of {name} exited at once; {log_path} says:\n"
                                   f"{_tail(log_path, offset)}")
            row = WatcherRow(name, pid, ticks, self._boot_id(), time.time(), str(log_path),
                             tuple(argv))
            watchers.save(self.db, row)
            self._ready(row, offset)
            return {**_view(row), "Started": True}

    def _spawn(self, argv: Sequence[str], log_path: Path, request: Mapping[str, Any]) -> int:
        given = request.get("environment")
        env = {str(k): str(v) for k, v in (given if isinstance(given, dict)
                                           else os.environ).items()}
        env.pop("COMPOSER_ROOT", None)  # --root names it
        env["COMPOSER_RUN_ROOT"] = str(self.layout.run)  # this engine's, not one derived anew
        cwd = str(request.get("cwd") or "/")
        if not os.path.isdir(cwd):
            raise WatcherError(f"cannot watch from {cwd}: no such directory")
        spawned = subprocess.run([self.python, "-S", "-c", _SPAWN, str(log_path), cwd, *argv],
                                 env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                 text=True, timeout=30, check=False)
        if spawned.returncode != 0 or not spawned.stdout.strip().isdigit():
            raise WatcherError(f"could not start the watcher: {spawned.stderr.strip()}")
        return int(spawned.stdout)

    def _ready(self, row: WatcherRow, offset: int) -> None:
        """Until the watcher says it watches (``watching NAME: ...``, composer/cli/commands/
        project_watch.py), or dies (its row goes, its log is the error)."""
        from composer.state import watchers

        marker = re.compile(rf"^watching {re.escape(row.project)}: ", re.MULTILINE)
        path = Path(row.log_path)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if marker.search(_read_from(path, offset)):
                return
            if not self._alive(row):
                watchers.forget(self.db, row.project, row.pid)
                raise WatcherError(f"the watcher of {row.project} exited; {path} says:\n"
                                   f"{_tail(path, offset)}")
            time.sleep(0.05)
        # Still starting (a slow first load): it is recorded and will report in its log.

    def stop(self, name: str, timeout: float = STOP_TIMEOUT) -> dict[str, Any] | None:
        """Stop the project's watcher: SIGTERM, SIGKILL after ``timeout``; what was stopped,
        or None when none watched."""
        with self._lock:
            return self._stop(name, timeout)

    def _stop(self, name: str, timeout: float = STOP_TIMEOUT) -> dict[str, Any] | None:
        from composer.state import watchers

        row = watchers.get(self.db, name)
        if row is None:
            return None
        try:
            pidfd = os.pidfd_open(row.pid)
        except ProcessLookupError:
            pidfd = None
        try:
            # Checked after the pidfd is open: the fd names the process whose identity passed.
            if pidfd is None or not self._alive(row):
                watchers.forget(self.db, name, row.pid)
                return None
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            if not _exited(pidfd, timeout):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                if not _exited(pidfd, 5.0):
                    raise WatcherError(f"the watcher of {name} (pid {row.pid}) did not exit "
                                       "after SIGKILL")
        except ProcessLookupError:
            pass  # it ended meanwhile
        finally:
            if pidfd is not None:
                os.close(pidfd)
        watchers.forget(self.db, name, row.pid)
        return _view(row)


def _view(row: WatcherRow) -> dict[str, Any]:
    return {"Project": row.project, "Pid": row.pid, "StartedAt": row.started_at,
            "Log": row.log_path, "Argv": list(row.argv)}


def _exited(pidfd: int, timeout: float) -> bool:
    # A pidfd polls readable once its process has exited (child or not).
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _open_log(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if path.stat().st_size > LOG_ROTATE_SIZE:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
    return path.stat().st_size


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(1 << 20).decode(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    kept = _read_from(path, offset).strip().splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in kept) if kept else "  (nothing)"
