"""The one place composer talks netlink: namespaces, bridges, veths, addresses and routes.

A thin adapter over pyroute2's ``IPRoute`` (never the deprecated IPDB, never the ``ip``
command): plain data in, plain data out, and every kernel refusal turned into a
:class:`NetlinkError` that says what failed on which interface and what to do.

Each ``ensure_*`` step follows the CNI bridge plugin's rules: EEXIST is success only after the
object is read back and found to be of the right kind, deleting something missing is success,
a container's veth peer is created directly inside its namespace, and a step that fails half
way removes what it created (an ``ExitStack``). Teardown finds composer's links by their
``ifalias`` (:func:`links_by_alias`), never by what today's configuration says.

pyroute2 is imported lazily, by functions that need it, because importing it costs about
0.2 s and the CLI must start fast. Every call opens one short-lived netlink socket and closes
it. A socket inside a namespace is made by a short-lived thread that ``setns()``-es into the
namespace (a namespace is per thread on Linux) and hands the socket back; pyroute2's own
``IPRoute(netns=...)`` forks a helper process for that: about 11 ms per socket instead of 2.
Measured on the development VM (kernel 6.18, median of 20): a container's whole set-up takes
about 10 ms, :func:`create_netns` 2.7 ms plus :func:`ensure_veth` (veth, hairpin, address, up,
default route) 7 ms; most of it is pyroute2 encoding and decoding, ~0.5 ms a message.
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
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from composer.errors import ComposerError

_P = ParamSpec("_P")
_T = TypeVar("_T")

# <linux/sched.h>, <sys/mount.h>, <linux/nsfs.h>, <linux/if.h>, <linux/rtnetlink.h>
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2
_NS_GET_NSTYPE = 0xB703
_IFF_UP = 0x1
_RT_TABLE_MAIN = 254
_NETLINK_ROUTE = 0
_LOOPBACK_INDEX = 1  # the kernel gives lo ifindex 1 in every namespace
_BRPORT_HAIRPIN = 1  # IFLA_BRPORT_MODE: 1 = hairpin (a container reaches itself via a port)
_IFNAMSIZ = 16  # with the trailing NUL: names are at most 15 characters
_UNMOUNT_TRIES = 8  # a racing create can stack bind mounts on one file; peel them all

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


def _get_link(ipr: Any, *, ifname: str | None = None, index: int | None = None) -> Any | None:
    """The link's RTM_NEWLINK message, or None when there is no such link."""
    try:
        if index is not None:
            messages = ipr.link("get", index=index)
        else:
            messages = ipr.link("get", ifname=ifname)
    except Exception as exc:
        if _code(exc) == errno.ENODEV:
            return None
        raise
    return messages[0] if messages else None


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    kind: str | None = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return kind


def _ensure_address(ipr: Any, index: int, address: ipaddress.IPv4Interface) -> None:
    """Add ``address`` to the link; an address already there is success."""
    extra: dict[str, Any] = {}
    if address.network.prefixlen < 31:  # as docker sets it: "brd a.b.255.255"
        extra["broadcast"] = str(address.network.broadcast_address)
    try:
        ipr.addr("add", index=index, address=str(address.ip),
                 prefixlen=address.network.prefixlen, **extra)
    except Exception as exc:
        if _code(exc) != errno.EEXIST:
            raise


def _delete_quietly(ipr: Any, index: int) -> None:
    # Rollback must not hide the error that caused it.
    with contextlib.suppress(Exception):
        ipr.link("del", index=index)


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


