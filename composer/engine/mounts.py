"""The mounts a container gets, resolved from its spec to host paths at each start.

- Named volumes are the directories they are: created on first use, and an empty one filled
  from the image's content at its target (unless ``nocopy``), as Docker does. A volume's
  driver options may make it a host directory (``type=none,o=bind``) or a tmpfs.
- Anonymous volumes (``-v /data``, and every path of the image's ``VOLUME`` that no mount
  covers) are volumes with a random name of 64 hex digits, labelled
  ``com.docker.volume.anonymous`` and, to be found again at the next start, with the
  container's id and the target (:data:`OWNER`, :data:`TARGET`). ``rm -v`` and ``--rm``
  remove them (:func:`drop_anonymous`); a named volume is never removed with a container.
- A ``subpath`` is opened inside the volume (or bind source) with ``openat2(RESOLVE_IN_ROOT)``
  (a symlink in there cannot lead out of it) and bind-mounted by that descriptor at a mount
  point of the container's own (``<container_dir>/subpaths/N``), which the OCI runtime then
  mounts: nothing the container controls is resolved by path again.
- Binds: a missing source is made (``create_host_path``, what ``-v`` asks) or an error.
- ``volumes_from``: the other container's volumes and binds (not its tmpfs mounts nor its
  /etc files), read-only with ``:ro``; resolved at each start from its spec.
- ``files`` (secrets and configs): see :mod:`composer.engine.secretfiles`.

The host mounts made here (subpath binds, the files tmpfs) live until the container's run
ends: :func:`release_mounts` undoes them, on exit, at removal and before the next start.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import secrets
import shutil
import stat
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.runtime.spec import ContainerSpec, Mount
from composer.runtime.volumes import Volume
from composer.state import containers as rows
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager

log = logging.getLogger("composer.engine")

ANONYMOUS = "com.docker.volume.anonymous"
OWNER = "composer.container"
TARGET = "composer.target"
SUBPATHS = "subpaths"
FILES = "files"
# Anonymous volumes are found or made under this lock: a container starting and another
# taking its volumes (volumes_from) at once must not make two for one target.
_anonymous_lock = threading.Lock()


def _error(message: str) -> Exception:
    from composer.engine.containers import ContainerError

    return ContainerError(message)


def resolve_mounts(manager: ContainerManager, row: ContainerRow, spec: ContainerSpec,
                   merged: Path) -> tuple[Mount, ...]:
    """Every mount of the container as host paths the bundle can bind: the spec's, those of
    ``volumes_from``, the image's anonymous volumes, and the files (secrets, configs)."""
    from composer.engine.secretfiles import place_files

    cdir = manager.layout.container_dir(row.id)
    release_mounts(cdir)  # a previous run's, when it was not undone (a restart)
    points = _Points(cdir / SUBPATHS)
    try:
        mounts = _container_mounts(manager, row, spec, points, seen=frozenset({row.id}),
                                   image_root=merged)
        files = place_files(cdir / FILES, merged, spec.files)
    except BaseException:
        release_mounts(cdir)
        raise
    return (*mounts, *files)


def release_mounts(container_dir: Path) -> None:
    """Unmount what :func:`resolve_mounts` mounted on the host for a container (its subpath
    binds and its files tmpfs) and delete their mount points."""
    from composer.runtime.rootfs import mounts_under
    from composer.runtime.volumes import unmount_at

    for name in (SUBPATHS, FILES):
        place = container_dir / name
        if not os.path.lexists(place):
            continue
        for point in reversed(mounts_under(place)):
            try:
                unmount_at(point)
            except OSError as e:
                raise _error(f"cannot unmount {point}: {e.strerror}") from e
        if mounts_under(place):
            raise _error(f"{place} is still mounted: refusing to delete it")
        shutil.rmtree(place, ignore_errors=True)


# -- one container's mounts ----------------------------------------------------------------------


def _norm(target: str) -> str:
    normal = posixpath.normpath(target)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal


def _container_mounts(manager: ContainerManager, row: ContainerRow, spec: ContainerSpec,
                      points: _Points, *, seen: frozenset[str],
                      image_root: Path | None) -> list[Mount]:
    """A container's mounts resolved: its spec's, then what ``volumes_from`` brings on other
    targets, then an anonymous volume on each image ``VOLUME`` path still uncovered.
    ``image_root`` (the container's own root, being started) is where empty volumes are
    filled from; None when another container takes these mounts (``volumes_from``)."""
    own = [_resolve(manager, row.id, m, points, image_root) for m in spec.mounts]
    covered = {_norm(m.target) for m in spec.mounts}
    inherited = []
    for mount in _volumes_from(manager, spec, points, seen):
        if _norm(mount.target) not in covered:
            covered.add(_norm(mount.target))
            inherited.append(mount)
    anonymous = []
    for path in sorted(manager.image_config(row).get("Volumes") or {}):
        target = _norm(str(path))
        if target not in covered:
            covered.add(target)
            anonymous.append(_resolve(manager, row.id, Mount("volume", target), points,
                                      image_root))
    return [*own, *inherited, *anonymous]


