"""A RUN step's ``--mount``s, its ``#!`` heredoc script, and the mount points they leave.

- ``type=cache``: a directory of the state root's, ``build-cache/<id>``, kept between builds
  (``id`` defaults to the target), made with its ``mode``/``uid``/``gid``; never in a layer
  or a cache key, as in BuildKit.
- ``type=bind``: the context's files (or ``from=`` a stage's or an image's), read-only; what
  they hold is part of the step's key. With ``rw`` the RUN may write there, but its writes go
  to a throwaway overlay upper dir (a copy for a single file) and are gone after the step,
  as BuildKit discards them.
- ``type=secret``: the bytes of a secret the build was given (``--secret``, compose's
  ``build.secrets``), written into a tmpfs of the step's own and bound read-only at the
  target (default ``/run/secrets/<id>``, mode 0400, root) and/or put in the RUN's
  environment (``env=``). Never on the state root's disk, never in a layer, never in the
  cache key: a changed secret alone does not make the step again (BuildKit's rule). A missing
  secret is skipped unless ``required``.

The runtime makes the mount points it needs in the container's root, so they would land in
the step's layer; ``plan_stubs`` notes before the RUN which of them the image does not have,
and ``drop_stubs`` takes them (and parents copied up only for them) out of the upper dir
afterwards, as BuildKit removes its mount stubs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ComposerError

if TYPE_CHECKING:
    from composer.engine.build import Builder, BuildRequest, State
    from composer.runtime.images.build import Dockerfile, IgnoreRules, Instruction
    from composer.runtime.images.build.flags import Mount as RunMount
    from composer.runtime.spec import Mount

#: BuildKit's limit (secretsprovider.MaxSecretSize): a secret is a key, not a payload.
MAX_SECRET_SIZE = 500 * 1024
SCRIPT_DIR = "/dev/pipes"  # where BuildKit puts a #! heredoc (in /dev's tmpfs, not a layer)
_PAGE = 4096
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class BuildSecret:
    """A secret a build was given: a host ``file`` (read when the step runs) or a ``value``;
    neither when its source was missing (an unset environment variable). ``origin`` says
    where it comes from, for messages; the value itself is never shown."""

    id: str
    file: Path | None = None
    value: str | None = field(default=None, repr=False)
    origin: str = ""


@dataclass
class RunMounts:
    """A RUN's ``--mount``s, expanded, each with its absolute target and, for a bind, the
    host path it shows; ``content`` is the digest of what the binds bring (the step's key
    holds it). Enough for the cache lookup: nothing is mounted or read from secrets yet."""

    wanted: list[tuple[RunMount, str, Path | None]] = field(default_factory=list)
    content: str = ""


@dataclass
class MadeMounts:
    """What the mounts give the RUN's container: its mounts, environment variables (from
    secrets with ``env=``) and the container paths mounted on (for ``plan_stubs``)."""

    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    targets: list[str] = field(default_factory=list)


def _error(message: str) -> ComposerError:
    from composer.engine.build import BuildError

    return BuildError(message)


def _target(text: str | None, workdir: str) -> str:
    """A mount target as an absolute path: a relative one is under WORKDIR, as in BuildKit."""
    joined = posixpath.join(workdir or "/", text or "")
    return "/" + posixpath.normpath(joined).lstrip("/")


def resolve_mounts(builder: Builder, request: BuildRequest, dockerfile: Dockerfile,
                   ignore: IgnoreRules, instruction: Instruction, env: Mapping[str, str],
                   built: Mapping[int, State], where: str, workdir: str,
                   held: contextlib.ExitStack) -> RunMounts:
    """The RUN's ``--mount``s expanded in ``env`` and their bind sources found (a stage's or
    image's files stay mounted until ``held`` closes)."""
    from composer.runtime.images.build import expand_mounts

    out = RunMounts()
    digests: list[str] = []
    for mount in expand_mounts(instruction, env, escape=dockerfile.escape,
                               path=dockerfile.path):
        if mount.type not in ("cache", "bind", "secret"):
            raise _error(f"{where}: RUN --mount=type={mount.type} is not supported by "
                         "composer's builder")
        source = None
        if mount.type == "bind":
            source, digest = _bind_source(builder, request, dockerfile, ignore, instruction,
                                          mount, built, where, held)
            digests.append(digest)
        out.wanted.append((mount, _target(mount.target, workdir) if mount.target else "",
                           source))
    out.content = "".join(digests)
    return out


