"""Named volumes: directories under the state root that outlive the containers using them.

A volume ``NAME`` is ``<root>/volumes/NAME/_data`` (Docker's layout) plus a row in the store
with its driver, labels and options. Only the ``local`` driver exists, with the options of
Docker's: none (a plain directory), ``type=none,o=bind,device=/host/dir`` (an existing host
directory, mounted in its place) and ``type=tmpfs,device=tmpfs,o=size=..,mode=..`` (a tmpfs
mounted on ``_data`` at first use, unmounted when the volume is removed). A volume is created
on first use (``-v NAME:/path``) as Docker does, and an empty one is filled from the image's
content at that path the first time a container mounts it (unless ``nocopy``). Removal
refuses a volume that a container uses (of any state: Docker keeps it for stopped containers
too).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.errors import ComposerError
from composer.runtime.spec import NAME_RULE
from composer.state.store import Store


class VolumeError(ComposerError):
    """A volume cannot be created, found or removed as asked."""


#: The driver options of Docker's local driver that composer knows.
DRIVER_OPTIONS = ("type", "o", "device")
# mount(2) flags that tmpfs ``o=`` may name; every other ``o`` item must be a tmpfs option.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 0x400, 0x800, 0x1000, 0x4000
MNT_DETACH, UMOUNT_NOFOLLOW = 0x2, 0x8
_SETS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
         "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": 0, "strictatime": 0}
_CLEARS = {"rw": MS_RDONLY, "suid": MS_NOSUID, "dev": MS_NODEV, "exec": MS_NOEXEC,
           "atime": MS_NOATIME, "diratime": MS_NODIRATIME}
_TMPFS_KEYS = frozenset({"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "huge",
                         "mpol"})
_BIND_ITEMS = frozenset({"bind", "rbind", "ro", "rw"})


def driver_options(name: str, options: Mapping[str, str]) -> dict[str, str]:
    """The local driver's options, checked (VolumeError naming any it cannot honour)."""
    opts = {str(k): str(v) for k, v in options.items()}
    for key in opts:
        if key not in DRIVER_OPTIONS:
            raise VolumeError(f"volume {name}: driver option {key!r} is not supported (the "
                              "local driver takes type, o and device)")
    if not opts:
        return opts
    kind = opts.get("type", "")
    items = [i for i in opts.get("o", "").split(",") if i]
    device = opts.get("device", "")
    if kind == "none":
        if not {"bind", "rbind"}.intersection(items):
            raise VolumeError(f"volume {name}: type=none needs o=bind (a bind of a host "
                              "directory: type=none,o=bind,device=/host/dir)")
        for item in items:
            if item not in _BIND_ITEMS:
                raise VolumeError(f"volume {name}: driver option o={item} is not supported "
                                  "with type=none (o takes bind, rbind, ro, rw)")
        bind_device(name, device)
    elif kind == "tmpfs":
        if not device:
            raise VolumeError(f"volume {name}: type=tmpfs needs a device (device=tmpfs)")
        tmpfs_options(name, items)
    elif kind:
        raise VolumeError(f"volume {name}: driver option type={kind} is not supported "
                          "(composer's local driver knows type=none with o=bind, and "
                          "type=tmpfs)")
    else:
        raise VolumeError(f"volume {name}: driver options need a type (type=none with "
                          "o=bind,device=/host/dir, or type=tmpfs)")
    return opts


def bind_device(name: str, device: str) -> Path:
    """The host directory of a ``type=none,o=bind`` volume, which must exist."""
    if not device.startswith("/"):
        raise VolumeError(f"volume {name}: device {device!r} must be an absolute host path "
                          "(type=none,o=bind,device=/host/dir)")
    if not os.path.isdir(device):
        raise VolumeError(f"volume {name}: device {device} is not an existing directory (a "
                          "bind volume mounts a host directory that exists)")
    return Path(device)


