"""Container root filesystems: overlayfs over an image's unpacked layers.

::

    container_dir/l/0 .. l/N-1   symlinks to the layer directories, l/0 the top-most
    container_dir/upper/          the container's changes (what ``commit`` turns into a layer)
    container_dir/work/           overlayfs's work directory (same filesystem as upper)
    container_dir/merged/         the mount point: the container's root

Options ``redirect_dir=off,metacopy=off,index=off``: a renamed directory is copied up whole
instead of being recorded as a redirect xattr, and a chmod copies the data too, so ``upper``
holds plain files, whiteouts (char device 0/0) and opaque markers only, which is what an OCI
layer can say (:mod:`composer.runtime.images.diff`).

mount(2) takes at most one page of option data. Layer directories have long names under a
state root of any length, so the lowers are named by the short ``l/<i>`` symlinks; when even
those absolute names do not fit (an image of 100+ layers under a long root), the option string
uses paths relative to ``container_dir``, and mount(2) is called by a child process started
with that working directory (the engine is multi-threaded: it never changes its own cwd).

mount and unmount of one container dir are serialized with ``flock`` on the directory, so two
threads or processes asking at once mount once.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError

__all__ = ["RootfsError", "check_state_root", "is_mounted", "mount", "mounts_under", "remove",
           "unmount"]

MS_RDONLY = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8
OVERLAYFS_MAGIC = 0x794C7630
TMPFS_MAGIC = 0x01021994
_REFUSED_FS = {OVERLAYFS_MAGIC: "overlayfs", TMPFS_MAGIC: "tmpfs"}
OPTIONS = "redirect_dir=off,metacopy=off,index=off"
# The kernel's OVL_MAX_STACK: no overlay has more lower layers.
MAX_LAYERS = 500
_OCTAL = re.compile(rb"\\([0-7]{3})")
# Characters overlayfs's option parser would split or unescape: such paths go relative.
_UNSAFE = re.compile(r"[,:\\]")

# The child that mounts with relative paths: argv = [data, flags]; it runs in container_dir.
_CHILD = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
if libc.mount(b"overlay", b"merged", b"overlay", int(sys.argv[2]), os.fsencode(sys.argv[1])):
    print(ctypes.get_errno())
    sys.exit(1)
"""


class RootfsError(ComposerError):
    """A container root filesystem cannot be set up, mounted, unmounted or removed."""


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    return libc


def _fs_type(path: str) -> int:
    buffer = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit Linux
    if _libc().statfs(os.fsencode(path), buffer) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    # f_type comes first everywhere; it is a long except on s390x, where it is an int.
    kind = ctypes.c_uint if platform.machine() == "s390x" else ctypes.c_long
    return int(kind.from_buffer(buffer).value) & 0xFFFFFFFF


def check_state_root(path: str | os.PathLike[str]) -> None:
    """Refuse a state root where overlay upper directories cannot live (overlayfs, tmpfs).

    A root that does not exist yet is judged by its nearest existing parent.
    """
    probe = os.path.abspath(path)
    while not os.path.lexists(probe) and probe != os.path.dirname(probe):
        probe = os.path.dirname(probe)
    try:
        kind = _fs_type(probe)
    except OSError as e:
        raise RootfsError(f"cannot check the filesystem of the state root {path}: {e}") from e
    if kind in _REFUSED_FS:
        name = _REFUSED_FS[kind]
        raise RootfsError(
            f"the state root {path} is on {name}: container filesystems are overlayfs mounts "
            f"whose upper directories cannot live on {name}"
            + (" (this is typically the root of a container)" if kind == OVERLAYFS_MAGIC
               else " (and would be lost at reboot)")
            + ". Put the state root on a disk filesystem (ext4, xfs, btrfs) with --root or "
            "COMPOSER_ROOT, or mount a volume at it")


# -- /proc/self/mountinfo -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Mount:
    point: str
    fstype: str
    options: frozenset[str]


def _unescape(field: bytes) -> str:
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def _mounts() -> Iterator[_Mount]:
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            # id parent major:minor root point options [optional...] - fstype source super
            sep = fields.index(b"-", 6)
            yield _Mount(_unescape(fields[4]), fields[sep + 1].decode(errors="replace"),
                         frozenset(fields[5].decode(errors="replace").split(",")))


def _find(path: str | os.PathLike[str]) -> _Mount | None:
    real = os.path.realpath(path)
    found = None
    for m in _mounts():
        if m.point == real:
            found = m  # the last one listed is the top of a stack of mounts
    return found


