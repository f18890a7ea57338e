"""The resolver process, for real: started through ``Resolver``, asked over loopback sockets.

Loopback answers every 127.x.y.z address, so each test gets its own 127.77.N.1 "gateway" (a
random N and a random high port), clients bind to 127.77.N.x to be "containers", and forwarding
goes to small dnslib servers run here on 127.78.N.x. The ``resolvers`` fixture stops every
resolver a test made and then makes sure no process of this test's directory is left (killing
any survivor by its pid, and failing the test, since that means ``stop()`` missed it).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import random
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dnslib  # type: ignore[import-untyped]
import pytest

from composer.dns.process import Resolver, ResolverError
from composer.dns.records import ClientRecords, NetworkRecords

BOUND = 5.0  # seconds: how long anything here may take before the test gives up on it


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; a bound, not a timing assertion."""
    deadline = time.monotonic() + BOUND
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.005)


def query(name: str, server: str, port: int, qtype: str = "A", *, source: str | None = None,
          tcp: bool = False) -> dnslib.DNSRecord:
    """Ask ``server:port``, from the address ``source`` (a "container") when given."""
    request = dnslib.DNSRecord.question(name, qtype)
    data = request.pack()
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(BOUND)
        if source:
            sock.bind((source, 0))
        sock.connect((server, port))
        if tcp:
            sock.sendall(struct.pack("!H", len(data)) + data)
            (length,) = struct.unpack("!H", _read(sock, 2))
            reply = dnslib.DNSRecord.parse(_read(sock, length))
        else:
            sock.send(data)
            reply = dnslib.DNSRecord.parse(sock.recv(65535))
    assert reply.header.id == request.header.id
    return reply


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return data


def addresses(reply: dnslib.DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr]


def rcode(reply: dnslib.DNSRecord) -> str:
    return str(dnslib.RCODE.get(reply.header.rcode))


class Upstream:
    """A tiny DNS server in a thread: A records for ``records``, NXDOMAIN for anything else.
    Names in ``truncated`` get TC over UDP and their answer over TCP only; a name in ``held``
    is answered only once ``release`` is set (``holding`` says it arrived)."""

    def __init__(self, address: str, port: int, records: dict[str, str]) -> None:
        self.address, self.port, self.records = address, port, records
        self.truncated: set[str] = set()
        self.held: set[str] = set()
        self.holding, self.release = threading.Event(), threading.Event()
        self.asked: list[tuple[str, str]] = []  # (udp|tcp, name) as they arrive
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, port))
        self.tcp.listen(8)
        self._stop_r, self._stop_w = os.pipe()
        self._threads = [threading.Thread(target=self._run)]
        self._threads[0].start()

    @property
    def server(self) -> str:
        return f"{self.address}:{self.port}"

    def _reply(self, data: bytes, transport: str) -> bytes:
        request = dnslib.DNSRecord.parse(data)
        name = str(request.q.qname).rstrip(".").lower()
        self.asked.append((transport, name))
        reply = request.reply(aa=0)
        if name in self.truncated and transport == "udp":
            reply.header.tc = 1
        elif name in self.records:
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A,
                                       rdata=dnslib.A(self.records[name]), ttl=60))
        else:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        return bytes(reply.pack())

    def _run(self) -> None:
        watched: list[socket.socket | int] = [self.udp, self.tcp, self._stop_r]
        while True:
            ready, _, _ = select.select(watched, [], [])
            if self._stop_r in ready:
                return
            if self.udp in ready:
                data, peer = self.udp.recvfrom(65535)
                name = str(dnslib.DNSRecord.parse(data).q.qname).rstrip(".").lower()
                if name in self.held:
                    thread = threading.Thread(target=self._answer_later, args=(data, peer))
                    self._threads.append(thread)
                    thread.start()
                else:
                    self.udp.sendto(self._reply(data, "udp"), peer)
            if self.tcp in ready:
                connection, _ = self.tcp.accept()
                with connection:
                    connection.settimeout(BOUND)
                    (length,) = struct.unpack("!H", _read(connection, 2))
                    answer = self._reply(_read(connection, length), "tcp")
                    connection.sendall(struct.pack("!H", len(answer)) + answer)

    def _answer_later(self, data: bytes, peer: tuple[str, int]) -> None:
        self.holding.set()
        self.release.wait(BOUND)
        self.udp.sendto(self._reply(data, "udp"), peer)

    def close(self) -> None:
        self.release.set()
        os.write(self._stop_w, b"x")
        for thread in self._threads:
            thread.join()
        for fd in (self._stop_r, self._stop_w):
            os.close(fd)
        self.udp.close()
        self.tcp.close()


