"""The one place composer talks netlink: namespaces, bridges, veths, addresses and routes.

Plain data in, plain data out, and every kernel refusal turned into a :class:`NetlinkError`
that says what failed on which interface and what to do (never the ``ip`` command).

Each ``ensure_*`` step follows the CNI bridge plugin's rules: EEXIST is success only after the
object is read back and found to be of the right kind, deleting something missing is success,
a container's veth peer is created directly inside its namespace, and a step that fails half
way removes what it created (an ``ExitStack``). Teardown finds composer's links by their
``ifalias`` (:func:`links_by_alias`), never by what today's configuration says.

Two ways of speaking rtnetlink. What composer *makes* (namespaces, bridges, veths, addresses,
routes, and their removal: every container start and stop pays it) is spoken directly by
:class:`_Rtnl`: a plain netlink socket, one request and its answer at a time, and the handful
of struct-packed messages composer needs; ~10 us a request where pyroute2 spends 150-300 us
(an asyncio loop run per request, and its general encoder and decoder). What composer *lists*
(links, routes, addresses: per command, not per container) goes through pyroute2's
``IPRoute`` (never the deprecated IPDB), imported lazily because importing it costs about
0.2 s and the CLI must start fast.

Every call opens its own netlink sockets and closes them (~15 us each: pooling them measured
no better). A socket inside a namespace is made by a short-lived thread that ``setns()``-es
into it, or ``unshare()``-s a new one (a namespace is per thread on Linux), and hands the
socket back: a socket keeps the namespace it was made in, whichever thread uses it. (pyroute2's
own ``IPRoute(netns=...)`` forks a helper process for that: about 11 ms per socket.)
:func:`ensure_veth` makes a new veth in 7 requests (the bridge read; the veth added, its host
end up and on the bridge; its port settings; the peer read, up, given its address and the
default route) where it took 9 on pyroute2, and :func:`create_netns` one (lo up).

Measured on the development VM (2 cores, kernel 6.18, medians of 30, bench/netlink_bench.py):
a namespace and a veth with address, MAC and default route took 7.2 ms (CPU 7.0 ms) with
pyroute2, and take 2.1 ms (CPU 2.0 ms) now, most of it the kernel's own work (unshare, making
the two devices). Teardown (remove_link, remove_netns): CPU 1.4 ms, now 0.7 ms; its wall
time, ~30 ms, is the kernel waiting for RCU grace periods when it deletes a veth.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import functools
import importlib
import ipaddress
import os
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from composer.errors import ComposerError

_P = ParamSpec("_P")
_T = TypeVar("_T")

# <linux/sched.h>, <sys/mount.h>, <linux/nsfs.h>, <linux/if.h>
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_NS_GET_NSTYPE = 0xB703
_IFF_UP = 0x1
_LOOPBACK_INDEX = 1  # the kernel gives lo ifindex 1 in every namespace
_IFNAMSIZ = 16  # with the trailing NUL: names are at most 15 characters
_UNMOUNT_TRIES = 8  # a racing create can stack bind mounts on one file; peel them all

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/veth.h>, <linux/if_addr.h>
_NETLINK_ROUTE = 0
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_DUMP = 0x1, 0x4, 0x300
_NLM_F_EXCL, _NLM_F_CREATE = 0x200, 0x400
_RTM_NEWLINK, _RTM_DELLINK, _RTM_GETLINK = 16, 17, 18
_RTM_NEWADDR = 20
_RTM_NEWROUTE, _RTM_GETROUTE = 24, 26
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MTU, _IFLA_LINK, _IFLA_MASTER = 1, 3, 4, 5, 10
_IFLA_LINKINFO, _IFLA_IFALIAS, _IFLA_NET_NS_FD = 18, 20, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _IFLA_INFO_SLAVE_KIND, _IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
_VETH_INFO_PEER = 1
_IFLA_BRPORT_MODE = 4
_BRPORT_HAIRPIN = 1  # IFLA_BRPORT_MODE: 1 = hairpin (a container reaches itself via a port)
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST = 1, 2, 4
_RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 4, 5, 15
_RT_TABLE_MAIN = 254
_RTPROT_STATIC = 4  # "proto static", as pyroute2 and `ip route add` by hand mark it
_RTN_UNICAST = 1
_NLA_TYPE_MASK = 0x3FFF  # an attribute's type without NLA_F_NESTED and NLA_F_NET_BYTEORDER
_ANSWER_TIMEOUT = 30.0
_RECV_SIZE = 1 << 16  # more than the kernel puts in one message (at most 32 KiB)

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_IFINFOMSG = struct.Struct("=BxHiII")  # family, device type, index, flags, change mask
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst and src length, tos, table, protocol,
#                                      scope, type, flags
_RTATTR = struct.Struct("=HH")  # length (header included, padding not), type
_S32 = struct.Struct("=i")
_U32 = struct.Struct("=I")

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_SYSCTL_KEY = re.compile(r"[a-z0-9_]+")


class NetlinkError(ComposerError):
    """The kernel refused a network step (or a name was unusable). ``errno`` is the kernel's
    error number when there was one."""

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


# -- plumbing -------------------------------------------------------------------------------------


def _pyroute2() -> Any:
    # importlib keeps pyroute2 (which has no type information) typed as Any, without an
    # ignore comment that would go stale if the project's mypy settings change.
    return importlib.import_module("pyroute2")


def _code(exc: BaseException) -> int | None:
    """The errno of an OS or netlink error, or None for anything else (a bug: let it raise)."""
    if isinstance(exc, OSError):
        return exc.errno
    pyroute2_error = importlib.import_module("pyroute2.netlink.exceptions").NetlinkError
    if isinstance(exc, pyroute2_error):
        code: int = exc.code
        return code
    return None


def _hint(code: int | None, hint: str) -> str:
    if code in (errno.EPERM, errno.EACCES):
        return "composer must run as root (it needs CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    return hint


@contextlib.contextmanager
def _failing(what: str, hint: str = "") -> Iterator[None]:
    """Turn an OS or netlink error raised in the block into a NetlinkError about ``what``."""
    try:
        yield
    except NetlinkError:
        raise
    except Exception as exc:
        code = _code(exc)
        if code is None:
            raise
        name = errno.errorcode.get(code, str(code))
        text = f"{what}: {os.strerror(code)} ({name})"
        if hint := _hint(code, hint):
            text += f"; {hint}"
        raise NetlinkError(text, errno=code) from exc


@functools.cache
def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)  # glibc is already loaded: no find_library
    libc.unshare.argtypes = [ctypes.c_int]
    libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _check(result: int, call: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{call}: {os.strerror(code)}")


def in_thread(work: Callable[[], _T], name: str = "composer-netlink") -> _T:
    """Run ``work`` in a fresh OS thread and return its result (or raise its exception).

    A thread that entered another network namespace dies with it, so the caller's thread
    never changes namespace, whatever fails."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # handed to the caller, who re-raises it
            box["error"] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: _T = box["result"]
    return result


