"""The port proxy process, for real: started through ``PortProxy``, used over loopback sockets.

The "containers" are servers of this test on 127.0.0.1 (a TCP server whose first line says
what to do, a UDP echo that says which port each datagram came from); the proxy forwards
[::1] ports, found free at run time, to them. The ``proxies`` fixture stops every proxy a test
made and then makes sure no process of this test's directory is left (killing any survivor by
its pid, and failing the test, since that means ``stop()`` missed it).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from composer.portproxy.process import PortProxy, PortProxyError, ProxyEntry

BOUND = 5.0  # seconds: how long anything here may take before the test gives up on it


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _has_ipv6_loopback(),
                                reason="this host has no IPv6 loopback (::1) to listen on")


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET6, kind) as sock:
        sock.bind(("::1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; a bound, not a timing assertion."""
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"still waiting for {what}")


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


class TcpServer:
    """On 127.0.0.1; each connection's first line is its mode: ``echo`` sends everything back
    and ends its side when the client ends its own; ``digest`` reads to the end and only then
    answers ``SIZE SHA256``."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.served = 0  # connections accepted
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.served += 1
            thread = threading.Thread(target=self._serve, args=(connection,))
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            connection.settimeout(BOUND)
            mode = b""
            while not mode.endswith(b"\n"):
                mode += connection.recv(1)
            if mode == b"echo\n":
                while chunk := connection.recv(1 << 20):
                    connection.sendall(chunk)
                connection.shutdown(socket.SHUT_WR)
            else:
                digest, size = hashlib.sha256(), 0
                while chunk := connection.recv(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                connection.sendall(f"{size} {digest.hexdigest()}".encode())

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for thread in self._threads:
            thread.join(BOUND)


class UdpEcho:
    """On 127.0.0.1: answers each datagram with ``PORT:`` (the port it came from) + itself."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while True:
            data, peer = self.sock.recvfrom(65535)
            if data == b"stop" and peer[0] == "127.0.0.1" and peer[1] == self.port:
                return
            self.sock.sendto(f"{peer[1]}:".encode() + data, peer)

    def close(self) -> None:
        self.sock.sendto(b"stop", ("127.0.0.1", self.port))
        self._thread.join(BOUND)
        self.sock.close()


@pytest.fixture
def tcp_server() -> Iterator[TcpServer]:
    server = TcpServer()
    yield server
    server.close()


@pytest.fixture
def udp_echo() -> Iterator[UdpEcho]:
    server = UdpEcho()
    yield server
    server.close()


