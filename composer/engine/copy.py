"""``container cp``: files between the host and a container, never outside the container.

Paths inside the container are resolved by the kernel inside the container's own root (see
runtime/inroot.py), through ``/proc/PID/root`` while it runs, so that a target under one of its
bind or tmpfs mounts lands in that mount, as the container sees it. A stopped container's root
filesystem is mounted for the copy. Semantics follow ``docker cp``: copying to an existing
directory puts the source inside it; a directory is copied whole; files copied in are owned by
root, files copied out by the caller (root). ``sync`` (``develop.watch``) writes and deletes
through the same code, as the container's user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError
from composer.runtime.inroot import open_in
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager


class CopyError(ComposerError):
    pass


@contextlib.contextmanager
def _root(manager: ContainerManager, row: ContainerRow) -> Iterator[int]:
    from composer.runtime import rootfs

    if row.status in ("running", "paused") and row.pid:
        fd = os.open(f"/proc/{row.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
        return
    image = manager.images.get(row.image_id)
    if image is None:
        raise CopyError(f"container {row.name}: its image is gone")
    cdir = manager.layout.container_dir(row.id)
    with manager.lock(row.id):
        merged = rootfs.mount(cdir, manager.images.lower_dirs(image))
        fd = os.open(merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)
            if manager.find(row.id).status not in ("running", "paused"):
                rootfs.unmount(cdir)


def _kind(root: int, path: str) -> int | None:
    try:
        fd = open_in(root, path, os.O_PATH)
    except FileNotFoundError:
        return None
    try:
        return os.fstat(fd).st_mode
    finally:
        os.close(fd)


def copy(manager: ContainerManager, row: ContainerRow, *, direction: str,
         container_path: str, host_path: str) -> None:
    if direction not in ("to", "from"):
        raise CopyError(f"unknown copy direction {direction!r}")
    with _root(manager, row) as root:
        if direction == "to":
            _copy_in(root, Path(host_path), container_path)
        else:
            _copy_out(root, container_path, Path(host_path))


def _copy_in(root: int, source: Path, target: str) -> None:
    if not source.exists():
        raise CopyError(f"no such file or directory on the host: {source}")
    mode = _kind(root, target)
    if mode is not None and stat.S_ISDIR(mode):
        target = f"{target.rstrip('/')}/{source.name}"
    elif target.endswith("/"):
        raise CopyError(f"no such directory in the container: {target}")
    parent = os.path.dirname(target.rstrip("/")) or "/"
    if _kind(root, parent) is None:
        raise CopyError(f"no such directory in the container: {parent}")
    _put(root, source, target)


def _put(root: int, source: Path, target: str, *, owner: tuple[int, int] = (0, 0),
         recursive: bool = True) -> None:
    """``source`` (a host path) written at ``target`` inside ``root``, owned by ``owner``;
    a directory with what it holds unless not ``recursive``."""
    info = source.lstat()
    parent_fd = open_in(root, os.path.dirname(target) or "/", os.O_PATH | os.O_DIRECTORY)
    name = os.path.basename(target)
    uid, gid = owner
    try:
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, stat.S_IMODE(info.st_mode), dir_fd=parent_fd)
            os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
            for child in sorted(source.iterdir()) if recursive else ():
                _put(root, child, f"{target}/{child.name}", owner=owner)
        elif stat.S_ISLNK(info.st_mode):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent_fd)
            os.symlink(os.readlink(source), name, dir_fd=parent_fd)
            os.chown(name, uid, gid, dir_fd=parent_fd, follow_symlinks=False)
        elif stat.S_ISREG(info.st_mode):
            # O_NOFOLLOW on the last component: a symlink planted there is replaced, not
            # written through.
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                if stat.S_ISLNK(os.lstat(name, dir_fd=parent_fd).st_mode):
                    os.unlink(name, dir_fd=parent_fd)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, stat.S_IMODE(info.st_mode), dir_fd=parent_fd)
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                # chown first: it clears the set-id bits that the chmod then puts back.
                os.fchown(out.fileno(), uid, gid)
                os.fchmod(out.fileno(), stat.S_IMODE(info.st_mode))
    finally:
        os.close(parent_fd)


# --- watch's sync ---------------------------------------------------------------------------


def sync(manager: ContainerManager, row: ContainerRow,
         entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``develop.watch`` sync: each entry writes its ``host`` path (a file, a symlink, or a
    directory without its content: the entries list that) at ``target``, or with ``delete``
    removes ``target``. Owned by the container's user; missing parents are made (theirs
    too). Resolved inside the container's root like ``cp``, so the same code guards both."""
    with _root(manager, row) as root:
        return sync_in(root, row.spec.get("user"), entries)