def _off_loop(function: Callable[_P, _T]) -> Callable[_P, _T]:
    """pyroute2's synchronous API runs its own asyncio loop, which fails inside a running one:
    called from a coroutine, do the work in a thread instead."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return function(*args, **kwargs)
        return in_thread(lambda: function(*args, **kwargs))

    return wrapper


def _netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                         _NETLINK_ROUTE)


def _socket_in(netns: Path) -> socket.socket:
    """A netlink socket bound to the namespace at ``netns`` (a socket keeps the namespace it
    was made in, whichever thread uses it later)."""

    def work() -> socket.socket:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc().setns(fd, _CLONE_NEWNET), f"setns({netns})")
        finally:
            os.close(fd)
        return _netlink_socket()

    return in_thread(work)


@contextlib.contextmanager
def _route(netns: Path | None = None) -> Iterator[Any]:
    """One IPRoute for the whole call: the host's, or the one of the namespace at ``netns``.
    ``groups=0``: a command socket, subscribed to no events it would have to buffer."""
    iproute = _pyroute2().IPRoute
    if netns is None:
        ipr = iproute(groups=0)
    else:
        with _failing(f"cannot enter the network namespace {netns}",
                      "create it first (create_netns)"):
            sock = _socket_in(netns)
        try:
            ipr = iproute(fileno=sock.fileno(), groups=0)
        except BaseException:
            sock.close()
            raise
        sock.detach()  # the IPRoute owns the descriptor now
    try:
        yield ipr
    finally:
        ipr.close()


def _check_ifname(name: str, what: str) -> None:
    # The kernel's dev_valid_name(), said before the kernel answers a bare EINVAL.
    if (not name or len(name.encode()) >= _IFNAMSIZ or name in (".", "..")
            or any(c in name for c in "/:") or any(c.isspace() for c in name)):
        raise NetlinkError(f"{what} {name!r} is not a valid interface name: 1 to "
                           f"{_IFNAMSIZ - 1} characters, without '/', ':' or spaces")


# -- rtnetlink, spoken directly -------------------------------------------------------------------


def _attr(kind: int, payload: bytes) -> bytes:
    """One attribute, padded to 4 bytes (its length field counts the payload unpadded)."""
    size = _RTATTR.size + len(payload)
    return _RTATTR.pack(size, kind) + payload + bytes(-size % 4)


def _u32(kind: int, value: int) -> bytes:
    return _attr(kind, _U32.pack(value))


def _string(kind: int, text: str) -> bytes:
    return _attr(kind, text.encode() + b"\0")


def _ifinfo(index: int = 0, *, up: bool = False) -> bytes:
    """An ifinfomsg for ``index`` (0: the link is named by IFLA_IFNAME), setting it up if
    ``up`` (flags and the change mask: the other flags are left as they are)."""
    flag = _IFF_UP if up else 0
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, flag, flag)


def _attributes(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attribute type -> payload, for the attributes from ``offset`` to the end of ``data``."""
    found: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        size, kind = _RTATTR.unpack_from(data, offset)
        if size < _RTATTR.size:  # malformed: stop rather than loop for ever
            break
        found[kind & _NLA_TYPE_MASK] = data[offset + _RTATTR.size:offset + size]
        offset += (size + 3) & ~3
    return found