def make_mounts(builder: Builder, request: BuildRequest, resolved: RunMounts, where: str,
                held: contextlib.ExitStack) -> MadeMounts:
    """The mounts made ready for the RUN's container (the step is not cached); what is made
    for them (rw overlays, the secrets' tmpfs) is undone when ``held`` closes, after the
    container is gone."""
    from composer.runtime.spec import Mount

    out = MadeMounts()
    secrets: list[tuple[str, bytes, int, int, int]] = []
    for mount, target, source in resolved.wanted:
        if mount.type == "cache":
            out.mounts.append(Mount("bind", target, str(_cache_dir(builder, mount, target)),
                                    read_only=mount.readonly))
        elif mount.type == "bind":
            assert source is not None
            if not mount.readonly:
                source = _throwaway(builder, source, held)
            out.mounts.append(Mount("bind", target, str(source), read_only=mount.readonly))
        else:
            data = _secret_data(request, mount, where)
            if data is None:
                continue
            if mount.env:
                out.env[mount.env] = data.decode(errors="replace")
            if target:
                secrets.append((target, data, mount.uid or 0, mount.gid or 0,
                                0o400 if mount.mode is None else mount.mode))
        if target:
            out.targets.append(target)
    out.mounts.extend(_secret_files(builder, secrets, held))
    return out


def _cache_dir(builder: Builder, mount: RunMount, target: str) -> Path:
    name = hashlib.sha256((mount.id or target).encode()).hexdigest()[:32]
    place: Path = builder.m.layout.root / "build-cache" / name
    if not place.is_dir():
        place.mkdir(parents=True)
        place.chmod(mount.mode if mount.mode is not None else 0o755)
        os.chown(place, mount.uid or 0, mount.gid or 0)
    return place


def _bind_source(builder: Builder, request: BuildRequest, dockerfile: Dockerfile,
                 ignore: IgnoreRules, instruction: Instruction, mount: RunMount,
                 built: Mapping[int, State], where: str,
                 held: contextlib.ExitStack) -> tuple[Path, str]:
    """The host path a bind mount shows, and the digest of what it holds."""
    from composer.runtime.images.build.context import ContextError, content_digest, sources

    root = request.context
    excluded: Callable[[str], bool] = ignore.matches
    if mount.from_:
        root = held.enter_context(builder.files_from(
            mount.from_, dockerfile, built, instruction, f"{where}: --mount from={mount.from_}"))
        excluded = lambda _: False  # noqa: E731 (an image has no .dockerignore)
    try:
        chosen = sources(root, [mount.source or "."], excluded=excluded)
        digest = content_digest(root, chosen, excluded=excluded)
    except ContextError as e:
        raise _error(f"{where}: --mount source {e}") from e
    source = root / chosen[0].relative
    # The runtime follows a symlink it is asked to bind: one leading out of the context (or
    # the stage's files) would show the host's files to the RUN.
    real, top = os.path.realpath(source), os.path.realpath(root)
    if real != top and not real.startswith(top.rstrip("/") + "/"):
        raise _error(f"{where}: --mount source {mount.source}: a symlink leading out of "
                     f"{'the build context' if not mount.from_ else mount.from_}")
    return Path(real), digest


def _throwaway(builder: Builder, source: Path, held: contextlib.ExitStack) -> Path:
    """A writable view of ``source`` whose writes are thrown away when ``held`` closes: an
    overlay over a directory (its upper dir goes), a copy of a file."""
    from composer.runtime import rootfs

    place = Path(tempfile.mkdtemp(dir=builder.m.images.root / "tmp", prefix="bind-rw-"))
    held.callback(rootfs.remove, place)
    if source.is_dir():
        return rootfs.mount(place, [source])
    copy = place / "file"
    shutil.copy2(source, copy)
    info = os.stat(source)
    os.chown(copy, info.st_uid, info.st_gid)
    os.chmod(copy, stat.S_IMODE(info.st_mode))  # after the chown, which clears set-id bits
    return copy


def _secret_data(request: BuildRequest, mount: RunMount, where: str) -> bytes | None:
    """The secret's bytes, or None when it was not given and is not required."""
    secret_id = mount.id or ""
    given = request.secrets.get(secret_id)
    if given is None or (given.file is None and given.value is None):
        if not mount.required:
            return None
        why = f" ({given.origin} is not set)" if given is not None and given.origin else ""
        raise _error(
            f"{where}: the secret {secret_id!r} is required but was not given{why}; pass it "
            f"with 'composer image build --secret id={secret_id},src=FILE' (or "
            f"env=VARIABLE), or list it in the service's build.secrets")
    if given.value is not None:
        data = given.value.encode()
    else:
        assert given.file is not None
        try:
            with open(given.file, "rb") as f:
                data = f.read(MAX_SECRET_SIZE + 1)
        except OSError as e:
            raise _error(f"{where}: secret {secret_id!r}: cannot read {given.file}: "
                         f"{e.strerror}") from e
    if len(data) > MAX_SECRET_SIZE:
        raise _error(f"{where}: secret {secret_id!r} is larger than "
                     f"{MAX_SECRET_SIZE // 1024} KiB")
    return data


