"""The resolver's sockets: answering container names, forwarding the rest.

One selector loop in the main thread receives UDP queries, accepts TCP connections and reads
signals (through a wakeup pipe, so a reload never runs in the middle of an answer). Local names
are answered inline (a dictionary lookup); a query that must be forwarded gets a thread of its
own, so that a slow upstream delays only its own client; each TCP connection gets a thread too.
Both kinds of thread are bounded: past the bound a query is dropped and the client retries,
which is what a loaded DNS server does.

The config is an immutable :class:`~composer.dns.records.Config` swapped whole on reload, so
threads read it without a lock.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import selectors
import signal
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dnslib  # type: ignore[import-untyped]

from composer.dns.records import (
    Config,
    ConfigError,
    RoundRobin,
    Server,
    address_from_reverse_name,
    all_names,
    lookup,
    nameservers,
    parse_config,
    reverse_lookup,
)
from composer.sidecar import serial_of, write_status

log = logging.getLogger("composer.dns")

UPSTREAM_TIMEOUT = 2.0  # seconds per upstream server, as glibc's default
TCP_IDLE_TIMEOUT = 10.0  # a TCP client that sends nothing for this long is dropped
MAX_FORWARDS = 128  # concurrent forwarded queries (each one a thread)
MAX_TCP_CONNECTIONS = 64
RESOLV_CONF = Path("/etc/resolv.conf")
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Python 3.11 lacks the name; Linux's value
_IPV6_FREEBIND = 78
_OPT = 41  # the EDNS pseudo-record type
_MIN_UDP = 512


@dataclass(frozen=True)
class Loaded:
    """A config in force and the upstream servers it resolved to at load time."""

    config: Config
    upstream: tuple[Server, ...]


def load(path: Path, resolv_conf: Path = RESOLV_CONF) -> Loaded:
    """Read and check the config; without ``upstream``, the host's resolv.conf is read now,
    so that a host whose resolvers changed is followed at the next reload."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    config = parse_config(data)
    if config.upstream is not None:
        return Loaded(config, config.upstream)
    try:
        text = resolv_conf.read_text()
    except OSError:
        text = ""  # glibc's default then: 127.0.0.1
    return Loaded(config, tuple(nameservers(text)))


@dataclass
class Listener:
    gateway: str
    port: int
    udp: socket.socket
    tcp: socket.socket

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


def bind(gateway: str, port: int) -> Listener:
    """UDP and TCP sockets on ``gateway:port``. FREEBIND lets the bind succeed before the
    bridge has its address (the engine may write the config first); REUSEADDR lets a
    restarted resolver bind while old TCP connections linger in TIME_WAIT."""
    family = socket.AF_INET6 if ipaddress.ip_address(gateway).version == 6 else socket.AF_INET
    made: list[socket.socket] = []
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = socket.socket(family, kind)
            made.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.SOL_IP, _IP_FREEBIND, 1)
            sock.bind((gateway, port))
            sock.setblocking(False)
        made[0].listen(64)
    except OSError:
        for sock in made:
            sock.close()
        raise
    return Listener(gateway, port, udp=made[1], tcp=made[0])


