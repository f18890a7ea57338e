"""Networking of real containers, through the CLI: names, isolation, modes, published ports seen
from the host and from "another machine", DNS forwarding, a killed engine, crash points.

Host ports are chosen free at run time and subnets are picked clear of the host's routes, so
that these tests run beside others (``pytest -n``) and beside other state roots on the host.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import IMAGE, Engine, engine_at, network_leaks

HTTPD = ("httpd", "-f", "-p", "80", "-h", "/etc")  # serves /etc: /hostname names the server
# (wget is bounded by timeout(1): busybox 1.35 wget -T segfaults.)
# Busybox's nc has no UDP: the UDP echo server is the host's python, mounted read-only.
PYTHON_MOUNTS = ("-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro")
UDP_ECHO = ("import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('0.0.0.0', 9999))\n"
            "while True:\n"
            "    data, peer = s.recvfrom(1000)\n"
            "    s.sendto(b'echo:' + data, peer)\n")


def _retry(command: str, seconds: int = 20) -> str:
    """A shell line that runs ``command`` until it succeeds (a server may still be starting),
    with its output once, and fails after ``seconds``."""
    return (f"end=$(($(date +%s)+{seconds})); until {command}; do "
            "[ $(date +%s) -ge $end ] && exit 1; sleep 0.1; done")


def _wget(url: str) -> str:
    return _retry(f"timeout 3 wget -q -O - {url}")


def _addresses(nslookup: str) -> list[str]:
    """The addresses busybox nslookup printed for the name (not the server's)."""
    found, named = [], False
    for line in nslookup.splitlines():
        if line.startswith("Name:"):
            named = True
        elif named and line.startswith("Address"):
            found.append(line.split()[-1])
    return found


def _run(engine: Engine, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``container run --rm ARGS`` that must succeed."""
    done = engine.cli("container", "run", "--rm", *args, timeout=timeout)
    assert done.returncode == 0, (args, done.returncode, done.stdout, done.stderr)
    return done


def _ip(engine: Engine, name: str, network: str) -> str:
    address: str = engine.inspect(name)["NetworkSettings"]["Networks"][network]["IPAddress"]
    assert address, (name, network)
    return address


def _free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
    return port


def _free_ports(count: int) -> list[int]:
    """Ports free for TCP and UDP alike, all different."""
    found: list[int] = []
    while len(found) < count:
        port = _free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("0.0.0.0", port))
            except OSError:
                continue
        if port not in found:
            found.append(port)
    return found


def _host_address() -> str:
    """A non-loopback IPv4 address of the host (not one of a composer bridge): the source
    address of the default route, else any global one; the test is skipped without one."""
    route = subprocess.run(["ip", "-4", "-o", "route", "get", "192.0.2.200"],
                           capture_output=True, text=True).stdout.split()
    if "src" in route:
        return route[route.index("src") + 1]
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                             capture_output=True, text=True).stdout
    for line in listing.splitlines():
        words = line.split()
        if not words[1].startswith(("cm", "nwt")):
            return words[3].split("/")[0]
    pytest.skip("the host has no non-loopback IPv4 address")


def _host_routes() -> list[ipaddress.IPv4Network]:
    listing = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "all"],
                             capture_output=True, text=True).stdout
    kinds = ("local", "broadcast", "unicast", "multicast", "unreachable", "blackhole",
             "prohibit", "throw", "anycast", "nat")
    found = []
    for line in listing.splitlines():
        words = line.split()
        if words and words[0] in kinds:
            words = words[1:]
        if not words or words[0] == "default":
            continue
        with contextlib.suppress(ValueError):
            found.append(ipaddress.IPv4Network(words[0], strict=False))
    return found


def _clear_subnet(first: int, prefix: int) -> ipaddress.IPv4Network:
    """A random ``10.<first>.x.y/prefix`` that overlaps no host route (skip if none is)."""
    routes = _host_routes()
    rng = random.Random(secrets.randbits(64))
    for _ in range(50):
        base = ipaddress.IPv4Address(f"10.{first}.{rng.randrange(256)}.{rng.randrange(256)}")
        subnet = ipaddress.IPv4Network(f"{base}/{prefix}", strict=False)
        if not any(subnet.overlaps(r) for r in routes):
            return subnet
    pytest.skip(f"every 10.{first}.x.x/{prefix} tried clashes with a host route")


@contextlib.contextmanager
def _engine_env(engine: Engine, **extra: str) -> Iterator[None]:
    """The CLI (and so any engine it starts) gets ``extra`` in its environment."""
    plain = Engine.env
    engine.env = lambda: {**plain(engine), **extra}  # type: ignore[method-assign]
    try:
        yield
    finally:
        del engine.env


class _Records:
    """A dnslib resolver: A records from a dict, NXDOMAIN for every other name."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.asked: list[str] = []

    def resolve(self, request: Any, handler: Any) -> Any:
        import dnslib

        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        self.asked.append(name)
        if name not in self.records:
            reply.header.rcode = dnslib.RCODE.NXDOMAIN
        elif request.q.qtype == dnslib.QTYPE.A:
            reply.add_answer(dnslib.RR(request.q.qname, dnslib.QTYPE.A,
                                       rdata=dnslib.A(self.records[name]), ttl=60))
        return reply


@contextlib.contextmanager
def _dns_server(records: dict[str, str], address: str = "127.0.0.1",
                port: int | None = None) -> Iterator[tuple[int, _Records]]:
    """A UDP DNS server on ``address`` (a free port unless given): (port, its resolver)."""
    from dnslib.server import DNSLogger, DNSServer

    resolver = _Records(records)
    chosen = port if port is not None else _free_port(socket.SOCK_DGRAM)
    server = DNSServer(resolver, address=address, port=chosen,
                       logger=DNSLogger(logf=lambda _: None))
    server.start_thread()
    try:
        yield chosen, resolver
    finally:
        server.stop()
        server.server.server_close()


@contextlib.contextmanager
def _http_server(body: bytes) -> Iterator[int]:
    """An HTTP server of the test on every host address, answering ``body``: its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _http_get(host: str, port: int, path: str = "/hostname", timeout: float = 20) -> str:
    """The body from the host's side, retried while the container's server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=3) as sock:
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]:
                return body.decode()
            raise OSError(f"answer {head[:40]!r}")
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _udp_echo(host: str, port: int, payload: bytes, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        while True:
            try:
                sock.sendto(payload, (host, port))
                data, _ = sock.recvfrom(1000)
                return data
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.05)