def _secret_files(builder: Builder, wanted: Sequence[tuple[str, bytes, int, int, int]],
                  held: contextlib.ExitStack) -> list[Mount]:
    """The secrets' files in a tmpfs of this step's (memory, never the disk), each bound
    read-only at its target; the tmpfs goes when ``held`` closes."""
    from composer.runtime.spec import Mount
    from composer.runtime.volumes import MS_NODEV, MS_NOEXEC, MS_NOSUID, mount_at, unmount_at

    if not wanted:
        return []
    place = Path(tempfile.mkdtemp(dir=builder.m.images.root / "tmp", prefix="secrets-"))
    held.callback(place.rmdir)
    pages = sum(-(-len(data) // _PAGE) + 1 for _, data, *_ in wanted)
    try:
        mount_at("tmpfs", place, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 f"mode=0700,size={max(pages * _PAGE, 1 << 20)}")
    except OSError as e:
        raise _error(f"cannot mount a tmpfs for the build's secrets: {e.strerror}") from e
    held.callback(unmount_at, place)
    mounts = []
    for number, (target, data, uid, gid, mode) in enumerate(wanted):
        path = place / str(number)
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
        mounts.append(Mount("bind", target, str(path), read_only=True,
                            options=("bind", "nosuid", "nodev", "noexec")))
    return mounts


def script_mount(builder: Builder, name: str, text: str, held: contextlib.ExitStack) -> Mount:
    """A ``#!`` heredoc as an executable file (0755) bound read-only at ``/dev/pipes/NAME``,
    where BuildKit puts it; /dev is the container's tmpfs, so no layer sees it."""
    from composer.runtime.spec import Mount

    folder = Path(held.enter_context(tempfile.TemporaryDirectory(
        dir=builder.m.images.root / "tmp", prefix="script-")))
    script = folder / "script"
    script.write_text(text)
    script.chmod(0o755)
    shown = name if _SCRIPT_NAME.fullmatch(name) and name not in (".", "..") else "script"
    return Mount("bind", f"{SCRIPT_DIR}/{shown}", str(script), read_only=True)


# -- mount points --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stubs:
    """The mount points a RUN's runtime will make in the container's root: ``made`` are the
    paths (relative, deepest first) the image does not have; ``kept`` the image's own
    directories above them with their (mode, uid, gid), which overlayfs copies up when a
    mount point is made inside them."""

    made: tuple[str, ...] = ()
    kept: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)


def plan_stubs(files: Path, targets: Sequence[str]) -> Stubs:
    """What making ``targets`` in a container of the image whose files are ``files`` adds to
    its root. Targets in the runtime's own filesystems (/dev, /proc, /sys) add nothing, nor
    do targets under a symlink (the runtime resolves it; too clever to undo)."""
    made: set[str] = set()
    kept: dict[str, tuple[int, int, int]] = {}
    for target in targets:
        parts = [p for p in target.split("/") if p]
        if not parts or parts[0] in ("dev", "proc", "sys"):
            continue
        above: dict[str, tuple[int, int, int]] = {}
        for depth in range(1, len(parts) + 1):
            relative = "/".join(parts[:depth])
            try:
                info = os.lstat(files / relative)
            except FileNotFoundError:
                made.update("/".join(parts[:d]) for d in range(depth, len(parts) + 1))
                kept.update(above)
                break
            except OSError:
                break
            if not stat.S_ISDIR(info.st_mode):
                break  # the target itself exists (or a symlink leads elsewhere): nothing made
            above[relative] = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    by_depth = sorted(made, key=lambda p: (-p.count("/"), p))
    return Stubs(tuple(by_depth), kept)


def drop_stubs(upper: Path, stubs: Stubs) -> None:
    """Take the mount points ``stubs`` names out of a RUN's upper dir: each made path that is
    still an empty directory or empty file (the RUN put nothing there), then each copied-up
    directory of the image's that is now empty, not opaque and as the image has it."""
    for relative in stubs.made:
        path = upper / relative
        try:
            info = os.lstat(path)
        except OSError:
            continue
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(info.st_mode) and not _opaque(path):
                path.rmdir()  # fails (and stays) when the RUN wrote something inside
            elif stat.S_ISREG(info.st_mode) and info.st_size == 0:
                path.unlink()
    for relative in sorted(stubs.kept, key=lambda p: (-p.count("/"), p)):
        path = upper / relative
        try:
            info = os.lstat(path)
        except OSError:
            continue
        same = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == stubs.kept[relative]
        if stat.S_ISDIR(info.st_mode) and same and not _opaque(path):
            with contextlib.suppress(OSError):
                path.rmdir()


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False
