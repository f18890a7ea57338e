"""composer.runtime.netlink against the real kernel: namespaces, bridges, veths, routes.

Every test names its links with a prefix of its own (``tn`` and 6 hex digits) and keeps its
namespaces under ``tmp_path``; the ``leftovers`` fixture fails a test that leaves a link with
its prefix or a mount under its ``tmp_path``, after removing them. What the tests check inside
a namespace they read without the module under test: from a thread that ``setns()``-es into it
(``/proc/thread-self/net/route``, interface ioctls, TCP connections between namespaces).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import os
import secrets
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from composer.runtime import netlink
from composer.runtime.netlink import NetlinkError

pytestmark = [
    pytest.mark.root,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="making network namespaces and links needs root"),
]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCGIFHWADDR, SIOCGIFMTU = 0x8913, 0x8927, 0x8921
IFF_UP = 0x1
SYS_NET = Path("/sys/class/net")  # sysfs of the host namespace, where the tests run
IP = ipaddress.IPv4Interface
GW = ipaddress.IPv4Address


# -- looking without the module -------------------------------------------------------------------


def in_netns(path: Path, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread that has entered the network namespace at ``path``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {path}")
            finally:
                os.close(fd)
            box["result"] = work()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["result"]
    return result


def interface(name: str) -> dict[str, Any]:
    """Flags, MTU and MAC of ``name`` in the calling thread's namespace (interface ioctls)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16s16x", name.encode())
        flags = struct.unpack_from("16xH", fcntl.ioctl(s, SIOCGIFFLAGS, request))[0]
        mtu = struct.unpack_from("16xi", fcntl.ioctl(s, SIOCGIFMTU, request))[0]
        mac = fcntl.ioctl(s, SIOCGIFHWADDR, request)[18:24]
    return {"up": bool(flags & IFF_UP), "mtu": mtu, "mac": ":".join(f"{b:02x}" for b in mac)}