def _create_network(engine: Engine, name: str, *flags: str) -> dict[str, Any]:
    engine.cli("network", "create", *flags, name, check=True)
    found: dict[str, Any] = json.loads(engine.cli("network", "inspect", name,
                                                  check=True).stdout)[0]
    return found


def _no_leaks(engine: Engine) -> None:
    leaks = network_leaks(engine.root)
    assert not any(leaks.values()), leaks


# -- names ------------------------------------------------------------------------------------


def test_containers_reach_each_other_by_name_and_by_alias(engine: Engine) -> None:
    _create_network(engine, "front")
    web = engine.run_detached("--name", "web", "--network", "front", "--network-alias", "www",
                              IMAGE, *HTTPD)
    address = _ip(engine, "web", "front")
    done = _run(engine, "--network", "front", IMAGE, "sh", "-c",
                f"{_wget('http://web/hostname')} && {_wget('http://www/hostname')} && "
                "nslookup web && nslookup www && nslookup WEB.")
    assert done.stdout.count(web[:12] + "\n") == 2, done.stdout
    lookups = done.stdout.split("Server:")[1:]
    assert [_addresses(text) for text in lookups] == [[address]] * 3, done.stdout


def test_a_reverse_lookup_names_the_container(engine: Engine) -> None:
    _create_network(engine, "rev")
    engine.run_detached("--name", "proj-web-1", "--network", "rev", "-l",
                        "com.docker.compose.service=web", IMAGE, "sleep", "300")
    address = _ip(engine, "proj-web-1", "rev")
    done = _run(engine, "--network", "rev", IMAGE, "nslookup", address)
    names = [line.split("name = ")[1] for line in done.stdout.splitlines() if "name = " in line]
    assert len(names) == 1, done.stdout
    assert names[0].split(".")[0] == "proj-web-1", done.stdout


def test_a_shared_alias_and_a_service_label_give_every_address(engine: Engine) -> None:
    _create_network(engine, "pool")
    names = [f"replica{i}" for i in range(3)]
    for name in names:
        engine.run_detached("--name", name, "--network", "pool", "--network-alias", "backend",
                            "-l", "com.docker.compose.service=api", IMAGE, *HTTPD)
    expected = sorted(_ip(engine, name, "pool") for name in names)
    assert len(set(expected)) == 3
    done = _run(engine, "--network", "pool", IMAGE, "sh", "-c",
                "nslookup backend; echo ===; nslookup api; echo ===; nslookup backend; "
                f"echo ===; nslookup backend; echo ===; {_wget('http://api/hostname')}")
    backend, api, again, third, served = done.stdout.split("===\n")
    assert sorted(_addresses(backend)) == expected, done.stdout
    assert sorted(_addresses(api)) == expected, done.stdout
    # Round robin: each answer starts one address further on.
    firsts = [_addresses(text)[0] for text in (backend, again, third)]
    assert len(set(firsts)) >= 2, done.stdout
    ids = {engine.inspect(n)["Id"][:12] for n in names}
    assert served.strip() in ids, served


# -- isolation ----------------------------------------------------------------------------------


def test_two_networks_are_isolated_by_address_and_by_name(engine: Engine) -> None:
    with _dns_server({}) as (port, upstream), \
            _engine_env(engine, COMPOSER_DNS_UPSTREAM=f"127.0.0.1:{port}"):
        _create_network(engine, "neta")
        _create_network(engine, "netb")
        engine.run_detached("--name", "bweb", "--network", "netb", IMAGE, *HTTPD)
        engine.run_detached("--name", "aweb", "--network", "neta", IMAGE, *HTTPD)
        b_address = _ip(engine, "bweb", "netb")
        # Same network: reachable (so the failure below is the isolation, not a slow start).
        same = _run(engine, "--network", "netb", IMAGE, "sh", "-c",
                    _wget(f"http://{b_address}/hostname"))
        assert same.stdout.strip() == engine.inspect("bweb")["Id"][:12]
        other = _run(engine, "--network", "neta", IMAGE, "sh", "-c",
                     f"{_wget('http://aweb/hostname')} >/dev/null && echo a-ok; "
                     f"timeout 3 wget -q -O - http://{b_address}/hostname; echo ip=$?; "
                     "nc -w 2 " + b_address + " 80 </dev/null; echo nc=$?; "
                     "nslookup bweb; echo dns=$?")
        lines = other.stdout.splitlines()
        assert lines[0] == "a-ok", other.stdout
        assert "ip=0" not in lines and "nc=0" not in lines, other.stdout
        assert "dns=1" in lines and "NXDOMAIN" in other.stdout, other.stdout
        assert b_address not in _addresses(other.stdout)
        # The resolver did not know the name on neta: it asked upstream, which said NXDOMAIN.
        assert "bweb" in upstream.asked


def test_an_internal_network_has_no_way_out(engine: Engine) -> None:
    host = _host_address()
    with _http_server(b"from-the-host\n") as port:
        _create_network(engine, "sealed", "--internal")
        _create_network(engine, "open")
        assert json.loads(engine.cli("network", "inspect", "sealed").stdout)[0]["Internal"]
        engine.run_detached("--name", "inner", "--network", "sealed", IMAGE, *HTTPD)
        outside = _run(engine, "--network", "open", IMAGE, "sh", "-c",
                       _wget(f"http://{host}:{port}/"))
        assert outside.stdout == "from-the-host\n"
        inside = _run(engine, "--network", "sealed", IMAGE, "sh", "-c",
                      "ip route; echo ===; "
                      f"timeout 3 wget -q -O - http://{host}:{port}/; echo out=$?; "
                      f"{_wget('http://inner/hostname')} >/dev/null && echo peer-ok")
        routes, results = inside.stdout.split("===\n")
        assert "default" not in routes, routes
        assert "out=0" not in results and "from-the-host" not in results, inside.stdout
        # Within the network, containers still reach each other by name.
        assert "peer-ok" in results, inside.stdout
    refused = engine.cli("container", "run", "--rm", "--network", "sealed", "-p", "80",
                         IMAGE, "true")
    assert refused.returncode == 125 and "internal" in refused.stderr, refused.stderr


