"""cgroups: which kind this host has, and where a container's cgroup goes.

cgroupfs driver on v1 and hybrid hosts, the systemd driver where systemd runs cgroup v2 (see
the design). One parent per project, so a project's containers can be found and limited together.

:func:`detect` reads the host from ``/proc/self/mountinfo`` (``v1``, ``hybrid``: v1 controllers
plus the unified hierarchy beside them, or ``v2``); :func:`settings_for` places a container;
:func:`cgroup_dirs`, :func:`remove` and :func:`leftovers` find and clean up what the OCI runtime
made; :func:`memory_events` and :func:`oom_killed` tell whether the kernel killed for memory.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from composer.errors import ComposerError


@dataclass(frozen=True)
class CgroupSettings:
    """Where one container's cgroup lives, as the OCI runtime is told.

    ``path`` for the cgroupfs driver is a cgroup path (``/composer/<group>/<id>``); for the
    systemd driver it is runc's ``slice:prefix:name`` form
    (``composer-<group>.slice:composer:<id>``).
    ``version`` is 2 only on unified hosts; hybrid hosts are 1 (limits go to the v1 controllers).
    """

    driver: Literal["cgroupfs", "systemd"]
    version: Literal[1, 2]
    path: str


# -- the host -------------------------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
ROOT = "composer"  # cgroupfs: /composer/<group>/<container id>
SLICE_PREFIX = "composer"  # systemd: composer.slice/composer-<group>.slice/composer-<id>.scope
OUR_TOPS = (ROOT, f"{SLICE_PREFIX}.slice")  # the top directories composer owns

# The v1 hierarchies runc puts a container in (libcontainer/cgroups/fs: its subsystems, the
# named systemd hierarchy it joins, and on hybrid hosts the unified one).
V1_CONTROLLERS = frozenset({
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory", "misc",
    "net_cls", "net_prio", "perf_event", "pids", "rdma", "name=systemd"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_UNIT_SAFE = re.compile(r"[A-Za-z0-9:_.]")
_RMDIR_TRIES = 5  # runc retries too: a killed task leaves its cgroup a moment after it died


class CgroupError(ComposerError):
    """A cgroup that cannot be placed, read or removed."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy: v1 with its controllers (``name=systemd`` for the named
    one), or the v2 one (no controllers listed)."""

    mountpoint: Path
    version: Literal[1, 2]
    controllers: tuple[str, ...] = ()


@dataclass(frozen=True)
class CgroupHost:
    """What this host has. ``hybrid``: v1 controllers plus the unified (v2) hierarchy at the
    side; ``systemd``: PID 1 is systemd and manages the cgroups. ``hierarchies`` are the mounts
    found (empty for a host described by hand: the real host's are used then)."""

    mode: Literal["v1", "hybrid", "v2"]
    systemd: bool
    hierarchies: tuple[Hierarchy, ...] = field(default=(), compare=False, repr=False)


def detect(mountinfo: str | None = None, *, pid1_comm: str | None = None) -> CgroupHost:
    """Parse ``/proc/self/mountinfo`` (or the ``mountinfo`` text given) and PID 1's name.
    As runc: ``v2`` when ``/sys/fs/cgroup`` itself is cgroup2. The real host's answer is
    computed once per process."""
    if mountinfo is None and pid1_comm is None:
        return _real_host()
    text = Path("/proc/self/mountinfo").read_text() if mountinfo is None else mountinfo
    return _host(text, _pid1_comm() if pid1_comm is None else pid1_comm,
                 booted=pid1_comm is not None or _systemd_booted())


@functools.cache
def _real_host() -> CgroupHost:
    return _host(Path("/proc/self/mountinfo").read_text(), _pid1_comm(),
                 booted=_systemd_booted())


def _pid1_comm() -> str:
    try:
        return Path("/proc/1/comm").read_text()
    except OSError:
        return ""


def _systemd_booted() -> bool:
    return Path("/run/systemd/system").is_dir()  # sd_booted(3), as runc checks it


def _host(mountinfo: str, pid1_comm: str, *, booted: bool) -> CgroupHost:
    mounts: dict[Path, tuple[str, tuple[str, ...]]] = {}  # the last mount on a point wins
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        fstype, superopts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        if fstype in ("cgroup", "cgroup2"):
            mounts[Path(_unescape(fields[4]))] = (fstype, tuple(superopts.split(",")))
    v1: dict[tuple[str, ...], Hierarchy] = {}
    v2: Hierarchy | None = None
    for point, (fstype, opts) in sorted(mounts.items(), key=lambda m: _preference(m[0])):
        if fstype == "cgroup2":
            v2 = v2 or Hierarchy(point, 2)
            continue
        controllers = tuple(sorted(o for o in opts if o in V1_CONTROLLERS))
        if controllers and controllers not in v1:  # one hierarchy mounted twice: the first
            v1[controllers] = Hierarchy(point, 1, controllers)
    root = mounts.get(CGROUP_ROOT)
    if (root and root[0] == "cgroup2") or (v2 and not v1):
        assert v2 is not None
        mode: Literal["v1", "hybrid", "v2"] = "v2"
        hierarchies: tuple[Hierarchy, ...] = (v2,)
    elif v1:
        mode = "hybrid" if v2 else "v1"
        hierarchies = tuple(sorted([*v1.values(), *([v2] if v2 else [])],
                                   key=lambda h: str(h.mountpoint)))
    else:
        raise CgroupError("no cgroup filesystem is mounted (none in /proc/self/mountinfo)")
    manages = mode == "v2" or any("name=systemd" in h.controllers for h in hierarchies)
    return CgroupHost(mode, pid1_comm.strip() == "systemd" and booted and manages, hierarchies)


def _preference(point: Path) -> tuple[bool, str]:
    return (not point.is_relative_to(CGROUP_ROOT), str(point))


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


# -- where a container's cgroup is -------------------------------------------------------------

def settings_for(host: CgroupHost, group: str, container_id: str, *,
                 root: str = ROOT) -> CgroupSettings:
    """The cgroup of container ``container_id`` of ``group`` (a project): the systemd driver
    where systemd runs cgroup v2, else cgroupfs under ``/<root>/<group>/`` (``root`` is
    ``composer`` but for tests, which keep their containers apart under a root of their own)."""
    _check_name("group", group)
    _check_name("container id", container_id)
    _check_name("cgroup root", root)
    if host.mode == "v2" and host.systemd:
        return CgroupSettings("systemd", 2, f"{_slice(group)}:{SLICE_PREFIX}:{container_id}")
    return CgroupSettings("cgroupfs", 2 if host.mode == "v2" else 1,
                          f"/{root}/{group}/{container_id}")


def group_path(host: CgroupHost, group: str) -> str:
    """The cgroup path holding every container of ``group`` (for :func:`leftovers`)."""
    _check_name("group", group)
    if host.mode == "v2" and host.systemd:
        return _expand_slice(_slice(group))
    return f"/{ROOT}/{group}"


def _check_name(what: str, value: str) -> None:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise CgroupError(f"{what} {value!r} cannot name a cgroup: use letters, digits, '_', "
                          f"'.' and '-', starting with a letter or digit")


def _slice(group: str) -> str:
    # '-' is systemd's slice separator (a-b.slice is a child of a.slice): escape it as
    # systemd-escape does, so that projects "a" and "a-b" do not nest.
    escaped = "".join(c if _UNIT_SAFE.fullmatch(c) else "".join(f"\\x{b:02x}" for b in c.encode())
                      for c in group)
    return f"{SLICE_PREFIX}-{escaped}.slice"


def _expand_slice(slice_name: str) -> str:
    """runc's ExpandSlice: ``a-b.slice`` -> ``/a.slice/a-b.slice``."""
    stem = slice_name.removesuffix(".slice")
    path, prefix = "", ""
    for part in stem.split("-"):
        if not part:
            raise CgroupError(f"invalid slice name {slice_name!r}")
        path += f"/{prefix}{part}.slice"
        prefix += f"{part}-"
    return path


def _relative(settings: CgroupSettings) -> PurePosixPath:
    """The cgroup's path inside each hierarchy, without the leading slash."""
    if settings.driver == "systemd":
        parts = settings.path.split(":")
        if len(parts) != 3:
            raise CgroupError(f"systemd cgroup path {settings.path!r} is not slice:prefix:name")
        slice_name, prefix, name = parts
        path = f"{_expand_slice(slice_name or 'system.slice')}/{prefix}-{name}.scope"
    else:
        path = settings.path
    rel = PurePosixPath(path.lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise CgroupError(f"cgroup path {settings.path!r} is not a cgroup below the root")
    return rel


def cgroup_dirs(settings: CgroupSettings, host: CgroupHost | None = None) -> list[Path]:
    """Every directory the cgroup has (or will have) on the host: one per v1 hierarchy runc
    uses plus the unified one on hybrid hosts; one on v2. Whether they exist or not."""
    hierarchies = _hierarchies(host)
    rel = _relative(settings)
    if settings.version == 2:
        chosen = [h for h in hierarchies if h.version == 2][:1]
        if not chosen:
            raise CgroupError("this host has no cgroup v2 hierarchy")
    else:
        chosen = list(hierarchies)
    return [h.mountpoint / rel for h in chosen]


def _hierarchies(host: CgroupHost | None) -> tuple[Hierarchy, ...]:
    return (host.hierarchies if host and host.hierarchies else None) or detect().hierarchies


# -- cleanup --------------------------------------------------------------------------------------

def remove(settings: CgroupSettings, host: CgroupHost | None = None, *,
           parents: bool = False) -> None:
    """Remove the cgroup everywhere (sub-cgroups first) and, with ``parents``, its parents
    that composer owns and that are now empty. A cgroup already gone is success; one with
    processes is an error.

    Parents stay by default: another container of the group (of this engine or of another
    state root's) may be in the middle of creating its cgroup under them, and runc fails
    when a parent vanishes between its checks and its mkdir."""
    rel = _relative(settings)
    dirs = cgroup_dirs(settings, host)
    for path in dirs:
        _remove_tree(path)
    if not parents or rel.parts[0] not in OUR_TOPS:
        return
    for path in dirs:
        parent = path
        for _ in rel.parts[1:]:
            parent = parent.parent
            try:
                parent.rmdir()
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EBUSY, errno.ENOTEMPTY):
                    break  # gone, or another container of the group is still there
                raise CgroupError(f"cannot remove cgroup {parent}: {e.strerror}") from e


def _remove_tree(path: Path) -> None:
    try:
        children = sorted(e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return
    except OSError as e:
        raise CgroupError(f"cannot read cgroup {path}: {e.strerror}") from e
    for child in children:
        _remove_tree(Path(child))
    delay = 0.01
    for _ in range(_RMDIR_TRIES):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise CgroupError(f"cannot remove cgroup {path}: {e.strerror}") from e
        pids = _pids(path)
        if pids:
            raise CgroupError(f"cannot remove cgroup {path}: processes {', '.join(pids)} are "
                              f"still in it; kill them (or the container) first")
        time.sleep(delay)
        delay *= 2
    raise CgroupError(f"cannot remove cgroup {path}: it stays busy with no process left in it")


def _pids(path: Path) -> list[str]:
    try:
        return (path / "cgroup.procs").read_text().split()
    except OSError:
        return []


def leftovers(prefix: str = f"/{ROOT}", host: CgroupHost | None = None) -> list[Path]:
    """The cgroup directories at or below ``prefix`` in every hierarchy, sorted (leak checks,
    and cleanup after a crash). On systemd v2 hosts composer's are under ``/composer.slice``
    (see :func:`group_path`)."""
    rel = PurePosixPath(prefix.lstrip("/"))
    if not rel.parts or ".." in rel.parts:
        raise CgroupError(f"leftovers: {prefix!r} is not a cgroup below the root")
    found: list[Path] = []
    for hierarchy in _hierarchies(host):
        base = hierarchy.mountpoint / rel
        if base.is_dir():
            found.append(base)
            for top, subdirs, _ in os.walk(base):
                found.extend(Path(top) / d for d in subdirs)
    return sorted(found)


# -- what happened inside -----------------------------------------------------------------------

def memory_events(settings: CgroupSettings, host: CgroupHost | None = None) -> dict[str, int]:
    """Memory events of the cgroup: v2's ``memory.events`` (``oom``, ``oom_kill``, ...); on v1
    ``oom_kill`` from ``memory.oom_control`` (kernels from 4.13), ``failcnt`` (how often the
    memory limit was hit) and, with swap accounting, ``memsw_failcnt`` (memory + swap limit).
    Empty when the cgroup (or the memory controller) is not there."""
    dirs = cgroup_dirs(settings, host)
    if settings.version == 2:
        return _counters(dirs[0] / "memory.events")
    hierarchies = [h for h in _hierarchies(host) if "memory" in h.controllers]
    if not hierarchies:
        return {}
    path = hierarchies[0].mountpoint / _relative(settings)
    events = {k: v for k, v in _counters(path / "memory.oom_control").items() if k == "oom_kill"}
    for key, name in (("failcnt", "memory.failcnt"), ("memsw_failcnt", "memory.memsw.failcnt")):
        with contextlib.suppress(OSError, ValueError):
            events[key] = int((path / name).read_text())
    return events


def oom_killed(settings: CgroupSettings, host: CgroupHost | None = None) -> bool:
    """Whether the kernel's OOM killer killed a process of the cgroup."""
    return memory_events(settings, host).get("oom_kill", 0) > 0


def _counters(path: Path) -> dict[str, int]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    counters: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            counters[key] = int(value)
    return counters
