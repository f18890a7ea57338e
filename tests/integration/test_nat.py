"""nat and ports against the real kernel, inside network namespaces this test makes.

Each test builds a small world: a "host" namespace with two bridges (``br1`` and ``br2``) and an
internal one (``br3``), "container" namespaces on them (``c1`` and ``c1b`` on br1, ``c2`` on
br2, ``c3`` on br3), and an "outside" machine joined to the host by a veth (192.0.2.0/24; it has
no route to the container subnets, so only masquerade lets their traffic back). The ruleset is
applied inside the host namespace (``netns=``), and real traffic shows what it does: Python
servers in the container namespaces answer with the address they saw the client at.

Nothing happens in the test process's own namespace: every link is made inside the namespaces,
which the fixture deletes afterwards, checking that none is left and that the real host's
links, nftables ruleset and iptables rules are exactly what they were. Servers are stopped by
their pid. A connection that must fail gets a short timeout; nothing waits for time to pass.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from composer.runtime import nat
from composer.runtime.nat import BridgeNet, Publication

pytestmark = [
    pytest.mark.root,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="making network namespaces needs root"),
    pytest.mark.skipif(any(shutil.which(p) is None for p in ("ip", "nft", "nsenter")),
                       reason="needs iproute2, nftables and util-linux (nsenter)"),
]

ROOT = Path(__file__).resolve().parents[2]
NETNS_DIR = Path("/run/netns")
OUTSIDE, UPLINK = "192.0.2.2", "192.0.2.1"  # TEST-NET-1: the outside machine, the host's side
SHOULD_WORK, SHOULD_FAIL = 10.0, 1.0  # seconds a client waits (a failure is a drop: silence)

SERVER = r"""
import socket, sys
proto, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
while True:
    if proto == "tcp":
        conn, peer = s.accept()
        conn.sendall(f"{name} saw {peer[0]}".encode())
        conn.close()
    else:
        data, peer = s.recvfrom(512)
        s.sendto(f"{name} saw {peer[0]}".encode(), peer)
"""

CLIENT = r"""
import socket, sys
proto, host, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.settimeout(timeout)
try:
    if proto == "tcp":
        s.connect((host, port))
        print(s.recv(512).decode())
    else:
        s.sendto(b"hello", (host, port))
        print(s.recvfrom(512)[0].decode())
except OSError as e:
    print(f"FAIL {e!r}")
    sys.exit(1)
"""


def run(*argv: str, netns: str | None = None, check: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    full = list(argv) if netns is None else ["nsenter", f"--net={NETNS_DIR / netns}", *argv]
    done = subprocess.run(full, capture_output=True, text=True, input=input, check=False,
                          timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed ({done.returncode}): {done.stderr}")
    return done


LAB_LINKS = ("br1", "br2", "br3", "uplink", "v-c1", "v-c1b", "v-c2", "v-c3")


def host_state(table: str) -> tuple[list[str], list[str], list[str]]:
    """What of the lab could show in the namespace the test runs in (it must not): its links,
    its table, rules naming its addresses. Only the lab's own objects, since other tests may
    change the host's links and firewall at the same time."""
    links = run("ip", "-o", "link", "show").stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    ruleset = run("nft", "list", "tables").stdout
    iptables = run("iptables", "-w", "-S").stdout if shutil.which("iptables") else ""
    return ([n for n in names if n in LAB_LINKS],
            [t for t in ruleset.splitlines() if table in t],
            [r for r in iptables.splitlines() if "10.77." in r or table in r])


