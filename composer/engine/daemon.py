"""The engine process: one per state root, found through files in its run root.

``run_root/engine.lock``  an exclusive flock held for the engine's whole life: the truth about
                          whether an engine runs, and which pid (``/proc/locks``) it is
``run_root/engine.pid``   the pid, for people and tools
``run_root/engine.sock``  the API socket (mode 0600)
``root/engine.log``       the detached engine's stdout and stderr (kept across reboots)

Killing the engine (even with SIGKILL) leaves a stale socket and pid file; the next engine
removes them once it holds the lock. Containers do not depend on this process.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError

if TYPE_CHECKING:
    from composer.engine.server import Router

from composer.state.layout import DEFAULT_ROOT, DEFAULT_RUN_ROOT

__all__ = ["DEFAULT_ROOT", "DEFAULT_RUN_ROOT", "EngineContext", "holder", "paths", "read_pid",
           "root_flag", "run", "start", "status", "stop"]
PROCESS_NAME = "composer-engine"  # /proc/PID/comm, what ps -o comm and top show
LOG_ROTATE_SIZE = 16 << 20


@dataclass(frozen=True)
class EngineContext:
    root: Path
    run_root: Path
    socket_path: Path
    log_path: Path

    @property
    def lock_path(self) -> Path:
        return self.run_root / "engine.lock"

    @property
    def pid_path(self) -> Path:
        return self.run_root / "engine.pid"


Setup = Callable[[EngineContext, "Router"], Callable[[], None] | None]


def paths(root: Path, run_root: Path) -> EngineContext:
    # Absolute: the detached engine runs in /, and the pid file names what it serves.
    root, run_root = Path(root).absolute(), Path(run_root).absolute()
    return EngineContext(root, run_root, run_root / "engine.sock", root / "engine.log")


def holder(ctx: EngineContext) -> int | None:
    """The pid of the engine holding ``ctx``'s lock, or None when none does."""
    try:
        st = os.stat(ctx.lock_path)
    except FileNotFoundError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii") as locks:
            for line in locks:
                # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146380 0 EOF"; waiters have a "->"
                fields = line.split()
                if fields[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and fields[5] == key:
                    return int(fields[4])
    except (OSError, IndexError, ValueError):
        pass
    return _probe(ctx)


def _probe(ctx: EngineContext) -> int | None:
    # Where /proc/locks does not show the lock (device numbers that differ on some
    # filesystems): try a shared lock. The engine retries its own for a moment to allow this.
    try:
        fd = os.open(ctx.lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = read_pid(ctx)
        return pid if pid is not None and process_alive(pid) else None
    finally:
        os.close(fd)
    return None


def read_pid(ctx: EngineContext) -> int | None:
    try:
        return int(ctx.pid_path.read_text().strip())
    except (OSError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _is_engine(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return comm == PROCESS_NAME or (b"engine" in cmdline
                                    and any(b"composer" in arg for arg in cmdline))


def status(ctx: EngineContext) -> dict[str, Any] | None:
    """What runs for ``ctx``: pid, socket, log, and when the engine answers its API version,
    version and uptime; None when no engine runs."""
    from composer.engine.client import EngineClient

    pid = holder(ctx)
    if pid is None:
        return None
    info: dict[str, Any] = {"pid": pid, "socket": str(ctx.socket_path),
                            "log": str(ctx.log_path), "root": str(ctx.root),
                            "answering": False}
    try:
        version = EngineClient(ctx.socket_path, timeout=5).version()
    except ComposerError:
        return info
    started = float(version.get("started") or 0)
    info.update(answering=True, api=version.get("api"), version=version.get("version"),
                started=started, uptime=max(0.0, time.time() - started) if started else None)
    return info


def start(ctx: EngineContext, *, timeout: float = 10) -> int:
    """Start a detached engine for ``ctx`` (unless one runs) and wait until it answers;
    return its pid."""
    import subprocess

    from composer.engine.client import EngineClient, EngineUnavailable

    client = EngineClient(ctx.socket_path, timeout=5, log_path=ctx.log_path)
    pid = holder(ctx)
    offset = 0
    if pid is None:
        try:
            for directory in (ctx.root, ctx.run_root):
                directory.mkdir(mode=0o711, parents=True, exist_ok=True)
            _rotate(ctx.log_path)
            os.close(os.open(ctx.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                             0o600))
            offset = ctx.log_path.stat().st_size
        except OSError as exc:
            raise EngineUnavailable(f"cannot start the engine: {exc}") from None
        # The run root is passed explicitly: the child must not derive another one.
        env = {**os.environ, "COMPOSER_RUN_ROOT": str(ctx.run_root)}
        argv = [sys.executable, "-m", "composer", "--root", str(ctx.root), "engine", "run"]
        # Through a short-lived middle process: the engine is then nobody's child (no zombie
        # in a long-lived caller), in a session of its own, with no terminal.
        spawned = subprocess.run(
            [sys.executable, "-S", "-c", _SPAWN, str(ctx.log_path), *argv], env=env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            check=False)
        if spawned.returncode != 0 or not spawned.stdout.strip().isdigit():
            raise EngineUnavailable(f"could not start the engine: {spawned.stderr.strip()}")
        pid = int(spawned.stdout)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return int(client.version()["pid"])
        except EngineUnavailable:
            pass
        if not process_alive(pid) and holder(ctx) is None:
            raise EngineUnavailable(f"the engine (pid {pid}) exited during start-up; its log "
                                    f"{ctx.log_path} says:\n{_tail(ctx.log_path, offset)}")
        if time.monotonic() > deadline:
            raise EngineUnavailable(f"the engine (pid {pid}) did not answer on "
                                    f"{ctx.socket_path} within {timeout:g} s; its log "
                                    f"{ctx.log_path} says:\n{_tail(ctx.log_path, offset)}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


_SPAWN = """\
import subprocess, sys
log = open(sys.argv[1], "ab")
engine = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                          cwd="/", start_new_session=True, close_fds=True)
print(engine.pid)
"""


def root_flag(ctx: EngineContext) -> str:
    return "" if ctx.root == DEFAULT_ROOT else f" --root {ctx.root}"


def _rotate(log_path: Path) -> None:
    try:
        if log_path.stat().st_size > LOG_ROTATE_SIZE:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))
    except FileNotFoundError:
        pass


def _tail(log_path: Path, offset: int, lines: int = 15) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read()[-(64 << 10):].decode(errors="replace")
    except OSError:
        return "  (nothing)"
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(f"  {line}" for line in kept) if kept else "  (nothing)"


def stop(ctx: EngineContext, *, timeout: float = 10) -> bool:
    """Stop the engine of ``ctx``: SIGTERM, and SIGKILL after ``timeout`` seconds. False when
    none was running."""
    import signal

    pid = holder(ctx)
    if pid is None:
        return False
    if not _is_engine(pid):
        raise ComposerError(f"pid {pid} holds {ctx.lock_path} but is not a composer engine: "
                            "not stopping it")
    try:
        os.kill(pid, signal.SIGTERM)
        if not _wait_released(ctx, pid, timeout):
            os.kill(pid, signal.SIGKILL)
            if not _wait_released(ctx, pid, 5):
                raise ComposerError(f"the engine (pid {pid}) did not exit after SIGKILL")
    except ProcessLookupError:
        pass
    if holder(ctx) is None:  # after SIGKILL nobody else tidies up
        if read_pid(ctx) == pid:
            ctx.pid_path.unlink(missing_ok=True)
    return True


def _wait_released(ctx: EngineContext, pid: int, timeout: float) -> bool:
    # Until the lock is free and the process gone (a zombie its parent has yet to reap counts
    # as gone: it holds nothing).
    deadline = time.monotonic() + timeout
    while holder(ctx) == pid or process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _acquire(ctx: EngineContext, fd: int) -> int | None:
    """Take the engine lock; None when taken, else the pid of the engine that holds it."""
    deadline = time.monotonic() + 1
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except BlockingIOError:
            pid = holder(ctx)
            if (pid is not None and pid != os.getpid()) or time.monotonic() > deadline:
                return pid or -1
            time.sleep(0.02)  # a status probe's shared lock: it lets go at once


def _set_process_name() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, PROCESS_NAME.encode(), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def run(ctx: EngineContext, setup: Setup, *, grace: float = 5.0) -> int:
    """Run the engine in the foreground until SIGTERM or SIGINT; return the exit code."""
    import logging
    import signal
    import threading

    from composer.__about__ import __version__
    from composer.engine.server import EngineServer, Router

    log = logging.getLogger("composer.engine")
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    _set_process_name()
    for directory in (ctx.root, ctx.run_root):
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
    lock_fd = os.open(ctx.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        other = _acquire(ctx, lock_fd)
        if other is not None:
            running = f" (pid {other})" if other > 0 else ""
            print(f"composer engine: an engine{running} already runs for {ctx.root} (it holds "
                  f"{ctx.lock_path}); stop it with 'composer{root_flag(ctx)} engine stop'",
                  file=sys.stderr)
            return 1
        # The lock is ours: a socket or pid file left here is from an engine that died.
        ctx.socket_path.unlink(missing_ok=True)
        temporary = ctx.pid_path.with_name(f".engine.pid.{os.getpid()}")
        temporary.write_text(f"{os.getpid()}\n")
        os.replace(temporary, ctx.pid_path)
        code = 0
        cleanup: Callable[[], None] | None = None
        try:
            server = EngineServer(ctx.socket_path, Router(), grace=grace)
        except (OSError, ComposerError) as exc:
            log.error("cannot serve on %s: %s", ctx.socket_path, exc)
            ctx.pid_path.unlink(missing_ok=True)
            return 1
        main = threading.current_thread() is threading.main_thread()
        previous: dict[int, Any] = {}
        if main:
            def stop_serving(signum: int, frame: object) -> None:
                server.shutdown()

            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, stop_serving)
            wakeup = signal.set_wakeup_fd(server.wakeup_fd, warn_on_full_buffer=False)
        try:
            cleanup = setup(ctx, server.router)
            log.info("composer %s engine (pid %d) serving %s on %s", __version__,
                     os.getpid(), ctx.root, ctx.socket_path)
            server.serve_forever()
            log.info("stopping")
        except Exception:
            log.exception("the engine failed")
            code = 1
        finally:
            server.close()
            if cleanup is not None:
                try:
                    cleanup()
                except Exception:
                    log.exception("the engine's cleanup failed")
                    code = 1
            if main:
                signal.set_wakeup_fd(wakeup)
            for number, handler_ in previous.items():
                signal.signal(number, handler_)
            if read_pid(ctx) == os.getpid():
                ctx.pid_path.unlink(missing_ok=True)
        log.info("stopped")
        return code
    finally:
        os.close(lock_fd)