def _text(payload: bytes) -> str:
    return payload.split(b"\0", 1)[0].decode()


def _mac_text(payload: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in payload)


@dataclass(frozen=True, slots=True)
class _Link:
    """What composer reads of a link (an RTM_NEWLINK answer)."""

    index: int
    up: bool
    kind: str | None  # IFLA_INFO_KIND ("bridge", "veth"); None for a plain device
    mtu: int | None
    master: int | None  # the bridge it is a port of
    peer: int | None  # IFLA_LINK: a veth's other end, by its index in its own namespace
    mac: str | None

    @classmethod
    def decode(cls, message: bytes) -> _Link:
        _, _, index, flags, _ = _IFINFOMSG.unpack_from(message)
        attrs = _attributes(message, _IFINFOMSG.size)
        info = _attributes(attrs.get(_IFLA_LINKINFO, b""))

        def number(kind: int) -> int | None:
            return _U32.unpack(attrs[kind])[0] if kind in attrs else None

        return cls(index=index, up=bool(flags & _IFF_UP),
                   kind=_text(info[_IFLA_INFO_KIND]) if _IFLA_INFO_KIND in info else None,
                   mtu=number(_IFLA_MTU), master=number(_IFLA_MASTER), peer=number(_IFLA_LINK),
                   mac=_mac_text(attrs[_IFLA_ADDRESS]) if _IFLA_ADDRESS in attrs else None)


