"""The volume store on a real SQLite store and real directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.runtime.volumes import (
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    VolumeError,
    Volumes,
    populate,
    tmpfs_options,
)
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


def test_driver_options_of_the_local_driver(volumes: Volumes, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "kept").write_text("mine")
    bound = volumes.create("b", options={"type": "none", "o": "bind", "device": str(host)})
    assert bound.options == {"type": "none", "o": "bind", "device": str(host)}
    assert volumes.use(bound) == host and not volumes.read_only(bound)
    ro = volumes.create("r", options={"type": "none", "o": "bind,ro", "device": str(host)})
    assert volumes.read_only(ro)
    made = volumes.create("t", options={"type": "tmpfs", "device": "tmpfs",
                                        "o": "size=64m,mode=1777,noexec"})
    assert made.to_json()["Options"]["o"] == "size=64m,mode=1777,noexec"
    # Removing a bind volume never touches the host directory.
    volumes.remove("b", users=lambda n: [])
    assert (host / "kept").read_text() == "mine"
    volumes.remove("r", users=lambda n: [])
    volumes.remove("t", users=lambda n: [])  # never used: nothing mounted
    assert volumes.all() == []


@pytest.mark.parametrize(("options", "message"), [
    ({"type": "nfs", "device": ":/x"}, "driver option type=nfs is not supported"),
    ({"size": "1g"}, "driver option 'size' is not supported"),
    ({"o": "bind", "device": "/tmp"}, "driver options need a type"),
    ({"type": "none", "device": "/tmp"}, "type=none needs o=bind"),
    ({"type": "none", "o": "bind,noexec", "device": "/tmp"}, "driver option o=noexec is not "
                                                            "supported with type=none"),
    ({"type": "none", "o": "bind", "device": "/no/such/dir"}, "device /no/such/dir is not an "
                                                             "existing directory"),
    ({"type": "none", "o": "bind", "device": "rel"}, "must be an absolute host path"),
    ({"type": "tmpfs", "o": "size=1m"}, "type=tmpfs needs a device"),
    ({"type": "tmpfs", "device": "tmpfs", "o": "size=1m,colour=red"},
     "driver option o=colour=red is not supported with type=tmpfs"),
])
def test_driver_options_refused_name_the_option(volumes: Volumes, options: dict[str, str],
                                                message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        volumes.create("v", options=options)
    assert volumes.get("v") is None


def test_tmpfs_options_split_into_flags_and_data() -> None:
    assert tmpfs_options("v", ["size=64m", "mode=1777"]) == (MS_NOSUID | MS_NODEV,
                                                             "size=64m,mode=1777")
    assert tmpfs_options("v", ["ro", "noexec", "dev", "uid=5"]) == (
        MS_RDONLY | MS_NOEXEC | MS_NOSUID, "uid=5")