def create_netns(path: Path) -> None:
    """A new network namespace kept alive by a bind mount on ``path`` (parent directories
    made; a path that already holds a network namespace is success), its loopback up."""
    path = Path(path)
    with _failing(f"cannot create the network namespace file {path}",
                  "check that composer's run directory is writable"):
        path.parent.mkdir(parents=True, exist_ok=True)
        if _holds_netns(path):
            return
        made = not path.exists()
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))

    def work() -> None:
        # unshare() in this thread only: the process's other threads keep the host's namespace.
        # MS_BIND alone, without ip-netns's making the directory a shared mount: the file is
        # composer's, and nothing else should see it propagate.
        libc = _libc()
        _check(libc.unshare(_CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _check(libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), None, _MS_BIND, None),
               f"mount --bind on {path}")
        try:
            with _pyroute2().IPRoute(groups=0) as ipr:  # a socket made here is in the new netns
                ipr.link("set", index=_LOOPBACK_INDEX, flags=_IFF_UP, change=_IFF_UP)
        except BaseException:
            libc.umount2(os.fsencode(path), _MNT_DETACH)
            raise

    # A thread of its own also keeps pyroute2's event loop away from any the caller runs.
    with _failing(f"cannot create the network namespace {path}"):
        try:
            in_thread(work)
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise


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


@_off_loop
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
    with _route() as ipr, contextlib.ExitStack() as undo:
        with _failing(f"cannot create the bridge {name!r}"):
            try:
                ipr.link("add", ifname=name, kind="bridge", **({"mtu": mtu} if mtu else {}))
                created = True
            except Exception as exc:
                if _code(exc) != errno.EEXIST:
                    raise
                created = False
            link = _get_link(ipr, ifname=name)
        if link is None:  # deleted between our add and get: someone else is at work on it
            raise NetlinkError(f"the bridge {name!r} vanished while it was being set up; "
                               "is another composer changing this network?")
        index = link["index"]
        if created:
            undo.callback(_delete_quietly, ipr, index)
        elif _kind(link) != "bridge":
            raise NetlinkError(
                f"a link named {name!r} exists but is a {_kind(link) or 'plain'} interface, "
                "not a bridge; remove it, or give the network another name "
                "(driver_opts com.docker.network.bridge.name)")
        with _failing(f"cannot configure the bridge {name!r}"):
            if mac is not None and link.get_attr("IFLA_ADDRESS") != mac.lower():
                ipr.link("set", index=index, address=mac.lower())
            ipr.link("set", index=index, ifalias=alias, flags=_IFF_UP, change=_IFF_UP,
                     **({"mtu": mtu} if mtu else {}))
            _ensure_address(ipr, index, gateway)
        undo.pop_all()


