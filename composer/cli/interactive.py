"""Interactive sessions: ``container run -it``, ``start -a`` and ``exec``.

The engine never sits in the data path of a terminal. For ``exec`` the CLI hands its own stdio
to the engine (SCM_RIGHTS over the engine's Unix socket) and the engine starts the process
with them, or, with ``-t``, hands back the master side of the process's pseudo-terminal, which
the CLI pumps to and from its own terminal in raw mode, resizing it on SIGWINCH. For a
container's main process the engine hands over a connection to conmon's attach socket (packets
from conmon start with one byte naming the stream: 2 stdout, 3 stderr; what is written to it is
the container's stdin) and conmon's control fifo, where ``1 ROWS COLS`` resizes the terminal.
When the process ends the engine writes one JSON line ``{"exit": N}`` on the session socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import termios
import tty as ttys
from collections.abc import Iterator
from typing import Any

STDOUT, STDERR = 2, 3


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    if not enabled or not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    try:
        ttys.setraw(0)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _size() -> tuple[int, int]:
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(1, termios.TIOCGWINSZ, b"\0" * 8))
        return rows, cols
    except OSError:
        return 24, 80


def _exit_code(buffer: bytes) -> int | None:
    for line in buffer.splitlines():
        with contextlib.suppress(ValueError):
            message = json.loads(line)
            if "exit" in message:
                return int(message["exit"])
            if "error" in message:
                sys.stderr.write(f"error: {message['error']}\n")
                return int(message.get("code", 125))
    return None


def _receive(sock: socket.socket, count: int) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(sock, 65536, count)
    message = json.loads(data.decode() or "{}")
    if "error" in message:
        for fd in fds:
            os.close(fd)
        raise _SessionError(message["error"], int(message.get("code", 125)))
    return message, list(fds)


class _SessionError(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exec_session(engine: Any, container: str, body: dict[str, Any]) -> int:
    if body.get("detach"):
        engine.request("POST", f"/v1/containers/{container}/exec", body)
        return 0
    if body.get("tty"):
        body = {**body, **dict(zip(("rows", "cols"), _size(), strict=True))}
    sock = engine.hijack("POST", f"/v1/containers/{container}/exec", body)
    try:
        if not body.get("tty"):
            stdin = 0 if body.get("interactive") else os.open(os.devnull, os.O_RDONLY)
            socket.send_fds(sock, [b"stdio"], [stdin, 1, 2])
            if stdin != 0:
                os.close(stdin)
            return _wait_exit(sock)
        try:
            _, fds = _receive(sock, 1)
        except _SessionError as e:
            sys.stderr.write(f"error: {e}\n")
            return e.code
        master = fds[0]
        return _pump_pty(sock, master, interactive=bool(body.get("interactive")))
    finally:
        sock.close()


def _wait_exit(sock: socket.socket) -> int:
    """The exit line; 125 (composer failed) when the engine hangs up without one."""
    buffer = b""
    while chunk := sock.recv(4096):
        buffer += chunk
        code = _exit_code(buffer)
        if code is not None:
            return code
    return 125


def _pump_pty(sock: socket.socket, master: int, *, interactive: bool) -> int:
    def resize(*_: Any) -> None:
        rows, cols = _size()
        with contextlib.suppress(OSError):
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    resize()
    previous = signal.signal(signal.SIGWINCH, resize)
    buffer = b""
    sources = [master, sock.fileno(), *([0] if interactive else [])]
    try:
        with _raw_terminal(interactive):
            while True:
                readable, _, _ = select.select(sources, [], [])
                if master in readable:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the process closed the terminal
                        data = b""
                    if data:
                        os.write(1, data)
                    else:
                        sources.remove(master)
                if 0 in readable:
                    data = os.read(0, 65536)
                    if data:
                        os.write(master, data)
                    else:
                        sources.remove(0)
                if sock.fileno() in readable:
                    chunk = sock.recv(4096)
                    buffer += chunk
                    code = _exit_code(buffer)
                    if code is not None or not chunk:
                        _drain(master)
                        return code if code is not None else 125
    finally:
        signal.signal(signal.SIGWINCH, previous)
        os.close(master)


def _drain(fd: int) -> None:
    """What the process wrote just before it ended."""
    while True:
        readable, _, _ = select.select([fd], [], [], 0)
        if not readable:
            return
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        os.write(1, data)


def attach_and_start(engine: Any, container: str, *, tty: bool, remove: bool) -> int:
    """Attach to a created container's main process, start it, pump until it exits."""
    rows, cols = _size()
    # The size goes with the request: the engine sets it before the process runs.
    sock = engine.hijack("POST", f"/v1/containers/{container}/attach",
                         params={"start": 1, "remove": int(remove), "rows": rows,
                                 "cols": cols})
    try:
        try:
            _, fds = _receive(sock, 2)
        except _SessionError as e:
            sys.stderr.write(f"error: {e}\n")
            return e.code
        attach_fd, ctl_fd = fds
        attached = socket.socket(fileno=attach_fd)
        return _pump_attach(sock, attached, ctl_fd, tty=tty)
    finally:
        sock.close()


def _pump_attach(sock: socket.socket, attached: socket.socket, ctl_fd: int, *,
                 tty: bool) -> int:
    def resize(*_: Any) -> None:
        rows, cols = _size()
        with contextlib.suppress(OSError):
            os.write(ctl_fd, f"1 {rows} {cols}\n".encode())

    if tty:
        resize()
    previous = signal.signal(signal.SIGWINCH, resize) if tty else None
    buffer = b""
    sources = [attached.fileno(), sock.fileno(), 0]
    try:
        with _raw_terminal(tty):
            while True:
                readable, _, _ = select.select(sources, [], [])
                if attached.fileno() in readable:
                    packet = attached.recv(8193)
                    if packet:
                        os.write(2 if packet[0] == STDERR else 1, packet[1:])
                    else:
                        sources.remove(attached.fileno())
                if 0 in readable:
                    data = os.read(0, 8192)
                    if data:
                        attached.sendall(data)
                    else:
                        sources.remove(0)
                        with contextlib.suppress(OSError):
                            attached.shutdown(socket.SHUT_WR)  # stdin closed: EOF inside
                if sock.fileno() in readable:
                    chunk = sock.recv(4096)
                    buffer += chunk
                    code = _exit_code(buffer)
                    if code is not None or not chunk:
                        return code if code is not None else 125
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        attached.close()
        os.close(ctl_fd)
