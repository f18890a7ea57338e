"""Paths inside a container's root, resolved by the kernel as if that root were ``/``.

Reading a container's /etc/passwd, copying files in and out (``container cp``) and syncing
files for ``watch`` all open paths that the container controls. A symlink in there pointing at
``/etc/shadow`` or ``../../..`` must resolve inside the container, never on the host: the
class of ``docker cp`` escapes (CVE-2018-15664). ``openat2(2)`` with ``RESOLVE_IN_ROOT`` makes
the kernel do exactly that, atomically, so there is no check-then-use race to lose.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat

from composer.errors import ComposerError

# openat2 has the same number on every architecture that has it (it came after the tables
# were unified).
_SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


class InRootError(ComposerError):
    """A path inside a container cannot be opened."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def open_in(root: str | os.PathLike[str] | int, path: str, flags: int = os.O_RDONLY,
            mode: int = 0o644) -> int:
    """Open ``path`` (absolute or not: both are taken from ``root``) inside ``root``, a
    directory path or an open directory fd; returns a new fd (O_CLOEXEC). Raises OSError as
    open(2) would (ENOENT, ELOOP, ...)."""
    if platform.system() != "Linux":
        raise InRootError("resolving paths inside a container needs Linux (openat2)")
    own = not isinstance(root, int)
    dirfd = (root if isinstance(root, int) else
             os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0,
                       RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        fd = _libc.syscall(_SYS_OPENAT2, dirfd, os.fsencode(path.lstrip("/") or "."),
                           ctypes.byref(how), ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            if err == errno.ENOSYS:
                raise InRootError("this kernel has no openat2 (Linux 5.6 or newer is needed)")
            raise OSError(err, os.strerror(err), path)
        return int(fd)
    finally:
        if own:
            os.close(dirfd)


def read_text(root: str | os.PathLike[str] | int, path: str, *,
              limit: int = 1 << 20) -> str | None:
    """The text of a small file inside ``root`` (None when it is missing or not a file)."""
    try:
        fd = open_in(root, path, os.O_RDONLY | os.O_NONBLOCK)  # a fifo must not block us
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read(limit).decode(errors="replace")


def makedirs_in(root: str | os.PathLike[str], path: str, mode: int = 0o755) -> None:
    """``mkdir -p`` of ``path`` inside ``root``, each step resolved inside it."""
    parts = [p for p in path.split("/") if p and p != "."]
    current = "/"
    for part in parts:
        parent = open_in(root, current, os.O_PATH | os.O_DIRECTORY)
        try:
            os.mkdir(part, mode, dir_fd=parent)
        except FileExistsError:
            pass
        finally:
            os.close(parent)
        current = f"{current.rstrip('/')}/{part}"
