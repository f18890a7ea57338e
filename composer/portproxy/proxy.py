"""The port proxy's sockets: IPv6 listeners relaying to containers' IPv4 addresses.

One asyncio loop in one thread. A TCP connection is two pumps, one per direction, each moving
bytes with splice(2) through a pipe of its own: the data never enters Python (the kernel hands
pages from one socket to the other), which is what makes a single thread fast enough. When one
side ends its stream the pump passes the end on (``shutdown(SHUT_WR)``) and the other direction
goes on; the connection closes once both have ended, or at once if either fails (then with a
reset, as the failure was). A UDP listener keeps a session per client: a socket connected to
the target, whose replies go back to that client from the listener's own address, closed after
``udp_timeout`` seconds without traffic either way.

Every descriptor is watched with ``add_reader``/``add_writer`` and unwatched before it is
closed, in the same turn of the loop (see :func:`_ready`). asyncio's ``sock_*`` helpers unwatch
a cancelled socket only on a later turn, by which time a new socket may have its number (a
reload closes and binds sockets in one go).

The config is swapped whole on SIGHUP: listeners of entries that went are closed with their
connections, new entries are bound, and the others are left exactly as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

from composer.portproxy.config import STEM, Config, ConfigError, ProxyEntry, parse_config
from composer.sidecar import paths, serial_of, write_status

log = logging.getLogger("composer.portproxy")

CONNECT_TIMEOUT = 30.0  # seconds to reach the target (a container that is not there yet)
BACKLOG = socket.SOMAXCONN
MAX_UDP_SESSIONS = 4096  # per listener: each one is a socket
PIPE_SIZE = 1 << 20  # bytes in flight per direction; Linux's default pipe-max-size
_BURST = 64  # datagrams or connections taken per wake-up before the others get their turn
_DATAGRAM = 65535
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
_ACCEPT_PAUSE = 0.1  # seconds without accepting after running out of file descriptors
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def load(path: Path) -> Config:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return parse_config(data)


def bind(entry: ProxyEntry) -> socket.socket:
    """The listening socket of ``entry``. IPv6 only: the IPv4 side of the same port is the
    kernel's NAT, and a dual-stack socket would take IPv4 connections that NAT should have.
    REUSEADDR lets a listener bind again while connections of the old one linger."""
    tcp = entry.protocol == "tcp"
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if tcp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((entry.listen, entry.port))
        if tcp:
            sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


# --- waiting on file descriptors -----------------------------------------------------------


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _ready(fd: int, *, write: bool = False) -> None:
    """Until ``fd`` is readable (or writable); the watch is gone when this returns or is
    cancelled, so the caller may close ``fd`` right away."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    if write:
        loop.add_writer(fd, _wake, waiter)
    else:
        loop.add_reader(fd, _wake, waiter)
    try:
        await waiter
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    err = sock.connect_ex(address)
    if err == errno.EINPROGRESS:
        await _ready(sock.fileno(), write=True)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


async def _splice(src: int, dst: int, count: int, *, wait: int, write: bool) -> int:
    """One splice(2) of up to ``count`` bytes, waiting on ``wait`` while it would block."""
    while True:
        try:
            return os.splice(src, dst, count, flags=_SPLICE_FLAGS)
        except (BlockingIOError, InterruptedError):
            await _ready(wait, write=write)


# --- TCP -----------------------------------------------------------------------------------


