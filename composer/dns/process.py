"""The engine's handle on the resolver process: write its records, start it, reload it, stop it.

The resolver is a process of its own (``python -m composer.dns``) so that names keep resolving
while the engine is down or restarting. Everything about it lives in one directory:

- ``config.json``: the records, replaced atomically, with a fresh ``serial`` each time;
- ``resolver.pid``: written by the resolver once it listens (so its appearance means ready);
- ``resolver.status``: rewritten by the resolver after each load: the serial in force, the
  serial it last read and what went wrong with it. :meth:`Resolver.update` waits for its own
  serial there, so that when it returns the new records are answered (a container started
  right after its network's update finds its peers);
- ``resolver.log`` (and ``resolver.log.1``, the previous run's): its stdout and stderr.

A new :class:`Resolver` on the same directory (the engine was restarted) adopts the running
process through the pidfile, checked against ``/proc/PID/cmdline`` since pids are reused.

This module is imported by the engine: it must not import dnslib (nor ``server``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from composer.dns.records import (
    DNS_PORT,
    ClientRecords,
    ConfigError,
    NetworkRecords,
    config_data,
    parse_config,
)
from composer.errors import ComposerError

UPSTREAM_ENV = "COMPOSER_DNS_UPSTREAM"
START_TIMEOUT = 5.0  # seconds for a new resolver to listen (it takes ~0.1 s)
RELOAD_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0  # after SIGTERM, then again after SIGKILL
_POLL = 0.005
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding composer/


class ResolverError(ComposerError):
    """The resolver could not be started, reloaded or stopped; the message says why (for a
    start, with the end of its log)."""


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


class Resolver:
    """The resolver process for one engine, through the files in ``directory``."""

    def __init__(self, directory: Path, *, upstream: list[str] | None = None,
                 port: int = DNS_PORT) -> None:
        # Absolute: the config path is in the process's command line, which adoption matches.
        self.directory = Path(directory).absolute()
        self.config_path = self.directory / "config.json"
        self.pidfile = self.directory / "resolver.pid"
        self.status_path = self.directory / "resolver.status"
        self.log_path = self.directory / "resolver.log"
        if upstream is None and os.environ.get(UPSTREAM_ENV):
            upstream = [s.strip() for s in os.environ[UPSTREAM_ENV].split(",") if s.strip()]
        self.upstream = upstream  # None: the resolver reads the host's resolv.conf itself
        self.port = port
        self._child: int | None = None  # started by this object: reaped by it

    def update(self, networks: Mapping[str, NetworkRecords],
               clients: Mapping[str, ClientRecords]) -> None:
        """Make the resolver answer these records: start it, or reload it, and return once
        they are live. No networks: no resolver."""
        if not networks:
            self.stop()
            return
        serial = time.time_ns()  # increasing across engine restarts too
        data = config_data(networks, clients, port=self.port, upstream=self.upstream,
                           serial=serial)
        try:
            parse_config(data)  # a bad record is the caller's error, raised here, not logged there
        except ConfigError as e:
            raise ResolverError(f"DNS records: {e}") from None
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self.config_path, json.dumps(data, indent=1) + "\n")
        pidfd = self._pinned()
        if pidfd is None:
            self._start(serial)
            return
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGHUP)
        except ProcessLookupError:  # exited since: start another
            self._start(serial)
            return
        finally:
            os.close(pidfd)
        self._wait_loaded(serial)

    def running(self) -> int | None:
        """The resolver's pid if the pidfile names a live process that is this directory's
        resolver (a stale pidfile's pid may have been reused by anything)."""
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
                pid = self.running()
                for signum in (signal.SIGTERM, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, signum)
                    # A pidfd is readable once the process has exited (before it is reaped).
                    if select.select([pidfd], [], [], STOP_TIMEOUT)[0]:
                        break
                else:
                    raise ResolverError(f"the DNS resolver (pid {pid}) does not exit")
            finally:
                os.close(pidfd)
            if pid is not None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)  # ours (this engine process started it)
            self._reap()
        for path in (self.pidfile, self.status_path):
            path.unlink(missing_ok=True)

    # --- internals -------------------------------------------------------------------------

    def _pinned(self) -> int | None:
        """A pidfd of the running resolver, checked again after opening (the pidfd pins the
        process, so a pid reused between the check and the open is caught)."""
        pid = self.running()
        if pid is None:
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if self.running() != pid:
            os.close(pidfd)
            return None
        return pidfd

    def _is_ours(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False  # gone (a zombie's cmdline is empty, which fails below too)
        return b"composer.dns" in argv and os.fsencode(self.config_path) in argv

    def _reap(self) -> None:
        if self._child is None:
            return
        try:
            done, _ = os.waitpid(self._child, os.WNOHANG)
        except ChildProcessError:
            done = self._child  # reaped elsewhere
        if done:
            self._child = None

    def _start(self, serial: int) -> None:
        self.pidfile.unlink(missing_ok=True)  # its appearance is the readiness signal
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
        argv = [sys.executable, "-m", "composer.dns", "--config", str(self.config_path),
                "--pidfile", str(self.pidfile), "--status", str(self.status_path)]
        env = dict(os.environ)
        # The same composer as the engine's, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT,
                                                          env.get("PYTHONPATH")]))
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o644)
        try:
            # posix_spawn rather than subprocess: the engine keeps no Popen object that would
            # warn when dropped while the resolver (meant to outlive it) still runs. setsid:
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
                raise ResolverError(f"the DNS resolver exited ({_describe(status)}) while "
                                    f"starting:\n{self._log_tail()}")
            if self.running() == pid:
                self._check_status(serial)
                return
            time.sleep(_POLL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        self._child = None
        raise ResolverError(f"the DNS resolver did not start within {START_TIMEOUT:g} s:\n"
                            f"{self._log_tail()}")

    def _wait_loaded(self, serial: int) -> None:
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            status = self._status()
            if status.get("attempted") == serial:
                self._check_status(serial)
                return
            if self.running() is None:
                raise ResolverError(f"the DNS resolver exited while reloading:\n"
                                    f"{self._log_tail()}")
            time.sleep(_POLL)
        raise ResolverError(f"the DNS resolver did not reload within {RELOAD_TIMEOUT:g} s")

    def _check_status(self, serial: int) -> None:
        status = self._status()
        if status.get("attempted") == serial and status.get("error"):
            raise ResolverError(f"DNS resolver: {status['error']}")

    def _status(self) -> dict[str, Any]:
        try:
            status = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}
        return status if isinstance(status, dict) else {}

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