def sync_in(root: int, user: str | None, entries: Sequence[Mapping[str, Any]]
            ) -> dict[str, Any]:
    """:func:`sync` inside the directory ``root`` (an fd), as ``user`` of its /etc/passwd.
    An entry that cannot be written (its parent is a file, or a symlink to nowhere) is
    reported in ``failed`` and the others go on."""
    written = deleted = 0
    failed: list[str] = []
    owner = _owner(root, user)
    for entry in entries:
        target = "/" + str(entry["target"]).strip("/")
        if target == "/":
            raise CopyError("a sync cannot replace the container's root")
        try:
            if entry.get("delete"):
                deleted += _remove(root, target)
            elif _write(root, Path(str(entry["host"])), target, owner):
                written += 1
        except OSError as exc:
            failed.append(f"{target}: {exc.strerror or exc}")
    return {"written": written, "deleted": deleted, "failed": failed}


def _write(root: int, source: Path, target: str, owner: tuple[int, int]) -> bool:
    try:
        info = source.lstat()
    except FileNotFoundError:
        return False  # gone again since the batch was made: the next batch deletes it
    _parents(root, os.path.dirname(target), owner)
    mode = _kind(root, target) if not stat.S_ISLNK(info.st_mode) else None
    if mode is not None and stat.S_ISDIR(mode) != stat.S_ISDIR(info.st_mode):
        _remove(root, target)  # a file where a directory was, or the other way
    _put(root, source, target, owner=owner, recursive=False)
    return True


def _owner(root: int, user: str | None) -> tuple[int, int]:
    from composer.runtime.inroot import read_text
    from composer.runtime.users import resolve_user

    found = resolve_user(user, read_text(root, "/etc/passwd"), read_text(root, "/etc/group"))
    return found.uid, found.gid


def _parents(root: int, path: str, owner: tuple[int, int]) -> None:
    """``mkdir -p`` inside the root, each step resolved inside it, new ones owned by
    ``owner``."""
    current = "/"
    for part in [p for p in path.split("/") if p and p != "."]:
        parent = open_in(root, current, os.O_PATH | os.O_DIRECTORY)
        try:
            os.mkdir(part, 0o755, dir_fd=parent)
            os.chown(part, *owner, dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            pass
        finally:
            os.close(parent)
        current = f"{current.rstrip('/')}/{part}"


def _remove(root: int, target: str) -> int:
    """Remove ``target`` (a whole directory too) inside the root: 1, or 0 if it was not
    there. The parent is opened inside the root and everything below goes through its fd,
    so a symlink swapped in meanwhile is removed, never followed."""
    try:
        parent = open_in(root, os.path.dirname(target) or "/", os.O_PATH | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    name = os.path.basename(target)
    try:
        info = os.lstat(name, dir_fd=parent)
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return 1
    except FileNotFoundError:
        return 0
    finally:
        os.close(parent)


def _copy_out(root: int, source: str, target: Path) -> None:
    mode = _kind(root, source)
    if mode is None:
        raise CopyError(f"no such file or directory in the container: {source}")
    if target.is_dir():
        target = target / (os.path.basename(source.rstrip("/")) or "root")
    _get(root, source, target)


def _get(root: int, source: str, target: Path) -> None:
    fd = open_in(root, source, os.O_PATH | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISLNK(info.st_mode):
        parent = open_in(root, os.path.dirname(source) or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            link = os.readlink(os.path.basename(source), dir_fd=parent)
        finally:
            os.close(parent)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        target.symlink_to(link)
    elif stat.S_ISDIR(info.st_mode):
        target.mkdir(mode=stat.S_IMODE(info.st_mode), exist_ok=True)
        dfd = open_in(root, source, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = sorted(os.listdir(dfd))
        finally:
            os.close(dfd)
        for name in names:
            _get(root, f"{source.rstrip('/')}/{name}", target / name)
    elif stat.S_ISREG(info.st_mode):
        src = open_in(root, source, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(src, "rb") as f, open(target, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        target.chmod(stat.S_IMODE(info.st_mode))