async def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Move ``src``'s bytes to ``dst`` until ``src`` ends its stream, then end ``dst``'s."""
    pipe_r, pipe_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            size = fcntl.fcntl(pipe_w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # beyond this user's pipe quota: the default (64 KiB) still works
            size = fcntl.fcntl(pipe_w, fcntl.F_GETPIPE_SZ)
        # The pipe is empty whenever data is taken in, so EAGAIN there means "src has none".
        while moved := await _splice(src.fileno(), pipe_w, size, wait=src.fileno(),
                                     write=False):
            while moved:
                moved -= await _splice(pipe_r, dst.fileno(), moved, wait=dst.fileno(),
                                       write=True)
        with contextlib.suppress(OSError):  # the peer may have gone meanwhile
            dst.shutdown(socket.SHUT_WR)
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


async def relay(client: socket.socket, entry: ProxyEntry, peer: str) -> None:
    """One accepted connection, to its end."""
    upstream = socket.socket(_family(entry.target), socket.SOCK_STREAM)
    with client, upstream:
        try:
            await _relay(client, upstream, entry, peer)
        except asyncio.CancelledError:
            # Its entry went at a reload, or the proxy is stopping: the streams are cut
            # short, which an orderly end would hide.
            _reset(client)
            _reset(upstream)
            raise


async def _relay(client: socket.socket, upstream: socket.socket, entry: ProxyEntry,
                 peer: str) -> None:
    client.setblocking(False)
    upstream.setblocking(False)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await _connect(upstream, (entry.target, entry.target_port))
    except (OSError, TimeoutError) as e:
        log.info("%s: from %s: cannot reach %s:%d: %s", entry.key, peer, entry.target,
                 entry.target_port, e.strerror or "timed out")  # TimeoutError has none
        _reset(client)  # as if refused: the client learns that nothing got through
        return
    for sock in (client, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as docker-proxy
    try:
        async with asyncio.TaskGroup() as pumps:
            pumps.create_task(_pump(client, upstream))
            pumps.create_task(_pump(upstream, client))
    except* OSError as failed:
        # One side was reset (or the like): so is the other, as it would be without us.
        log.debug("%s: connection from %s ended: %s", entry.key, peer, failed.exceptions[0])
        _reset(client)
        _reset(upstream)


def _reset(sock: socket.socket) -> None:
    """Make the coming close() send a reset rather than an orderly end."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")