def default_gateways() -> list[str]:
    """The gateways of the default routes in the calling thread's namespace."""
    gateways = []
    for line in Path("/proc/thread-self/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000" and fields[7] == "00000000":  # destination and mask 0
            gateways.append(str(ipaddress.IPv4Address(bytes.fromhex(fields[2])[::-1])))
    return gateways


def interface_names() -> list[str]:
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


def tcp_talks(server_ns: Path | None, address: str, client_ns: Path | None) -> bool:
    """Whether a client in ``client_ns`` reaches a listener on ``address`` in ``server_ns``
    (None: the host) and the bytes arrive; the timeout only keeps a broken network from
    hanging the test."""

    def make() -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    server = make() if server_ns is None else in_netns(server_ns, make)
    client = make() if client_ns is None else in_netns(client_ns, make)
    with server, client:
        server.bind((address, 0))
        server.listen(1)
        client.settimeout(10)
        server.settimeout(10)
        client.connect(server.getsockname())
        peer, _ = server.accept()
        with peer:
            client.sendall(b"ping")
            return peer.recv(4) == b"ping"


def links_named(prefix: str) -> list[str]:
    return sorted(name for name in os.listdir(SYS_NET) if name.startswith(prefix))


def mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # "\040" for a space
        if point == str(root) or point.startswith(f"{root}/"):
            found.append(point)
    return found


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def prefix(tmp_path: Path) -> Iterator[str]:
    """The test's link-name prefix; afterwards, nothing with it and no mount under tmp_path."""
    name = f"tn{secrets.token_hex(3)}"
    yield name
    links, mounts = links_named(name), mounts_under(tmp_path)
    for link in links:
        with contextlib.suppress(NetlinkError):
            netlink.remove_link(link)
    for point in reversed(mounts):
        with contextlib.suppress(NetlinkError):
            netlink.remove_netns(Path(point))
    assert not links, f"links left behind: {links}"
    assert not mounts, f"mounts left behind: {mounts}"


def alias_of(prefix: str) -> str:
    return f"composer-test:{prefix}:"


@pytest.fixture
def bridge(prefix: str) -> Iterator[str]:
    """A bridge with 10.231.0.1/24, removed afterwards."""
    name = f"{prefix}br"
    netlink.ensure_bridge(name, alias=f"{alias_of(prefix)}net", gateway=IP("10.231.0.1/24"))
    yield name
    netlink.remove_link(name)


def test_a_bridge_keeps_the_mac_it_was_given_as_ports_join(prefix: str, tmp_path: Path) -> None:
    # Unset, a bridge's MAC follows the lowest of its ports': containers that looked up the
    # gateway before a port with a lower MAC joined would send to a MAC the bridge drops.
    pyroute2: Any = pytest.importorskip("pyroute2")
    name = f"{prefix}mb"
    netlink.ensure_bridge(name, alias=f"{alias_of(prefix)}net", gateway=IP("10.236.0.1/24"),
                          mac="02:42:0a:ec:00:01")
    try:
        for n, mac in enumerate(("00:00:00:00:00:02", "00:00:00:00:00:01")):
            ns = tmp_path / f"m{n}" / "net"
            netlink.create_netns(ns)
            netlink.ensure_veth(host_name=f"{prefix}m{n}", bridge=name, netns=ns,
                                inner_name="eth0", alias=f"{alias_of(prefix)}m{n}",
                                address=IP(f"10.236.0.{n + 2}/24"), gateway=None)
            with pyroute2.IPRoute() as ipr:  # a port with a lower MAC than any before it
                ipr.link("set", index=ipr.link_lookup(ifname=f"{prefix}m{n}")[0], address=mac)
            assert interface(name)["mac"] == "02:42:0a:ec:00:01"
    finally:
        for n in range(2):
            netlink.remove_link(f"{prefix}m{n}")
            netlink.remove_netns(tmp_path / f"m{n}" / "net")
        netlink.remove_link(name)


def container(prefix: str, tmp_path: Path, bridge: str, n: int, *, inner: str = "eth0",
              **options: Any) -> Path:
    """A namespace with a veth ``<prefix>v<n>`` on ``bridge`` as 10.231.0.<n+1>/24."""
    ns = tmp_path / f"c{n}" / "net"
    netlink.create_netns(ns)
    settings: dict[str, Any] = {"address": IP(f"10.231.0.{n + 1}/24"), "gateway": GW("10.231.0.1")}
    settings.update(options)
    netlink.ensure_veth(host_name=f"{prefix}v{n}", bridge=bridge, netns=ns, inner_name=inner,
                        alias=f"{alias_of(prefix)}c{n}", **settings)
    return ns


def remove_container(prefix: str, tmp_path: Path, n: int) -> None:
    netlink.remove_link(f"{prefix}v{n}")
    netlink.remove_netns(tmp_path / f"c{n}" / "net")


# -- namespaces -----------------------------------------------------------------------------------


def test_create_netns_is_idempotent_with_loopback_up(tmp_path: Path, prefix: str) -> None:
    ns = tmp_path / "deep" / "er" / "net"
    netlink.create_netns(ns)
    inode = os.stat(ns).st_ino
    netlink.create_netns(ns)  # already a namespace: success, and the same one
    assert os.stat(ns).st_ino == inode
    assert mounts_under(tmp_path) == [str(ns)]
    assert os.stat(ns).st_ino != os.stat("/proc/self/ns/net").st_ino
    assert in_netns(ns, lambda: interface("lo"))["up"]
    assert in_netns(ns, interface_names) == ["lo"]
    assert netlink.addresses_in(ns) == {"lo": ["127.0.0.1/8"]}
    assert tcp_talks(ns, "127.0.0.1", ns)

    netlink.remove_netns(ns)
    assert not ns.exists()
    assert mounts_under(tmp_path) == []


def test_removing_what_is_missing_is_success(tmp_path: Path, prefix: str) -> None:
    netlink.remove_netns(tmp_path / "never" / "made")
    plain = tmp_path / "plain"
    plain.touch()
    netlink.remove_netns(plain)  # a file that is not mounted: removed
    assert not plain.exists()
    netlink.remove_link(f"{prefix}none")


def test_create_netns_over_a_leftover_file(tmp_path: Path, prefix: str) -> None:
    ns = tmp_path / "net"
    ns.touch()  # an unmounted file, as a reboot leaves it
    netlink.create_netns(ns)
    assert netlink.addresses_in(ns) == {"lo": ["127.0.0.1/8"]}
    netlink.remove_netns(ns)


def test_entering_a_missing_namespace_is_a_netlink_error(tmp_path: Path) -> None:
    with pytest.raises(NetlinkError, match=r"cannot enter the network namespace .*missing"):
        netlink.addresses_in(tmp_path / "missing")


# -- bridges --------------------------------------------------------------------------------------


def test_ensure_bridge_twice_is_one_bridge(prefix: str) -> None:
    name, alias = f"{prefix}br", f"{alias_of(prefix)}net"
    try:
        netlink.ensure_bridge(name, alias=alias, gateway=IP("10.232.0.1/16"), mtu=1400)
        netlink.ensure_bridge(name, alias=alias, gateway=IP("10.232.0.1/16"), mtu=1400)
        assert links_named(prefix) == [name]
        assert (SYS_NET / name / "bridge").is_dir()
        assert (SYS_NET / name / "ifalias").read_text().strip() == alias
        assert int((SYS_NET / name / "flags").read_text(), 16) & IFF_UP
        assert (SYS_NET / name / "mtu").read_text().strip() == "1400"
        assert GW("10.232.0.1") in netlink.host_addresses()
        assert ipaddress.IPv4Network("10.232.0.0/16") in netlink.host_routes()
        assert netlink.links_by_alias(alias_of(prefix)) == [(name, alias)]
    finally:
        netlink.remove_link(name)
    assert links_named(prefix) == []
    netlink.remove_link(name)  # gone already: success


def test_ensure_bridge_refuses_a_link_that_is_not_a_bridge(prefix: str) -> None:
    pyroute2: Any = pytest.importorskip("pyroute2")
    name = f"{prefix}x0"
    with pyroute2.IPRoute() as ipr:  # a link of another kind: a veth pair
        ipr.link("add", ifname=name, kind="veth", peer=f"{prefix}x1")
    try:
        with pytest.raises(NetlinkError, match=rf"{name}.* is a veth interface, not a bridge"):
            netlink.ensure_bridge(name, alias="composer-test:no", gateway=IP("10.233.0.1/24"))
        assert links_named(prefix) == [name, f"{prefix}x1"]  # left as it was
        assert (SYS_NET / name / "ifalias").read_text().strip() == ""
    finally:
        netlink.remove_link(name)


def test_invalid_names_are_refused_before_the_kernel_sees_them(prefix: str) -> None:
    with pytest.raises(NetlinkError, match="not a valid interface name"):
        netlink.ensure_bridge(f"{prefix}-much-too-long", alias="x", gateway=IP("10.234.0.1/24"))
    with pytest.raises(NetlinkError, match="not a valid interface name"):
        netlink.remove_link("a/b")


def test_netlink_works_from_inside_a_running_event_loop(prefix: str) -> None:
    # pyroute2's synchronous API runs its own loop, which cannot run inside a running one.
    name = f"{prefix}br"

    async def main() -> list[tuple[str, str]]:
        netlink.ensure_bridge(name, alias=f"{alias_of(prefix)}net", gateway=IP("10.235.0.1/24"))
        return netlink.links_by_alias(alias_of(prefix))

    try:
        assert asyncio.run(main()) == [(name, f"{alias_of(prefix)}net")]
    finally:
        netlink.remove_link(name)


# -- veths ----------------------------------------------------------------------------------------


def test_two_containers_on_one_bridge_talk(tmp_path: Path, prefix: str, bridge: str) -> None:
    one = container(prefix, tmp_path, bridge, 1)
    two = container(prefix, tmp_path, bridge, 2)
    try:
        assert netlink.addresses_in(one) == {"eth0": ["10.231.0.2/24"], "lo": ["127.0.0.1/8"]}
        assert netlink.addresses_in(two) == {"eth0": ["10.231.0.3/24"], "lo": ["127.0.0.1/8"]}
        assert in_netns(one, default_gateways) == ["10.231.0.1"]
        assert in_netns(two, default_gateways) == ["10.231.0.1"]
        assert tcp_talks(one, "10.231.0.2", two)
        assert tcp_talks(two, "10.231.0.3", one)
        assert tcp_talks(None, "10.231.0.1", one)  # the gateway: the bridge's own address
        assert netlink.links_by_alias(alias_of(prefix)) == [
            (bridge, f"{alias_of(prefix)}net"),
            (f"{prefix}v1", f"{alias_of(prefix)}c1"),
            (f"{prefix}v2", f"{alias_of(prefix)}c2"),
        ]
        assert netlink.links_by_alias(f"{alias_of(prefix)}c") == [
            (f"{prefix}v1", f"{alias_of(prefix)}c1"), (f"{prefix}v2", f"{alias_of(prefix)}c2")]
        for n in (1, 2):
            host = SYS_NET / f"{prefix}v{n}"
            assert (host / "master").resolve().name == bridge
            assert (host / "brport" / "hairpin_mode").read_text().strip() == "1"
            assert int((host / "flags").read_text(), 16) & IFF_UP
    finally:
        remove_container(prefix, tmp_path, 1)
        remove_container(prefix, tmp_path, 2)
    assert links_named(prefix) == [bridge]


def test_ensure_veth_again_is_success(tmp_path: Path, prefix: str, bridge: str) -> None:
    ns = container(prefix, tmp_path, bridge, 1)
    try:
        container(prefix, tmp_path, bridge, 1)  # create_netns and ensure_veth once more
        assert links_named(prefix) == [bridge, f"{prefix}v1"]
        assert netlink.addresses_in(ns) == {"eth0": ["10.231.0.2/24"], "lo": ["127.0.0.1/8"]}
        assert in_netns(ns, default_gateways) == ["10.231.0.1"]
    finally:
        remove_container(prefix, tmp_path, 1)


def test_veth_options_mac_mtu_and_no_gateway(tmp_path: Path, prefix: str, bridge: str) -> None:
    ns = container(prefix, tmp_path, bridge, 1, inner="eth1", mac="02:42:0A:E7:00:02", mtu=1400,
                   gateway=None)
    try:
        inside = in_netns(ns, lambda: interface("eth1"))
        assert inside == {"up": True, "mtu": 1400, "mac": "02:42:0a:e7:00:02"}
        assert (SYS_NET / f"{prefix}v1" / "mtu").read_text().strip() == "1400"
        assert in_netns(ns, default_gateways) == []
        assert in_netns(ns, interface_names) == ["eth1", "lo"]
    finally:
        remove_container(prefix, tmp_path, 1)


def test_veth_mtu_defaults_to_the_bridges(tmp_path: Path, prefix: str) -> None:
    name = f"{prefix}br"
    netlink.ensure_bridge(name, alias=f"{alias_of(prefix)}net", gateway=IP("10.231.0.1/24"),
                          mtu=1300)
    try:
        ns = container(prefix, tmp_path, name, 1)
        assert in_netns(ns, lambda: interface("eth0"))["mtu"] == 1300
        remove_container(prefix, tmp_path, 1)
    finally:
        netlink.remove_link(name)


def test_a_missing_bridge_leaves_no_veth(tmp_path: Path, prefix: str) -> None:
    ns = tmp_path / "net"
    netlink.create_netns(ns)
    try:
        with pytest.raises(NetlinkError, match=rf"no bridge named '{prefix}nobr'"):
            netlink.ensure_veth(host_name=f"{prefix}v1", bridge=f"{prefix}nobr", netns=ns,
                                inner_name="eth0", address=IP("10.231.0.2/24"),
                                gateway=None, alias="composer-test:x")
        assert links_named(prefix) == []
        assert in_netns(ns, interface_names) == ["lo"]
    finally:
        netlink.remove_netns(ns)


def test_a_failure_inside_the_namespace_rolls_back(tmp_path: Path, prefix: str,
                                                   bridge: str) -> None:
    ns = tmp_path / "net"
    netlink.create_netns(ns)
    try:
        # The veth is made and its address set; the route then fails: its gateway is off-link.
        with pytest.raises(NetlinkError, match=r"default route via 10\.99\.0\.1 on 'eth0'"):
            netlink.ensure_veth(host_name=f"{prefix}v1", bridge=bridge, netns=ns,
                                inner_name="eth0", address=IP("10.231.0.2/24"),
                                gateway=GW("10.99.0.1"), alias="composer-test:x")
        assert links_named(prefix) == [bridge]  # the host end is gone...
        assert in_netns(ns, interface_names) == ["lo"]  # ...and with it the peer
    finally:
        netlink.remove_netns(ns)


def test_a_taken_inner_name_is_refused(tmp_path: Path, prefix: str, bridge: str) -> None:
    ns = container(prefix, tmp_path, bridge, 1)
    try:
        with pytest.raises(NetlinkError, match=rf"{ns} already has an interface named 'eth0'"):
            netlink.ensure_veth(host_name=f"{prefix}v2", bridge=bridge, netns=ns,
                                inner_name="eth0", address=IP("10.231.0.3/24"), gateway=None,
                                alias="composer-test:x")
        assert links_named(prefix) == [bridge, f"{prefix}v1"]
    finally:
        remove_container(prefix, tmp_path, 1)


def test_an_existing_veth_with_its_peer_elsewhere_is_refused(tmp_path: Path, prefix: str,
                                                             bridge: str) -> None:
    container(prefix, tmp_path, bridge, 1)
    other = tmp_path / "other"
    netlink.create_netns(other)
    try:
        with pytest.raises(NetlinkError, match=rf"'{prefix}v1' exists but its peer is not"):
            netlink.ensure_veth(host_name=f"{prefix}v1", bridge=bridge, netns=other,
                                inner_name="eth0", address=IP("10.231.0.2/24"), gateway=None,
                                alias="composer-test:x")
        # Not this call's to roll back: the veth it did not create is still there.
        assert links_named(prefix) == [bridge, f"{prefix}v1"]
        assert in_netns(other, interface_names) == ["lo"]
    finally:
        netlink.remove_netns(other)
        remove_container(prefix, tmp_path, 1)


def test_bad_mac_is_refused(tmp_path: Path, prefix: str, bridge: str) -> None:
    with pytest.raises(NetlinkError, match="not a MAC address"):
        container(prefix, tmp_path, bridge, 1, mac="02:42:zz:00:00:01")
    assert links_named(prefix) == [bridge]
    netlink.remove_netns(tmp_path / "c1" / "net")


def test_ensure_veth_again_repairs_the_peer_and_the_port(tmp_path: Path, prefix: str,
                                                         bridge: str) -> None:
    # A veth already there is read back and put right: its bridge, its peer's MAC and state.
    pyroute2: Any = pytest.importorskip("pyroute2")
    other = f"{prefix}b2"
    netlink.ensure_bridge(other, alias=f"{alias_of(prefix)}net2", gateway=IP("10.238.0.1/24"))
    ns = container(prefix, tmp_path, bridge, 1, mac="02:42:0a:e7:00:02")
    try:
        with pyroute2.IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=f"{prefix}v1")[0],
                     master=ipr.link_lookup(ifname=other)[0])
        with pyroute2.IPRoute(fileno=in_netns(ns, lambda: socket.socket(
                socket.AF_NETLINK, socket.SOCK_DGRAM, 0)).detach(), groups=0) as inner:
            eth0 = inner.link_lookup(ifname="eth0")[0]
            inner.link("set", index=eth0, state="down", address="02:00:00:00:00:09")
        container(prefix, tmp_path, bridge, 1, mac="02:42:0a:e7:00:02")
        assert (SYS_NET / f"{prefix}v1" / "master").resolve().name == bridge
        assert (SYS_NET / f"{prefix}v1" / "brport" / "hairpin_mode").read_text().strip() == "1"
        assert in_netns(ns, lambda: interface("eth0"))["mac"] == "02:42:0a:e7:00:02"
        assert in_netns(ns, lambda: interface("eth0"))["up"]
        assert in_netns(ns, default_gateways) == ["10.231.0.1"]
    finally:
        remove_container(prefix, tmp_path, 1)
        netlink.remove_link(other)


