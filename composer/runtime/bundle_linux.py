"""The parts of the OCI config that are Linux policy: capabilities, rlimits, sysctls, cgroup
resources and devices, each a pure function of the spec (devices read the host through a
lookup the caller can replace). :mod:`composer.runtime.bundle` assembles them.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from composer.errors import ComposerError
from composer.runtime.spec import ContainerSpec, Device, Resources


class BundleError(ComposerError):
    """A container spec that cannot become an OCI bundle (the message says which field)."""


# Every capability Linux has, in the kernel's order (capability.h): the order OCI lists use.
ALL_CAPABILITIES: tuple[str, ...] = tuple(f"CAP_{c}" for c in (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"))
DEFAULT_CAPABILITIES: frozenset[str] = frozenset(f"CAP_{c}" for c in (
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
    "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"))


@functools.cache
def own_capabilities() -> frozenset[str]:
    """This process's bounding set: what the OCI runtime it starts (as root) can hand on."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            line = next(line for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration):
        return frozenset(ALL_CAPABILITIES)
    bits = int(line.split()[1], 16)
    return frozenset(c for i, c in enumerate(ALL_CAPABILITIES) if bits >> i & 1)


def _capability(name: str, field: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in ALL_CAPABILITIES:
        raise BundleError(f"{field}: unknown capability {name!r}")
    return full


def capabilities(spec: ContainerSpec, available: Iterable[str] | None = None, *,
                 privileged: bool | None = None) -> list[str]:
    """Docker's capability set after ``cap_add``/``cap_drop`` (``ALL`` allowed, ``CAP_`` prefix
    optional, any case), or every capability when privileged; in the kernel's order.

    ``available`` is the caller's own bounding set (None: this process's): a process cannot
    grant more than it has, so privileged and default sets are cut down to it, and a
    ``cap_add`` outside it is an error."""
    have = own_capabilities() if available is None else frozenset(available)
    adds = [_capability(c, "cap_add") for c in spec.cap_add]
    drops = [_capability(c, "cap_drop") for c in spec.cap_drop]
    if spec.privileged if privileged is None else privileged:
        caps = set(ALL_CAPABILITIES)
    elif "ALL" in adds:
        caps = set(ALL_CAPABILITIES) - set(drops)
    elif "ALL" in drops:
        caps = set(adds)
    else:
        caps = (set(DEFAULT_CAPABILITIES) - set(drops)) | set(adds)
    missing = sorted(c for c in adds if c != "ALL" and c in caps and c not in have)
    if missing:
        raise BundleError(f"cap_add: composer itself lacks {', '.join(missing)}, so it cannot "
                          "give them to a container")
    return [c for c in ALL_CAPABILITIES if c in caps and c in have]


RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice",
           "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
INFINITY = 2**64 - 1  # RLIM_INFINITY as OCI's unsigned 64-bit numbers spell it
DEFAULT_NOFILE = 1048576  # what dockerd usually hands its containers


def _rlim(value: int) -> int:
    return INFINITY if value < 0 else value


def rlimits(ulimits: Mapping[str, tuple[int, int]],
            caller: Mapping[str, tuple[int, int]]) -> list[dict[str, Any]]:
    """``process.rlimits``: the spec's ulimits (negative: unlimited) capped at the caller's hard
    limits, plus RLIMIT_NOFILE at min(1048576, caller's hard) when the caller told its own."""
    wanted = {}
    for name, (soft, hard) in ulimits.items():
        key = name.lower()
        if key not in RLIMITS:
            raise BundleError(f"ulimits: unknown limit {name!r} (known: {', '.join(RLIMITS)})")
        if _rlim(soft) > _rlim(hard):
            raise BundleError(f"ulimits.{name}: soft limit {soft} is above hard limit {hard}")
        wanted[key] = (_rlim(soft), _rlim(hard))
    if "nofile" not in wanted and "nofile" in caller:
        wanted["nofile"] = (DEFAULT_NOFILE, DEFAULT_NOFILE)
    out = []
    for key in sorted(wanted):
        soft, hard = wanted[key]
        if key in caller:
            hard = min(hard, _rlim(caller[key][1]))
            soft = min(soft, hard)
        out.append({"type": f"RLIMIT_{key.upper()}", "hard": hard, "soft": soft})
    return out


# The sysctls a container may set: those the kernel keeps per IPC or network namespace
# (Docker's and runc's list).
IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                         "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                         "kernel.shm_rmid_forced"})


def sysctls(spec: ContainerSpec, *, private_network: bool,
            domainname: str | None = None) -> dict[str, str]:
    """``linux.sysctl``: Docker's two defaults for a network namespace of its own (ping
    without CAP_NET_RAW, low ports without CAP_NET_BIND_SERVICE), the NIS domain name (OCI
    has no field for it; the sysctl does what setdomainname(2) does), then the spec's, which
    must be namespaced and not in a namespace shared with the host."""
    out: dict[str, str] = {}
    if private_network:
        out["net.ipv4.ping_group_range"] = "0 2147483647"
        out["net.ipv4.ip_unprivileged_port_start"] = "0"
    if domainname:
        out["kernel.domainname"] = domainname
    for key, value in sorted(spec.sysctls.items()):
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if spec.ipc == "host":
                raise BundleError(f"sysctls.{key}: not allowed with ipc: host (it would "
                                  "change the host's setting)")
        elif key.startswith("net."):
            if spec.network == "host":
                raise BundleError(f"sysctls.{key}: not allowed with network_mode: host (it "
                                  "would change the host's setting)")
        else:
            raise BundleError(
                f"sysctls.{key}: not a namespaced sysctl, so a container may not set it "
                "(allowed: net.*, fs.mqueue.*, " + ", ".join(sorted(IPC_SYSCTLS)) + ")")
        out[key] = str(value)
    return out


MIN_MEMORY = 6 * 1024 * 1024  # Docker's smallest memory limit
CPU_PERIOD = 100_000  # microseconds, Docker's period for --cpus


def resources(res: Resources, *, swap_limit: bool = True) -> dict[str, Any]:
    """``linux.resources`` without devices, with Docker's checks and defaults (swap as much as
    memory when only memory is limited). The same OCI fields serve cgroup v1 and v2: the
    runtime converts (shares to weight, memory+swap to swap.max)."""
    out: dict[str, Any] = {}
    memory: dict[str, int] = {}
    if res.memory is not None:
        if res.memory < MIN_MEMORY:
            raise BundleError(f"mem_limit: {res.memory} bytes is below the minimum, 6 MiB")
        memory["limit"] = res.memory
    if res.memory_swap is not None and res.memory_swap != 0 and swap_limit:
        if res.memory_swap > 0:
            if res.memory is None:
                raise BundleError("memswap_limit needs mem_limit as well")
            if res.memory_swap < res.memory:
                raise BundleError(f"memswap_limit ({res.memory_swap}) must be at least "
                                  f"mem_limit ({res.memory}): it counts memory plus swap")
        memory["swap"] = res.memory_swap if res.memory_swap > 0 else -1
    elif res.memory is not None and swap_limit:
        memory["swap"] = 2 * res.memory
    if res.memory_reservation is not None:
        if res.memory is not None and res.memory_reservation > res.memory:
            raise BundleError("mem_reservation must not be above mem_limit")
        memory["reservation"] = res.memory_reservation
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if res.cpu_shares is not None:
        cpu["shares"] = res.cpu_shares
    if res.cpus is not None:
        if res.cpus <= 0:
            raise BundleError(f"cpus: {res.cpus} must be above 0")
        cpu["quota"] = round(res.cpus * CPU_PERIOD)
        cpu["period"] = CPU_PERIOD
    if res.cpuset_cpus is not None:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems is not None:
        cpu["mems"] = res.cpuset_mems
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit is not None:
        # 0 and negative mean unlimited in Docker's API; runc wants -1 for that.
        out["pids"] = {"limit": res.pids_limit if res.pids_limit > 0 else -1}
    return out


# Docker's device cgroup for an ordinary container: nothing but the usual character devices
# (null, zero, full, random, urandom, tty, console, ptmx, the ptys) and mknod of any device
# (the node is of no use without access to it).
DEFAULT_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
      for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
)