class _Rtnl:
    """An rtnetlink socket spoken to directly: one request, then its whole answer. Not for two
    threads at once: each call makes its own."""

    def __init__(self, sock: socket.socket) -> None:
        # The kernel answers at once; a wait this long is a bug of ours (a request it took
        # as needing no answer), which must fail the step rather than hang the engine.
        sock.settimeout(_ANSWER_TIMEOUT)
        self.sock = sock
        self.sequence = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, body: bytes, flags: int = 0) -> list[bytes]:
        """Send one request; return the payloads of the messages that answer it (a get's one,
        none for a change). The kernel's refusal is an OSError with its errno."""
        return self._exchange(kind, body, _NLM_F_ACK | flags)

    def dump(self, kind: int, body: bytes) -> list[bytes]:
        """Send one dump request; return the payloads of all the messages of its answer."""
        # Apart: NLM_F_DUMP's bits mean NLM_F_EXCL and NLM_F_REPLACE in a new-object request.
        return self._exchange(kind, body, _NLM_F_DUMP)

    def _exchange(self, kind: int, body: bytes, flags: int) -> list[bytes]:
        # A dump's answer ends with NLMSG_DONE, anything else's with an ack (NLMSG_ERROR 0).
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, _NLM_F_REQUEST | flags,
                                      self.sequence, 0) + body)
        answers: list[bytes] = []
        while True:
            try:
                data = self.sock.recv(_RECV_SIZE)
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, f"no answer from the kernel to netlink request "
                                               f"{kind} in {_ANSWER_TIMEOUT:g} s") from None
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                size, answer, _, sequence, _ = _NLMSGHDR.unpack_from(data, offset)
                if size < _NLMSGHDR.size:
                    raise OSError(errno.EBADMSG, f"netlink message of {size} bytes")
                payload = data[offset + _NLMSGHDR.size:offset + size]
                offset += (size + 3) & ~3
                if sequence != self.sequence:
                    continue  # not the answer to this request
                if answer in (_NLMSG_ERROR, _NLMSG_DONE):
                    code = -_S32.unpack_from(payload)[0] if len(payload) >= _S32.size else 0
                    if code > 0:
                        raise OSError(code, os.strerror(code))
                    return answers
                answers.append(payload)

    def link(self, name: str) -> _Link | None:
        """The link named ``name``, or None when there is none."""
        try:
            answers = self.request(_RTM_GETLINK, _ifinfo() + _string(_IFLA_IFNAME, name))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _Link.decode(answers[0]) if answers else None

    def change_link(self, index: int, attributes: bytes = b"", *, up: bool = False) -> None:
        # RTM_NEWLINK without NLM_F_CREATE changes a link; unlike RTM_SETLINK it also takes
        # IFLA_LINKINFO (a bridge port's settings).
        self.request(_RTM_NEWLINK, _ifinfo(index, up=up) + attributes)


@contextlib.contextmanager
def _host() -> Iterator[_Rtnl]:
    """A host-namespace socket for one call. Not pooled: measured, a socket costs ~15 us, lost
    in the noise of a container's set-up, and a pool would have to be kept from threads
    sharing one and from forked children inheriting it."""
    with _failing("cannot open a netlink socket"):
        rtnl = _Rtnl(_netlink_socket())
    try:
        yield rtnl
    finally:
        rtnl.close()


def _delete_quietly(rtnl: _Rtnl, name: str) -> None:
    # Rollback must not hide the error that caused it.
    with contextlib.suppress(OSError):
        rtnl.request(_RTM_DELLINK, _ifinfo() + _string(_IFLA_IFNAME, name))


def _ensure_address(rtnl: _Rtnl, index: int, address: ipaddress.IPv4Interface) -> None:
    """Add ``address`` to the link; an address already there is success."""
    ip = address.ip.packed
    attributes = _attr(_IFA_ADDRESS, ip) + _attr(_IFA_LOCAL, ip)
    if address.network.prefixlen < 31:  # as docker sets it: "brd a.b.255.255"
        attributes += _attr(_IFA_BROADCAST, address.network.broadcast_address.packed)
    message = _IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, 0, index)
    try:
        rtnl.request(_RTM_NEWADDR, message + attributes, _NLM_F_CREATE | _NLM_F_EXCL)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise


def _default_gateways(rtnl: _Rtnl) -> list[str]:
    """The gateways of the main table's IPv4 default routes ("None" for one without)."""
    empty = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    gateways = []
    for message in rtnl.dump(_RTM_GETROUTE, empty):
        _, dst_len, _, _, table, _, _, _, _ = _RTMSG.unpack_from(message)
        attrs = _attributes(message, _RTMSG.size)
        if _RTA_TABLE in attrs:  # rtm_table is 8 bits: the attribute is not
            table = _U32.unpack(attrs[_RTA_TABLE])[0]
        if dst_len == 0 and table == _RT_TABLE_MAIN:
            gateway = attrs.get(_RTA_GATEWAY)
            gateways.append(str(ipaddress.IPv4Address(gateway)) if gateway else "None")
    return gateways


# -- namespaces -----------------------------------------------------------------------------------