class Net:
    """This test's addresses: ``gateway(i)`` is the i-th network's gateway, ``host(i, j)`` a
    container on it, ``upstream_address(j)`` where the fake upstreams listen."""

    def __init__(self) -> None:
        self.n = random.randint(1, 250)
        self.port = random.randint(20000, 60000)

    def gateway(self, i: int = 0) -> str:
        return f"127.77.{self.n + i}.1"

    def host(self, i: int, j: int) -> str:
        return f"127.77.{self.n + i}.{j}"

    def upstream_address(self, j: int = 1) -> str:
        return f"127.78.{self.n}.{j}"


@pytest.fixture
def net() -> Net:
    return Net()


@pytest.fixture
def upstream(net: Net) -> Iterator[Upstream]:
    server = Upstream(net.upstream_address(1), net.port,
                      {"example.com": "93.184.216.34", "big.example": "93.184.216.35"})
    yield server
    server.close()


def _processes_under(directory: Path) -> list[int]:
    """Live processes whose command line names a path in ``directory``."""
    marker = os.fsencode(directory)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry))
    return found


@pytest.fixture
def resolvers(tmp_path: Path, net: Net,
              upstream: Upstream) -> Iterator[Callable[..., Resolver]]:
    """Make a ``Resolver`` on ``tmp_path/NAME`` (default upstream: the fake one)."""
    made: list[Resolver] = []

    def make(name: str = "dns", upstream_servers: list[str] | None = None) -> Resolver:
        resolver = Resolver(tmp_path / name, port=net.port,
                            upstream=upstream_servers or [upstream.server])
        made.append(resolver)
        return resolver

    yield make
    for resolver in made:
        resolver.stop()
    survivors = _processes_under(tmp_path)
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    assert not survivors, f"resolver processes left running: {survivors}"


def one_network(net: Net, names: dict[str, list[str]]) -> dict[str, NetworkRecords]:
    return {"n0": NetworkRecords(net.gateway(0), names)}


def test_replicas_answer_in_turn(net: Net, resolvers: Callable[..., Resolver]) -> None:
    replicas = [net.host(0, 2), net.host(0, 3), net.host(0, 4)]
    resolver = resolvers()
    resolver.update(one_network(net, {"web": replicas}), {})
    answers = [query("web", net.gateway(), net.port) for _ in range(3)]
    for reply in answers:
        assert rcode(reply) == "NOERROR"
        assert sorted(addresses(reply)) == replicas
        assert all(rr.ttl == 0 for rr in reply.rr)
    assert [addresses(r)[0] for r in answers] == replicas  # each answer starts one further on
    assert addresses(query("WEB.", net.gateway(), net.port))[0] == replicas[0]
    # A known name asked for another type: an empty NOERROR, not a forward.
    aaaa = query("web", net.gateway(), net.port, "AAAA")
    assert (rcode(aaaa), aaaa.rr) == ("NOERROR", [])
    ptr = query(".".join(reversed(replicas[1].split("."))) + ".in-addr.arpa", net.gateway(),
                net.port, "PTR")
    assert [str(rr.rdata) for rr in ptr.rr] == ["web."]


def test_other_names_are_forwarded_and_relayed(net: Net, upstream: Upstream,
                                               resolvers: Callable[..., Resolver]) -> None:
    resolver = resolvers()
    resolver.update(one_network(net, {"web": [net.host(0, 2)]}), {})
    reply = query("Example.COM", net.gateway(), net.port)
    assert addresses(reply) == ["93.184.216.34"]
    assert str(reply.rr[0].rname) == "Example.COM."  # the upstream's answer, unchanged
    assert reply.rr[0].ttl == 60
    # A single label not known here goes upstream too, which says it does not exist.
    assert rcode(query("nosuchhost", net.gateway(), net.port)) == "NXDOMAIN"
    assert ("udp", "nosuchhost") in upstream.asked
    assert ("udp", "web") not in upstream.asked


def test_a_truncated_upstream_answer_is_fetched_again_over_tcp(
        net: Net, upstream: Upstream, resolvers: Callable[..., Resolver]) -> None:
    upstream.truncated.add("big.example")
    resolvers().update(one_network(net, {}), {})
    assert addresses(query("big.example", net.gateway(), net.port)) == ["93.184.216.35"]
    assert [a for a in upstream.asked if a[1] == "big.example"] == [
        ("udp", "big.example"), ("tcp", "big.example")]


