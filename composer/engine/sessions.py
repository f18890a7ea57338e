"""The engine's side of interactive sessions (``exec``, ``run -it``); see cli/interactive.py.

The engine hands file descriptors across its Unix socket instead of relaying bytes: the
process's stdio is the client's own, or the pty master goes to the client, or (for a main
process) a connection to conmon's attach socket does. The session socket then carries only
the final ``{"exit": N}`` line.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.exitcodes import start_failure_code
from composer.errors import ComposerError
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode() + b"\n"
    with contextlib.suppress(OSError):
        if fds:
            socket.send_fds(sock, [data], fds)
        else:
            sock.sendall(data)


def _exec_argv(manager: ContainerManager, row: ContainerRow, process: Path, log: Path, *,
               tty: bool = False, console: str | None = None,
               detach: bool = False) -> list[str]:
    runtime = manager.runtime(row)
    # --log keeps runc's own errors apart from the process's stderr, so that "not found" can
    # be told from a command that printed those words and failed.
    argv = [runtime.path, "--root", runtime.root, "--log", str(log), "--log-format", "json",
            "exec", "--process", str(process)]
    if tty:
        argv.append("--tty")
    if console:
        argv += ["--console-socket", console]
    if detach:
        argv.append("--detach")
    return [*argv, row.id]


def _runc_error(log: Path) -> str | None:
    try:
        lines = log.read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg"))
    return None


def _finish(code: int, log: Path) -> dict[str, Any]:
    error = _runc_error(log) if code in (1, 255) else None
    if error and ("exec failed" in error or "unable to start" in error):
        return {"exit": start_failure_code(error), "error": error}
    return {"exit": code}


def _process(manager: ContainerManager, row: ContainerRow, body: dict[str, Any]) -> Path:
    from composer.engine.probes import process_file

    args = [str(a) for a in body.get("args") or []]
    if not args:
        raise ComposerError("exec needs a command")
    return process_file(manager, row.id, args, env=body.get("env") or None,
                        user=body.get("user"), working_dir=body.get("working_dir"),
                        tty=bool(body.get("tty")), privileged=bool(body.get("privileged")))


def exec_detached(manager: ContainerManager, row: ContainerRow, body: dict[str, Any]) -> None:
    process = _process(manager, row, body)
    log = process.with_suffix(".log")
    try:
        done = subprocess.run(_exec_argv(manager, row, process, log, detach=True),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=60)
        if done.returncode != 0:
            raise ComposerError(_runc_error(log) or done.stderr.decode(errors="replace"))
    finally:
        for path in (process, log):
            with contextlib.suppress(OSError):
                path.unlink()


def exec_session(manager: ContainerManager, row: ContainerRow, body: dict[str, Any],
                 sock: socket.socket) -> None:
    try:
        process = _process(manager, row, body)
    except ComposerError as e:
        _send(sock, {"error": str(e), "code": 125})
        return
    log = process.with_suffix(".log")
    try:
        if body.get("tty"):
            code = _exec_tty(manager, row, process, log, sock, body)
        else:
            _, fds, _, _ = socket.recv_fds(sock, 1024, 3)
            try:
                child = subprocess.Popen(_exec_argv(manager, row, process, log),
                                         stdin=fds[0], stdout=fds[1], stderr=fds[2])
            finally:
                for fd in fds:
                    os.close(fd)
            code = child.wait()
        _send(sock, _finish(code, log))
    finally:
        for path in (process, log):
            with contextlib.suppress(OSError):
                path.unlink()


def _exec_tty(manager: ContainerManager, row: ContainerRow, process: Path, log: Path,
              sock: socket.socket, body_size: dict[str, Any]) -> int:
    """``runc exec -t`` in the foreground needs a terminal of its own (it copies between it and
    the container's pty, and passes resizes on): give it the slave of a pty made here, as its
    controlling terminal (``setsid --ctty``), and hand the master to the client."""
    master, slave = os.openpty()
    size = (body_size.get("rows"), body_size.get("cols"))
    if all(isinstance(v, int) and v > 0 for v in size):
        import fcntl
        import struct
        import termios

        # The client's size before the process runs (runc gives it to the container's pty).
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    try:
        child = subprocess.Popen(["setsid", "--ctty",
                                  *_exec_argv(manager, row, process, log, tty=True)],
                                 stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    try:
        _send(sock, {"tty": True}, [master])
    finally:
        os.close(master)
    return child.wait()


def _set_size(files: Any, size: tuple[int, int]) -> None:
    """Give the container's terminal the client's size before its process runs: through its
    own stdin (the pty's slave side), since a resize sent to conmon could arrive too late."""
    import fcntl
    import struct
    import termios

    pid = int(files.pidfile.read_text().strip())
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    finally:
        os.close(fd)


def attach_session(manager: ContainerManager, row: ContainerRow, sock: socket.socket, *,
                   start: bool, remove: bool, size: tuple[int, int] | None = None) -> None:
    """Attach to the main process (conmon's attach socket), start it, report its exit."""
    from composer.runtime import monitor

    def hand_over(files: monitor.MonitorFiles) -> None:
        if size is not None and row.spec.get("tty"):
            with contextlib.suppress(OSError, ValueError):
                _set_size(files, size)
        attached = monitor.attach(files)
        ctl = os.open(files.ctl_file, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            _send(sock, {"attached": True}, [attached.fileno(), ctl])
        finally:
            attached.close()
            os.close(ctl)

    try:
        if start:
            manager.start(row.id, attach=hand_over)
        else:
            raise ComposerError("attaching to a running container is not supported yet")
    except ComposerError as e:
        if remove:
            with contextlib.suppress(ComposerError):
                manager.remove(row.id, force=True)
        _send(sock, {"error": str(e), "code": start_failure_code(str(e))})
        return
    _send(sock, {"exit": manager.wait(row.id, condition="removed" if remove
                                      else "not-running")})