# -- host reading and sysctls ---------------------------------------------------------------------


def test_host_routes_and_addresses() -> None:
    routes = netlink.host_routes()
    assert ipaddress.IPv4Network("0.0.0.0/0") not in routes  # it would overlap every subnet
    assert routes == sorted(set(routes))
    addresses = netlink.host_addresses()
    assert GW("127.0.0.1") in addresses
    assert addresses == sorted(set(addresses))


def test_set_ipv4_conf(prefix: str, bridge: str) -> None:
    setting = Path("/proc/sys/net/ipv4/conf") / bridge / "route_localnet"
    assert setting.read_text().strip() == "0"
    netlink.set_ipv4_conf(bridge, "route_localnet", "1")
    netlink.set_ipv4_conf(bridge, "route_localnet", "1")
    assert setting.read_text().strip() == "1"
    with pytest.raises(NetlinkError, match=rf"no interface named '{prefix}none'"):
        netlink.set_ipv4_conf(f"{prefix}none", "route_localnet", "1")
    with pytest.raises(NetlinkError, match="no setting 'no_such_key'"):
        netlink.set_ipv4_conf(bridge, "no_such_key", "1")
    with pytest.raises(NetlinkError, match="not an IPv4 interface setting"):
        netlink.set_ipv4_conf(bridge, "../../ip_forward", "1")


def test_enable_forwarding() -> None:
    # Not turned back off afterwards: the engine turns it on and leaves it on (as Docker
    # does), and end-to-end tests running at the same time depend on it.
    setting = Path("/proc/sys/net/ipv4/ip_forward")
    netlink.enable_forwarding()
    netlink.enable_forwarding()
    assert setting.read_text().strip() == "1"