def test_a_container_on_two_networks_reaches_both(engine: Engine) -> None:
    with _dns_server({}) as (port, _), \
            _engine_env(engine, COMPOSER_DNS_UPSTREAM=f"127.0.0.1:{port}"):
        _on_two_networks(engine)


def _on_two_networks(engine: Engine) -> None:
    _create_network(engine, "left")
    _create_network(engine, "right")
    left = engine.run_detached("--name", "lweb", "--network", "left", IMAGE, *HTTPD)
    right = engine.run_detached("--name", "rweb", "--network", "right", IMAGE, *HTTPD)
    engine.run_detached("--name", "both", "--network", "left", "--network", "right",
                        IMAGE, "sleep", "300")
    state = engine.inspect("both")["NetworkSettings"]["Networks"]
    assert set(state) == {"left", "right"} and all(n["IPAddress"] for n in state.values())
    done = engine.cli("container", "exec", "both", "sh", "-c",
                      f"{_wget('http://lweb/hostname')} && {_wget('http://rweb/hostname')} "
                      "&& ip -4 -o addr")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [left[:12], right[:12]], done.stdout
    assert any("eth0 " in line and state["left"]["IPAddress"] + "/" in line for line in lines)
    assert any("eth1 " in line and state["right"]["IPAddress"] + "/" in line
               for line in lines), done.stdout
    # Each single-network container sees only its own side.
    alone = engine.cli("container", "exec", "lweb", "sh", "-c", "nslookup rweb; echo dns=$?")
    assert "NXDOMAIN" in alone.stdout and "dns=1" in alone.stdout, alone.stdout


def test_a_running_container_is_connected_and_disconnected_at_once(engine: Engine) -> None:
    _create_network(engine, "left")
    _create_network(engine, "right")
    engine.run_detached("--name", "peer", "--network", "right", IMAGE, *HTTPD)
    engine.run_detached("--name", "mover", "--network", "left", IMAGE, "sleep", "300")
    peer = engine.inspect("peer")["Id"][:12]

    def fetch() -> subprocess.CompletedProcess[str]:
        return engine.cli("container", "exec", "mover", "sh", "-c",
                          "timeout 3 wget -q -O - http://peer/hostname")

    assert fetch().returncode != 0  # not on the peer's network yet
    engine.cli("network", "connect", "--alias", "mv", "right", "mover", check=True)
    address = _ip(engine, "mover", "right")
    done = engine.cli("container", "exec", "mover", "sh", "-c",
                      f"ip -o -4 addr | grep -c {address}/; {_wget('http://peer/hostname')}")
    assert done.stdout.split() == ["1", peer], (done.stdout, done.stderr)
    alias = _run(engine, "--network", "right", IMAGE, "nslookup", "mv")
    assert _addresses(alias.stdout) == [address], alias.stdout
    again = engine.cli("network", "connect", "right", "mover")
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    engine.cli("network", "disconnect", "right", "mover", check=True)
    assert fetch().returncode != 0
    assert "right" not in engine.inspect("mover")["NetworkSettings"]["Networks"]
    gone = engine.cli("container", "exec", "mover", "sh", "-c", "ip -o link | grep -c eth")
    assert gone.stdout.strip() == "1", gone.stdout  # only the first network's interface
    engine.cli("container", "rm", "-f", "mover", "peer", check=True)
    engine.cli("network", "rm", "left", "right", check=True)
    _no_leaks(engine)


def test_subnets_come_from_the_configured_pools(engine: Engine) -> None:
    base = _clear_subnet(random.randrange(16, 200), 16)
    with _engine_env(engine, COMPOSER_ADDRESS_POOLS=f"base={base},size=24"):
        first = _create_network(engine, "pool1")["IPAM"]["Config"][0]["Subnet"]
        second = _create_network(engine, "pool2")["IPAM"]["Config"][0]["Subnet"]
        assert [first, second] == [str(s) for s in list(base.subnets(new_prefix=24))[:2]]
        engine.cli("network", "rm", "pool1", "pool2", check=True)
    _no_leaks(engine)


def test_a_static_address_in_a_chosen_subnet(engine: Engine) -> None:
    subnet = _clear_subnet(random.randrange(100, 200), 24)
    hosts = list(subnet.hosts())
    gateway, address = str(hosts[0]), str(hosts[49])
    made = engine.cli("network", "create", "--subnet", str(subnet), "fixed")
    if made.returncode != 0 and "overlap" in made.stderr:
        pytest.skip(f"{subnet} was taken meanwhile: {made.stderr}")
    assert made.returncode == 0, made.stderr
    config = json.loads(engine.cli("network", "inspect", "fixed").stdout)[0]["IPAM"]["Config"]
    assert config == [{"Subnet": str(subnet), "Gateway": gateway}]
    mac = "02:42:ac:11:00:42"
    engine.run_detached("--name", "pinned", "--network", "fixed", "--ip", address,
                        "--mac-address", mac, IMAGE, *HTTPD)
    done = engine.cli("container", "exec", "pinned", "sh", "-c", "ip -4 -o addr; ip link")
    assert f"inet {address}/24" in done.stdout, done.stdout
    assert mac in done.stdout, done.stdout
    settings = engine.inspect("pinned")["NetworkSettings"]
    assert settings["Networks"]["fixed"]["IPAddress"] == address
    assert settings["Networks"]["fixed"]["Gateway"] == gateway
    assert settings["Networks"]["fixed"]["MacAddress"] == mac
    assert settings["IPAddress"] == address
    # Others get other addresses of the subnet, and reach it.
    client = _run(engine, "--network", "fixed", IMAGE, "sh", "-c",
                  f"{_wget(f'http://{address}/hostname')} >/dev/null && ip -4 -o addr")
    others = [w.split("/")[0] for w in client.stdout.split() if "/" in w]
    assert any(ipaddress.IPv4Address(a) in subnet and a != address for a in others), others
    # The same address twice is refused.
    twice = engine.cli("container", "run", "--rm", "--network", "fixed", "--ip", address,
                       IMAGE, "true")
    assert twice.returncode == 125 and address in twice.stderr, twice.stderr


