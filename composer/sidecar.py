"""Helper processes of the engine that must outlive it: the DNS resolver, the port proxy.

Such a process keeps serving while the engine is down or restarting, so the engine drives it
through files in one directory rather than through a pipe:

- ``config.json``: what to serve, replaced atomically, with a fresh ``serial`` each time;
- ``<stem>.pid``: written by the process once it serves (so its appearance means ready);
- ``<stem>.status``: rewritten by the process after each load: the serial in force
  (``serial``), the serial it last read (``attempted``), what went wrong with it (``error``),
  and whatever else the process reports. The engine waits for its own serial there, so that
  when an update returns the new config is live;
- ``<stem>.log`` (and ``<stem>.log.1``, the previous run's): its stdout and stderr.

A new handle on the same directory (the engine was restarted) adopts the running process
through the pidfile, checked against ``/proc/PID/cmdline`` since pids are reused.

:class:`Sidecar` is the engine's side; :func:`write_status` and :func:`serving` are the
process's. The engine imports this module: it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from composer.errors import ComposerError

START_TIMEOUT = 5.0  # seconds for a new process to serve (they take ~0.1 s)
RELOAD_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0  # after SIGTERM, then again after SIGKILL
_POLL = 0.005
_FIRST_POLL = 0.0005
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the directory holding composer/


def write_atomically(path: Path, text: str) -> None:
    """Write a sibling temporary file, then rename it over ``path``: a reader sees the old
    file or the new one, never half of one. No fsync: these files describe running processes
    and mean nothing after a reboot."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Paths(NamedTuple):
    config: Path
    pidfile: Path
    status: Path
    log: Path


def paths(directory: Path, stem: str) -> Paths:
    """The files of the process ``stem`` in ``directory``: both sides name them alike."""
    return Paths(directory / "config.json", directory / f"{stem}.pid",
                 directory / f"{stem}.status", directory / f"{stem}.log")


