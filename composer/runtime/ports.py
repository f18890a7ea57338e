"""Host ports: whether one is free, a free one to publish on, who holds one, and conntrack.

Publishing is kernel NAT, not a socket, so nothing would stop composer from publishing a port a
host service listens on: the DNAT rule would silently shadow that service. :func:`check_free`
therefore binds the port first, the way a server would, and :class:`PortInUse` names the
process holding it (``/proc/net/{tcp,udp}`` gives the socket's inode, ``/proc/*/fd`` the
process). Ports composer itself publishes hold no socket; the caller passes them as
``exclude`` to :func:`pick_free`.

:func:`flush_conntrack` deletes the conntrack entries of a replaced container's address: a UDP
flow keeps its entry (and so its old DNAT target) for as long as packets keep coming, so without
this a client that sends steadily would never reach the new container.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import ipaddress
import os
import random
import re
import socket
import struct
import subprocess
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from composer.errors import ComposerError

PROTOCOLS = ("tcp", "udp", "sctp")
PROC = Path("/proc")
_TCP_LISTEN = "0A"
_KERNEL_PICK_TRIES = 32
_DELETED = re.compile(r"(\d+) flow entr(?:y|ies) ha(?:s|ve) been deleted")


class PortError(ComposerError):
    """A host port that cannot be checked or used."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class PortInUse(PortError):
    """The host port (or every port of a range) is taken. ``held_by`` is ``"pid N (comm)"``
    when the holder was found; ``port`` is None for a whole range. Only the message is
    required, so that callers who know better (a port one of composer's own containers
    publishes) can raise it too."""

    def __init__(self, message: str, *, address: str = "", protocol: str = "",
                 port: int | None = None, held_by: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.address = address
        self.protocol = protocol
        self.port = port
        self.held_by = held_by


class _Unsupported(Exception):
    """The kernel has no sockets of this protocol (SCTP is a module many kernels lack)."""


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")


def _address(host_ip: str) -> str:
    """``host_ip`` as a bind address: "" is every IPv4 address."""
    if not host_ip:
        return "0.0.0.0"
    return str(ipaddress.ip_address(host_ip))  # ValueError names a malformed one


def _where(address: str, port: int | str, protocol: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}/{protocol}"


def _bound(address: str, port: int, protocol: str) -> socket.socket:
    """A socket bound (and, for stream protocols, listening) on the port: what a server would
    get. The caller closes it."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    kind, number = {"tcp": (socket.SOCK_STREAM, 0), "udp": (socket.SOCK_DGRAM, 0),
                    "sctp": (socket.SOCK_STREAM, socket.IPPROTO_SCTP)}[protocol]
    try:
        sock = socket.socket(family, kind, number)
    except OSError as e:
        if e.errno in (errno.EPROTONOSUPPORT, errno.ESOCKTNOSUPPORT, errno.EAFNOSUPPORT):
            raise _Unsupported(protocol) from e
        raise
    try:
        if kind == socket.SOCK_STREAM and port:
            # Servers set it, so a port whose last connections linger in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock


def _free(address: str, port: int, protocol: str) -> bool:
    try:
        _bound(address, port, protocol).close()
    except _Unsupported:
        return True  # without the protocol in the kernel, nothing can hold its ports
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return False
        raise _bind_error(address, port, protocol, e) from e
    return True


def _bind_error(address: str, port: int, protocol: str, e: OSError) -> PortError:
    where = _where(address, port, protocol)
    if e.errno == errno.EADDRNOTAVAIL:
        return PortError(f"cannot publish on {where}: {address} is not an address of this host",
                         hint="publish on one of the host's addresses (see `ip -4 addr`), or "
                              "leave the host IP out to publish on all of them")
    if e.errno == errno.EACCES:
        return PortError(f"cannot publish on {where}: permission denied",
                         hint="ports below 1024 need root")
    return PortError(f"cannot check {where}: {e.strerror or e}")


def check_free(host_ip: str, port: int, protocol: str) -> None:
    """Raise :class:`PortInUse` when ``host_ip:port/protocol`` cannot be bound the way a
    server would (with ``SO_REUSEADDR`` for TCP); "" is every IPv4 address (0.0.0.0), which
    clashes with a holder on any address."""
    _check_protocol(protocol)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in 1..65535")
    address = _address(host_ip)
    if _free(address, port, protocol):
        return
    held_by = holder(host_ip, port, protocol)
    by = f"held by {held_by}" if held_by else "its holder could not be found"
    raise PortInUse(f"host port {_where(address, port, protocol)} is already in use ({by})",
                    address=address, protocol=protocol, port=port, held_by=held_by,
                    hint="stop what holds it, or publish another host port (or leave the host "
                         "port out for a random one)")


def pick_free(host_ip: str, protocol: str, low: int | None = None, high: int | None = None,
              *, exclude: Collection[int] = ()) -> int:
    """A free host port: chosen by the kernel (binding port 0, so random within
    ``ip_local_port_range``) when no range is given, else the first free one of
    ``low..high`` (a missing bound is 1 or 65535). ``exclude``: ports to pass over, those
    composer publishes already (DNAT holds no socket, so binding cannot see them)."""
    _check_protocol(protocol)
    address = _address(host_ip)
    if low is None and high is None:
        for _ in range(_KERNEL_PICK_TRIES):
            port = _kernel_port(address, protocol)
            if port not in exclude:
                return port
        raise PortInUse(f"the kernel offered only excluded {protocol} ports on {address}",
                        address=address, protocol=protocol, port=None,
                        hint="widen net.ipv4.ip_local_port_range, or give a host port range")
    first, last = 1 if low is None else low, 65535 if high is None else high
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"port range {first}-{last} is not within 1..65535 in order")
    for port in range(first, last + 1):
        if port not in exclude and _free(address, port, protocol):
            return port
    raise PortInUse(f"no free host port in {_where(address, f'{first}-{last}', protocol)}: "
                    "every one is in use", address=address, protocol=protocol, port=None,
                    hint="stop what holds them, widen the range, or publish elsewhere")


def _kernel_port(address: str, protocol: str) -> int:
    try:
        sock = _bound(address, 0, protocol)
    except _Unsupported:
        return _random_local_port()
    except OSError as e:
        raise _bind_error(address, 0, protocol, e) from e
    with sock:
        port: int = sock.getsockname()[1]
    return port


def _random_local_port() -> int:
    """What the kernel would pick, for a protocol it has no sockets for."""
    try:
        text = (PROC / "sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(word) for word in text.split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # the kernel's default
    return random.SystemRandom().randint(low, high)


# -- who holds a port -----------------------------------------------------------------------------

def _hex_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    # /proc/net prints the address words as host-order integers of the network-order bytes.
    raw = b"".join(struct.pack("=I", int(text[i:i + 8], 16)) for i in range(0, len(text), 8))
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw)
    v6 = ipaddress.IPv6Address(raw)
    return v6.ipv4_mapped or v6


def _wildcard(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_unspecified


def _inet_inodes(address: str, port: int, protocol: str) -> set[int]:
    """Inodes of the sockets in ``/proc/net/{tcp,udp}{,6}`` bound to ``port`` on ``address``
    (or on a wildcard, which overlaps every address; a wildcard ``address`` overlaps all)."""
    wanted = ipaddress.ip_address(address)
    inodes = set()
    for name in (protocol, f"{protocol}6"):
        try:
            lines = (PROC / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port:
                continue
            if protocol == "tcp" and fields[3] != _TCP_LISTEN:
                continue  # connections do not keep a server from binding with SO_REUSEADDR
            bound = _hex_address(local)
            if not (_wildcard(bound) or _wildcard(wanted) or bound == wanted):
                continue
            inode = int(fields[9])
            if inode:
                inodes.add(inode)
    return inodes


def _sctp_inodes(address: str, port: int) -> set[int]:
    """Inodes of the SCTP endpoints bound to ``port`` (``/proc/net/sctp/eps``: ... LPORT UID
    INODE LADDRS...)."""
    try:
        lines = (PROC / "net/sctp/eps").read_text().splitlines()[1:]
    except OSError:
        return set()
    wanted = ipaddress.ip_address(address)
    inodes = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or not fields[5].isdigit() or int(fields[5]) != port:
            continue
        bound = set()
        for word in fields[8:]:
            try:
                bound.add(ipaddress.ip_address(word.lstrip("*")))
            except ValueError:
                continue
        if _wildcard(wanted) or not bound or any(_wildcard(b) or b == wanted for b in bound):
            inodes.add(int(fields[7]))
    return inodes


def _pids(inodes: set[int]) -> Iterator[int]:
    """The processes with one of these sockets open."""
    links = {f"socket:[{inode}]" for inode in inodes}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                if os.readlink(fd) in links:
                    yield int(entry.name)
                    break
            except OSError:
                continue


def holder(host_ip: str, port: int, protocol: str) -> str | None:
    """Who holds ``host_ip:port/protocol`` in this network namespace: ``"pid 1234 (nginx)"``
    (the lowest pid when several share the socket, the parent of forked workers as a rule),
    or None when no socket is found or its process cannot be seen."""
    _check_protocol(protocol)
    address = _address(host_ip)
    inodes = (_sctp_inodes(address, port) if protocol == "sctp"
              else _inet_inodes(address, port, protocol))
    if not inodes:
        return None
    pids = sorted(_pids(inodes))
    if not pids:
        return None
    try:
        comm = (PROC / str(pids[0]) / "comm").read_text().strip()
    except OSError:
        comm = "?"
    return f"pid {pids[0]} ({comm})"


# -- conntrack ------------------------------------------------------------------------------------

def flush_conntrack(address: str) -> int:
    """Delete the conntrack entries (every protocol: TCP, UDP and the rest) whose original
    destination or reply source is ``address``, in this network namespace; return how many.
    Through pyroute2's conntrack netlink API, else the ``conntrack`` program. Nothing to
    delete is success."""
    ip = ipaddress.ip_address(address)
    try:
        return _off_loop(lambda: _flush_netlink(ip))
    except _NetlinkUnusable:
        return _flush_cli(ip)


def _off_loop(work: Callable[[], int]) -> int:
    """pyroute2's synchronous API runs an asyncio loop of its own, which fails inside a
    running one: called from a coroutine, do the work in a thread."""
    from composer.runtime.netlink import in_thread

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    return in_thread(work, name="composer-conntrack")


class _NetlinkUnusable(Exception):
    """pyroute2's conntrack API is missing or cannot talk to the kernel here."""


def _flush_netlink(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    try:  # heavy, and only needed here; importlib keeps the untyped pyroute2 as Any
        Conntrack = importlib.import_module("pyroute2.conntrack").Conntrack
        NetlinkError = importlib.import_module("pyroute2.netlink.exceptions").NetlinkError
        NFCTAttrTuple = importlib.import_module(
            "pyroute2.netlink.nfnetlink.nfctsocket").NFCTAttrTuple
    except (ImportError, AttributeError) as e:
        raise _NetlinkUnusable from e

    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    text = str(ip)
    deleted = 0
    try:
        ct = Conntrack(nfgen_family=family)
    except (OSError, NetlinkError) as e:
        raise _NetlinkUnusable from e
    try:
        seen: dict[str, Any] = {}
        try:
            for filters in ({"tuple_orig": NFCTAttrTuple(family=family, daddr=text)},
                            {"tuple_reply": NFCTAttrTuple(family=family, saddr=text)}):
                for entry in ct.dump_entries(**filters):
                    seen.setdefault(repr(entry.tuple_orig), entry)  # both can match one
        except (OSError, NetlinkError) as e:
            raise _NetlinkUnusable from e  # e.g. a kernel without conntrack dump filters
        for key in sorted(seen):
            try:
                ct.delete(seen[key])
            except NetlinkError as e:
                if e.code != errno.ENOENT:  # it ended by itself meanwhile
                    raise PortError(f"cannot delete the conntrack entry {seen[key]!r}: "
                                    f"{e}") from e
                continue
            deleted += 1
    finally:
        ct.close()
    return deleted


def _flush_cli(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    family = "ipv6" if ip.version == 6 else "ipv4"
    deleted = 0
    for option in ("--orig-dst", "--reply-src"):
        argv = ["conntrack", "-f", family, "-D", option, str(ip)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=60)
        except FileNotFoundError as e:
            raise PortError(f"cannot flush the conntrack entries of {ip}: conntrack is not "
                            "installed", hint="apt install conntrack") from e
        except subprocess.TimeoutExpired as e:
            raise PortError(f"conntrack did not finish deleting the entries of {ip}") from e
        match = _DELETED.search(done.stderr + done.stdout)
        if match is None:
            raise PortError(f"conntrack could not delete the entries of {ip}: "
                            f"{done.stderr.strip()}")
        deleted += int(match.group(1))  # it exits 1 when the count is 0: not a failure
    return deleted