# -- modes --------------------------------------------------------------------------------------


def test_network_modes_none_host_and_container(engine: Engine) -> None:
    host_ns = os.readlink("/proc/self/ns/net")
    none = _run(engine, "--network", "none", IMAGE, "sh", "-c",
                "readlink /proc/self/ns/net; ip -o link")
    ns_line, *links = none.stdout.splitlines()
    assert ns_line != host_ns
    assert [line.split(":")[1].strip() for line in links] == ["lo"], none.stdout
    host = _run(engine, "--network", "host", IMAGE, "sh", "-c",
                "readlink /proc/self/ns/net; hostname")
    assert host.stdout.splitlines() == [host_ns, os.uname().nodename], host.stdout
    engine.run_detached("--name", "owner", "--network", "none", IMAGE, *HTTPD)
    engine.run_detached("--name", "bridged", IMAGE, *HTTPD)
    for owner in ("owner", "bridged"):
        owner_pid = engine.wait_for(owner, lambda s: s["State"]["Status"] == "running")[
            "State"]["Pid"]
        owner_ns = os.readlink(f"/proc/{owner_pid}/ns/net")
        shared = _run(engine, "--network", f"container:{owner}", IMAGE, "sh", "-c",
                      f"readlink /proc/self/ns/net; {_wget('http://127.0.0.1/hostname')}")
        assert shared.stdout.splitlines() == [owner_ns, engine.inspect(owner)["Id"][:12]], (
            owner, shared.stdout)
    refused = engine.cli("container", "run", "--rm", "--network", "host", "-p", "80", IMAGE,
                         "true")
    assert refused.returncode != 0 and "-p" in refused.stderr, refused.stderr


# -- published ports ----------------------------------------------------------------------------


def test_published_tcp_and_udp_ports_on_loopback_and_the_host_address(engine: Engine) -> None:
    host = _host_address()
    local_only, everywhere, udp = _free_ports(3)
    cid = engine.run_detached("--name", "pub", "-p", f"127.0.0.1:{local_only}:80",
                              "-p", f"{everywhere}:80", "-p", "80", IMAGE, *HTTPD)
    engine.run_detached("--name", "echo", "-p", f"{udp}:9999/udp", *PYTHON_MOUNTS, IMAGE,
                        "/usr/bin/python3", "-c", UDP_ECHO)
    assert _http_get("127.0.0.1", local_only) == cid[:12] + "\n"
    assert _http_get("127.0.0.1", everywhere) == cid[:12] + "\n"
    assert _http_get(host, everywhere) == cid[:12] + "\n"
    # Published on 127.0.0.1 only: the host's other address does not lead there.
    with pytest.raises(OSError):
        _http_get(host, local_only, timeout=0)
    bindings = [b for b in engine.inspect("pub")["NetworkSettings"]["Ports"]["80/tcp"]
                if b["HostIp"] != "::"]  # the IPv6 side, where the host has it: tested below
    chosen = [b for b in bindings if int(b["HostPort"]) not in (local_only, everywhere)]
    assert {(b["HostIp"], b["HostPort"]) for b in bindings} - {(b["HostIp"], b["HostPort"])
                                                               for b in chosen} == {
        ("127.0.0.1", str(local_only)), ("0.0.0.0", str(everywhere))}, bindings
    assert len(chosen) == 1 and chosen[0]["HostIp"] == "0.0.0.0", bindings
    random_port = int(chosen[0]["HostPort"])
    assert _http_get("127.0.0.1", random_port) == cid[:12] + "\n"
    assert _udp_echo("127.0.0.1", udp, b"ping-1") == b"echo:ping-1"
    assert _udp_echo(host, udp, b"ping-2") == b"echo:ping-2"
    assert [b for b in engine.inspect("echo")["NetworkSettings"]["Ports"]["9999/udp"]
            if b["HostIp"] != "::"] == [{"HostIp": "0.0.0.0", "HostPort": str(udp)}]
    if engine.cli("container", "port", "--help").returncode == 0:
        listed = [line for line in engine.cli("container", "port", "pub",
                                              check=True).stdout.splitlines()
                  if "[::]" not in line]
        assert sorted(listed) == sorted([f"80/tcp -> 127.0.0.1:{local_only}",
                                         f"80/tcp -> 0.0.0.0:{everywhere}",
                                         f"80/tcp -> 0.0.0.0:{random_port}"]), listed
        assert engine.cli("container", "port", "echo", "9999/udp",
                          check=True).stdout.split()[0] == f"0.0.0.0:{udp}"
    # Once stopped, the ports lead nowhere and are reported unpublished.
    engine.cli("container", "stop", "-t", "1", "pub", check=True)
    assert engine.inspect("pub")["NetworkSettings"]["Ports"] == {"80/tcp": None}
    with pytest.raises(OSError):
        _http_get("127.0.0.1", everywhere, timeout=0)


def _host_ipv6_global() -> str | None:
    """A global IPv6 address of the host (/proc/net/if_inet6: scope 00), if it has one."""
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        fields = line.split()
        if fields[3] == "00" and fields[5] != "lo":
            return str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))
    return None