@dataclass
class Lab:
    """The namespaces of one test, by role, and the servers started in them."""

    prefix: str
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def path(self, role: str) -> Path:
        return NETNS_DIR / self.ns(role)

    @property
    def table(self) -> str:
        return self.prefix.replace("-", "_")

    def sh(self, role: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(*argv, netns=self.ns(role), check=check)

    def serve(self, role: str, protocol: str, port: int) -> None:
        process = subprocess.Popen(
            ["nsenter", f"--net={self.path(role)}", sys.executable, "-c", SERVER, protocol,
             str(port), role], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.servers.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.stderr

    def ask(self, role: str, protocol: str, host: str, port: int,
            timeout: float = SHOULD_WORK) -> str:
        """What the server at host:port answered the client in ``role``, or "FAIL ..."."""
        done = self.sh(role, sys.executable, "-c", CLIENT, protocol, host, str(port),
                       str(timeout), check=False)
        return done.stdout.strip() or done.stderr.strip()

    def apply(self, networks: list[BridgeNet], publications: list[Publication]) -> None:
        nat.apply(self.table, networks, publications, netns=self.path("host"))

    def iptables(self) -> str:
        return self.sh("host", "iptables", "-w", "-S").stdout


NETWORKS = [BridgeNet("br1", IPv4Network("10.77.1.0/24")),
            BridgeNet("br2", IPv4Network("10.77.2.0/24")),
            BridgeNet("br3", IPv4Network("10.77.3.0/24"), internal=True)]
WEB = Publication("tcp", "", 8080, "10.77.1.2", 80, "br1")
DNS = Publication("udp", "", 5353, "10.77.1.2", 53, "br1")
ON_UPLINK = Publication("tcp", UPLINK, 8081, "10.77.2.2", 80, "br2")


def _build(lab: Lab) -> None:
    roles = ("host", "c1", "c1b", "c2", "c3", "out")
    for role in roles:
        run("ip", "netns", "add", lab.ns(role))
        lab.sh(role, "ip", "link", "set", "lo", "up")
    h = lab.ns("host")
    for n, bridge in enumerate(("br1", "br2", "br3"), start=1):
        lab.sh("host", "ip", "link", "add", bridge, "type", "bridge")
        lab.sh("host", "ip", "addr", "add", f"10.77.{n}.1/24", "dev", bridge)
        lab.sh("host", "ip", "link", "set", bridge, "up")
    # Veths are born with their peer inside the container namespace: nothing is ever made in
    # the namespace the test runs in.
    for role, bridge, address in (("c1", "br1", "10.77.1.2"), ("c1b", "br1", "10.77.1.3"),
                                  ("c2", "br2", "10.77.2.2"), ("c3", "br3", "10.77.3.2")):
        gateway = address.rsplit(".", 1)[0] + ".1"
        lab.sh("host", "ip", "link", "add", f"v-{role}", "type", "veth", "peer", "name", "eth0",
               "netns", lab.ns(role))
        lab.sh("host", "ip", "link", "set", f"v-{role}", "master", bridge, "up")
        lab.sh(role, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
        lab.sh(role, "ip", "link", "set", "eth0", "up")
        lab.sh(role, "ip", "route", "add", "default", "via", gateway)
    lab.sh("host", "ip", "link", "add", "uplink", "type", "veth", "peer", "name", "eth0",
           "netns", lab.ns("out"))
    lab.sh("host", "ip", "addr", "add", f"{UPLINK}/24", "dev", "uplink")
    lab.sh("host", "ip", "link", "set", "uplink", "up")
    lab.sh("out", "ip", "addr", "add", f"{OUTSIDE}/24", "dev", "eth0")
    lab.sh("out", "ip", "link", "set", "eth0", "up")
    # Sysctls under /proc/sys/net are those of the writer's namespace.
    lab.sh("host", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward; "
           "echo 1 > /proc/sys/net/ipv4/conf/br1/route_localnet; "
           "echo 1 > /proc/sys/net/ipv4/conf/br2/route_localnet")
    assert h in run("ip", "netns", "list").stdout


@pytest.fixture
def lab() -> Iterator[Lab]:
    world = Lab(prefix=f"cnat-{secrets.token_hex(3)}")
    assert host_state(world.table) == ([], [], []), "the lab's names are taken on this host"
    try:
        _build(world)
        world.serve("c1", "tcp", 80)
        world.serve("c1", "udp", 53)
        world.serve("c2", "tcp", 80)
        world.serve("out", "tcp", 9000)
        yield world
    finally:
        for process in world.servers:
            process.kill()  # by its pid: only what this test started
            process.wait(10)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        for role in ("host", "c1", "c1b", "c2", "c3", "out"):
            if (NETNS_DIR / world.ns(role)).exists():
                run("ip", "netns", "delete", world.ns(role), check=False)
    assert world.prefix not in run("ip", "netns", "list").stdout
    assert host_state(world.table) == ([], [], []), "the test changed its own namespace"


# -- the tests ------------------------------------------------------------------------------------

def test_published_tcp_port_from_the_host_itself_and_from_outside(lab: Lab) -> None:
    lab.apply(NETWORKS, [WEB, ON_UPLINK])
    # The host at 127.0.0.1: output DNAT, route_localnet, loopback source masqueraded.
    assert lab.ask("host", "tcp", "127.0.0.1", 8080) == "c1 saw 10.77.1.1"
    # The host at its own non-loopback address: output DNAT, its own source kept.
    assert lab.ask("host", "tcp", UPLINK, 8080) == f"c1 saw {UPLINK}"
    # Another machine: prerouting DNAT; the client's address reaches the container.
    assert lab.ask("out", "tcp", UPLINK, 8080) == f"c1 saw {OUTSIDE}"
    # Published on one host address only: reached there, not at the others.
    assert lab.ask("out", "tcp", UPLINK, 8081) == f"c2 saw {OUTSIDE}"
    assert lab.ask("host", "tcp", "127.0.0.1", 8081, SHOULD_FAIL).startswith("FAIL")
    # Hairpin: a container of the same network through the host's address.
    assert lab.ask("c1b", "tcp", UPLINK, 8080) == "c1 saw 10.77.1.1"
    # A container of another network reaches a published port too (as with Docker).
    assert lab.ask("c2", "tcp", UPLINK, 8080) == "c1 saw 10.77.1.1"
    # Out: masqueraded behind the host's address, since the outside has no route back.
    assert lab.ask("c1", "tcp", OUTSIDE, 9000) == f"out saw {UPLINK}"


def test_applying_again_changes_nothing_and_tables_finds_it(lab: Lab) -> None:
    lab.apply(NETWORKS, [WEB])
    first = lab.sh("host", "nft", "-s", "list", "ruleset").stdout
    assert f"table ip {lab.table}" in first
    lab.apply(list(reversed(NETWORKS)), [WEB, WEB])
    assert lab.sh("host", "nft", "-s", "list", "ruleset").stdout == first
    assert nat.tables("cnat_", netns=lab.path("host")) == [lab.table]
    assert nat.tables("composer", netns=lab.path("host")) == []
    # A new set of publications replaces the old one whole.
    lab.apply(NETWORKS, [DNS])
    assert lab.ask("out", "udp", UPLINK, 5353) == f"c1 saw {OUTSIDE}"
    assert lab.ask("out", "tcp", UPLINK, 8080, SHOULD_FAIL).startswith("FAIL")


def test_published_udp_port_and_its_conntrack_flush(lab: Lab) -> None:
    lab.apply(NETWORKS, [DNS])
    assert lab.ask("out", "udp", UPLINK, 5353) == f"c1 saw {OUTSIDE}"
    assert lab.ask("host", "udp", "127.0.0.1", 5353) == "c1 saw 10.77.1.1"
    flush = ("import sys; from composer.runtime.ports import flush_conntrack; "
             "print(flush_conntrack(sys.argv[1]))")
    env_python = ["env", f"PYTHONPATH={ROOT}", sys.executable, "-c", flush, "10.77.1.2"]
    flushed = int(lab.sh("host", *env_python).stdout)
    assert flushed >= 2  # both DNATed UDP flows (reply source 10.77.1.2)
    if shutil.which("conntrack"):
        listed = lab.sh("host", "conntrack", "-L", "--reply-src", "10.77.1.2", check=False)
        assert "10.77.1.2" not in listed.stdout
    assert int(lab.sh("host", *env_python).stdout) == 0  # nothing left is success


def test_networks_are_isolated_and_internal_ones_closed(lab: Lab) -> None:
    # So that "no direct access" is the ruleset's doing, not a missing route.
    lab.sh("out", "ip", "route", "add", "10.77.0.0/16", "via", UPLINK)
    lab.serve("c3", "tcp", 80)
    # A container trying the host's loopback services: it needs its own 127/8 route gone, and
    # the host takes 127.0.0.0/8 from br1 because of route_localnet.
    lab.serve("host", "tcp", 7777)
    lab.sh("c1", "ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
    lab.sh("c1", "ip", "route", "add", "127.0.0.2/32", "via", "10.77.1.1", "dev", "eth0")
    lab.sh("c1", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet")
    # Plain routing first, to show each path works without composer's table.
    assert lab.ask("c1", "tcp", "10.77.2.2", 80) == "c2 saw 10.77.1.2"
    assert lab.ask("out", "tcp", "10.77.1.2", 80) == f"c1 saw {OUTSIDE}"
    assert lab.ask("c3", "tcp", OUTSIDE, 9000) == "out saw 10.77.3.2"
    assert lab.ask("c1", "tcp", "10.77.3.2", 80) == "c3 saw 10.77.1.2"
    assert lab.ask("c1", "tcp", "127.0.0.2", 7777) == "host saw 10.77.1.2"

    lab.apply(NETWORKS, [WEB])
    assert lab.ask("c1", "tcp", "10.77.2.2", 80, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("c2", "tcp", "10.77.1.2", 80, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("out", "tcp", "10.77.1.2", 80, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("c3", "tcp", OUTSIDE, 9000, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("c1", "tcp", "10.77.3.2", 80, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("c1", "tcp", "127.0.0.2", 7777, SHOULD_FAIL).startswith("FAIL")
    # Within a network, and through the published port, all is still well.
    assert lab.ask("c1b", "tcp", "10.77.1.2", 80) == "c1 saw 10.77.1.3"
    assert lab.ask("out", "tcp", UPLINK, 8080) == f"c1 saw {OUTSIDE}"


@pytest.mark.skipif(shutil.which("iptables") is None, reason="needs iptables")
def test_forward_policy_drop_gets_the_compat_jump_and_remove_takes_it(lab: Lab) -> None:
    lab.sh("host", "iptables", "-w", "-P", "FORWARD", "DROP")  # as Docker leaves a host
    lab.apply(NETWORKS, [WEB])
    rules = lab.iptables()
    chain = nat.compat_chain(lab.table)
    assert f"-N {chain}" in rules
    forward = [line for line in rules.splitlines() if line.startswith("-A FORWARD")]
    jump = f'-A FORWARD -m comment --comment "composer:{lab.table}" -j {chain}'
    assert forward == [jump]
    assert lab.ask("out", "tcp", UPLINK, 8080) == f"c1 saw {OUTSIDE}"
    assert lab.ask("c1", "tcp", OUTSIDE, 9000) == f"out saw {UPLINK}"
    # It is the jump that lets them through: without it the DROP policy wins...
    lab.sh("host", "iptables", "-w", "-D", "FORWARD", "-m", "comment", "--comment",
           f"composer:{lab.table}", "-j", chain)
    assert lab.ask("out", "tcp", UPLINK, 8080, SHOULD_FAIL).startswith("FAIL")
    assert lab.ask("c1", "tcp", OUTSIDE, 9000, SHOULD_FAIL).startswith("FAIL")
    lab.apply(NETWORKS, [WEB])  # ...and applying again puts it back
    assert lab.iptables() == rules
    assert lab.ask("out", "tcp", UPLINK, 8080) == f"c1 saw {OUTSIDE}"
    # Still only composer's accept path: the isolation drops in its own table hold.
    assert lab.ask("c1", "tcp", "10.77.2.2", 80, SHOULD_FAIL).startswith("FAIL")

    lab.apply(NETWORKS, [WEB])
    assert lab.iptables() == rules  # applying again changes nothing
    lab.apply(NETWORKS[:1], [WEB])  # a network gone: the chain follows
    assert "br2" not in lab.iptables() and "br1" in lab.iptables()

    nat.remove(lab.table, netns=lab.path("host"))
    after = lab.iptables()
    assert chain not in after and "composer:" not in after
    assert "-P FORWARD DROP" in after  # the policy is not composer's to change
    assert nat.tables("cnat_", netns=lab.path("host")) == []
    assert lab.ask("c1", "tcp", OUTSIDE, 9000, SHOULD_FAIL).startswith("FAIL")
    nat.remove(lab.table, netns=lab.path("host"))  # missing is success


def test_empty_apply_removes_and_nft_errors_are_reported(lab: Lab) -> None:
    lab.apply(NETWORKS, [WEB])
    lab.apply([], [])
    assert nat.tables("cnat_", netns=lab.path("host")) == []
    with pytest.raises(nat.NatError) as caught:
        nat.apply(lab.table, NETWORKS, [WEB], netns=Path("/run/netns/no-such-namespace"))
    assert "no-such-namespace" in str(caught.value)
