"""The engine's API server: HTTP/1.1 + JSON over a Unix socket, one thread per connection.

Handlers are plain functions of a :class:`Request`. They return a JSON-able value (200), a
:class:`Stream` (ndjson, each item sent as it is produced) or a :class:`Hijack` (the raw socket
after a ``101``). They fail by raising :class:`ApiError` (its status), any ``ComposerError``
(400, its message) or anything else (500, the traceback goes to the engine log). The wire
protocol is described in ``client``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import select
import selectors
import socket
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from composer.__about__ import __version__
from composer.engine.client import API_VERSION, STREAM_ERROR_KEY, UPGRADE_PROTOCOL, unix_address
from composer.errors import ComposerError

log = logging.getLogger("composer.engine")

MAX_BODY = 64 << 20
_TRUE, _FALSE = ("", "1", "true", "yes", "on"), ("0", "false", "no", "off")


class ApiError(Exception):
    """An answer other than success: rendered as ``{"message": ...}`` with ``status``."""

    def __init__(self, status: int, message: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of the socket (SO_PEERCRED)."""
    pid: int
    uid: int
    gid: int


@dataclass(eq=False)
class Request:
    method: str
    path: str
    params: dict[str, str | list[str]]
    body: Any
    headers: dict[str, str]  # names in lower case
    path_args: dict[str, str] = field(default_factory=dict)
    peer: Peer | None = None
    # Set when the client goes away or the engine shuts down: long waits in handlers (a
    # followed log, events) wait on it and end.
    cancelled: threading.Event = field(default_factory=threading.Event)
    _sock: socket.socket | None = field(default=None, repr=False)
    _upgraded: bool = field(default=False, repr=False)

    def param(self, name: str, default: str | None = None) -> str | None:
        """The query parameter ``name`` (its last value when repeated)."""
        value = self.params.get(name)
        if value is None:
            return default
        return value[-1] if isinstance(value, list) else value

    def flag(self, name: str, default: bool = False) -> bool:
        """A boolean query parameter: ``?follow``, ``?follow=1``, ``?follow=false``..."""
        value = self.param(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ApiError(400, f"query parameter {name!r} must be true or false, not {value!r}")

    def receive_fds(self, maxfds: int) -> list[int]:
        """File descriptors the client sent (``client.send_fds``) on the upgraded connection;
        call it from the :class:`Hijack` callback. They are close-on-exec and the caller's."""
        if self._sock is None or not self._upgraded:
            raise RuntimeError("receive_fds works on an upgraded connection, in the Hijack "
                               "callback")
        message, fds, flags, _ = socket.recv_fds(self._sock, 1, maxfds,
                                                 socket.MSG_CMSG_CLOEXEC)
        if flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            raise ConnectionError(f"the client sent more than {maxfds} file descriptors")
        if not message:
            raise ConnectionError("the client closed the connection before sending its fds")
        return fds


@dataclass(frozen=True)
class Stream:
    """An ndjson answer: each item is sent and flushed as ``items`` produces it."""

    items: Iterable[Any]


@dataclass(frozen=True)
class Hijack:
    """An upgraded answer: after ``101`` the raw socket is the callback's until it returns."""

    callback: Callable[[socket.socket], None]


Handler = Callable[[Request], Any]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: str
    regex: re.Pattern[str]
    handler: Handler


_ARG = re.compile(r"\{(\w+)(:path)?\}")


class Router:
    """Routes by method and path pattern: ``{name}`` is one path segment, ``{name:path}`` the
    rest of the path (image names have slashes). The first added match wins."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if not re.match(r"/v\d+/", pattern):
            raise ValueError(f"API routes are versioned (/v1/...): {pattern!r}")
        method = method.upper()
        if any(r.method == method and r.pattern == pattern for r in self._routes):
            raise ValueError(f"route {method} {pattern} is already defined")
        regex, end = "", 0
        for match in _ARG.finditer(pattern):
            regex += re.escape(pattern[end:match.start()])
            regex += f"(?P<{match[1]}>{'.+' if match[2] else '[^/]+'})"
            end = match.end()
        regex += re.escape(pattern[end:])
        self._routes.append(_Route(method, pattern, re.compile(regex), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler
        return decorate

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path arguments for a request; :class:`ApiError` 404 or 405."""
        allowed: set[str] = set()
        for route in self._routes:
            found = route.regex.fullmatch(path)
            if found is None:
                continue
            if route.method == method:
                return route.handler, {k: unquote(v) for k, v in found.groupdict().items()}
            allowed.add(route.method)
        if allowed:
            methods = ", ".join(sorted(allowed))
            raise ApiError(405, f"{method} is not allowed on {path} (allowed: {methods})",
                           headers={"Allow": methods})
        raise ApiError(404, f"no such API route: {method} {path}")


class EngineServer:
    """Serves ``router`` on a Unix socket created at ``socket_path`` with ``mode``.

    :meth:`shutdown` may be called from any thread or a signal handler; ``serve_forever``
    then stops accepting, cancels the requests in flight and gives them ``grace`` seconds.
    """

    def __init__(self, socket_path: Path, router: Router, *, mode: int = 0o600,
                 grace: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.router = router
        self.grace = grace
        self.started = time.time()
        self._builtin = Router()
        self._builtin.add("GET", "/v1/version", self._version)
        self._stopping = threading.Event()
        # Open for the object's whole life: shutdown() may write to it from a signal handler.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        weakref.finalize(self, _close_all, self._wake_r, self._wake_w)
        self._lock = threading.Condition()
        self._active: set[Request] = set()
        self._connections: set[socket.socket] = set()
        self._listener: socket.socket | None = self._bind(mode)

    def _bind(self, mode: int) -> socket.socket:
        parent = self.socket_path.parent
        parent.mkdir(parents=True, exist_ok=True)
        # Bound in a private directory, given its mode, then linked into place: the socket is
        # never reachable with the umask's permissions, and an existing one is never replaced.
        private = Path(tempfile.mkdtemp(prefix=".engine-", dir=parent))
        temporary = private / "s"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with unix_address(temporary) as address:
                sock.bind(address)
            os.chmod(temporary, mode)
            try:
                os.link(temporary, self.socket_path)
            except FileExistsError:
                raise ComposerError(f"{self.socket_path} exists: another engine may be using "
                                    "it") from None
            sock.listen(128)
            sock.setblocking(False)
            self._inode = os.stat(self.socket_path).st_ino
        except BaseException:
            sock.close()
            raise
        finally:
            temporary.unlink(missing_ok=True)
            private.rmdir()
        return sock

    def _version(self, request: Request) -> dict[str, Any]:
        return {"api": API_VERSION, "version": __version__, "pid": os.getpid(),
                "started": self.started}

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        try:
            return self._builtin.match(method, path)
        except ApiError as exc:
            if exc.status != 404:
                raise
        return self.router.match(method, path)

    def serve_forever(self) -> None:
        listener = self._listener
        if listener is None:
            raise RuntimeError("the server is closed")
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is listener and not self._stopping.is_set():
                        self._accept(listener)
                    elif key.fileobj == self._wake_r:  # shutdown(), or a signal's wakeup byte
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
        self.close()
        self._drain()

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EMFILE and friends: say so, and let the backlog wait
            log.error("accepting a connection failed: %s", exc)
            time.sleep(0.1)
            return
        conn.setblocking(True)
        with self._lock:
            self._connections.add(conn)
        threading.Thread(target=self._serve, args=(conn,), name="engine-connection",
                         daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            _Handler(conn, Peer(pid, uid, gid), self)
        except OSError:
            pass  # the client went away; nothing to answer
        except Exception:
            log.exception("serving a connection failed")
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def begin(self, request: Request) -> None:
        with self._lock:
            self._active.add(request)
            if self._stopping.is_set():
                request.cancelled.set()

    def end(self, request: Request) -> None:
        with self._lock:
            self._active.discard(request)
            self._lock.notify_all()

    def shutdown(self) -> None:
        """Stop serving; safe from a signal handler (sets a flag, writes a byte)."""
        self._stopping.set()
        with contextlib.suppress(BlockingIOError):  # the pipe is full: it is awake already
            os.write(self._wake_w, b"\0")

    @property
    def wakeup_fd(self) -> int:
        """For ``signal.set_wakeup_fd``: a signal the kernel hands to another thread then
        still wakes ``serve_forever``, so its Python handler runs at once."""
        return self._wake_w

    def _drain(self) -> None:
        deadline = time.monotonic() + self.grace
        with self._lock:
            for request in self._active:
                request.cancelled.set()
            while self._active and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            if self._active:
                log.warning("%d requests still running after %.1f s: ending their "
                            "connections", len(self._active), self.grace)
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Stop listening and remove the socket (if it is still ours); idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        try:
            if os.stat(self.socket_path).st_ino == self._inode:
                self.socket_path.unlink()
        except FileNotFoundError:
            pass


def _close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, default=_default, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _failure(exc: BaseException, request: Request) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ApiError):
        return exc.status, {"message": exc.message}
    if isinstance(exc, ComposerError):
        return 400, {"message": str(exc), "kind": type(exc).__name__}
    log.error("%s %s failed", request.method, request.path, exc_info=exc)
    text = f"{type(exc).__name__}: {exc}"
    text = text if len(text) <= 300 else text[:297] + "..."
    return 500, {"message": f"internal engine error ({text})"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"composer-engine/{__version__}"
    sys_version = ""

    def __init__(self, conn: socket.socket, peer: Peer, engine: EngineServer) -> None:
        self.engine = engine
        self.peer = peer
        super().__init__(conn, (f"pid {peer.pid}", 0), None)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("[%s] %s", self.client_address[0], format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.info("[%s] %s", self.client_address[0], format % args)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        # Malformed requests, unknown methods: JSON like every other answer.
        self.close_connection = True
        self._reply(code, _dumps({"message": message or HTTPStatus(code).phrase}))

    def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        try:
            request = self._read_request()
            handler, request.path_args = self.engine.resolve(request.method, request.path)
        except ApiError as exc:
            self._reply(exc.status, _dumps({"message": exc.message}), exc.headers)
            return
        self.engine.begin(request)
        try:
            try:
                result = handler(request)
                data = None if isinstance(result, Stream | Hijack) else _dumps(result)
            except Exception as exc:
                status, answer = _failure(exc, request)
                self._reply(status, _dumps(answer))
                return
            if isinstance(result, Stream):
                self._stream(request, result)
            elif isinstance(result, Hijack):
                self._hijack(request, result)
            else:
                assert data is not None
                self._reply(200, data)
        finally:
            self.engine.end(request)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch

    def _read_request(self) -> Request:
        split = urlsplit(self.path)
        headers = {name.lower(): value for name, value in self.headers.items()}
        # A body we do not read leaves the connection in an unknown state: close it after.
        keep, self.close_connection = self.close_connection, True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise ApiError(411, "send the request body with a Content-Length")
        length = headers.get("content-length", "0")
        if not length.isdigit():
            raise ApiError(400, f"the Content-Length is not a number: {length!r}")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes")
        raw = self.rfile.read(int(length)) if int(length) else b""
        if len(raw) < int(length):
            raise ApiError(400, "the request body ended early")
        self.close_connection = keep
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ApiError(400, f"the request body is not JSON: {exc}") from None
        params: dict[str, str | list[str]] = {
            key: values[0] if len(values) == 1 else values
            for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        return Request(method=self.command, path=split.path, params=params, body=body,
                       headers=headers, peer=self.peer, _sock=self.connection)

    def _stream(self, request: Request, stream: Stream) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        items = iter(stream.items)
        gone = threading.Event()
        stop_watching = _watch_hangup(self.connection, gone, request.cancelled)
        try:
            self.end_headers()
            while not gone.is_set():
                try:
                    item = next(items)
                    line = _dumps(item) + b"\n"
                except StopIteration:
                    break
                except Exception as exc:  # after the head: the error is the last line
                    status, answer = _failure(exc, request)
                    line = _dumps({STREAM_ERROR_KEY: {"status": status, **answer}}) + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    break
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            if not gone.is_set():
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            gone.set()
        finally:
            stop_watching()
            close = getattr(items, "close", None)
            if close is not None:
                close()  # GeneratorExit at its yield: its finally blocks run now
        if gone.is_set():
            log.debug("%s %s: the client went away during the stream", request.method,
                      request.path)

    def _hijack(self, request: Request, hijack: Hijack) -> None:
        self.close_connection = True
        if "upgrade" not in self.headers.get("Connection", "").lower():
            self._reply(400, _dumps({"message": f"{request.method} {request.path} upgrades "
                                     "the connection: send Connection: Upgrade"}))
            return
        self.send_response(101)
        self.send_header("Connection", "Upgrade")
        self.send_header("Upgrade", UPGRADE_PROTOCOL)
        self.end_headers()
        request._upgraded = True
        self.connection.settimeout(None)
        try:
            hijack.callback(self.connection)
        except OSError as exc:
            log.info("%s %s: the upgraded connection ended: %s", request.method, request.path,
                     exc)
        except Exception:
            log.exception("%s %s: the upgraded connection's handler failed", request.method,
                          request.path)


def _watch_hangup(conn: socket.socket, gone: threading.Event,
                  cancelled: threading.Event) -> Callable[[], None]:
    """Notice a client that closes its end while a stream waits for its next item, so that
    handlers waiting on ``request.cancelled`` end without having to write first. Returns the
    function that ends the watch."""
    wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLRDHUP)  # not POLLIN: more bytes must not wake it
    poller.register(wake, select.POLLIN)

    def watch() -> None:
        if any(fd != wake for fd, _ in poller.poll()):
            gone.set()
            cancelled.set()

    thread = threading.Thread(target=watch, name="engine-stream-watch", daemon=True)
    thread.start()

    def stop() -> None:
        os.eventfd_write(wake, 1)
        thread.join()
        os.close(wake)
    return stop