def _cmdline(pid: int | str) -> bytes:
    """``pid``'s command line; empty for a zombie or a process that is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int | None) -> bool:
    return pid is not None and bool(_cmdline(pid))


def _kill_leftovers(directory: Path) -> list[int]:
    """SIGKILL every process whose command line names a path in ``directory``; their pids."""
    marker = os.fsencode(directory)
    leftovers = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/cmdline")
                 if marker in _cmdline(p.parent.name)]
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # ours if this test process started it
    return leftovers


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[Callable[..., PortProxy]]:
    """Make a ``PortProxy`` on ``tmp_path/portproxy``; at the end, stop them all and fail if
    that left a proxy running (``stop()`` missed it)."""
    with contextlib.ExitStack() as stops:
        def make(**options: float) -> PortProxy:
            proxy = PortProxy(tmp_path / "portproxy", **options)
            stops.callback(proxy.stop)
            return proxy

        yield make
    leftovers = _kill_leftovers(tmp_path)
    assert not leftovers, f"port proxy processes left running: {leftovers}"


def tcp_entry(server: TcpServer, port: int | None = None) -> ProxyEntry:
    return ProxyEntry("tcp", "::1", port or free_port(), "127.0.0.1", server.port)


def connect(entry: ProxyEntry, mode: bytes) -> socket.socket:
    sock = socket.create_connection(("::1", entry.port), timeout=BOUND)
    sock.sendall(mode + b"\n")
    return sock


def exchange(entry: ProxyEntry, data: bytes) -> bytes:
    with connect(entry, b"echo") as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        return read_all(sock)


def test_tcp_both_ways_intact(tcp_server: TcpServer,
                              proxies: Callable[..., PortProxy]) -> None:
    entry = tcp_entry(tcp_server)
    assert proxies().update([entry]) == {}
    blob = os.urandom(50 << 20)
    # To the server only: it answers once the client has ended its side (a half-close that
    # went through), and the client can still read that answer.
    with connect(entry, b"digest") as sock:
        sock.sendall(blob)
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).decode() == f"{len(blob)} {hashlib.sha256(blob).hexdigest()}"
    # Both ways at once: everything comes back, and the server's end comes through as EOF.
    with connect(entry, b"echo") as sock:
        def send() -> None:
            sock.sendall(blob)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = read_all(sock)
        sender.join()
    assert hashlib.sha256(received).digest() == hashlib.sha256(blob).digest()


def test_a_target_that_refuses_resets_the_client(proxies: Callable[..., PortProxy]) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        target_port = closed.getsockname()[1]
    entry = ProxyEntry("tcp", "::1", free_port(), "127.0.0.1", target_port)
    proxies().update([entry])
    # The reset may come while the connection is still being made, or at the first read.
    with pytest.raises(ConnectionResetError), \
            socket.create_connection(("::1", entry.port), timeout=BOUND) as sock:
        sock.recv(1)


def _proxy_sockets(pid: int) -> int:
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
               for fd in os.listdir(f"/proc/{pid}/fd"))


def test_udp_sessions_per_client(udp_echo: UdpEcho,
                                 proxies: Callable[..., PortProxy]) -> None:
    entry = ProxyEntry("udp", "::1", free_port(socket.SOCK_DGRAM), "127.0.0.1", udp_echo.port)
    proxy = proxies(udp_timeout=0.3)
    assert proxy.update([entry]) == {}
    pid = proxy.pid()
    assert pid is not None
    listening = _proxy_sockets(pid)
    clients = [socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for client in clients:
            client.settimeout(BOUND)
            client.connect(("::1", entry.port))
        for i in range(3):  # interleaved: each client gets its own answers, from its session
            for n, client in enumerate(clients):
                client.send(f"client{n}-{i}".encode())
        replies = [[c.recv(65535).decode() for _ in range(3)] for c in clients]
        for n, got in enumerate(replies):
            assert [r.partition(":")[2] for r in got] == [f"client{n}-{i}" for i in range(3)]
        ports = [{r.partition(":")[0] for r in got} for got in replies]
        assert all(len(p) == 1 for p in ports) and ports[0] != ports[1]
        assert _proxy_sockets(pid) == listening + 2
        # Idle sessions go (here after 0.3 s); a client that speaks again gets a new one.
        wait_for(lambda: _proxy_sockets(pid) == listening, "idle UDP sessions to close")
        clients[0].send(b"again")
        assert clients[0].recv(65535).endswith(b":again")
    finally:
        for client in clients:
            client.close()


def test_a_reload_keeps_unchanged_entries_untouched(tcp_server: TcpServer,
                                                    proxies: Callable[..., PortProxy]) -> None:
    kept, dropped, added = tcp_entry(tcp_server), tcp_entry(tcp_server), tcp_entry(tcp_server)
    proxy = proxies()
    proxy.update([kept, dropped])
    pid = proxy.pid()
    with connect(kept, b"echo") as open_connection, connect(dropped, b"echo") as cut:
        for sock in (open_connection, cut):
            sock.sendall(b"before ")
            assert sock.recv(100) == b"before "
        assert proxy.update([kept, added]) == {}
        assert proxy.pid() == pid
        with pytest.raises(ConnectionResetError):  # the dropped entry's connections go too
            cut.recv(100)
        assert exchange(added, b"new entry") == b"new entry"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("::1", dropped.port), timeout=BOUND)
        open_connection.sendall(b"after")
        open_connection.shutdown(socket.SHUT_WR)
        assert read_all(open_connection) == b"after"


def test_a_taken_port_fails_that_entry_only(tcp_server: TcpServer,
                                            proxies: Callable[..., PortProxy]) -> None:
    taken = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    taken.bind(("::1", 0))
    taken.listen(1)
    good, bad = tcp_entry(tcp_server), tcp_entry(tcp_server, port=taken.getsockname()[1])
    proxy = proxies()
    try:
        assert proxy.update([good, bad]) == {bad.key: "Address already in use"}
        assert bad.key == f"tcp/[::1]:{bad.port}"
        assert exchange(good, b"still works") == b"still works"
    finally:
        taken.close()
    # Tried again at each update: once the port is free, it listens.
    assert proxy.update([good, bad]) == {}
    assert exchange(bad, b"now") == b"now"


def test_the_proxy_outlives_its_handle(tcp_server: TcpServer,
                                       proxies: Callable[..., PortProxy],
                                       tmp_path: Path) -> None:
    entry, other = tcp_entry(tcp_server), tcp_entry(tcp_server)
    first = PortProxy(tmp_path / "portproxy")
    first.update([entry])
    pid = first.pid()
    del first  # the engine went away (killed: nothing was stopped)
    gc.collect()
    assert exchange(entry, b"engine down") == b"engine down"
    # A new engine adopts the process instead of starting a second one.
    second = proxies()
    assert second.running() and second.pid() == pid
    assert second.update([entry, other]) == {}
    assert second.pid() == pid
    assert exchange(other, b"adopted") == b"adopted"
    second.stop()
    assert not second.running()
    assert not _alive(pid)
    assert not (tmp_path / "portproxy" / "proxy.pid").exists()
    assert "stopped" in second.log_path.read_text()  # SIGTERM was enough: a clean exit
    for gone in (entry, other):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("::1", gone.port), timeout=BOUND)
    second.stop()  # not running is success


def test_no_entries_no_proxy(tcp_server: TcpServer, proxies: Callable[..., PortProxy]) -> None:
    proxy = proxies()
    assert proxy.update([]) == {}
    assert not proxy.running()
    proxy.update([tcp_entry(tcp_server)])
    pid = proxy.pid()
    assert proxy.update([]) == {}
    assert not proxy.running()
    assert not _alive(pid)


def test_keep_leaves_a_running_proxy_idle_and_starts_none(
        tcp_server: TcpServer, proxies: Callable[..., PortProxy]) -> None:
    proxy = proxies()
    assert proxy.update([], keep=True) == {}
    assert not proxy.running()  # nothing to forward: no process started for it
    entry = tcp_entry(tcp_server)
    proxy.update([entry])
    pid = proxy.pid()
    assert exchange(entry, b"kept") == b"kept"
    assert proxy.update([], keep=True) == {}
    assert proxy.pid() == pid  # the same process, idle
    with pytest.raises(OSError):
        connect(entry, b"").recv(1)
    proxy.update([entry])
    assert proxy.pid() == pid and exchange(entry, b"again") == b"again"
    proxy.update([])
    assert not _alive(pid)


def test_bad_entries_are_refused_before_writing(tcp_server: TcpServer,
                                                proxies: Callable[..., PortProxy]) -> None:
    proxy = proxies()
    with pytest.raises(PortProxyError, match=r"entries\[0\].listen: not an IPv6 address"):
        proxy.update([ProxyEntry("tcp", "127.0.0.1", free_port(), "127.0.0.1",
                                 tcp_server.port)])
    assert not proxy.config_path.exists()
    assert not proxy.running()


def test_the_proxy_outlives_a_killed_engine(tcp_server: TcpServer,
                                            proxies: Callable[..., PortProxy],
                                            tmp_path: Path) -> None:
    entry = tcp_entry(tcp_server)
    # An "engine" process that starts the proxy, says so, and waits to be killed.
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from composer.portproxy.process import PortProxy, ProxyEntry
        PortProxy(Path({str(tmp_path / "portproxy")!r})).update(
            [ProxyEntry("tcp", "::1", {entry.port}, "127.0.0.1", {tcp_server.port})])
        print("ready", flush=True)
        time.sleep(60)
        """)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                          cwd=Path(__file__).resolve().parents[2]) as engine:
        try:
            assert engine.stdout is not None
            assert engine.stdout.readline() == b"ready\n"
        finally:
            engine.kill()  # -9: the engine gets no chance to stop anything
    assert exchange(entry, b"engine killed") == b"engine killed"
    proxy = proxies()
    assert proxy.running()
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("::1", entry.port), timeout=BOUND)