@_off_loop
def ensure_veth(*, host_name: str, bridge: str, netns: Path, inner_name: str,
                address: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address | None,
                alias: str, mtu: int | None = None, mac: str | None = None) -> None:
    """A veth pair: ``host_name`` (ifalias ``alias``) on ``bridge``, hairpin on, up; its peer
    ``inner_name`` created directly in the namespace at ``netns``, with ``address``, ``mac``
    if given, up, and a default route via ``gateway`` if given. The MTU is the bridge's unless
    given. An existing ``host_name`` whose peer is in place is success; if a later step fails,
    ``host_name`` (and with it the peer) is deleted when this call created it."""
    _check_ifname(host_name, "veth")
    _check_ifname(inner_name, "interface")
    if mac is not None and not _MAC.fullmatch(mac):
        raise NetlinkError(f"mac_address {mac!r} is not a MAC address (like 02:42:ac:11:00:02)")
    netns = Path(netns)
    where = f"{inner_name!r} in {netns}"
    with _route() as ipr, contextlib.ExitStack() as undo:
        with _failing(f"cannot read the bridge {bridge!r} for {host_name!r}"):
            master = _get_link(ipr, ifname=bridge)
        if master is None or _kind(master) != "bridge":
            raise NetlinkError(f"cannot attach {host_name!r} to {bridge!r}: there is no bridge "
                               f"named {bridge!r}; create the network first (ensure_bridge)")
        mtu = mtu or master.get_attr("IFLA_MTU")
        with _failing(f"cannot create the veth {host_name!r} with its peer {where}"):
            created = _add_veth(ipr, host_name, master["index"], netns, inner_name, mtu, mac)
            host = _get_link(ipr, ifname=host_name)
        if host is None:
            raise NetlinkError(f"the veth {host_name!r} vanished while it was being set up; "
                               "is another composer working on this container?")
        if created:
            undo.callback(_delete_quietly, ipr, host["index"])
        elif _kind(host) != "veth":
            raise NetlinkError(f"a link named {host_name!r} exists but is a "
                               f"{_kind(host) or 'plain'} interface, not a veth; remove it "
                               "(composer down removes what composer made)")
        with _failing(f"cannot attach the veth {host_name!r} to the bridge {bridge!r}"):
            if host.get_attr("IFLA_MASTER") != master["index"]:
                ipr.link("set", index=host["index"], master=master["index"])
            # One message: the alias tags it as composer's, up, and hairpin on the bridge port.
            # Not state="up": with kind bridge_slave pyroute2 would read "state" as the port's.
            ipr.link("set", index=host["index"], ifalias=alias, flags=_IFF_UP, change=_IFF_UP,
                     kind="bridge_slave", mode=_BRPORT_HAIRPIN)
        with _route(netns) as inner:
            with _failing(f"cannot find {where}"):
                peer = _get_link(inner, ifname=inner_name)
            if (peer is None or _kind(peer) != "veth"
                    or peer.get_attr("IFLA_LINK") != host["index"]
                    or host.get_attr("IFLA_LINK") != peer["index"]):
                raise NetlinkError(
                    f"the veth {host_name!r} exists but its peer is not {where}; remove "
                    f"{host_name!r} (it is left over from an earlier run) and try again")
            with _failing(f"cannot configure {where}"):
                if mac is not None and peer.get_attr("IFLA_ADDRESS") != mac.lower():
                    inner.link("set", index=peer["index"], address=mac.lower())
                _ensure_address(inner, peer["index"], address)
                inner.link("set", index=peer["index"], flags=_IFF_UP, change=_IFF_UP)
            if gateway is not None:
                with _failing(f"cannot add the default route via {gateway} on {where}",
                              f"is {gateway} inside {address.network}?"):
                    _ensure_default_route(inner, peer["index"], gateway, where)
        undo.pop_all()


def _add_veth(ipr: Any, host_name: str, master: int, netns: Path, inner_name: str,
              mtu: int | None, mac: str | None) -> bool:
    """Create the pair, the peer straight in ``netns``; False when ``host_name`` exists."""
    peer: dict[str, Any] = {"ifname": inner_name}
    extra: dict[str, Any] = {}
    if mtu:
        peer["mtu"] = extra["mtu"] = mtu
    if mac is not None:
        peer["address"] = mac.lower()
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        peer["net_ns_fd"] = fd
        ipr.link("add", ifname=host_name, kind="veth", master=master, peer=peer, **extra)
    except Exception as exc:
        if _code(exc) != errno.EEXIST:
            raise
        # EEXIST is about either name: the host's or the one inside the namespace.
        if _get_link(ipr, ifname=host_name) is None:
            raise NetlinkError(f"cannot create the veth {host_name!r}: the network namespace "
                               f"{netns} already has an interface named {inner_name!r}",
                               errno=errno.EEXIST) from None
        return False
    finally:
        os.close(fd)
    return True


def _ensure_default_route(ipr: Any, index: int, gateway: ipaddress.IPv4Address,
                          where: str) -> None:
    try:
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
    except Exception as exc:
        if _code(exc) != errno.EEXIST:
            raise
        existing = [route.get_attr("RTA_GATEWAY") for route in ipr.get_routes(family=socket.AF_INET)
                    if route["dst_len"] == 0 and _table(route) == _RT_TABLE_MAIN]
        if str(gateway) not in existing:
            raise NetlinkError(
                f"cannot add the default route via {gateway} on {where}: the namespace already "
                f"has one via {', '.join(str(g) for g in existing)}; only one of a container's "
                "networks can give its default route") from None


@_off_loop
def remove_link(name: str) -> None:
    """Delete the host-namespace link ``name`` (a veth takes its peer along); missing is
    success."""
    _check_ifname(name, "link")
    with _route() as ipr, _failing(f"cannot delete the link {name!r}"):
        try:
            ipr.link("del", ifname=name)
        except Exception as exc:
            if _code(exc) != errno.ENODEV:
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