def test_published_ports_on_the_hosts_ipv6_addresses(engine: Engine) -> None:
    from composer.engine.publishing import host_has_ipv6

    if not host_has_ipv6():
        pytest.skip("this host has no IPv6")
    everywhere, local6, udp = _free_ports(3)
    cid = engine.run_detached("--name", "pub6", "-p", f"{everywhere}:80",
                              "-p", f"[::1]:{local6}:80", IMAGE, *HTTPD)
    engine.run_detached("--name", "echo6", "-p", f"{udp}:9999/udp", *PYTHON_MOUNTS, IMAGE,
                        "/usr/bin/python3", "-c", UDP_ECHO)
    answer = cid[:12] + "\n"
    assert _http_get("::1", everywhere) == answer
    assert _http_get("127.0.0.1", everywhere) == answer
    assert _http_get("::1", local6) == answer
    with pytest.raises(OSError):
        _http_get("127.0.0.1", local6, timeout=0)  # published on [::1] only
    global6 = _host_ipv6_global()
    if global6 is not None:
        assert _http_get(global6, everywhere) == answer
    assert _udp_echo("::1", udp, b"six") == b"echo:six"
    listed = engine.cli("container", "port", "pub6", check=True).stdout.splitlines()
    assert sorted(listed) == sorted([f"80/tcp -> 0.0.0.0:{everywhere}",
                                     f"80/tcp -> [::]:{everywhere}",
                                     f"80/tcp -> [::1]:{local6}"]), listed
    # A port the host holds on IPv6 only is refused too: both families are checked.
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as held:
        held.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        held.bind(("::1", 0))
        held.listen(1)
        taken = held.getsockname()[1]
        refused = engine.cli("container", "run", "--rm", "-p", f"{taken}:80", IMAGE, "true")
        assert refused.returncode == 125 and str(taken) in refused.stderr, refused.stderr
    # The IPv6 side is a process of its own: it keeps forwarding while the engine is away.
    pid = engine.engine_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: engine.engine_pid() is None, 10, "the engine gone")
    assert _http_get("::1", everywhere) == answer
    engine.cli("container", "stop", "-t", "1", "pub6", check=True)
    with pytest.raises(OSError):
        _http_get("::1", everywhere, timeout=0)
    engine.cli("container", "rm", "-f", "pub6", "echo6", check=True)
    _no_leaks(engine)


def test_publish_all_gives_every_exposed_port_a_random_host_port(engine: Engine) -> None:
    from composer.state.layout import open_images
    from tests.images import busybox_image

    with open_images(engine.root) as store:
        busybox_image(store, "local/exposing:1", config={"ExposedPorts": {"80/tcp": {}}})
    engine.run_detached("--name", "all", "-P", "--expose", "53/udp", "local/exposing:1",
                        *HTTPD)
    lines = engine.cli("container", "port", "all", check=True).stdout.splitlines()
    assert list(dict.fromkeys(line.split(" -> ")[0] for line in lines)) == \
        ["53/udp", "80/tcp"], lines
    port = int(engine.cli("container", "port", "all", "80", check=True).stdout.split(":")[-1])
    assert _http_get("127.0.0.1", port).strip() == engine.inspect("all")["Id"][:12]
    refused = engine.cli("container", "run", "--rm", "--network", "none", "-P", IMAGE, "true")
    assert refused.returncode != 0 and "-P" in refused.stderr, refused.stderr


def test_a_taken_host_port_is_refused_and_leaves_nothing(engine: Engine) -> None:
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        for flags in (("--rm",), ("-d", "--name", "blocked")):
            done = engine.cli("container", "run", *flags, "-p", f"{port}:80", IMAGE, *HTTPD)
            assert done.returncode == 125, (flags, done.stdout, done.stderr)
            assert str(port) in done.stderr and "in use" in done.stderr, done.stderr
            assert f"pid {os.getpid()}" in done.stderr, done.stderr  # the holder is named
        # The one that was made stays created, as Docker's does, but holds nothing.
        listed = engine.cli("container", "ls", "-aq").stdout.split()
        assert len(listed) == 1, listed
        blocked = engine.inspect("blocked")
        assert blocked["State"]["Status"] != "running"
        assert blocked["NetworkSettings"]["Ports"] == {"80/tcp": None}
        assert not (engine.root / "run" / "netns" / blocked["Id"]).exists()
        # Freed, the port can be published.
        holder.close()
        engine.cli("container", "start", "blocked", check=True)
        assert _http_get("127.0.0.1", port) == blocked["Id"][:12] + "\n"
        # Now held by one of ours: the message names the container.
        clash = engine.cli("container", "run", "--rm", "-p", f"{port}:80", IMAGE, "true")
        assert clash.returncode == 125 and f"0.0.0.0:{port}/tcp" in clash.stderr
        assert "container blocked" in clash.stderr, clash.stderr
        engine.cli("container", "rm", "-f", "blocked", check=True)
        assert engine.cli("container", "ls", "-aq").stdout == ""
        _no_leaks(engine)
    finally:
        holder.close()