def test_a_changed_target_takes_new_connections_there(
        tcp_server: TcpServer, proxies: Callable[..., PortProxy]) -> None:
    other = TcpServer()
    try:
        entry = tcp_entry(tcp_server)
        proxy = proxies()
        proxy.update([entry])
        moved = ProxyEntry("tcp", "::1", entry.port, "127.0.0.1", other.port)
        assert proxy.update([moved]) == {}
        assert exchange(moved, b"moved") == b"moved"
        assert other.served == 1 and tcp_server.served == 0
    finally:
        other.close()


def test_a_broken_config_keeps_the_old_entries(tcp_server: TcpServer,
                                               proxies: Callable[..., PortProxy]) -> None:
    entry = tcp_entry(tcp_server)
    proxy = proxies()
    proxy.update([entry])
    pid = proxy.pid()
    assert pid is not None
    loads = json.loads(proxy.status_path.read_text())["loads"]
    proxy.config_path.write_text('{"serial": 7, "entries": [{"protocol": "sctp"}]}')
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: json.loads(proxy.status_path.read_text())["loads"] > loads,
             "the proxy to read the broken file")
    status = json.loads(proxy.status_path.read_text())
    assert status["attempted"] == 7 and "entries[0]" in status["error"]
    assert exchange(entry, b"old entries") == b"old entries"
    assert "reload failed, keeping the previous config" in proxy.log_path.read_text()
    assert proxy.update([entry]) == {}
    assert proxy.pid() == pid
    # The same entries again, all listening: nothing to reload.
    loads = json.loads(proxy.status_path.read_text())["loads"]
    assert proxy.update([entry]) == {}
    assert json.loads(proxy.status_path.read_text())["loads"] == loads


def test_all_addresses_means_ipv6_only(tcp_server: TcpServer,
                                       proxies: Callable[..., PortProxy]) -> None:
    entry = ProxyEntry("tcp", "::", free_port(), "127.0.0.1", tcp_server.port)
    assert proxies().update([entry]) == {}
    assert exchange(entry, b"over ::1") == b"over ::1"
    # The IPv4 side of the port is kernel NAT's, not the proxy's.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", entry.port), timeout=BOUND)
