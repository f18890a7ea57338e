"""The engine's client: HTTP/1.1 + JSON over the engine's Unix socket.

The protocol, which ``server`` implements:

- every route is under ``/v1/``; ``GET /v1/version`` answers ``{"api", "version", "pid",
  "started"}``, and the client refuses an engine whose ``api`` is not :data:`API_VERSION`;
- request bodies and answers are JSON; an error is a non-2xx status with ``{"message"}``;
- a streamed answer is ``application/x-ndjson``, chunked, one JSON value a line; a failure
  after the stream began arrives as a last line ``{"$error": {"status", "message"}}``;
- an upgraded connection (``Upgrade: tcp``, answered ``101``) is the raw socket from then on:
  the client waits for the ``101`` before it sends anything, then file descriptors travel as
  SCM_RIGHTS on a one-byte message (:func:`send_fds`, ``Request.receive_fds``), then bytes.

Kept light: the CLI imports it for every command that talks to the engine.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from composer.errors import ComposerError

API_VERSION = 1
STREAM_ERROR_KEY = "$error"
UPGRADE_PROTOCOL = "tcp"  # Docker's word for its hijacked attach/exec connections
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with the terminating NUL
_HEAD_MAX = 64 << 10


class EngineUnavailable(ComposerError):
    """No engine answers on the socket (not running, not reachable, or it went away)."""


class EngineVersionError(ComposerError):
    """The engine that answers speaks another API version than this client."""


class EngineError(ComposerError):
    """The engine answered with an error: ``status`` is the HTTP status, ``message`` its words."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in ``sun_path``: the path itself when it is short enough,
    else ``/proc/self/fd/N/NAME`` through an O_PATH descriptor of its directory (deep state
    roots, as test directories are, would otherwise make the socket unreachable)."""
    text = os.fspath(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        alias = f"/proc/self/fd/{fd}/{path.name}"
        if len(os.fsencode(alias)) > _SUN_PATH_MAX:
            raise ComposerError(f"the socket name {path.name!r} is too long")
        yield alias
    finally:
        os.close(fd)


def send_fds(sock: socket.socket, fds: Sequence[int]) -> None:
    """Send ``fds`` on an upgraded connection (the engine takes them with ``receive_fds``)."""
    socket.send_fds(sock, [b"\0"], list(fds))


def _open_socket(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        with unix_address(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None) -> None:
        super().__init__("engine", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = _open_socket(self._path, self.timeout)


class ResponseStream:
    """The items of a streamed answer, as they arrive; closing it closes the connection."""

    def __init__(self, client: EngineClient, conn: _UnixConnection,
                 response: http.client.HTTPResponse) -> None:
        self._client = client
        self._conn = conn
        self._response = response
        self._closed = False

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        try:
            line = self._response.readline()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise self._client._lost(exc) from None
        if not line:
            self.close()
            raise StopIteration
        try:
            return self._client._item(line)
        except ComposerError:
            self.close()
            raise

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()
            self._conn.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


class EngineClient:
    """Requests to the engine at ``socket_path``; a new connection for each request."""

    def __init__(self, socket_path: Path, *, timeout: float | None = 30,
                 log_path: Path | None = None) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self.log_path = log_path  # named in internal errors, where their traceback is

    def request(self, method: str, path: str, body: Any = None, *,
                params: Mapping[str, Any] | None = None) -> Any:
        """Send a request and return the decoded JSON answer; :class:`EngineError` when the
        engine says no."""
        conn, response = self._send(method, path, body, params)
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise self._lost(exc) from None
        finally:
            conn.close()
        if not 200 <= response.status < 300:
            raise self._error(response.status, _decode(data))
        if response.getheader("Content-Type") == "application/x-ndjson":
            items = [self._item(line) for line in data.splitlines() if line.strip()]
            return items  # a streamed answer asked for whole: all its items
        return self._json(data) if data else None

    def version(self) -> dict[str, Any]:
        info = self.request("GET", "/v1/version")
        if not isinstance(info, dict):
            raise EngineError(502, f"{self.socket_path} answers, but not like a composer engine")
        return info

    def stream(self, method: str, path: str, body: Any = None, *,
               params: Mapping[str, Any] | None = None) -> ResponseStream:
        """Send a request whose answer is streamed; errors before the stream are raised here."""
        conn, response = self._send(method, path, body, params)
        if not 200 <= response.status < 300:
            try:
                raise self._error(response.status, _decode(response.read()))
            finally:
                conn.close()
        if conn.sock is not None:
            conn.sock.settimeout(None)  # a followed log may say nothing for hours
        return ResponseStream(self, conn, response)

    def hijack(self, method: str, path: str, body: Any = None, *,
               params: Mapping[str, Any] | None = None) -> socket.socket:
        """Send a request that upgrades the connection; return the raw socket after ``101``."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = (f"{method} {_target(path, params)} HTTP/1.1\r\nHost: engine\r\n"
                f"Connection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
        try:
            sock = _open_socket(self.socket_path, self.timeout)
        except OSError as exc:
            raise self._unavailable(exc) from None
        try:
            sock.sendall(head.encode() + payload)
            status, headers = _read_head(sock)
            if status == 101:
                sock.settimeout(None)
                return sock
            length = int(headers.get("content-length", "0"))
            data = b""
            while len(data) < length:
                chunk = sock.recv(length - len(data))
                if not chunk:
                    break
                data += chunk
        except (OSError, ValueError) as exc:
            sock.close()
            raise self._lost(exc) from None
        sock.close()
        raise self._error(status, _decode(data))

    def _send(self, method: str, path: str, body: Any,
              params: Mapping[str, Any] | None
              ) -> tuple[_UnixConnection, http.client.HTTPResponse]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        headers = {}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise self._unavailable(exc) from None
        try:
            conn.request(method, _target(path, params), body=payload, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise self._lost(exc) from None

    def _json(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError:
            raise EngineError(502, f"the engine at {self.socket_path} answered something that "
                              f"is not JSON: {data[:200]!r}") from None

    def _item(self, line: bytes) -> Any:
        item = self._json(line)
        if isinstance(item, dict) and list(item) == [STREAM_ERROR_KEY]:
            error = item[STREAM_ERROR_KEY]
            raise self._error(int(error.get("status", 500)), error)
        return item

    def _unavailable(self, exc: OSError) -> ComposerError:
        if isinstance(exc, PermissionError):
            return EngineUnavailable(f"permission denied on the engine's socket "
                                     f"{self.socket_path}: it is root-only; run composer as root")
        if isinstance(exc, TimeoutError):
            return EngineUnavailable(f"the engine at {self.socket_path} did not accept the "
                                     f"connection within {self.timeout} s")
        return EngineUnavailable(f"no engine answers at {self.socket_path} "
                                 f"({exc.strerror or exc})")

    def _lost(self, exc: BaseException) -> ComposerError:
        if isinstance(exc, TimeoutError):
            return EngineUnavailable(f"the engine at {self.socket_path} did not answer within "
                                     f"{self.timeout} s{self._log_hint()}")
        return EngineUnavailable(f"lost the connection to the engine at {self.socket_path} "
                                 f"({type(exc).__name__}: {exc}){self._log_hint()}")

    def _error(self, status: int, answer: Any) -> EngineError:
        kind = None
        if isinstance(answer, dict):
            message = str(answer.get("message", answer))
            kind = answer.get("kind")
        else:
            message = str(answer) or f"HTTP status {status}"
        if status >= 500:
            message += self._log_hint()
        return EngineError(status, message, kind)

    def _log_hint(self) -> str:
        return f" (see the engine log {self.log_path})" if self.log_path else ""


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    if not params:
        return path
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is None:
                continue
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            pairs.append((key, text))
    return f"{path}?{urllib.parse.urlencode(pairs)}" if pairs else path


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace").strip()


def _read_head(sock: socket.socket) -> tuple[int, dict[str, str]]:
    # Byte by byte: whatever follows the head belongs to the upgraded stream, not to a buffer.
    data = bytearray()
    while not data.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise ConnectionError("the engine closed the connection before answering")
        data += byte
        if len(data) > _HEAD_MAX:
            raise ValueError("the engine's answer has an oversized head")
    lines = data.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def connect(root: Path, run_root: Path, *, start: bool = True,
            timeout: float | None = None) -> EngineClient:
    """The CLI's way to the engine of the state root ``root``: started on demand when none
    answers (and ``start``), and checked to speak this client's API version.

    The client's requests wait ``timeout`` seconds (default: as long as they take, since
    ``wait`` or ``stop`` may take minutes); the version check here is bounded regardless."""
    from composer.engine import daemon

    ctx = daemon.paths(root, run_root)
    probe = EngineClient(ctx.socket_path, timeout=10, log_path=ctx.log_path)
    try:
        info = probe.version()
    except EngineUnavailable:
        if not start:
            raise
        daemon.start(ctx)
        info = probe.version()
    if info.get("api") != API_VERSION:
        from composer.__about__ import __version__

        where = daemon.root_flag(ctx)
        raise EngineVersionError(
            f"the running engine (pid {info.get('pid')}, composer {info.get('version')}) "
            f"speaks API {info.get('api')}, this composer {__version__} speaks API "
            f"{API_VERSION}: it was started before an upgrade; stop it with "
            f"'composer{where} engine stop' (containers keep running) and try again")
    return EngineClient(ctx.socket_path, timeout=timeout, log_path=ctx.log_path)