def tmpfs_options(name: str, items: list[str]) -> tuple[int, str]:
    """mount(2)'s flags and data for a tmpfs volume's ``o=`` items."""
    flags = MS_NOSUID | MS_NODEV  # unless o= says suid or dev
    data = []
    for item in items:
        key = item.split("=", 1)[0]
        if item in _SETS:
            flags |= _SETS[item]
        elif item in _CLEARS:
            flags &= ~_CLEARS[item]
        elif "=" in item and key in _TMPFS_KEYS:
            data.append(item)
        else:
            raise VolumeError(f"volume {name}: driver option o={item} is not supported with "
                              "type=tmpfs (size=, mode=, uid=, gid=, nr_inodes=, and the "
                              "flags ro, noexec, nosuid, nodev, noatime)")
    return flags, ",".join(data)


@dataclass(frozen=True)
class Volume:
    name: str
    driver: str
    mountpoint: Path
    created: float
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Docker's ``volume inspect`` shape."""
        return {"Name": self.name, "Driver": self.driver, "Mountpoint": str(self.mountpoint),
                "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
                "Labels": dict(self.labels), "Options": dict(self.options), "Scope": "local"}


class Volumes:
    """The named volumes of one state root."""

    def __init__(self, root: Path, db: Store) -> None:
        self.root = root / "volumes"
        self.db = db
        self._mounting = threading.Lock()

    def path(self, name: str) -> Path:
        return self.root / name / "_data"

    def create(self, name: str, *, labels: Mapping[str, str] | None = None,
               driver: str = "local", options: Mapping[str, str] | None = None) -> Volume:
        """Make the volume; an existing one of that name is returned as it is (Docker)."""
        if not NAME_RULE.fullmatch(name):
            raise VolumeError(f'invalid volume name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                              "are allowed")
        if driver != "local":
            raise VolumeError(f"volume {name}: driver {driver!r} is not supported (only "
                              "'local')")
        opts = driver_options(name, options or {})
        found = self.get(name)
        if found is not None:
            return found
        # The directory first: a crash leaves at worst a directory without a row, which the
        # next create of that name adopts.
        self.path(name).mkdir(parents=True, exist_ok=True, mode=0o755)
        now = time.time()
        with self.db.transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO volumes (name, driver, labels, options, created)"
                         " VALUES (?, ?, ?, ?, ?)",
                         (name, driver, json.dumps(dict(labels or {}), sort_keys=True),
                          json.dumps(opts, sort_keys=True), now))
        made = self.get(name)
        assert made is not None
        return made

    def relabel(self, name: str, labels: Mapping[str, str]) -> None:
        """Replace the volume's labels (an anonymous volume handed to a recreated container)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE volumes SET labels = ? WHERE name = ?",
                         (json.dumps(dict(labels), sort_keys=True), name))

    def get(self, name: str) -> Volume | None:
        with self.db.snapshot() as conn:
            row = conn.execute("SELECT name, driver, labels, options, created FROM volumes "
                               "WHERE name = ?", (name,)).fetchone()
        return None if row is None else self._volume(row)

    def all(self) -> list[Volume]:
        with self.db.snapshot() as conn:
            found = conn.execute("SELECT name, driver, labels, options, created FROM volumes "
                                 "ORDER BY name").fetchall()
        return [self._volume(r) for r in found]

    def _volume(self, row: tuple[Any, ...]) -> Volume:
        name, driver, labels, options, created = row
        return Volume(name=name, driver=driver, mountpoint=self.path(name), created=created,
                      labels=json.loads(labels), options=json.loads(options))

    def use(self, volume: Volume) -> Path:
        """The host directory a container mounts for ``volume``: its ``_data`` (a tmpfs
        volume's mounted there first if need be) or a bind volume's device."""
        kind = volume.options.get("type")
        if kind == "none":
            return bind_device(volume.name, volume.options.get("device", ""))
        data = self.path(volume.name)
        if kind == "tmpfs":
            from composer.runtime.rootfs import is_mounted

            flags, options = tmpfs_options(volume.name, [
                i for i in volume.options.get("o", "").split(",") if i])
            with self._mounting:
                if not is_mounted(data):
                    data.mkdir(parents=True, exist_ok=True, mode=0o755)
                    try:
                        mount_at(volume.options.get("device") or "tmpfs", data, "tmpfs", flags,
                                 options)
                    except OSError as e:
                        raise VolumeError(f"volume {volume.name}: cannot mount its tmpfs "
                                          f"(o={volume.options.get('o', '')}): "
                                          f"{e.strerror}") from e
        return data

    @staticmethod
    def read_only(volume: Volume) -> bool:
        """A volume its options make read-only (``o=ro``)."""
        return "ro" in volume.options.get("o", "").split(",")

    def remove(self, name: str, *, users: Callable[[str], list[str]],
               force: bool = False) -> None:
        """Delete the volume and its data; refused while containers use it (``users`` names
        them). A missing volume is an error unless ``force`` (Docker's ``volume rm -f``)."""
        if self.get(name) is None:
            if force:
                return
            raise VolumeError(f"No such volume: {name}")
        using = users(name)
        if using:
            raise VolumeError(f"remove {name}: volume is in use - [{', '.join(using)}]")
        from composer.runtime.rootfs import mounts_under

        # A tmpfs volume's mount goes first; nothing mounted may be walked into (a bind
        # volume's device is never mounted here: it is the user's, and is never deleted).
        for point in reversed(mounts_under(self.root / name)):
            try:
                unmount_at(point)
            except OSError as e:
                raise VolumeError(f"remove {name}: cannot unmount {point}: {e.strerror}") from e
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        shutil.rmtree(self.root / name, ignore_errors=True)

    def prune(self, *, users: Callable[[str], list[str]]) -> list[str]:
        """Remove every volume no container uses; the names removed."""
        removed: list[str] = []
        for volume in self.all():
            if not users(volume.name):
                self.remove(volume.name, users=users)
                removed.append(volume.name)
        return removed


def populate(volume_dir: Path, image_root: Path, target: str) -> bool:
    """Fill an empty volume from the image's content at ``target`` (Docker's copy-up on first
    use): owners, modes, links and times kept; paths resolved inside the image root. False
    when nothing was copied (the volume was not empty, or the image has nothing there)."""
    from composer.runtime.inroot import open_in

    if any(volume_dir.iterdir()):
        return False
    try:
        fd = open_in(image_root, target, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        source = Path(f"/proc/self/fd/{fd}")
        names = os.listdir(source)
        if not names:
            return False
        info = os.stat(source)
        os.chown(volume_dir, info.st_uid, info.st_gid)
        os.chmod(volume_dir, info.st_mode & 0o7777)
        for name in names:
            src = source / name
            dst = volume_dir / name
            if src.is_dir() and not src.is_symlink():
                shutil.copytree(src, dst, symlinks=True, copy_function=shutil.copy2)
            else:
                shutil.copy2(src, dst, follow_symlinks=False)
            _copy_owner(src, dst)
        return True
    finally:
        os.close(fd)


def _copy_owner(src: Path, dst: Path) -> None:
    """shutil keeps modes and times, not owners: walk once more for those."""
    pairs = [(src, dst)]
    if src.is_dir() and not src.is_symlink():
        for here, dirs, files in os.walk(src):
            rel = Path(here).relative_to(src)
            pairs += [(Path(here) / n, dst / rel / n) for n in [*dirs, *files]]
    for a, b in pairs:
        info = os.lstat(a)
        os.lchown(b, info.st_uid, info.st_gid)


# -- mount(2) and umount2(2), for tmpfs volumes and the engine's own host mounts ---------------


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def mount_at(source: str, target: Path, fstype: str | None, flags: int,
             data: str = "") -> None:
    """mount(2); OSError on failure."""
    if _libc().mount(os.fsencode(source), os.fsencode(target),
                     None if fstype is None else os.fsencode(fstype), flags,
                     os.fsencode(data) if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


def unmount_at(target: Path) -> None:
    """Unmount everything stacked on ``target`` (detached when busy); nothing mounted there
    is success. OSError when it cannot be unmounted."""
    from composer.runtime.rootfs import is_mounted

    for _ in range(64):
        if not is_mounted(target):
            return
        if _libc().umount2(os.fsencode(target), UMOUNT_NOFOLLOW) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):
            continue
        if err == errno.EBUSY and _libc().umount2(os.fsencode(target),
                                                  UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
            continue
        err = ctypes.get_errno() if err == errno.EBUSY else err
        raise OSError(err, os.strerror(err), str(target))
    raise OSError(errno.EBUSY, "mounted again as soon as unmounted", str(target))