def _holds_netns(path: Path) -> bool:
    """Whether ``path`` is a mounted network namespace file; an error if it holds another
    kind of namespace."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        return False  # ENOTTY: a plain file, not (or no longer) a namespace mount
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise NetlinkError(f"{path} holds a namespace that is not a network namespace; "
                           "unmount it, or give composer another run directory")
    return True


def _netns_exists(path: Path) -> bool:
    """Whether ``path`` holds a network namespace already (its parent directories made)."""
    with _failing(f"cannot create the network namespace file {path}",
                  "check that composer's run directory is writable"):
        path.parent.mkdir(parents=True, exist_ok=True)
        return _holds_netns(path)


def _new_netns(path: Path) -> _Rtnl:
    """A new network namespace bound to ``path`` (which holds none), its loopback up, and a
    socket in it. On failure nothing is left: no mount, and no file if this call made it."""
    with _failing(f"cannot create the network namespace file {path}",
                  "check that composer's run directory is writable"):
        made = not path.exists()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))

    def work() -> _Rtnl:
        # unshare() in this thread only: the process's other threads keep the host's namespace.
        # MS_BIND alone, without ip-netns's making the directory a shared mount: the file is
        # composer's, and nothing else should see it propagate.
        libc = _libc()
        _check(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _check(libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), None, _MS_BIND, None),
               f"mount --bind on {path}")
        try:
            rtnl = _Rtnl(_netlink_socket())  # a socket made here is in the new namespace
        except BaseException:
            libc.umount2(os.fsencode(path), _MNT_DETACH)
            raise
        try:
            rtnl.change_link(_LOOPBACK_INDEX, up=True)
        except BaseException:
            rtnl.close()
            libc.umount2(os.fsencode(path), _MNT_DETACH)
            raise
        return rtnl

    with _failing(f"cannot create the network namespace {path}"):
        try:
            return in_thread(work)
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise


def _enter_netns(path: Path) -> _Rtnl:
    with _failing(f"cannot enter the network namespace {path}",
                  "create it first (create_netns)"):
        return _Rtnl(_socket_in(path))


class _Namespace:
    """The namespace at ``path`` and a socket in it, entered on first use (a step that fails
    before it needs the namespace does not pay a thread for it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rtnl: _Rtnl | None = None

    def rtnl(self) -> _Rtnl:
        if self._rtnl is None:
            self._rtnl = _enter_netns(self.path)
        return self._rtnl

    def close(self) -> None:
        if self._rtnl is not None:
            self._rtnl.close()


def create_netns(path: Path) -> None:
    """A new network namespace kept alive by a bind mount on ``path`` (parent directories
    made; a path that already holds a network namespace is success), its loopback up."""
    path = Path(path)
    if not _netns_exists(path):
        _new_netns(path).close()


def remove_netns(path: Path) -> None:
    """Unmount (lazily, MNT_DETACH) and unlink the namespace file; a missing path or one that
    is not mounted is success. The namespace itself goes when its last user does."""
    path = Path(path)
    libc = _libc()
    with _failing(f"cannot remove the network namespace {path}"):
        for _ in range(_UNMOUNT_TRIES):
            if libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
                code = ctypes.get_errno()
                if code in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more), gone
                    break
                raise OSError(code, os.strerror(code))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- links ----------------------------------------------------------------------------------------


def ensure_bridge(name: str, *, alias: str, gateway: ipaddress.IPv4Interface,
                  mtu: int | None = None, mac: str | None = None) -> None:
    """A Linux bridge ``name`` with ifalias ``alias``, the address ``gateway`` (such as
    172.18.0.1/16), the MAC ``mac`` if given, and up. A bridge already there is success; a
    link of that name that is not a bridge is an error. What this call created is removed
    again if a later step fails.

    Give ``mac``: a bridge whose MAC was never set takes the lowest MAC of its ports, so it
    changes as containers join and leave, and every container that had looked up the gateway
    before keeps sending to the old MAC, which the bridge drops, until its ARP entry expires
    (30 to 45 s without DNS or a way out). A MAC set once stays."""
    _check_ifname(name, "bridge")
    sized = _u32(_IFLA_MTU, mtu) if mtu else b""
    with _host() as host, contextlib.ExitStack() as undo:
        with _failing(f"cannot create the bridge {name!r}"):
            try:
                host.request(_RTM_NEWLINK, _ifinfo() + _string(_IFLA_IFNAME, name) + sized
                             + _attr(_IFLA_LINKINFO, _string(_IFLA_INFO_KIND, "bridge")),
                             _NLM_F_CREATE | _NLM_F_EXCL)
                created = True
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                created = False
            link = host.link(name)
        if link is None:  # deleted between our add and get: someone else is at work on it
            raise NetlinkError(f"the bridge {name!r} vanished while it was being set up; "
                               "is another composer changing this network?")
        if created:
            undo.callback(_delete_quietly, host, name)
        elif link.kind != "bridge":
            raise NetlinkError(
                f"a link named {name!r} exists but is a {link.kind or 'plain'} interface, "
                "not a bridge; remove it, or give the network another name "
                "(driver_opts com.docker.network.bridge.name)")
        with _failing(f"cannot configure the bridge {name!r}"):
            if mac is not None and link.mac != mac.lower():
                host.change_link(link.index, _attr(_IFLA_ADDRESS, _mac_bytes(mac)))
            host.change_link(link.index, _attr(_IFLA_IFALIAS, alias.encode()) + sized, up=True)
            _ensure_address(host, link.index, gateway)
        undo.pop_all()