def parse_volumes_from(ref: str) -> tuple[str, str]:
    """``NAME[:ro|rw]`` as (name, mode); ``container:NAME`` is taken too."""
    name = ref.removeprefix("container:")
    head, sep, mode = name.rpartition(":")
    if sep and mode in ("ro", "rw"):
        return head, mode
    return name, "rw"


def _volumes_from(manager: ContainerManager, spec: ContainerSpec, points: _Points,
                  seen: frozenset[str]) -> list[Mount]:
    from composer.engine.containers import NoSuchContainer

    out: list[Mount] = []
    for ref in spec.volumes_from:
        name, mode = parse_volumes_from(ref)
        try:
            other = manager.find(name)
        except NoSuchContainer:
            raise _error(f"volumes_from {ref}: no such container: {name}") from None
        if other.id in seen:
            continue  # itself, or a loop of containers taking each other's volumes
        taken = _container_mounts(manager, other, manager.spec(other), points,
                                  seen=seen | {other.id}, image_root=None)
        out += [replace(m, read_only=m.read_only or mode == "ro")
                for m in taken if m.type != "tmpfs"]
    return out


def _resolve(manager: ContainerManager, owner: str, mount: Mount, points: _Points,
             image_root: Path | None) -> Mount:
    """One spec mount as a host path (tmpfs mounts as they are)."""
    if mount.type == "tmpfs":
        return mount
    if mount.type == "bind":
        source = mount.source
        if not os.path.exists(source):
            if not mount.create_host_path:
                raise _error(f"bind source path does not exist: {source}")
            try:
                os.makedirs(source, mode=0o755, exist_ok=True)
            except OSError as e:
                raise _error(f"cannot make the bind source {source}: {e.strerror}") from e
        if mount.subpath:
            source = str(points.bind(Path(source), mount.subpath, f"bind source {source}"))
        return replace(mount, source=source, subpath="", create_host_path=False)
    volume = (manager.volumes.create(mount.source) if mount.source
              else anonymous_volume(manager, owner, mount.target))
    host = manager.volumes.use(volume)
    options = tuple(o for o in mount.options if o != "nocopy")
    if image_root is not None and "nocopy" not in mount.options and not mount.subpath:
        from composer.runtime.volumes import populate

        populate(host, image_root, mount.target)
    if mount.subpath:
        what = f"volume {volume.name}" if mount.source else f"the volume on {mount.target}"
        host = points.bind(host, mount.subpath, what)
    return replace(mount, source=str(host), options=options, subpath="",
                   read_only=mount.read_only or manager.volumes.read_only(volume))


# -- anonymous volumes ---------------------------------------------------------------------------


def anonymous_volume(manager: ContainerManager, owner: str, target: str) -> Volume:
    """The anonymous volume of container ``owner`` on ``target``: the one made at an earlier
    start, else a new one."""
    target = _norm(target)
    with _anonymous_lock:
        for volume in manager.volumes.all():
            labels = volume.labels
            if ANONYMOUS in labels and labels.get(OWNER) == owner and \
                    labels.get(TARGET) == target:
                return volume
        return manager.volumes.create(secrets.token_hex(32), labels={
            ANONYMOUS: "", OWNER: owner, TARGET: target})


def hand_over_anonymous(manager: ContainerManager, previous: str, successor: str) -> list[str]:
    """Give container ``successor`` the anonymous volumes container ``previous`` left (a
    compose recreate: the data on ``-v /path`` and image VOLUME paths outlives the container,
    as in Compose, unless ``-V`` removed them with it). The names handed over."""
    handed = []
    with _anonymous_lock:
        for volume in manager.volumes.all():
            if ANONYMOUS in volume.labels and volume.labels.get(OWNER) == previous:
                manager.volumes.relabel(volume.name, {**volume.labels, OWNER: successor})
                handed.append(volume.name)
    return handed


