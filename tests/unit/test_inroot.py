"""Paths inside a container root resolve inside it, whatever its symlinks say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.runtime.inroot import open_in, read_text


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "host-secret").write_text("host\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "real").write_text("container\n")
    (root / "etc" / "passwd").symlink_to("/etc/real")          # absolute: inside the root
    (root / "etc" / "up").symlink_to("../../../host-secret")    # climbs out: clamped at root
    (root / "host-secret").write_text("decoy in the container\n")
    os.mkfifo(root / "fifo")
    return root


def test_absolute_symlinks_resolve_against_the_container_root(root: Path) -> None:
    assert read_text(root, "/etc/passwd") == "container\n"


def test_dot_dot_cannot_climb_out(root: Path) -> None:
    assert read_text(root, "etc/up") == "decoy in the container\n"
    assert read_text(root, "/../../host-secret") == "decoy in the container\n"


def test_missing_directories_and_fifos_read_as_none(root: Path) -> None:
    assert read_text(root, "/etc/nothing") is None
    assert read_text(root, "/etc") is None
    assert read_text(root, "/fifo") is None


def test_creating_through_a_symlink_stays_inside(root: Path, tmp_path: Path) -> None:
    # The link names a host directory; inside the container that directory does not exist,
    # so the create fails instead of writing on the host.
    (root / "etc" / "out").symlink_to(str(tmp_path / "created-outside"))
    with pytest.raises(FileNotFoundError):
        open_in(root, "/etc/out", os.O_WRONLY | os.O_CREAT)
    assert not (tmp_path / "created-outside").exists()
    # A link to a directory that exists inside: the file lands there.
    (root / "etc" / "to-tmp").symlink_to("/tmp")
    (root / "tmp").mkdir()
    fd = open_in(root, "/etc/to-tmp/new", os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x")
    os.close(fd)
    assert (root / "tmp" / "new").read_bytes() == b"x"


def test_makedirs_stays_inside(root: Path, tmp_path: Path) -> None:
    from composer.runtime.inroot import makedirs_in

    # A link to a host directory: inside the container that path does not exist.
    (root / "escape").symlink_to(str(tmp_path / "outside"))
    (tmp_path / "outside").mkdir()
    with pytest.raises(OSError):
        makedirs_in(root, "/escape/a/b")
    assert list((tmp_path / "outside").iterdir()) == []
    # A link inside the container is followed inside it.
    (root / "var").mkdir()
    (root / "data").symlink_to("/var")
    makedirs_in(root, "/data/lib/app")
    assert (root / "var" / "lib" / "app").is_dir()