class Sidecar:
    """The engine's handle on one helper process, through the files in ``directory``.

    A subclass names its process (``module``, run as ``python -m module``), its files
    (``stem``) and how its failures read (``what``, ``error_class``); it writes the config with
    :meth:`_write_config` and then calls :meth:`_deliver`, which returns the process's status
    once that config has been read. The process is started with :meth:`arguments` and is
    recognised by :meth:`identity` in its command line.
    """

    module: ClassVar[str]
    stem: ClassVar[str]
    what: ClassVar[str]  # "the DNS resolver": the subject of error messages
    error_class: ClassVar[type[ComposerError]]

    def __init__(self, directory: Path) -> None:
        # Absolute: a path in the process's command line is what adoption matches.
        self.directory = Path(directory).absolute()
        self.config_path, self.pidfile, self.status_path, self.log_path = paths(
            self.directory, self.stem)
        self._child: int | None = None  # started by this object: reaped by it

    def arguments(self) -> list[str]:
        """The process's arguments after ``python -m module``."""
        return [str(self.directory)]

    def identity(self) -> Path:
        """The path in the process's command line that makes it this directory's."""
        return self.directory

    def pid(self) -> int | None:
        """The process's pid if the pidfile names a live process that is this directory's
        (a stale pidfile's pid may have been reused by anything)."""
        self._reap()
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if self._is_ours(pid) else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers, and wait until it is gone; not running is
        success."""
        pidfd = self._pinned()
        if pidfd is not None:
            try:
                pid = self.pid()
                for signum in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signum)
                    # A pidfd is readable once the process has exited (before it is reaped).
                    if select.select([pidfd], [], [], STOP_TIMEOUT)[0]:
                        break
                else:
                    raise self.error_class(f"{self.what} (pid {pid}) does not exit")
            finally:
                os.close(pidfd)
            if pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # ours (this engine process started it)
            self._reap()
        for path in (self.pidfile, self.status_path):
            path.unlink(missing_ok=True)

    # --- for subclasses --------------------------------------------------------------------

    def _write_config(self, data: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Compact: rewritten at every container start and stop, and an indent would make
        # json fall back from its C encoder to the pure-Python one (5x slower).
        write_atomically(self.config_path, json.dumps(data, separators=(",", ":")) + "\n")

    def _deliver(self, serial: int) -> dict[str, Any]:
        """Have the process read the config just written (serial ``serial``): SIGHUP the
        running one, or start one. Returns its status once it has read that serial (check
        its ``error``: a config it could not use leaves the previous one in force)."""
        pidfd = self._pinned()
        if pidfd is None:
            return self._start(serial)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGHUP)
        except ProcessLookupError:  # exited since: start another
            return self._start(serial)
        finally:
            os.close(pidfd)
        return self._wait_loaded(serial)

    def _in_force(self, data: Mapping[str, Any]) -> dict[str, Any] | None:
        """The running process's status if the config it serves is ``data`` (serial aside),
        else None: then a reload would change nothing."""
        try:
            current = json.loads(self.config_path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(current, dict):
            return None
        serial = current.pop("serial", None)
        status = self._status()
        if current != {k: v for k, v in data.items() if k != "serial"} or serial is None \
                or status.get("serial") != serial or status.get("attempted") != serial:
            return None
        pid = self.pid()
        return status if pid is not None and status.get("pid") == pid else None

    def _status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

    # --- internals -------------------------------------------------------------------------

    def _pinned(self) -> int | None:
        """A pidfd of the running process, checked again after opening (the pidfd pins the
        process, so a pid reused between the check and the open is caught)."""
        pid = self.pid()
        if pid is None:
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if self.pid() != pid:
            os.close(pidfd)
            return None
        return pidfd

    def _is_ours(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone (a zombie's cmdline is empty, which fails below too)
        return os.fsencode(self.module) in argv and os.fsencode(self.identity()) in argv

    def _reap(self) -> None:
        if self._child is None:
            return
        try:
            done, _ = os.waitpid(self._child, os.WNOHANG)
        except ChildProcessError:
            done = self._child  # reaped elsewhere
        if done:
            self._child = None

    def _start(self, serial: int) -> dict[str, Any]:
        self.pidfile.unlink(missing_ok=True)  # its appearance is the readiness signal
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        argv = [sys.executable, "-m", self.module, *self.arguments()]
        env = dict(os.environ)
        # The same composer as the engine's, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                          env.get("PYTHONPATH")]))
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o644)
        try:
            # posix_spawn rather than subprocess: the engine keeps no Popen object that would
            # warn when dropped while the process (meant to outlive it) still runs. setsid:
            # the engine's terminal or process group signals do not reach it.
            pid = os.posix_spawn(sys.executable, argv, env, setsid=True, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ])
        finally:
            os.close(log_fd)
        self._child = pid
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._child = None
                raise self.error_class(f"{self.what} exited ({_describe(status)}) while "
                                 f"starting:\n{self._log_tail()}")
            if self.pid() == pid:
                # The process writes its status before its pidfile.
                loaded = self._status()
                return loaded if loaded.get("attempted") == serial else {}
            time.sleep(_POLL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self._child = None
        raise self.error_class(f"{self.what} did not start within {START_TIMEOUT:g} s:\n"
                         f"{self._log_tail()}")

    def _wait_loaded(self, serial: int) -> dict[str, Any]:
        deadline = time.monotonic() + RELOAD_TIMEOUT
        # A reload takes a few milliseconds and every container start waits for one: look
        # again soon at first, then every _POLL.
        pause = _FIRST_POLL
        while time.monotonic() < deadline:
            status = self._status()
            if status.get("attempted") == serial:
                return status
            if self.pid() is None:
                raise self.error_class(f"{self.what} exited while reloading:\n{self._log_tail()}")
            time.sleep(pause)
            pause = min(2 * pause, _POLL)
        raise self.error_class(f"{self.what} did not reload within {RELOAD_TIMEOUT:g} s")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"status {os.waitstatus_to_exitcode(status)}"


# --- the process's side ----------------------------------------------------------------------


def serial_of(path: Path) -> int | None:
    """The ``serial`` of the config file at ``path`` as it is now, even if the rest of it is
    unusable: the status must say which update a failed load was."""
    try:
        serial = json.loads(path.read_text()).get("serial")
    except (OSError, ValueError, AttributeError):
        return None
    return serial if isinstance(serial, int) else None


def write_status(path: Path | None, *, loads: int, serial: int | None, attempted: int | None,
                 error: str | None, **extra: Any) -> None:
    """Say which config is in force (``serial``), which one the last load read
    (``attempted``) and what went wrong with it, so that whoever sent SIGHUP knows when the
    new config is live, or why it is not."""
    if path is None:
        return
    status = {"pid": os.getpid(), "loads": loads, "serial": serial, "attempted": attempted,
              "error": error, **extra}
    write_atomically(path, json.dumps(status) + "\n")


def log_handler(name: str, path: Path | None = None) -> logging.Handler:
    """A handler for the process's log lines, appending to ``path`` or else to stderr (which
    the engine points at the log file)."""
    handler: logging.Handler = (logging.FileHandler(path) if path
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s {name}[%(process)d] %(levelname)s %(message)s"))
    return handler


@contextlib.contextmanager
def serving(pidfile: Path) -> Iterator[None]:
    """Announce readiness (the pidfile, written atomically) for the duration of serving, and
    withdraw it at the end unless another process has taken it over since."""
    write_atomically(pidfile, f"{os.getpid()}\n")
    # Hold no directory busy (the engine's working directory may be a mount): with -m,
    # sys.path holds the start directory as an absolute path, so imports still work.
    os.chdir("/")
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(pidfile.read_text()) == os.getpid():
                pidfile.unlink()