def drop_anonymous(manager: ContainerManager, row: ContainerRow) -> None:
    """Remove the anonymous volumes of a removed container (``rm -v``, ``--rm``), except
    those another container still uses (``volumes_from``)."""
    from composer.runtime.volumes import VolumeError

    for volume in manager.volumes.all():
        if ANONYMOUS in volume.labels and volume.labels.get(OWNER) == row.id:
            try:
                manager.volumes.remove(volume.name,
                                       users=lambda n: volume_users(manager, n, but=row.id))
            except VolumeError as e:
                log.info("anonymous volume %s of %s kept: %s", volume.name, row.name, e)


def volume_users(manager: ContainerManager, name: str, *, but: str | None = None) -> list[str]:
    """The containers (of any state, except ``but``) that use volume ``name``: by name in
    their spec, as its owner (an anonymous volume), or through ``volumes_from`` of one."""
    found = [r for r in rows.all_rows(manager.db) if r.id != but]
    volume = manager.volumes.get(name)
    owner = (volume.labels.get(OWNER) if volume is not None and ANONYMOUS in volume.labels
             else None)
    users = [r for r in found if r.id == owner or any(
        m.get("type") == "volume" and m.get("source") == name
        for m in r.spec.get("mounts") or ())]
    while True:
        more = [r for r in found if r not in users and any(
            _refers(parse_volumes_from(str(ref))[0], users)
            for ref in r.spec.get("volumes_from") or ())]
        if not more:
            break
        users += more
    return sorted(r.name for r in users)


def _refers(ref: str, candidates: Sequence[ContainerRow]) -> bool:
    ref = ref.removeprefix("/")
    return any(ref in (c.name, c.id) or (len(ref) >= 3 and c.id.startswith(ref))
               for c in candidates)


# -- subpaths ------------------------------------------------------------------------------------


@dataclass
class _Points:
    """The container's own mount points for subpaths: ``<container_dir>/subpaths/N``."""

    directory: Path
    used: list[Path] = field(default_factory=list)

    def bind(self, base: Path, subpath: str, what: str) -> Path:
        """Bind-mount ``subpath`` of ``base`` (resolved inside it) at a new point."""
        from composer.runtime.inroot import open_in
        from composer.runtime.volumes import MS_BIND, MS_REC, mount_at

        parts = subpath.split("/")
        if subpath.startswith("/") or ".." in parts or not subpath.strip("/."):
            raise _error(f"{what}: subpath {subpath!r} must be a relative path inside it "
                         "(no leading / and no ..)")
        try:
            fd = open_in(base, subpath, os.O_PATH)
        except OSError as e:
            reason = ("does not exist" if e.errno in (errno.ENOENT, errno.ENOTDIR)
                      else f"cannot be opened ({e.strerror})")
            raise _error(f"{what}: subpath {subpath!r} {reason} in it") from e
        try:
            self.directory.mkdir(mode=0o700, exist_ok=True)
            point = self.directory / str(len(self.used))
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                point.mkdir(mode=0o700)
            else:
                point.touch(mode=0o600)
            self.used.append(point)
            # The descriptor, not the path: what was resolved is what is mounted.
            mount_at(f"/proc/self/fd/{fd}", point, None, MS_BIND | MS_REC)
        except OSError as e:
            raise _error(f"{what}: cannot mount its subpath {subpath!r}: {e.strerror}") from e
        finally:
            os.close(fd)
        return point


# -- the inspect view ----------------------------------------------------------------------------


def mounts_view(manager: ContainerManager, row: ContainerRow,
                spec: ContainerSpec) -> list[dict[str, Any]]:
    """Docker's ``Mounts`` of ``container inspect``: the spec's mounts and the image's
    anonymous volumes, looked up without creating anything (inspect changes nothing)."""
    volumes = {v.name: v for v in manager.volumes.all()}
    anonymous = {v.labels.get(TARGET): v for v in volumes.values()
                 if ANONYMOUS in v.labels and v.labels.get(OWNER) == row.id}
    wanted = list(spec.mounts)
    covered = {_norm(m.target) for m in wanted}
    wanted += [Mount("volume", _norm(str(path)))
               for path in sorted(manager.image_config(row).get("Volumes") or {})
               if _norm(str(path)) not in covered]
    out: list[dict[str, Any]] = []
    for mount in wanted:
        entry: dict[str, Any] = {"Type": mount.type, "Source": mount.source,
                                 "Destination": mount.target, "RW": not mount.read_only}
        if mount.type == "volume":
            volume = volumes.get(mount.source) if mount.source else \
                anonymous.get(_norm(mount.target))
            entry.update(Name=volume.name if volume else mount.source,
                         Source=str(volume.mountpoint) if volume else "", Driver="local")
        out.append(entry)
    return out