def test_a_published_port_is_reachable_from_another_machine(engine: Engine) -> None:
    from pyroute2 import IPRoute, netns

    link = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    suffix = secrets.token_hex(3)
    name, outer, inner = f"nwt-{suffix}", f"nwt{suffix}h", f"nwt{suffix}n"
    assert outer not in link
    pair = _clear_subnet(250, 30)
    here, there = (str(a) for a in pair.hosts())
    (port,) = _free_ports(1)
    cid = engine.run_detached("--name", "site", "-p", f"{port}:80", IMAGE, *HTTPD)
    assert _http_get("127.0.0.1", port) == cid[:12] + "\n"
    netns.create(name)
    try:
        with IPRoute() as ip:
            ip.link("add", ifname=outer, kind="veth", peer={"ifname": inner,
                                                            "net_ns_fd": name})
            index = ip.link_lookup(ifname=outer)[0]
            ip.addr("add", index=index, address=here, prefixlen=30)
            ip.link("set", index=index, state="up")
        for argv in (["addr", "add", f"{there}/30", "dev", inner],
                     ["link", "set", inner, "up"], ["link", "set", "lo", "up"]):
            subprocess.run(["ip", "-n", name, *argv], check=True)
        client = ("import socket, sys, time\n"
                  "deadline = time.monotonic() + 20\n"
                  "while True:\n"
                  "    try:\n"
                  f"        s = socket.create_connection(({here!r}, {port}), timeout=3)\n"
                  "        break\n"
                  "    except OSError:\n"
                  "        if time.monotonic() > deadline: raise\n"
                  "        time.sleep(0.1)\n"
                  "s.sendall(b'GET /hostname HTTP/1.0\\r\\n\\r\\n')\n"
                  "data = b''\n"
                  "while chunk := s.recv(65536): data += chunk\n"
                  "sys.stdout.write(data.decode())\n")
        done = subprocess.run(["ip", "netns", "exec", name, sys.executable, "-c", client],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        # (Text mode: the answer's CRLFs read as newlines.)
        assert done.stdout.startswith("HTTP/1.1 200 OK\n"), done.stdout
        assert done.stdout.endswith("\n\n" + cid[:12] + "\n"), done.stdout
        # The other machine has no route into the containers' subnet itself.
        address = _ip(engine, "site", "bridge")
        direct = subprocess.run(["ip", "netns", "exec", name, "ip", "route", "get", address],
                                capture_output=True, text=True)
        assert direct.returncode != 0, direct.stdout
    finally:
        with IPRoute() as ip:
            if ip.link_lookup(ifname=outer):
                ip.link("del", ifname=outer)
        netns.remove(name)
    assert name not in netns.listnetns()


# -- DNS ----------------------------------------------------------------------------------------


def test_unknown_names_are_forwarded_upstream(engine: Engine) -> None:
    # A second server stands in for a container's own --dns server: on a loopback address of
    # its own, port 53 (a --dns server has no port).
    own = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    with _dns_server({"outside.test": "203.0.113.7"}) as (port, upstream), \
            _dns_server({"outside.test": "198.51.100.9"}, address=own, port=53) as (_, mine), \
            _engine_env(engine, COMPOSER_DNS_UPSTREAM=f"127.0.0.1:{port}"):
        _create_network(engine, "fwd")
        engine.run_detached("--name", "local", "--network", "fwd", IMAGE, "sleep", "300")
        done = _run(engine, "--network", "fwd", IMAGE, "sh", "-c",
                    "nslookup outside.test; echo ===; nslookup local; echo ===; "
                    "nslookup nowhere.test; echo rc=$?")
        outside, local, nowhere = done.stdout.split("===\n")
        assert _addresses(outside) == ["203.0.113.7"], done.stdout
        assert _addresses(local) == [_ip(engine, "local", "fwd")], done.stdout
        assert "NXDOMAIN" in nowhere and "rc=1" in nowhere, done.stdout
        assert "outside.test" in upstream.asked and "nowhere.test" in upstream.asked
        assert "local" not in upstream.asked  # container names are answered, not forwarded
        # A container's own --dns servers replace the upstream, for it alone.
        own_dns = _run(engine, "--network", "fwd", "--dns", own, IMAGE, "sh", "-c",
                       "cat /etc/resolv.conf; echo ===; nslookup outside.test; echo ===; "
                       "nslookup local")
        conf, outside, local = own_dns.stdout.split("===\n")
        gateway = engine.inspect("local")["NetworkSettings"]["Networks"]["fwd"]["Gateway"]
        assert conf.splitlines()[0] == f"nameserver {gateway}", conf
        assert _addresses(outside) == ["198.51.100.9"], own_dns.stdout
        assert _addresses(local) == [_ip(engine, "local", "fwd")], own_dns.stdout
        assert "outside.test" in mine.asked


def test_extra_hosts_dns_settings_and_hostname_in_the_etc_files(engine: Engine) -> None:
    with _http_server(b"host-via-gateway\n") as port:
        _create_network(engine, "etc")
        done = _run(engine, "--network", "etc", "--hostname", "box1", "--domainname",
                    "corp.example", "--add-host", "hostgw:host-gateway",
                    "--add-host", "db.internal:10.9.8.7", "--dns-search", "corp.example",
                    "--dns-search", "lab.example", "--dns-option", "ndots:2",
                    "--dns-option", "timeout:3", IMAGE, "sh", "-c",
                    "cat /etc/hostname; hostname; echo ===; cat /etc/hosts; echo ===; "
                    f"cat /etc/resolv.conf; echo ===; {_wget(f'http://hostgw:{port}/')}")
    hostname, hosts, resolv, fetched = done.stdout.split("===\n")
    assert hostname.split() == ["box1", "box1"], hostname
    gateway = json.loads(engine.cli("network", "inspect", "etc").stdout)[0]["IPAM"][
        "Config"][0]["Gateway"]
    entries = [line.split() for line in hosts.splitlines()]
    assert ["127.0.0.1", "localhost"] in entries, hosts
    assert [gateway, "hostgw"] in entries and ["10.9.8.7", "db.internal"] in entries, hosts
    own = [e for e in entries if "box1" in e]
    assert len(own) == 1 and own[0][1:] == ["box1.corp.example", "box1"], hosts
    assert ipaddress.IPv4Address(own[0][0]) in ipaddress.IPv4Network(
        json.loads(engine.cli("network", "inspect", "etc").stdout)[0]["IPAM"]["Config"][0][
            "Subnet"])
    assert resolv.splitlines() == [f"nameserver {gateway}",
                                   "search corp.example lab.example",
                                   "options ndots:2 timeout:3"], resolv
    assert fetched == "host-via-gateway\n"
    # Without a network of ours there is no resolver of ours: --dns is the nameserver.
    alone = _run(engine, "--network", "none", "--dns", "192.0.2.53", "--dns", "192.0.2.54",
                 "--add-host", "hostgw:host-gateway", IMAGE, "sh", "-c",
                 "cat /etc/resolv.conf; echo ===; cat /etc/hosts")
    resolv, hosts = alone.stdout.split("===\n")
    assert [line for line in resolv.splitlines() if line.startswith("nameserver")] == [
        "nameserver 192.0.2.53", "nameserver 192.0.2.54"], resolv
    assert ["127.0.0.1", "hostgw"] in [line.split() for line in hosts.splitlines()], hosts


# -- the network commands -----------------------------------------------------------------------


def test_network_ls_inspect_and_rm_of_one_in_use(engine: Engine) -> None:
    made = engine.cli("network", "create", "-l", "team=blue", "busy", check=True)
    network_id = made.stdout.strip()
    assert len(network_id) == 64
    cid = engine.run_detached("--name", "user", "--network", "busy", IMAGE, "sleep", "300")
    table = engine.cli("network", "ls", check=True).stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [network_id[:12], "busy", "bridge", "local"] in [line.split() for line in table]
    assert network_id[:12] in engine.cli("network", "ls", "-q").stdout.split()
    listed = json.loads(engine.cli("network", "ls", "--format", "json").stdout)
    assert any(n["Name"] == "busy" and n["Id"] == network_id for n in listed)
    shown = json.loads(engine.cli("network", "inspect", "busy", check=True).stdout)
    assert len(shown) == 1
    found = shown[0]
    assert (found["Name"], found["Id"], found["Driver"]) == ("busy", network_id, "bridge")
    assert found["Labels"] == {"team": "blue"} and found["Internal"] is False
    (config,) = found["IPAM"]["Config"]
    subnet = ipaddress.IPv4Network(config["Subnet"])
    assert ipaddress.IPv4Address(config["Gateway"]) in subnet
    address = _ip(engine, "user", "busy")
    assert found["Containers"][cid]["Name"] == "user"
    assert found["Containers"][cid]["IPv4Address"] == f"{address}/{subnet.prefixlen}"
    # By id prefix too.
    assert json.loads(engine.cli("network", "inspect", network_id[:12]).stdout)[0]["Id"] == \
        network_id
    refused = engine.cli("network", "rm", "busy")
    assert refused.returncode == 1, refused.stderr
    assert "busy" in refused.stderr and "active endpoints" in refused.stderr, refused.stderr
    assert "user" in refused.stderr, refused.stderr
    assert engine.inspect("user")["State"]["Status"] == "running"
    assert _run(engine, "--network", "busy", IMAGE, "nslookup", "user").returncode == 0
    missing = engine.cli("network", "inspect", "nothing")
    assert missing.returncode != 0 and "nothing" in missing.stderr
    assert engine.cli("network", "rm", "-f", "nothing").returncode == 0
    predefined = engine.cli("network", "rm", "host")
    assert predefined.returncode != 0 and "pre-defined" in predefined.stderr
    # Stopped, it no longer holds the network.
    engine.cli("container", "stop", "-t", "1", "user", check=True)
    assert engine.cli("network", "rm", "busy", check=True).stdout.split() == ["busy"]
    assert "busy" not in engine.cli("network", "ls").stdout
    engine.cli("container", "rm", "user", check=True)
    _no_leaks(engine)


def test_a_refused_duplicate_network_leaves_nothing(engine: Engine) -> None:
    from composer.engine import subnet_claims
    from composer.engine.networks import root_tag

    try:
        engine.cli("network", "create", "twice", check=True)
        dup = engine.cli("network", "create", "twice")
        assert dup.returncode != 0 and "exists" in dup.stderr, dup.stderr
        engine.cli("network", "rm", "twice", check=True)
        assert engine.cli("network", "ls", "-q").stdout == ""
        _no_leaks(engine)
    finally:
        # A leaked claim would keep the subnet from every other root while this one exists.
        for name in subnet_claims.mine(root_tag(engine.root)):
            (subnet_claims.CLAIMS / name).unlink(missing_ok=True)


# -- the engine away ----------------------------------------------------------------------------


PROBE = ("while true; do "
         "if nslookup web >/dev/null 2>&1 && timeout 3 wget -q -O - http://www/hostname "
         ">/dev/null 2>&1; then echo ok; else echo fail; fi >> /out/probe; sleep 0.2; done")


def test_names_and_ports_keep_working_while_the_engine_is_killed(engine: Engine,
                                                                 tmp_path: Path) -> None:
    (port,) = _free_ports(1)
    out = tmp_path / "out"
    out.mkdir()
    probe = out / "probe"
    _create_network(engine, "steady")
    web = engine.run_detached("--name", "web", "--network", "steady", "--network-alias", "www",
                              "-p", f"{port}:80", IMAGE, *HTTPD)
    engine.run_detached("--name", "probe", "--network", "steady", "-v", f"{out}:/out", IMAGE,
                        "sh", "-c", PROBE)

    def oks() -> list[str]:
        return probe.read_text().split() if probe.exists() else []

    _wait(lambda: "ok" in oks(), 30, "a first good probe")
    resolver_pid = int((engine.root / "run" / "dns" / "resolver.pid").read_text())
    pid = engine.engine_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), 10, "engine exit")
    assert engine.engine_pid() is None
    seen = len(oks())
    _wait(lambda: len(oks()) >= seen + 5, 30, "five probes while the engine is away")
    assert oks()[seen:] == ["ok"] * (len(oks()) - seen), oks()[seen:]
    assert _http_get("127.0.0.1", port) == web[:12] + "\n"
    assert _http_get(_host_address(), port) == web[:12] + "\n"
    assert Path(f"/proc/{resolver_pid}").exists()
    # The next command starts an engine that adopts them all, resolver included.
    listed = engine.cli("container", "ls", check=True).stdout
    assert "web" in listed and "probe" in listed
    assert engine.engine_pid() not in (None, pid)
    assert int((engine.root / "run" / "dns" / "resolver.pid").read_text()) == resolver_pid
    seen = len(oks())
    _wait(lambda: len(oks()) >= seen + 3, 30, "probes after the restart")
    assert oks()[seen:] == ["ok"] * (len(oks()) - seen), oks()[seen:]
    assert _http_get("127.0.0.1", port) == web[:12] + "\n"
    done = _run(engine, "--network", "steady", IMAGE, "sh", "-c", _wget("http://www/hostname"))
    assert done.stdout == web[:12] + "\n"