class Answerer:
    """Builds the answer to one query: local names, or forwarding."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded
        self.round_robin = RoundRobin()
        self.own: frozenset[tuple[str, int]] = frozenset()  # never forward to ourselves

    def answer(self, data: bytes, client: str, gateway: str, *, tcp: bool) -> bytes | None:
        """The reply to send, or None to send nothing (not a query, or malformed)."""
        try:
            request = dnslib.DNSRecord.parse(data)
        except Exception as e:  # dnslib raises several kinds on garbage
            log.info("dropping a malformed query from %s: %s", client, e)
            return None
        if request.header.qr:
            return None  # a response sent to us: answering it could loop
        loaded = self.loaded  # one snapshot for the whole query
        local = self._local(request, loaded.config, client, gateway)
        if local is not None:
            return _fit(local, request, tcp=tcp)
        servers = self._servers(loaded, client)
        reply = forward(data, servers)
        if reply is not None:
            return reply
        log.warning("no upstream answered %s %s for %s (tried %s)", _qname(request),
                    _qtype(request), client, ", ".join(map(str, servers)) or "none")
        failure = request.reply()
        failure.header.rcode = dnslib.RCODE.SERVFAIL
        return bytes(failure.pack())

    def local(self, data: bytes, client: str, gateway: str, *, tcp: bool) -> bytes | None:
        """The reply if this query is answered from the records alone, else None (forward it
        or drop it: :meth:`answer` decides, off the receiving thread)."""
        try:
            request = dnslib.DNSRecord.parse(data)
        except Exception:
            return None
        if request.header.qr:
            return None
        reply = self._local(request, self.loaded.config, client, gateway)
        return _fit(reply, request, tcp=tcp) if reply is not None else None

    def _local(self, request: Any, config: Config, client: str, gateway: str) -> Any:
        if request.header.opcode != dnslib.OPCODE.QUERY or len(request.questions) != 1:
            return None
        question = request.questions[0]
        name = str(question.qname)
        qtype = question.qtype
        if qtype == dnslib.QTYPE.PTR:
            address = address_from_reverse_name(name)
            target = reverse_lookup(config, client, gateway, address) if address else None
            if target is None:
                return None
            reply = request.reply()
            reply.add_answer(dnslib.RR(question.qname, dnslib.QTYPE.PTR,
                                       rdata=dnslib.PTR(target + "."), ttl=0))
            return reply
        addresses = lookup(config, client, gateway, name)
        if addresses is None:
            return None
        reply = request.reply()  # NOERROR; an empty answer for other types stops forwarding
        version = {dnslib.QTYPE.A: 4, dnslib.QTYPE.AAAA: 6}.get(qtype)
        if version is not None:
            family = [a for a in addresses if ipaddress.ip_address(a).version == version]
            rdata = dnslib.A if version == 4 else dnslib.AAAA
            # TTL 0: the records follow containers as they come and go.
            ordered = self.round_robin.order(name, family) if family else []
            for address in ordered:
                reply.add_answer(dnslib.RR(question.qname, qtype, rdata=rdata(address), ttl=0))
        return reply

    def _servers(self, loaded: Loaded, client: str) -> tuple[Server, ...]:
        known = loaded.config.clients.get(client)
        servers = known.dns if known is not None and known.dns else loaded.upstream
        return tuple(s for s in servers if (s.host, s.port) not in self.own)


def _fit(reply: Any, request: Any, *, tcp: bool) -> bytes:
    """Pack ``reply``; over UDP, one bigger than the client takes (512 bytes, or its EDNS
    size) goes with TC set and no answers, so that it asks again over TCP."""
    data = bytes(reply.pack())
    if tcp:
        return data
    limit = _MIN_UDP
    for extra in request.ar:
        if extra.rtype == _OPT:
            limit = max(_MIN_UDP, int(extra.rclass))
    if len(data) <= limit:
        return data
    reply.rr = []
    reply.header.tc = 1
    return bytes(reply.pack())


def _qname(request: Any) -> str:
    return str(request.questions[0].qname) if request.questions else "?"


def _qtype(request: Any) -> str:
    return str(dnslib.QTYPE.get(request.questions[0].qtype)) if request.questions else "?"


def forward(query: bytes, servers: Sequence[Server],
            timeout: float = UPSTREAM_TIMEOUT) -> bytes | None:
    """The first answer to ``query`` (sent unchanged) from ``servers`` in turn: UDP, the next
    server on a timeout or refusal, and the same server over TCP when its answer is truncated
    (its truncated answer is relayed if TCP fails: the client may retry over TCP itself)."""
    for server in servers:
        try:
            reply = _exchange_udp(query, server, timeout)
        except OSError as e:
            log.info("upstream %s: %s", server, e or "timed out")
            continue
        if len(reply) > 2 and reply[2] & 0x02:  # TC
            try:
                return _exchange_tcp(query, server, timeout)
            except OSError as e:
                log.info("upstream %s over TCP: %s", server, e or "timed out")
        return reply
    return None


def _family(server: Server) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in server.host else socket.AF_INET


def _exchange_udp(query: bytes, server: Server, timeout: float) -> bytes:
    with socket.socket(_family(server), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        # Connected, so that only that server's datagrams arrive and a closed port fails fast.
        sock.connect((server.host, server.port))
        sock.send(query)
        while True:  # a stray datagram with another id is not our answer
            reply = sock.recv(65535)
            if reply[:2] == query[:2]:
                return reply


def _exchange_tcp(query: bytes, server: Server, timeout: float) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!H", len(query)) + query)
        (length,) = struct.unpack("!H", _read_exact(sock, 2))
        return _read_exact(sock, length)


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "connection closed mid-message")
        chunks += chunk
    return bytes(chunks)


class Resolver:
    """The process's state: the config in force, the sockets, and the loop."""

    def __init__(self, config_path: Path, *, status_path: Path | None = None) -> None:
        self.config_path = config_path
        self.status_path = status_path
        self.answerer: Answerer | None = None
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.selector = selectors.DefaultSelector()
        self.loads = 0
        self.serial: int | None = None  # of the config in force
        self.forwards = threading.BoundedSemaphore(MAX_FORWARDS)
        self.connections = threading.BoundedSemaphore(MAX_TCP_CONNECTIONS)
        self._stopping = False
        self._wakeup_r, self._wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # --- signals, before anything can send one ---------------------------------------------

    def install_signals(self) -> None:
        """SIGHUP reloads, SIGTERM/SIGINT stop; each arrives as a byte on the wakeup pipe and
        is handled by the loop between answers."""
        signal.set_wakeup_fd(self._wakeup_w)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _note_signal)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, self._on_signal)

    def _on_signal(self) -> None:
        try:
            received = os.read(self._wakeup_r, 64)
        except BlockingIOError:
            return
        if signal.SIGTERM in received or signal.SIGINT in received:
            self._stopping = True
        elif signal.SIGHUP in received:
            self.reload()

    # --- config and sockets ----------------------------------------------------------------

    def start(self) -> None:
        """Load the config and bind every gateway; any failure here is fatal (whoever starts
        the resolver sees it die and reads why)."""
        loaded = load(self.config_path)
        self.answerer = Answerer(loaded)
        self.loads += 1
        self.serial = loaded.config.serial
        failures = self._sync_listeners(loaded.config)
        if failures:
            raise OSError(failures[0])
        self._write_status(self.serial, None)

    def reload(self) -> None:
        """Load the config again; a broken file keeps the old config (and says why), and a
        gateway that cannot be bound is retried at the next reload."""
        self.loads += 1
        attempted = serial_of(self.config_path)
        try:
            loaded = load(self.config_path)
        except ConfigError as e:
            log.warning("reload failed, keeping the previous config: %s", e)
            self._write_status(attempted, str(e))
            return
        assert self.answerer is not None
        self.answerer.loaded = loaded
        self.serial = loaded.config.serial
        self.answerer.round_robin.forget_except(all_names(loaded.config))
        failures = self._sync_listeners(loaded.config)
        for failure in failures:
            log.warning("%s", failure)
        log.info("reloaded %s: %d networks, %d clients", self.config_path,
                 len(loaded.config.networks), len(loaded.config.clients))
        self._write_status(loaded.config.serial, "; ".join(failures) or None)

    def _sync_listeners(self, config: Config) -> list[str]:
        wanted = {(gateway, config.port) for gateway in config.gateways()}
        for key in [k for k in self.listeners if k not in wanted]:
            listener = self.listeners.pop(key)
            self.selector.unregister(listener.udp)
            self.selector.unregister(listener.tcp)
            listener.close()  # threads still answering on it get an error, and drop it
        failures = []
        for gateway, port in sorted(wanted - set(self.listeners)):
            try:
                listener = bind(gateway, port)
            except OSError as e:
                failures.append(f"cannot listen on {gateway} port {port}: {e.strerror or e}")
                continue
            self.listeners[(gateway, port)] = listener
            self.selector.register(listener.udp, selectors.EVENT_READ,
                                   lambda ln=listener: self._on_udp(ln))
            self.selector.register(listener.tcp, selectors.EVENT_READ,
                                   lambda ln=listener: self._on_accept(ln))
        assert self.answerer is not None
        self.answerer.own = frozenset(self.listeners)
        return failures

    def _write_status(self, attempted: int | None, error: str | None) -> None:
        write_status(self.status_path, loads=self.loads, serial=self.serial,
                     attempted=attempted, error=error)

    # --- serving ---------------------------------------------------------------------------

    def serve(self) -> None:
        while not self._stopping:
            for key, _ in self.selector.select():
                callback: Callable[[], None] = key.data
                callback()
                if self._stopping:
                    break
        for listener in self.listeners.values():
            listener.close()
        self.listeners.clear()

    def _on_udp(self, listener: Listener) -> None:
        assert self.answerer is not None
        for _ in range(64):  # drain a burst, but let the other sockets have their turn
            try:
                data, peer = listener.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP error from an earlier reply
                log.info("receiving on %s: %s", listener.gateway, e)
                return
            client = _client_address(peer)
            reply = self.answerer.local(data, client, listener.gateway, tcp=False)
            if reply is not None:
                _send_to(listener.udp, reply, peer)
            elif self.forwards.acquire(blocking=False):
                threading.Thread(target=self._forward_udp, daemon=True,
                                 args=(listener, data, peer, client)).start()
            else:
                log.warning("too many queries in flight: dropping one from %s", client)

    def _forward_udp(self, listener: Listener, data: bytes, peer: Any, client: str) -> None:
        try:
            assert self.answerer is not None
            reply = self.answerer.answer(data, client, listener.gateway, tcp=False)
            if reply is not None:
                _send_to(listener.udp, reply, peer)
        except Exception:
            log.exception("answering %s", client)
        finally:
            self.forwards.release()

    def _on_accept(self, listener: Listener) -> None:
        try:
            connection, peer = listener.tcp.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            log.info("accepting on %s: %s", listener.gateway, e)
            return
        if not self.connections.acquire(blocking=False):
            log.warning("too many TCP connections: refusing one from %s", peer[0])
            connection.close()
            return
        threading.Thread(target=self._serve_tcp, daemon=True,
                         args=(listener.gateway, connection, _client_address(peer))).start()

    def _serve_tcp(self, gateway: str, connection: socket.socket, client: str) -> None:
        """Length-prefixed queries, one after another, until the client closes or idles."""
        try:
            with connection:
                connection.setblocking(True)
                connection.settimeout(TCP_IDLE_TIMEOUT)
                while True:
                    try:
                        head = connection.recv(2)
                        if not head:
                            return
                        if len(head) == 1:
                            head += _read_exact(connection, 1)
                        (length,) = struct.unpack("!H", head)
                        data = _read_exact(connection, length)
                    except OSError:
                        return  # closed, reset or idle: nothing more to answer
                    assert self.answerer is not None
                    reply = self.answerer.answer(data, client, gateway, tcp=True)
                    if reply is None:
                        return
                    connection.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError as e:
            log.info("TCP client %s: %s", client, e)
        except Exception:
            log.exception("answering %s over TCP", client)
        finally:
            self.connections.release()


def _note_signal(signum: int, frame: object) -> None:
    """Nothing: the C-level handler already wrote the signal to the wakeup pipe."""


def _client_address(peer: Any) -> str:
    # IPv6 peers carry a scope (fe80::1%eth0); records hold plain addresses.
    return str(peer[0]).partition("%")[0]


def _send_to(sock: socket.socket, data: bytes, peer: Any) -> None:
    try:
        sock.sendto(data, peer)
    except OSError as e:  # closed by a reload, or the client went away: nothing to do
        log.info("replying to %s: %s", peer[0], e)
