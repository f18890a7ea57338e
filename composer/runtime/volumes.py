"""Named volumes: directories under the state root that outlive the containers using them.

A volume ``NAME`` is ``<root>/volumes/NAME/_data`` (Docker's layout) plus a row in the store
with its driver, labels and options. Only the ``local`` driver exists, as plain directories;
``driver_opts`` for bind or tmpfs types come with compose volumes. A volume is created on first
use (``-v NAME:/path``) as Docker does, and an empty one is filled from the image's content at
that path the first time a container mounts it (unless ``nocopy``). Removal refuses a volume
that a container uses (of any state: Docker keeps it for stopped containers too).
"""

from __future__ import annotations

import json
import os
import shutil
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
        if options:
            raise VolumeError(f"volume {name}: driver options are not supported yet")
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
                         (name, driver, json.dumps(dict(labels or {}), sort_keys=True), "{}",
                          now))
        made = self.get(name)
        assert made is not None
        return made

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