@dataclass(frozen=True)
class DeviceNode:
    """A device node on the host: ``type`` is ``c`` or ``b``; ``mode`` the permission bits."""

    path: str
    type: str
    major: int
    minor: int
    mode: int = 0o666
    uid: int = 0
    gid: int = 0


DeviceLookup = Callable[[str], Sequence[DeviceNode]]
_HOST_DEV_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def host_device_nodes(path: str) -> list[DeviceNode]:
    """The device at ``path``, or every device under it when it is a directory (symlinks are
    not followed; /dev/pts, /dev/shm and the like are skipped, as runc does for privileged)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise BundleError(f"devices: {path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _HOST_DEV_SKIP)
            for name in sorted(files):
                full = os.path.join(root, name)
                if full == "/dev/console":
                    continue
                try:
                    found.extend(_node(full, os.lstat(full)))
                except OSError:
                    continue  # gone while we looked
        return found
    nodes = _node(path, st)
    if not nodes:
        raise BundleError(f"devices: {path} is not a device")
    return nodes


def _node(path: str, st: os.stat_result) -> list[DeviceNode]:
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b"
        return [DeviceNode(path, kind, os.major(st.st_rdev), os.minor(st.st_rdev),
                           stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)]
    return []


def devices(spec: ContainerSpec, lookup: DeviceLookup, *, privileged: bool
            ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``linux.devices`` and the device cgroup rules. Privileged: every host device and all
    access (the spec's devices only add other paths); otherwise Docker's default rules plus
    the spec's devices with their permissions."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = [dict(r) for r in DEFAULT_DEVICE_RULES]
    if privileged:
        nodes = [_oci_node(n, n.path) for n in lookup("/dev")]
        rules = [{"allow": True, "access": "rwm"}]
    for device in spec.devices:
        _check_device(device)
        if privileged and device.host == device.container:
            continue
        for node in lookup(device.host):
            inside = device.container + node.path[len(device.host):]
            nodes.append(_oci_node(node, os.path.normpath(inside)))
            if not privileged:
                rules.append({"allow": True, "type": node.type, "major": node.major,
                              "minor": node.minor, "access": device.permissions})
    return nodes, rules


def _check_device(device: Device) -> None:
    if not device.host.startswith("/") or not device.container.startswith("/"):
        raise BundleError(f"devices: {device.host}:{device.container}: both paths must be "
                          "absolute")
    perms = device.permissions
    if not perms or set(perms) - set("rwm") or len(set(perms)) != len(perms):
        raise BundleError(f"devices: {device.host}: permissions {perms!r} must be made of "
                          "r, w and m")


def _oci_node(node: DeviceNode, path: str) -> dict[str, Any]:
    return {"path": path, "type": node.type, "major": node.major, "minor": node.minor,
            "fileMode": node.mode, "uid": node.uid, "gid": node.gid}