@dataclass(frozen=True, slots=True)
class _Veth:
    """One veth pair to make: :func:`ensure_veth`'s arguments but the namespace."""

    host_name: str
    bridge: str
    inner_name: str
    address: ipaddress.IPv4Interface
    gateway: ipaddress.IPv4Address | None
    alias: str
    mtu: int | None = None
    mac: str | None = None


def _check_veth(veth: _Veth) -> None:
    _check_ifname(veth.host_name, "veth")
    _check_ifname(veth.inner_name, "interface")
    if veth.mac is not None and not _MAC.fullmatch(veth.mac):
        raise NetlinkError(f"mac_address {veth.mac!r} is not a MAC address "
                           "(like 02:42:ac:11:00:02)")


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ensure_veth(*, host_name: str, bridge: str, netns: Path, inner_name: str,
                address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None,
                alias: str, mtu: int | None = None, mac: str | None = None) -> None:
    """A veth pair: ``host_name`` (ifalias ``alias``) on ``bridge``, hairpin on, up; its peer
    ``inner_name`` created directly in the namespace at ``netns``, with ``address``, ``mac``
    if given, up, and a default route via ``gateway`` if given. The MTU is the bridge's unless
    given. An existing ``host_name`` whose peer is in place is success; if a later step fails,
    ``host_name`` (and with it the peer) is deleted when this call created it."""
    veth = _Veth(host_name=host_name, bridge=bridge, inner_name=inner_name, address=address,
                gateway=gateway, alias=alias, mtu=mtu, mac=mac)
    _check_veth(veth)
    inside = _Namespace(Path(netns))
    try:
        with _host() as host, contextlib.ExitStack() as undo:
            _plumb(host, inside, veth, undo)
            undo.pop_all()
    finally:
        inside.close()


def _plumb(host: _Rtnl, inside: _Namespace, veth: _Veth, undo: contextlib.ExitStack) -> None:
    """ensure_veth's work on the caller's sockets; ``undo`` gets the deletion of a veth made."""
    where = f"{veth.inner_name!r} in {inside.path}"
    with _failing(f"cannot read the bridge {veth.bridge!r} for {veth.host_name!r}"):
        master = host.link(veth.bridge)
    if master is None or master.kind != "bridge":
        raise NetlinkError(f"cannot attach {veth.host_name!r} to {veth.bridge!r}: there is no "
                           f"bridge named {veth.bridge!r}; create the network first "
                           "(ensure_bridge)")
    with _failing(f"cannot create the veth {veth.host_name!r} with its peer {where}"):
        created = _add_veth(host, veth, master, inside.path)
    # Made just now (master set and up already), it needs no reading back; one there already
    # is read: its kind, its bridge, and (below) its peer must be the ones asked for.
    existing = None if created else _existing_veth(host, veth, where)
    if created:
        undo.callback(_delete_quietly, host, veth.host_name)
    with _failing(f"cannot attach the veth {veth.host_name!r} to the bridge {veth.bridge!r}"):
        if existing is not None and existing.master != master.index:
            host.change_link(existing.index, _u32(_IFLA_MASTER, master.index))
        # One message: the alias tags it as composer's, up, and hairpin on the bridge port (a
        # port's settings need it to be a port already: the master is not set in the same one).
        port = _string(_IFLA_INFO_SLAVE_KIND, "bridge") + _attr(
            _IFLA_INFO_SLAVE_DATA, _attr(_IFLA_BRPORT_MODE, bytes([_BRPORT_HAIRPIN])))
        host.request(_RTM_NEWLINK, _ifinfo(up=True) + _string(_IFLA_IFNAME, veth.host_name)
                     + _attr(_IFLA_IFALIAS, veth.alias.encode()) + _attr(_IFLA_LINKINFO, port))
    inner = inside.rtnl()
    with _failing(f"cannot find {where}"):
        peer = inner.link(veth.inner_name)
    if (peer is None or peer.kind != "veth" or (existing is not None and (
            peer.peer != existing.index or existing.peer != peer.index))):
        raise NetlinkError(
            f"the veth {veth.host_name!r} exists but its peer is not {where}; remove "
            f"{veth.host_name!r} (it is left over from an earlier run) and try again")
    with _failing(f"cannot configure {where}"):
        if veth.mac is not None and peer.mac != veth.mac.lower():
            inner.change_link(peer.index, _attr(_IFLA_ADDRESS, _mac_bytes(veth.mac)))
        _ensure_address(inner, peer.index, veth.address)
        if not peer.up:
            inner.change_link(peer.index, up=True)
    if veth.gateway is not None:
        with _failing(f"cannot add the default route via {veth.gateway} on {where}",
                      f"is {veth.gateway} inside {veth.address.network}?"):
            _ensure_default_route(inner, peer.index, veth.gateway, where)