class TcpListener:
    def __init__(self, entry: ProxyEntry, sock: socket.socket) -> None:
        self.entry = entry
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.connections: set[asyncio.Task[None]] = set()
        self.loop.add_reader(sock.fileno(), self._accept)
        self._resume: asyncio.TimerHandle | None = None

    def _accept(self) -> None:
        for _ in range(_BURST):
            try:
                client, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    # Pending connections keep the socket readable: stop looking for a moment
                    # rather than spin (docker-proxy and Go's net package do the same).
                    log.warning("%s: cannot accept: %s", self.entry.key, e.strerror)
                    self.loop.remove_reader(self.sock.fileno())
                    self._resume = self.loop.call_later(
                        _ACCEPT_PAUSE, self.loop.add_reader, self.sock.fileno(), self._accept)
                else:
                    log.info("%s: accept: %s", self.entry.key, e)
                return
            task = self.loop.create_task(relay(client, self.entry, f"[{address[0]}]:{address[1]}"))
            self.connections.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.connections.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # relay() handles every socket error: this is a bug, said where it happened.
            log.error("%s: relaying failed", self.entry.key, exc_info=task.exception())

    def close(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for task in self.connections:
            task.cancel()


# --- UDP -----------------------------------------------------------------------------------


class UdpSession:
    def __init__(self, client: Any, sock: socket.socket, now: float) -> None:
        self.client = client  # the address tuple recvfrom gave: sendto takes it back
        self.sock = sock
        self.seen = now


class UdpListener:
    def __init__(self, entry: ProxyEntry, sock: socket.socket, timeout: float) -> None:
        self.entry = entry
        self.sock = sock
        self.timeout = timeout
        self.loop = asyncio.get_running_loop()
        self.sessions: dict[Any, UdpSession] = {}
        self.buffer = bytearray(_DATAGRAM)  # one loop thread: one buffer is enough
        self.loop.add_reader(sock.fileno(), self._on_datagram)
        self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def _on_datagram(self) -> None:
        view = memoryview(self.buffer)
        for _ in range(_BURST):
            try:
                size, client = self.sock.recvfrom_into(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.info("%s: receiving: %s", self.entry.key, e)
                return
            session = self.sessions.get(client) or self._open(client)
            if session is None:
                continue
            session.seen = self.loop.time()
            try:
                session.sock.send(view[:size])
            except OSError as e:  # e.g. refused: an ICMP error came back for an earlier one
                log.debug("%s: to %s:%d: %s", self.entry.key, self.entry.target,
                          self.entry.target_port, e)

    def _open(self, client: Any) -> UdpSession | None:
        if len(self.sessions) >= MAX_UDP_SESSIONS:
            log.warning("%s: %d sessions already: dropping a datagram from %s", self.entry.key,
                        len(self.sessions), client[0])
            return None
        sock = socket.socket(_family(self.entry.target), socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # Connected: only the target's datagrams arrive, and they are this client's.
            sock.connect((self.entry.target, self.entry.target_port))
        except OSError as e:
            sock.close()
            log.info("%s: cannot reach %s:%d: %s", self.entry.key, self.entry.target,
                     self.entry.target_port, e)
            return None
        session = UdpSession(client, sock, self.loop.time())
        self.sessions[client] = session
        self.loop.add_reader(sock.fileno(), self._on_reply, session)
        return session

    def _on_reply(self, session: UdpSession) -> None:
        view = memoryview(self.buffer)
        for _ in range(_BURST):
            try:
                size = session.sock.recv_into(self.buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("%s: from %s:%d: %s", self.entry.key, self.entry.target,
                          self.entry.target_port, e)
                return
            session.seen = self.loop.time()
            try:
                self.sock.sendto(view[:size], session.client)
            except OSError as e:
                log.debug("%s: replying to %s: %s", self.entry.key, session.client[0], e)

    def _sweep_every(self) -> float:
        return min(max(self.timeout / 4, 0.05), 5.0)

    def _sweep(self) -> None:
        now = self.loop.time()
        for client in [c for c, s in self.sessions.items() if now - s.seen >= self.timeout]:
            self._end(self.sessions.pop(client))
        self._sweeper = self.loop.call_later(self._sweep_every(), self._sweep)

    def _end(self, session: UdpSession) -> None:
        self.loop.remove_reader(session.sock.fileno())
        session.sock.close()

    def close(self) -> None:
        self._sweeper.cancel()
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for session in self.sessions.values():
            self._end(session)
        self.sessions.clear()


# --- the process ---------------------------------------------------------------------------


class Proxy:
    """The process's state: the config in force and its listeners."""

    def __init__(self, directory: Path) -> None:
        files = paths(directory, STEM)
        self.config_path = files.config
        self.status_path = files.status
        self.config: Config | None = None
        self.listeners: dict[ProxyEntry, TcpListener | UdpListener] = {}
        self.errors: dict[str, str] = {}  # entries in force that are not listening, by key
        self.loads = 0
        self.stopping = asyncio.Event()

    def install_signals(self) -> None:
        """SIGHUP reloads, SIGTERM/SIGINT stop; the loop runs them between two events."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)

    def start(self) -> None:
        """Load the config (an unreadable one is fatal: whoever starts the proxy sees it die
        and reads why) and bind what can be bound (what cannot is in the status)."""
        self.loads += 1
        self._apply(load(self.config_path))

    def reload(self) -> None:
        """Load the config again; a broken file keeps the old one (and says why)."""
        self.loads += 1
        try:
            config = load(self.config_path)
        except ConfigError as e:
            log.warning("reload failed, keeping the previous config: %s", e)
            self._write_status(serial_of(self.config_path), str(e))
            return
        self._apply(config)

    def _apply(self, config: Config) -> None:
        wanted = set(config.entries)
        for entry in [e for e in self.listeners if e not in wanted]:
            # Gone, or now forwarded elsewhere: its connections go too (their target has).
            self.listeners.pop(entry).close()
            log.info("closed %s", entry.key)
        self.errors = {}
        for entry in config.entries:
            listener = self.listeners.get(entry)
            if isinstance(listener, UdpListener):
                listener.timeout = config.udp_timeout
            if listener is not None:
                continue
            try:
                sock = bind(entry)
            except OSError as e:
                self.errors[entry.key] = e.strerror or str(e)
                log.warning("cannot listen on %s: %s", entry.key, self.errors[entry.key])
                continue
            self.listeners[entry] = (TcpListener(entry, sock) if entry.protocol == "tcp"
                                     else UdpListener(entry, sock, config.udp_timeout))
            log.info("forwarding %s to %s:%d", entry.key, entry.target, entry.target_port)
        self.config = config
        self._write_status(config.serial, None)

    def _write_status(self, attempted: int | None, error: str | None) -> None:
        write_status(self.status_path, loads=self.loads,
                     serial=self.config.serial if self.config else None, attempted=attempted,
                     error=error, errors=self.errors,
                     listening=sorted(e.key for e in self.listeners))

    async def serve(self) -> None:
        """Until SIGTERM; then every socket is closed before returning."""
        await self.stopping.wait()
        connections = [t for ln in self.listeners.values() if isinstance(ln, TcpListener)
                       for t in ln.connections]
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()
        await asyncio.gather(*connections, return_exceptions=True)


def raise_file_limit() -> None:
    """Each TCP connection holds six descriptors (two sockets, two pipes): the soft limit of
    1024 would stop accepting at ~170 connections."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

