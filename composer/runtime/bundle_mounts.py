"""The mounts of an OCI config: Docker's default set, then the caller's and the spec's binds
and tmpfs mounts, in Docker's order and with Docker's options; masked and read-only paths."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

from composer.runtime.bundle_linux import BundleError
from composer.runtime.spec import Mount

DEFAULT_SHM_SIZE = 64 * 1024 * 1024
INIT_TARGET = "/sbin/docker-init"  # where Docker puts its init; tools look for it there

MASKED_PATHS: tuple[str, ...] = (
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap")
READONLY_PATHS: tuple[str, ...] = (
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
# Options of the compose/Docker world that are not mount(2) options: SELinux relabelling,
# macOS consistency hints, volume copy-up.
_NOT_MOUNT_OPTIONS = frozenset({"z", "Z", "cached", "delegated", "consistent", "nocopy",
                                "copy"})


def default_mounts(*, shm_size: int | None, ipc: str | None, privileged: bool,
                   writable_cgroups: bool) -> list[dict[str, Any]]:
    """Docker's mounts for every container: /proc, a tmpfs /dev with its pts, /sys read-only,
    the cgroup tree, POSIX queues and /dev/shm (the host's for ``ipc: host``, none for
    ``ipc: none``)."""
    sys_options = ["nosuid", "noexec", "nodev"] + ([] if privileged else ["ro"])
    cgroup_options = ([] if privileged or writable_cgroups else ["ro"]) + [
        "nosuid", "noexec", "nodev"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
                     "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": cgroup_options},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
    ]
    if ipc == "host":
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                       "options": ["rbind", "rprivate"]})
    elif ipc != "none":
        size = DEFAULT_SHM_SIZE if shm_size is None else shm_size
        if size <= 0:
            raise BundleError(f"shm_size: {size} must be above 0")
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    return mounts


def init_mount(init_path: str) -> dict[str, Any]:
    return {"destination": INIT_TARGET, "type": "bind", "source": init_path,
            "options": ["bind", "ro"]}


def _target(mount: Mount) -> str:
    if not mount.target.startswith("/"):
        raise BundleError(f"mount target {mount.target!r} must be an absolute path")
    target = posixpath.normpath(mount.target)
    if target.startswith("//"):
        target = "/" + target.lstrip("/")
    if target == "/":
        raise BundleError("a mount cannot replace the root filesystem (target /)")
    return target


def _depth(destination: str) -> int:
    return len(destination.split("/"))


def user_mounts(extra: Sequence[Mount], spec_mounts: Sequence[Mount]) -> list[dict[str, Any]]:
    """The caller's mounts (/etc/hosts...) and the spec's, the spec's winning on the same
    target, ordered shallow to deep as Docker sorts them (so /a is mounted before /a/b)."""
    chosen: dict[str, Mount] = {}
    for mount in extra:
        chosen[_target(mount)] = mount
    seen = set()
    for mount in spec_mounts:
        target = _target(mount)
        if target in seen:
            raise BundleError(f"duplicate mount point: {target}")
        seen.add(target)
        chosen[target] = mount
    ordered = sorted(chosen.items(), key=lambda item: _depth(item[0]))
    return [_oci_mount(target, mount) for target, mount in ordered]


def _oci_mount(target: str, mount: Mount) -> dict[str, Any]:
    options = [o for o in mount.options if o not in _NOT_MOUNT_OPTIONS]
    if mount.type == "tmpfs":
        merged = merge_options(["noexec", "nosuid", "nodev", "rprivate", "mode=1777",
                                *options, *(["ro"] if mount.read_only else [])])
        return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": merged}
    if mount.type == "volume" and not mount.source.startswith("/"):
        raise BundleError(f"volume mount on {target}: the engine must resolve volume "
                          f"{mount.source or '(anonymous)'} to a host directory first")
    if not mount.source.startswith("/"):
        raise BundleError(f"bind mount on {target}: source {mount.source!r} must be an "
                          "absolute host path")
    propagation = "rprivate"
    mode = "rbind"
    read_only = mount.read_only
    rest = []
    for option in options:
        if option in _PROPAGATIONS:
            propagation = option
        elif option in ("bind", "rbind"):
            mode = option
        elif option == "ro":
            read_only = True
        elif option != "rw":
            rest.append(option)
    return {"destination": target, "type": "bind", "source": mount.source,
            "options": [mode, *(["ro"] if read_only else []), propagation, *rest]}


# Flags that undo each other: the later one wins, in the place of the first.
_OPPOSITES = {"exec": "noexec", "suid": "nosuid", "dev": "nodev", "rw": "ro",
              "atime": "noatime", "diratime": "nodiratime", "strictatime": "relatime"}
_CLASS = {**{k: k for k in _OPPOSITES}, **{v: k for k, v in _OPPOSITES.items()},
          **{p: "propagation" for p in _PROPAGATIONS}}


def merge_options(options: Iterable[str]) -> list[str]:
    """Mount options with later ones overriding earlier ones of the same kind (``exec`` over
    ``noexec``, ``size=1m`` over ``size=2m``), each kind kept where it first appeared."""
    merged: dict[str, str] = {}
    for option in options:
        key = option.split("=", 1)[0] + "=" if "=" in option else _CLASS.get(option, option)
        merged[key] = option
    return list(merged.values())


def rootfs_propagation(mounts: Iterable[dict[str, Any]]) -> str | None:
    """A shared bind needs a shared root, a slave bind at least a slave one (Docker's rule);
    None leaves the runtime's default (private)."""
    kinds = {o for m in mounts if m["type"] == "bind" for o in m["options"]}
    if kinds & {"shared", "rshared"}:
        return "rshared"
    if kinds & {"slave", "rslave"}:
        return "rslave"
    return None


def without_overridden(defaults: list[dict[str, Any]],
                       chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Docker's rule: a user mount on a default target replaces it, and a user /dev replaces
    every default mount under /dev."""
    targets = {m["destination"] for m in chosen}
    return [m for m in defaults if m["destination"] not in targets
            and not ("/dev" in targets and m["destination"].startswith("/dev/"))]