# -- crash points -------------------------------------------------------------------------------


CREATE_POINTS = ("network-after-row", "network-after-bridge")
ATTACH_POINTS = ("network-after-lease", "network-after-netns", "network-after-veth",
                 "network-after-nat")


def _crash(engine: Engine, point: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with the fault armed in a fresh engine; it must die there."""
    engine.cli("engine", "stop", check=True)
    with _engine_env(engine, COMPOSER_FAULT=point):
        engine.cli("engine", "start", check=True)
        pid = engine.engine_pid()
        assert pid is not None
        done = engine.cli(*args)
    assert done.returncode != 0, (point, args, done.stdout)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), 10, f"the engine's death at {point}")
    return done


def _our_endpoints(engine: Engine) -> list[str]:
    """The containers (by id) that have a veth of this root's engine on the host."""
    from composer.engine.networks import root_tag

    marker = f"composer:{root_tag(engine.root)}:endpoint:"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(marker)[1].split(":")[0] for line in links.splitlines()
            if marker in line]


def _converged(engine: Engine, network: str, port: int) -> None:
    """A new engine: what the crash left is gone or whole, the network works, and removing
    everything leaves nothing."""
    # Aliases need a user network; on the default one the container's name is enough.
    name = "www" if network != "bridge" else "web"
    aliases = ("--network-alias", "www") if network != "bridge" else ()
    web = engine.run_detached("--name", "web", "--network", network, *aliases,
                              "-p", f"127.0.0.1:{port}:80", IMAGE, *HTTPD)
    assert engine.engine_pid() is not None
    done = _run(engine, "--network", network, IMAGE, "sh", "-c",
                f"{_wget(f'http://{name}/hostname')} && nslookup web")
    assert done.stdout.startswith(web[:12] + "\n"), done.stdout
    assert _addresses(done.stdout) == [_ip(engine, "web", network)]
    assert _http_get("127.0.0.1", port) == web[:12] + "\n"
    listed = engine.cli("container", "ls", "-a", "--no-trunc", "-q").stdout.split()
    running = [c for c in listed if engine.inspect(c)["State"]["Status"] == "running"]
    assert running == [web], listed
    # Only the running container has a veth and a namespace file.
    assert _our_endpoints(engine) == [web]
    assert [p.name for p in (engine.root / "run" / "netns").iterdir()] == [web]
    # The victim of the crash, if it was made, starts now, and it can be removed.
    if "victim" in engine.cli("container", "ls", "-a").stdout:
        engine.cli("container", "start", "victim", check=True)
        assert engine.inspect("victim")["State"]["Status"] == "running"
        assert _addresses(_run(engine, "--network", network, IMAGE, "nslookup",
                               "victim").stdout) == [_ip(engine, "victim", network)]
    for container_id in engine.cli("container", "ls", "-aq", "--no-trunc").stdout.split():
        engine.cli("container", "rm", "-f", container_id, check=True)
    if network != "bridge":
        engine.cli("network", "rm", network, check=True)
    assert engine.cli("network", "ls", "-q").stdout == ""
    _no_leaks(engine)


