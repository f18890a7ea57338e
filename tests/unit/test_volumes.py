"""The volume store on a real SQLite store and real directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.runtime.volumes import VolumeError, Volumes, populate
from composer.state.store import Store


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    return Volumes(tmp_path, Store.open(tmp_path))


def test_create_is_idempotent_and_validates(volumes: Volumes) -> None:
    made = volumes.create("data", labels={"a": "b"})
    assert volumes.create("data").created == made.created
    assert made.mountpoint.is_dir() and made.labels == {"a": "b"}
    for bad, message in (("-x", "invalid volume name"), ("a/b", "invalid volume name")):
        with pytest.raises(VolumeError, match=message):
            volumes.create(bad)
    with pytest.raises(VolumeError, match="driver 'nfs' is not supported"):
        volumes.create("x", driver="nfs")


def test_remove_and_prune_respect_users(volumes: Volumes) -> None:
    volumes.create("used")
    volumes.create("free")
    users = {"used": ["web"]}
    with pytest.raises(VolumeError, match=r"volume is in use - \[web\]"):
        volumes.remove("used", users=lambda n: users.get(n, []))
    assert volumes.prune(users=lambda n: users.get(n, [])) == ["free"]
    assert [v.name for v in volumes.all()] == ["used"]
    with pytest.raises(VolumeError, match="No such volume: nope"):
        volumes.remove("nope", users=lambda n: [])
    volumes.remove("nope", users=lambda n: [], force=True)


def test_populate_copies_owners_modes_and_links_once(tmp_path: Path) -> None:
    image = tmp_path / "image"
    (image / "srv" / "sub").mkdir(parents=True)
    (image / "srv" / "file").write_text("x")
    os.chown(image / "srv" / "file", 1000, 1001)
    os.chmod(image / "srv" / "file", 0o640)
    (image / "srv" / "link").symlink_to("/etc/passwd")
    target = tmp_path / "volume"
    target.mkdir()
    assert populate(target, image, "/srv") is True
    assert (target / "file").read_text() == "x"
    info = os.stat(target / "file")
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1001, 0o640)
    assert os.readlink(target / "link") == "/etc/passwd" and (target / "sub").is_dir()
    (target / "file").write_text("changed")
    assert populate(target, image, "/srv") is False  # not empty: left as it is
    assert (target / "file").read_text() == "changed"
    other = tmp_path / "volume2"
    other.mkdir()
    assert populate(other, image, "/nothing") is False  # the image has nothing there
    assert list(other.iterdir()) == []