def _add_veth(host: _Rtnl, veth: _Veth, master: _Link, netns: Path) -> bool:
    """Create the pair on ``master``, the host end up, the peer straight in ``netns`` with
    its MTU and MAC; False when ``host_name`` exists. (Not the peer up: the kernel opens it
    before the two ends are linked, and a veth without its other end refuses, ENOTCONN.)"""
    mtu = veth.mtu or master.mtu
    sized = _u32(_IFLA_MTU, mtu) if mtu else b""
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        peer = (_ifinfo() + _string(_IFLA_IFNAME, veth.inner_name) + sized
                + _u32(_IFLA_NET_NS_FD, fd)
                + (_attr(_IFLA_ADDRESS, _mac_bytes(veth.mac)) if veth.mac else b""))
        info = _string(_IFLA_INFO_KIND, "veth") + _attr(_IFLA_INFO_DATA,
                                                        _attr(_VETH_INFO_PEER, peer))
        host.request(_RTM_NEWLINK, _ifinfo(up=True) + _string(_IFLA_IFNAME, veth.host_name)
                     + sized + _u32(_IFLA_MASTER, master.index) + _attr(_IFLA_LINKINFO, info),
                     _NLM_F_CREATE | _NLM_F_EXCL)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        # EEXIST is about either name: the host's or the one inside the namespace.
        if host.link(veth.host_name) is None:
            raise NetlinkError(f"cannot create the veth {veth.host_name!r}: the network "
                               f"namespace {netns} already has an interface named "
                               f"{veth.inner_name!r}", errno=errno.EEXIST) from None
        return False
    finally:
        os.close(fd)
    return True


def _existing_veth(host: _Rtnl, veth: _Veth, where: str) -> _Link:
    with _failing(f"cannot create the veth {veth.host_name!r} with its peer {where}"):
        link = host.link(veth.host_name)
    if link is None:
        raise NetlinkError(f"the veth {veth.host_name!r} vanished while it was being set up; "
                           "is another composer working on this container?")
    if link.kind != "veth":
        raise NetlinkError(f"a link named {veth.host_name!r} exists but is a "
                           f"{link.kind or 'plain'} interface, not a veth; remove it "
                           "(composer down removes what composer made)")
    return link


def _ensure_default_route(rtnl: _Rtnl, index: int, gateway: ipaddress.IPv4Address,
                          where: str) -> None:
    message = _RTMSG.pack(socket.AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_STATIC, 0,
                          _RTN_UNICAST, 0)
    try:
        rtnl.request(_RTM_NEWROUTE, message + _attr(_RTA_GATEWAY, gateway.packed)
                     + _u32(_RTA_OIF, index), _NLM_F_CREATE | _NLM_F_EXCL)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        existing = _default_gateways(rtnl)
        if str(gateway) not in existing:
            raise NetlinkError(
                f"cannot add the default route via {gateway} on {where}: the namespace already "
                f"has one via {', '.join(existing)}; only one of a container's networks can "
                "give its default route") from None


def remove_link(name: str) -> None:
    """Delete the host-namespace link ``name`` (a veth takes its peer along); missing is
    success."""
    _check_ifname(name, "link")
    with _host() as host, _failing(f"cannot delete the link {name!r}"):
        try:
            host.request(_RTM_DELLINK, _ifinfo() + _string(_IFLA_IFNAME, name))
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise


# -- reading --------------------------------------------------------------------------------------


def _table(route: Any) -> int:
    table: int | None = route.get_attr("RTA_TABLE")  # rtm_table is 8 bits: the attribute is not
    return route["table"] if table is None else table


@_off_loop
def links_by_alias(prefix: str) -> list[tuple[str, str]]:
    """``(ifname, ifalias)`` of the host's links whose ifalias starts with ``prefix``, sorted by
    name: how teardown finds composer's objects, whatever the configuration says today."""
    with _route() as ipr, _failing("cannot list the host's network interfaces"):
        links = ipr.get_links()
    found = []
    for link in links:
        alias = link.get_attr("IFLA_IFALIAS")
        if alias is not None and alias.startswith(prefix):
            found.append((link.get_attr("IFLA_IFNAME"), alias))
    return sorted(found)


@_off_loop
def host_routes() -> list[ipaddress.IPv4Network]:
    """Destinations of the host's IPv4 routes in the main table, sorted, for IPAM to avoid.
    The default route (0.0.0.0/0) is left out: it overlaps every subnet."""
    with _route() as ipr, _failing("cannot list the host's routes"):
        routes = ipr.get_routes(family=socket.AF_INET)
    found = {ipaddress.IPv4Network(f"{route.get_attr('RTA_DST')}/{route['dst_len']}",
                                   strict=False)
             for route in routes if _table(route) == _RT_TABLE_MAIN and route["dst_len"] > 0}
    return sorted(found)


@_off_loop
def host_addresses() -> list[ipaddress.IPv4Address]:
    """The host's IPv4 addresses on every interface, loopback included, sorted."""
    with _route() as ipr, _failing("cannot list the host's addresses"):
        addresses = ipr.get_addr(family=socket.AF_INET)
    return sorted({ipaddress.IPv4Address(_local(address)) for address in addresses})


def _local(address: Any) -> str:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    local: str | None = address.get_attr("IFA_LOCAL")
    return local if local is not None else str(address.get_attr("IFA_ADDRESS"))


@_off_loop
def addresses_in(netns: Path) -> dict[str, list[str]]:
    """Interface name -> its IPv4 addresses as ``a.b.c.d/prefix`` (sorted), for every
    interface inside the namespace at ``netns``; an interface without one maps to []."""
    netns = Path(netns)
    with _route(netns) as ipr, _failing(f"cannot list the interfaces in {netns}"):
        links = ipr.get_links()
        addresses = ipr.get_addr(family=socket.AF_INET)
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    found: dict[str, list[str]] = {name: [] for name in names.values()}
    for address in addresses:
        if address["index"] in names:
            found[names[address["index"]]].append(f"{_local(address)}/{address['prefixlen']}")
    return {name: sorted(values) for name, values in sorted(found.items())}


# -- sysctls --------------------------------------------------------------------------------------


def _write_sysctl(path: Path, value: str, what: str) -> None:
    with _failing(f"cannot set {what}", "is /proc/sys mounted read-write?"):
        if path.read_text().strip() != value:
            path.write_text(value)


def set_ipv4_conf(interface: str, key: str, value: str) -> None:
    """Write ``/proc/sys/net/ipv4/conf/<interface>/<key>`` (``route_localnet`` on a bridge,
    say), only when it differs. Not netlink, but the one place for it."""
    if interface not in ("all", "default"):
        _check_ifname(interface, "interface")
    if not _SYSCTL_KEY.fullmatch(key):
        raise NetlinkError(f"{key!r} is not an IPv4 interface setting")
    path = Path("/proc/sys/net/ipv4/conf") / interface / key
    if not path.parent.is_dir():
        raise NetlinkError(f"cannot set net.ipv4.conf.{interface}.{key}: there is no interface "
                           f"named {interface!r}")
    if not path.exists():
        raise NetlinkError(f"cannot set net.ipv4.conf.{interface}.{key}: this kernel has no "
                           f"setting {key!r}")
    _write_sysctl(path, value.strip(), f"net.ipv4.conf.{interface}.{key} to {value!r}")


def enable_forwarding() -> None:
    """``net.ipv4.ip_forward = 1``, written only when it is not 1 already (writing it resets
    every interface's forwarding setting, so it is not rewritten for nothing)."""
    _write_sysctl(Path("/proc/sys/net/ipv4/ip_forward"), "1", "net.ipv4.ip_forward to 1")