def test_no_upstream_answering_is_servfail(net: Net,
                                           resolvers: Callable[..., Resolver]) -> None:
    # Nothing listens there: refused at once, so this is not a wait for a timeout.
    resolver = resolvers(upstream_servers=[f"{net.upstream_address(9)}:{net.port}"])
    resolver.update(one_network(net, {"web": [net.host(0, 2)]}), {})
    assert rcode(query("example.com", net.gateway(), net.port)) == "SERVFAIL"
    assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 2)]


def test_a_clients_own_dns_servers_replace_upstream(
        net: Net, upstream: Upstream, resolvers: Callable[..., Resolver]) -> None:
    own = Upstream(net.upstream_address(2), net.port, {"example.com": "10.1.2.3"})
    try:
        client = net.host(0, 5)
        resolvers().update(one_network(net, {"web": [net.host(0, 2)]}),
                           {client: ClientRecords(["n0"], dns=[own.server])})
        assert addresses(query("example.com", net.gateway(), net.port, source=client)) == [
            "10.1.2.3"]
        assert upstream.asked == []
        # Its local names still come from the resolver; another container uses upstream.
        assert addresses(query("web", net.gateway(), net.port, source=client)) == [
            net.host(0, 2)]
        assert addresses(query("example.com", net.gateway(), net.port,
                               source=net.host(0, 6))) == ["93.184.216.34"]
    finally:
        own.close()


def test_who_sees_which_names(net: Net, resolvers: Callable[..., Resolver]) -> None:
    front, back = net.gateway(0), net.gateway(1)
    both, front_only = net.host(0, 2), net.host(0, 3)
    resolvers().update(
        {"front": NetworkRecords(front, {"proxy": [front_only], "app": [both]}),
         "back": NetworkRecords(back, {"db": [net.host(1, 4)], "app": [net.host(1, 2)]})},
        {both: ClientRecords(["front", "back"], names={"database": [net.host(1, 4)]}),
         front_only: ClientRecords(["front"])})
    # A container on both networks sees both, and its link alias, whichever gateway it asks.
    assert addresses(query("db", front, net.port, source=both)) == [net.host(1, 4)]
    assert addresses(query("database", front, net.port, source=both)) == [net.host(1, 4)]
    assert sorted(addresses(query("app", back, net.port, source=both))) == sorted(
        [both, net.host(1, 2)])
    # One on front only does not see back's names, even asking back's gateway.
    assert rcode(query("db", back, net.port, source=front_only)) == "NXDOMAIN"
    assert rcode(query("database", front, net.port, source=front_only)) == "NXDOMAIN"
    # An unknown address sees the network whose gateway it asked.
    assert addresses(query("db", back, net.port)) == [net.host(1, 4)]
    assert rcode(query("db", front, net.port)) == "NXDOMAIN"


def test_an_update_reloads_the_running_resolver(net: Net,
                                                resolvers: Callable[..., Resolver]) -> None:
    resolver = resolvers()
    resolver.update(one_network(net, {"web": [net.host(0, 2)], "proj-web-1": [
        net.host(0, 2)]}), {})
    pid = resolver.running()
    assert addresses(query("proj-web-1", net.gateway(), net.port)) == [net.host(0, 2)]
    # The container goes, another network comes: same process, new answers as update returns.
    resolver.update({**one_network(net, {"web": [net.host(0, 3)]}),
                     "n1": NetworkRecords(net.gateway(1), {"db": [net.host(1, 2)]})}, {})
    assert resolver.running() == pid
    assert rcode(query("proj-web-1", net.gateway(), net.port)) == "NXDOMAIN"  # from upstream
    assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 3)]
    assert addresses(query("db", net.gateway(1), net.port)) == [net.host(1, 2)]
    # A network that goes takes its gateway's sockets with it.
    resolver.update(one_network(net, {"web": [net.host(0, 3)]}), {})
    with pytest.raises(ConnectionRefusedError):
        query("db", net.gateway(1), net.port, tcp=True)
    # No networks left: no resolver.
    resolver.update({}, {})
    assert resolver.running() is None
    assert not _alive(pid)


def test_tcp_queries(net: Net, resolvers: Callable[..., Resolver]) -> None:
    many = [f"10.3.0.{i}" for i in range(1, 61)]  # 60 A records: more than 512 bytes
    resolvers().update(one_network(net, {"web": [net.host(0, 2), net.host(0, 3)],
                                         "many": many}), {})
    reply = query("web", net.gateway(), net.port, tcp=True)
    assert sorted(addresses(reply)) == [net.host(0, 2), net.host(0, 3)]
    # Too big for plain UDP: truncated, so that the client asks again over TCP, which has all.
    truncated = query("many", net.gateway(), net.port)
    assert (truncated.header.tc, truncated.rr) == (1, [])
    assert sorted(addresses(query("many", net.gateway(), net.port, tcp=True))) == sorted(many)
    assert addresses(query("example.com", net.gateway(), net.port, tcp=True)) == [
        "93.184.216.34"]


