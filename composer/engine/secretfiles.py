"""Secrets and configs (``ContainerSpec.files``): written at each start into a small tmpfs of
the container's own, then bind-mounted read-only at their targets.

The tmpfs (``<container_dir>/files``, mode 0755, nosuid, nodev, noexec, sized for what it
holds) keeps them off the disk, as Docker keeps secrets. Each file there is written with the
owner and mode asked (default root and 0444), never the host source's: its bytes are read and
written into a new file, the source is never bind-mounted itself. Parent directories of the
targets (``/run/secrets``) are made inside the container's root with ``makedirs_in``, so a
symlink in the image cannot send them out of it. The tmpfs is unmounted when the run ends and
when the container is removed (:func:`composer.engine.mounts.release_mounts`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from pathlib import Path

from composer.runtime.spec import File, Mount

PAGE = 4096
MIN_SIZE = 1 << 20


def _error(message: str) -> Exception:
    from composer.engine.containers import ContainerError

    return ContainerError(message)


def _owner(value: str | None, what: str, target: str) -> int:
    if value is None or value == "":
        return 0
    text = str(value)
    if not text.isdigit():
        raise _error(f"file {target}: {what} {text!r} must be a number")
    return int(text)


def _content(file: File) -> bytes:
    if file.content is not None:
        return file.content.encode()
    if not file.source:
        raise _error(f"file {file.target}: neither content nor a source file is given")
    try:
        with open(file.source, "rb") as f:
            return f.read()
    except OSError as e:
        raise _error(f"file {file.target}: cannot read its source {file.source}: "
                     f"{e.strerror}") from e


def _target(file: File) -> str:
    if not file.target.startswith("/"):
        raise _error(f"file target {file.target!r} must be an absolute path")
    target = posixpath.normpath(file.target)
    target = "/" + target.lstrip("/")
    if target == "/":
        raise _error("a file cannot be mounted on /")
    return target


def place_files(directory: Path, root: Path, files: Sequence[File]) -> tuple[Mount, ...]:
    """Mount the tmpfs at ``directory``, write ``files`` in it, make their parent directories
    in the container's root ``root``; the read-only binds that put them in place. The caller
    unmounts ``directory`` if anything after this fails (``release_mounts``)."""
    from composer.runtime.inroot import makedirs_in
    from composer.runtime.volumes import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount_at

    if not files:
        return ()
    # Everything is read and checked before anything is mounted.
    wanted = []
    for file in files:
        target = _target(file)
        data = _content(file)
        uid = _owner(file.uid, "uid", target)
        gid = _owner(file.gid, "gid", target)
        mode = 0o444 if file.mode is None else int(file.mode)
        if not 0 <= mode <= 0o7777:
            raise _error(f"file {target}: mode {mode:o} is not a file mode")
        wanted.append((target, data, uid, gid, mode))
    pages = sum(-(-len(data) // PAGE) + 1 for _, data, *_ in wanted)
    size = max(MIN_SIZE, -(-(pages * PAGE) // MIN_SIZE) * MIN_SIZE)
    directory.mkdir(mode=0o700, exist_ok=True)
    try:
        mount_at("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 f"mode=0755,size={size}")
    except OSError as e:
        raise _error(f"cannot mount the tmpfs of the container's files at {directory}: "
                     f"{e.strerror}") from e
    mounts = []
    for i, (target, data, uid, gid, mode) in enumerate(wanted):
        path = directory / str(i)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after the chown, which clears set-id bits
        finally:
            os.close(fd)
        try:
            makedirs_in(root, posixpath.dirname(target))
        except OSError as e:
            raise _error(f"file {target}: cannot make its directory in the container: "
                         f"{e.strerror}") from e
        mounts.append(Mount("bind", target, str(path), read_only=True,
                            options=("bind", "nosuid", "nodev", "noexec")))
    return tuple(mounts)
