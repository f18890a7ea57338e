"""ports: free-port checks, picking, and finding who holds a port, against sockets this test
opens on 127.0.0.1 (no root needed); the /proc parsing against fixed texts; the conntrack
command-line fallback against a scripted ``conntrack``. Real conntrack flushing is in
tests/integration/test_nat.py.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.runtime import ports
from composer.runtime.ports import PortError, PortInUse, check_free, holder, pick_free


@pytest.fixture
def listening() -> Iterator[int]:
    """A TCP port this test listens on at 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.fixture
def udp_bound() -> Iterator[int]:
    with socket.socket(type=socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _me() -> str:
    return f"pid {os.getpid()} ("


def test_check_free_names_this_test_as_the_holder(listening: int) -> None:
    with pytest.raises(PortInUse) as caught:
        check_free("127.0.0.1", listening, "tcp")
    error = caught.value
    assert isinstance(error, ComposerError)
    assert error.held_by is not None and error.held_by.startswith(_me())
    text = str(error)
    assert f"127.0.0.1:{listening}/tcp" in text
    assert f"held by pid {os.getpid()} (" in text
    assert "hint: " in text and "another host port" in text


def test_every_address_clashes_with_a_specific_holder(listening: int) -> None:
    with pytest.raises(PortInUse, match=f"0.0.0.0:{listening}/tcp"):
        check_free("", listening, "tcp")


def test_holder_finds_this_test(listening: int, udp_bound: int) -> None:
    found = holder("127.0.0.1", listening, "tcp")
    assert found is not None and found.startswith(_me())
    assert holder("", listening, "tcp") == found
    udp = holder("127.0.0.1", udp_bound, "udp")
    assert udp is not None and udp.startswith(_me())
    with pytest.raises(PortInUse, match=f"127.0.0.1:{udp_bound}/udp"):
        check_free("127.0.0.1", udp_bound, "udp")


def test_a_port_nobody_holds_is_free_and_has_no_holder() -> None:
    port = pick_free("127.0.0.1", "tcp")
    check_free("127.0.0.1", port, "tcp")
    assert holder("127.0.0.1", port, "tcp") is None


def test_tcp_and_udp_ports_are_separate(listening: int) -> None:
    check_free("127.0.0.1", listening, "udp")  # only a TCP socket holds it


def test_pick_free_in_a_range_skips_a_held_port(listening: int) -> None:
    high = min(listening + 20, 65535)
    picked = pick_free("127.0.0.1", "tcp", listening, high)
    assert listening < picked <= high
    check_free("127.0.0.1", picked, "tcp")


def test_pick_free_names_the_range_when_all_are_held(listening: int) -> None:
    with pytest.raises(PortInUse) as caught:
        pick_free("127.0.0.1", "tcp", listening, listening)
    assert f"127.0.0.1:{listening}-{listening}/tcp" in str(caught.value)
    assert caught.value.port is None


def test_pick_free_passes_over_excluded_ports(listening: int) -> None:
    # The listening port is free for UDP: excluding it is the only reason to pass it over.
    picked = pick_free("127.0.0.1", "udp", listening, min(listening + 20, 65535),
                       exclude={listening})
    assert picked > listening
    with pytest.raises(PortInUse):
        pick_free("127.0.0.1", "udp", listening, listening, exclude={listening})


def test_kernel_chosen_ports_are_in_the_local_range() -> None:
    low, high = (int(w) for w in Path("/proc/sys/net/ipv4/ip_local_port_range")
                 .read_text().split())
    for protocol in ("tcp", "udp"):
        assert low <= pick_free("127.0.0.1", protocol) <= high


def test_an_address_not_on_this_host_is_an_error_not_in_use() -> None:
    with pytest.raises(PortError) as caught:
        check_free("192.0.2.123", 8080, "tcp")  # TEST-NET-1: never a host address here
    assert not isinstance(caught.value, PortInUse)
    assert "not an address of this host" in str(caught.value)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: check_free("", 8080, "icmp"), "protocol"),
    (lambda: check_free("", 0, "tcp"), "1..65535"),
    (lambda: check_free("not-an-ip", 8080, "tcp"), "does not appear to be"),
    (lambda: pick_free("", "tcp", 9000, 8000), "in order"),
])
def test_bad_arguments(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_sctp_without_kernel_support_is_free(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.socket

    def no_sctp(family: int = -1, kind: int = -1, proto: int = 0) -> socket.socket:
        if proto == socket.IPPROTO_SCTP:
            raise OSError(93, "Protocol not supported")
        return real(family, kind, proto)

    monkeypatch.setattr(ports.socket, "socket", no_sctp)
    check_free("127.0.0.1", 3868, "sctp")
    assert 1 <= pick_free("127.0.0.1", "sctp") <= 65535
    assert pick_free("127.0.0.1", "sctp", 3868, 3870) == 3868


# -- /proc parsing, on a fake /proc ---------------------------------------------------------------

_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 0100007F:1F91 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 112 1
   2: 00000000:1F92 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1
"""
_V6_TAIL = "00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0"
_TCP6 = "  sl  local_address remote_address st ...\n" + "".join(
    f"   {n}: {local} {_V6_TAIL} {inode} 1\n" for n, (local, inode) in enumerate([
        ("00000000000000000000000000000000:1F93", 114),  # [::]:8083
        ("0000000000000000FFFF00000500A8C0:1F94", 115),  # [::ffff:192.168.0.5]:8084
    ]))
_SCTP = """\
 ENDPT     SOCK   STY SST HBKT LPORT   UID INODE LADDRS
       0        0 2   10  29   3868      0 116 10.0.0.1 192.168.1.5
"""


@pytest.fixture
def fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "net" / "sctp").mkdir(parents=True)
    (tmp_path / "net" / "tcp").write_text(_TCP)
    (tmp_path / "net" / "tcp6").write_text(_TCP6)
    (tmp_path / "net" / "sctp" / "eps").write_text(_SCTP)
    for pid, comm, inodes in ((4242, "nginx", (111, 113)), (4243, "nginx", (111,)),
                              (77, "unbound", (114, 115, 116))):
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        (tmp_path / str(pid) / "comm").write_text(f"{comm}\n")
        (fd / "0").symlink_to("/dev/null")
        for n, inode in enumerate(inodes, start=3):
            (fd / str(n)).symlink_to(f"socket:[{inode}]")
    (tmp_path / "self").mkdir()
    monkeypatch.setattr(ports, "PROC", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("host_ip", "port", "protocol", "want"), [
    ("127.0.0.1", 8080, "tcp", "pid 4242 (nginx)"),   # the lowest of the pids sharing it
    ("", 8080, "tcp", "pid 4242 (nginx)"),            # every address overlaps 127.0.0.1
    ("10.1.1.1", 8080, "tcp", None),                  # another address, no clash
    ("127.0.0.1", 8081, "tcp", None),                 # a connection, not a listener
    ("10.1.1.1", 8082, "tcp", "pid 4242 (nginx)"),    # held on 0.0.0.0
    ("10.1.1.1", 8083, "tcp", "pid 77 (unbound)"),    # held on [::], dual stack
    ("192.168.0.5", 8084, "tcp", "pid 77 (unbound)"),  # held on ::ffff:192.168.0.5
    ("192.168.0.6", 8084, "tcp", None),
    ("192.168.1.5", 3868, "sctp", "pid 77 (unbound)"),
    ("10.9.9.9", 3868, "sctp", None),
    ("", 8080, "udp", None),                          # no udp file at all
])
def test_holder_reads_proc(fake_proc: Path, host_ip: str, port: int, protocol: str,
                           want: str | None) -> None:
    assert holder(host_ip, port, protocol) == want


def test_hex_addresses_decode_in_host_order() -> None:
    assert ports._hex_address("0100007F") == ipaddress.IPv4Address("127.0.0.1")
    assert ports._hex_address("0000000000000000FFFF00000500A8C0") == (
        ipaddress.IPv4Address("192.168.0.5"))


# -- conntrack through the command line -----------------------------------------------------------

def test_flush_conntrack_cli_counts_both_directions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        count = 2 if "--orig-dst" in argv else 0
        message = f"conntrack v1.4.7 (conntrack-tools): {count} flow entries have been deleted.\n"
        return subprocess.CompletedProcess(argv, 0 if count else 1, "", message)

    def unusable(ip: object) -> int:
        raise ports._NetlinkUnusable

    monkeypatch.setattr(ports, "_flush_netlink", unusable)
    monkeypatch.setattr(ports.subprocess, "run", fake_run)
    assert ports.flush_conntrack("10.10.1.2") == 2
    assert calls == [["conntrack", "-f", "ipv4", "-D", "--orig-dst", "10.10.1.2"],
                     ["conntrack", "-f", "ipv4", "-D", "--reply-src", "10.10.1.2"]]


def test_flush_conntrack_cli_failure_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 1, "", "conntrack: Operation not permitted\n")

    def unusable(ip: object) -> int:
        raise ports._NetlinkUnusable

    monkeypatch.setattr(ports, "_flush_netlink", unusable)
    monkeypatch.setattr(ports.subprocess, "run", fake_run)
    with pytest.raises(PortError, match="Operation not permitted"):
        ports.flush_conntrack("10.10.1.2")