def is_mounted(path: Path) -> bool:
    """True when something is mounted exactly at ``path`` (symlinks in it resolved)."""
    return _find(path) is not None


def mounts_under(prefix: Path) -> list[Path]:
    """Mount points at or below ``prefix``, sorted (unmount in reverse for children first)."""
    real = os.path.realpath(prefix)
    inside = real.rstrip("/") + "/"
    return sorted({Path(m.point) for m in _mounts()
                   if m.point == real or m.point.startswith(inside)})


# -- mounting -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(container_dir: Path) -> Iterator[None]:
    fd = os.open(container_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _mkdir(path: Path, mode: int = 0o700) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise RootfsError(f"{path} is not a directory (a symlink?): refusing it")


def _prepare(container_dir: Path, lowers: Sequence[Path]) -> int:
    """Make the directories and the short names; the number of lower dirs to name."""
    for lower in lowers:
        if not os.path.isdir(lower):
            raise RootfsError(f"layer directory {lower} is missing: the image store is "
                              "incomplete (pull the image again)")
    for name in ("work", "merged"):
        _mkdir(container_dir / name)
    upper = container_dir / "upper"
    if not os.path.lexists(upper):
        # The merged root shows the upper root's owner and mode: take the image's, as
        # containerd's snapshotter does, so / is not 0700 in the container.
        top = os.stat(lowers[0]) if lowers else None
        os.mkdir(upper, 0o755)
        if top is not None:
            os.chown(upper, top.st_uid, top.st_gid)
            os.chmod(upper, stat.S_IMODE(top.st_mode))
    _mkdir(upper)
    short = container_dir / "l"
    if os.path.lexists(short):  # not mounted: the names can be redone from scratch
        shutil.rmtree(short)
    os.mkdir(short, 0o700)
    if not lowers:  # overlayfs needs a lower dir: an empty one for an image with no layer
        os.mkdir(short / "0", 0o755)
        return 1
    for i, lower in enumerate(lowers):
        os.symlink(os.path.abspath(lower), short / str(i))
    return len(lowers)


def _data(base: str, count: int) -> str:
    prefix = f"{base}/" if base else ""
    lowerdir = ":".join(f"{prefix}l/{i}" for i in range(count))
    return f"lowerdir={lowerdir},upperdir={prefix}upper,workdir={prefix}work,{OPTIONS}"


def _mount_error(err: int, container_dir: Path, data: str) -> RootfsError:
    hint = {
        errno.ENODEV: "the kernel has no overlayfs: load it with `modprobe overlay`",
        errno.EPERM: "mounting needs root (CAP_SYS_ADMIN in the initial user namespace)",
        errno.EINVAL: "overlayfs refused the options; the kernel log says why "
                      "(`dmesg | grep overlayfs`)",
    }.get(err, "")
    return RootfsError(f"cannot mount the root filesystem at {container_dir}/merged: "
                       f"{os.strerror(err)}" + (f"; {hint}" if hint else "")
                       + f" (options: {data[:300]}{'...' if len(data) > 300 else ''})")


def mount(container_dir: Path, lowers: Sequence[Path], *, read_only: bool = False) -> Path:
    """Mount the overlay of ``lowers`` with this container's upper dir; the merged path.

    ``lowers`` are the layer directories **top-most first**, exactly as
    :meth:`ImageStore.lower_dirs` returns them (and as overlayfs's lowerdir lists them).
    Idempotent: when the overlay is mounted already, its path is returned (a mount with the
    other ``read_only`` is an error: unmount first). ``container_dir`` is created if need be.
    """
    if len(lowers) > MAX_LAYERS:
        raise RootfsError(f"an image of {len(lowers)} layers cannot be mounted: overlayfs "
                          f"stacks at most {MAX_LAYERS}")
    container_dir = Path(os.path.abspath(container_dir))
    container_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    merged = container_dir / "merged"
    with _locked(container_dir):
        current = _find(merged)
        if current is not None:
            if current.fstype != "overlay":
                raise RootfsError(f"{merged} has a {current.fstype} filesystem mounted on "
                                  "it, not the container's overlay: unmount it first")
            if ("ro" in current.options) != read_only:
                now = "read-write" if read_only else "read-only"
                raise RootfsError(f"{merged} is mounted {now}: unmount it before mounting it "
                                  "the other way")
            return merged
        try:
            count = _prepare(container_dir, lowers)
        except OSError as e:
            raise RootfsError(f"cannot prepare the root filesystem in {container_dir}: "
                              f"{e}") from e
        flags = MS_RDONLY if read_only else 0
        data = _data(str(container_dir), count)
        limit = os.sysconf("SC_PAGESIZE") - 1  # one page, its NUL included
        if len(os.fsencode(data)) <= limit and not _UNSAFE.search(str(container_dir)):
            if _libc().mount(b"overlay", os.fsencode(merged), b"overlay", flags,
                             os.fsencode(data)) != 0:
                raise _mount_error(ctypes.get_errno(), container_dir, data)
            return merged
        data = _data("", count)
        if len(data) > limit:  # only with hundreds of layers and a tiny page
            raise RootfsError(f"an image of {count} layers does not fit in the overlay "
                              f"options ({len(data)} bytes, at most {limit})")
        _mount_relative(container_dir, data, flags)
        return merged


def _mount_relative(container_dir: Path, data: str, flags: int) -> None:
    if not sys.executable:
        raise RootfsError("cannot mount an overlay of this many layers: no Python "
                          "interpreter to run the mount from the container directory")
    try:
        done = subprocess.run([sys.executable, "-I", "-S", "-c", _CHILD, data, str(flags)],
                              cwd=container_dir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, env={"LC_ALL": "C"})
    except (OSError, subprocess.SubprocessError) as e:
        raise RootfsError(f"cannot run the mount of {container_dir}/merged: {e}") from e
    if done.returncode != 0:
        code = done.stdout.strip()
        if code.isdigit():
            raise _mount_error(int(code), container_dir, data)
        raise RootfsError(f"cannot mount {container_dir}/merged: the mount process failed "
                          f"({done.returncode}): {done.stderr.strip()[-500:]}")


# -- unmounting ---------------------------------------------------------------------------------


def _umount(merged: Path) -> None:
    target = os.fsencode(merged)
    # A stack of mounts (a racing mount elsewhere) goes one by one; bounded in case it refills.
    for _ in range(64):
        if not is_mounted(merged):
            return
        if _libc().umount2(target, UMOUNT_NOFOLLOW) == 0:
            continue
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not (or no longer) a mount point
            continue
        if err == errno.EBUSY:
            # Something still has a file open in it (a process of the container in its last
            # moments): detach now; the kernel frees the mount when the last user lets go.
            if _libc().umount2(target, UMOUNT_NOFOLLOW | MNT_DETACH) == 0:
                continue
            err = ctypes.get_errno()
        raise RootfsError(f"cannot unmount {merged}: {os.strerror(err)}")
    raise RootfsError(f"cannot unmount {merged}: it is mounted again as soon as unmounted")


def unmount(container_dir: Path, *, keep_upper: bool = True) -> None:
    """Unmount the container's root; nothing mounted is success. The upper dir (the
    container's changes) stays unless ``keep_upper`` is False (then upper and work go)."""
    container_dir = Path(os.path.abspath(container_dir))
    if not os.path.isdir(container_dir):
        return
    with _locked(container_dir):
        _umount(container_dir / "merged")
        if not keep_upper:
            _rmtree(container_dir / "upper", container_dir)
            _rmtree(container_dir / "work", container_dir)


def _rmtree(path: Path, container_dir: Path) -> None:
    # rmtree does not stop at mount points: never walk into a filesystem still mounted below
    # (a merged view, whose deletion would only write whiteouts, or a volume's bind mount).
    left = mounts_under(container_dir)
    if left:
        raise RootfsError(f"refusing to delete {path}: still mounted under "
                          f"{container_dir}: {', '.join(map(str, left))}")
    if not os.path.lexists(path):
        return

    try:
        # overlayfs leaves work/work at mode 000; as root (which mounting needs) no obstacle.
        shutil.rmtree(path)
    except OSError as e:
        raise RootfsError(f"cannot delete {path}: {e}") from e


def remove(container_dir: Path) -> None:
    """Unmount and delete the whole container dir, its changes included; a missing dir is
    success."""
    container_dir = Path(os.path.abspath(container_dir))
    if not os.path.lexists(container_dir):
        return
    if not stat.S_ISDIR(os.lstat(container_dir).st_mode):
        raise RootfsError(f"{container_dir} is not a directory (a symlink?): refusing it")
    with _locked(container_dir):
        _umount(container_dir / "merged")
        _rmtree(container_dir, container_dir)