@pytest.mark.parametrize("point", CREATE_POINTS + ATTACH_POINTS)
def test_a_crash_at_each_network_step_converges(engine: Engine, point: str) -> None:
    (port,) = _free_ports(1)
    # A subnet of its own rather than the pool's first free one: what a crash leaves half
    # made never stands in a neighbour root's way (test_a_crash_before_the_bridge_... shows
    # that a neighbour is kept off it anyway).
    subnet = str(_clear_subnet(random.randrange(100, 200), 24))
    if point in CREATE_POINTS:
        _crash(engine, point, "network", "create", "--subnet", subnet, "crashnet")
        # The network was half made: the new engine finishes it, or it is gone.
        if "crashnet" not in engine.cli("network", "ls").stdout:
            engine.cli("network", "create", "--subnet", subnet, "crashnet", check=True)
    else:
        engine.cli("network", "create", "--subnet", subnet, "crashnet", check=True)
        _crash(engine, point, "container", "run", "-d", "--name", "victim", "--network",
               "crashnet", IMAGE, "sleep", "300")
    _converged(engine, "crashnet", port)


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_a_crash_making_the_default_network_converges(engine: Engine, point: str) -> None:
    # The default network is made by the first container run that needs it.
    (port,) = _free_ports(1)
    _crash(engine, point, "container", "run", "-d", "--name", "victim", IMAGE, "sleep", "300")
    _converged(engine, "bridge", port)


@pytest.fixture
def neighbour(tmp_path: Path) -> Iterator[Engine]:
    """A second state root with its own engine, torn down as ``engine`` is."""
    with engine_at(tmp_path / "neighbour" / "root") as other:
        yield other


def test_a_crash_before_the_bridge_does_not_take_a_neighbours_subnet(
        engine: Engine, neighbour: Engine) -> None:
    subnet = str(_clear_subnet(random.randrange(100, 200), 24))
    _crash(engine, "network-after-row", "network", "create", "--subnet", subnet, "first")
    # Meanwhile a neighbour root asks for the same subnet: refused (the crashed root still
    # holds it), or given, and then the crashed root's next engine must not take it back.
    made = neighbour.cli("network", "create", "--subnet", subnet, "second")
    if made.returncode != 0:
        assert subnet in made.stderr or "overlap" in made.stderr, made.stderr
        (port,) = _free_ports(1)
        _converged(engine, "first", port)
        return
    web = neighbour.run_detached("--name", "web", "--network", "second", IMAGE, *HTTPD)
    listed = engine.cli("network", "ls")
    routes = subprocess.run(["ip", "-4", "-o", "route", "show", subnet], capture_output=True,
                            text=True).stdout.splitlines()
    done = neighbour.cli("container", "run", "--rm", "--network", "second", IMAGE, "sh", "-c",
                         _retry("timeout 3 wget -q -O - http://web/hostname", 10))
    assert listed.returncode == 0, listed.stderr
    assert len(routes) == 1, routes
    assert done.returncode == 0 and done.stdout == web[:12] + "\n", (done.stdout, done.stderr)