def test_a_slow_upstream_does_not_hold_up_local_names(
        net: Net, upstream: Upstream, resolvers: Callable[..., Resolver]) -> None:
    upstream.held.add("slow.example")
    upstream.records["slow.example"] = "10.9.9.9"
    resolvers().update(one_network(net, {"web": [net.host(0, 2)]}), {})
    result: list[dnslib.DNSRecord] = []
    slow = threading.Thread(target=lambda: result.append(
        query("slow.example", net.gateway(), net.port)))
    slow.start()
    try:
        assert upstream.holding.wait(BOUND)
        # The forwarded query is still unanswered; local names, UDP and TCP, are not held up.
        assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 2)]
        assert addresses(query("web", net.gateway(), net.port, tcp=True)) == [net.host(0, 2)]
        assert result == []
    finally:
        upstream.release.set()
        slow.join()
    assert addresses(result[0]) == ["10.9.9.9"]


def _alive(pid: int | None) -> bool:
    """Whether ``pid`` runs (a zombie, whose cmdline is empty, does not)."""
    try:
        return pid is not None and bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def test_the_resolver_outlives_its_resolver_object(
        tmp_path: Path, net: Net, upstream: Upstream,
        resolvers: Callable[..., Resolver]) -> None:
    first = Resolver(tmp_path / "dns", port=net.port, upstream=[upstream.server])
    first.update(one_network(net, {"web": [net.host(0, 2)]}), {})
    pid = first.running()
    del first  # the engine went away (and nothing warns about a process left running)
    gc.collect()
    assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 2)]
    # A new engine adopts the process instead of starting a second one.
    second = resolvers("dns")
    assert second.running() == pid
    second.update(one_network(net, {"web": [net.host(0, 3)]}), {})
    assert second.running() == pid
    assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 3)]
    second.stop()
    assert second.running() is None
    assert not _alive(pid)
    assert not (tmp_path / "dns" / "resolver.pid").exists()
    second.stop()  # not running is success


def _loaded_since(status_path: Path, loads: int) -> bool:
    return int(json.loads(status_path.read_text())["loads"]) > loads


def test_a_broken_config_keeps_the_old_records(tmp_path: Path, net: Net,
                                               resolvers: Callable[..., Resolver]) -> None:
    resolver = resolvers()
    resolver.update(one_network(net, {"web": [net.host(0, 2)]}), {})
    pid = resolver.running()
    assert pid is not None
    status_path = tmp_path / "dns" / "resolver.status"
    before = json.loads(status_path.read_text())
    serial = before["serial"]
    for broken in ('{"networks": ', '{"networks": {"n0": {"gateway": "nowhere"}}}'):
        resolver.config_path.write_text(broken)
        os.kill(pid, signal.SIGHUP)
        wait_for(functools.partial(_loaded_since, status_path, before["loads"]),
                 "the resolver to read the broken file")
        status = json.loads(status_path.read_text())
        before = status
        assert status["error"]
        assert status["serial"] == serial  # the old records are still the ones in force
        assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 2)]
    assert "reload failed, keeping the previous config" in resolver.log_path.read_text()
    assert "not an IP address: 'nowhere'" in resolver.log_path.read_text()
    # A good file again is taken.
    resolver.update(one_network(net, {"web": [net.host(0, 3)]}), {})
    assert addresses(query("web", net.gateway(), net.port)) == [net.host(0, 3)]
    assert resolver.running() == pid


def test_a_resolver_that_cannot_listen_says_why(net: Net,
                                                resolvers: Callable[..., Resolver]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((net.gateway(), net.port))
        taken.listen(1)
        resolver = resolvers()
        with pytest.raises(ResolverError, match=r"cannot listen on .* Address already in use"):
            resolver.update(one_network(net, {"web": [net.host(0, 2)]}), {})
    assert resolver.running() is None


def test_bad_records_are_refused_before_writing(net: Net,
                                                resolvers: Callable[..., Resolver]) -> None:
    resolver = resolvers()
    with pytest.raises(ResolverError, match=r"names.web\[0\]: not an IP address"):
        resolver.update(one_network(net, {"web": ["not-an-address"]}), {})
    assert not resolver.config_path.exists()
    assert resolver.running() is None
