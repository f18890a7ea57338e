"""The engine's sync writer (``copy.sync_in``) over a directory standing in for a container's
root: ownership from the root's own /etc/passwd, deletions, kinds replaced, and no way out of
the root through a symlink the container planted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.engine.copy import CopyError, sync_in

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    top = tmp_path / "root"
    (top / "etc").mkdir(parents=True)
    (top / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home:/bin/sh\n")
    (top / "etc/group").write_text("root:x:0:\napp:x:1001:\n")
    fd = os.open(top, os.O_PATH | os.O_DIRECTORY)
    try:
        yield top, fd
    finally:
        os.close(fd)


def test_files_land_owned_by_the_containers_user(root: tuple[Path, int],
                                                 tmp_path: Path) -> None:
    top, fd = root
    (tmp_path / "src").mkdir()
    (tmp_path / "src/run.sh").write_text("echo hi\n")
    os.chmod(tmp_path / "src/run.sh", 0o755)
    result = sync_in(fd, "app", [{"target": "/app/deep/run.sh",
                                  "host": str(tmp_path / "src/run.sh")}])
    assert result == {"written": 1, "deleted": 0, "failed": []}
    written = top / "app/deep/run.sh"
    assert written.read_text() == "echo hi\n"
    info = written.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (1000, 1001, 0o755)
    parent = (top / "app/deep").stat()
    assert (parent.st_uid, parent.st_gid) == (1000, 1001)  # made parents are theirs too


def test_deletions_propagate_and_kinds_are_replaced(root: tuple[Path, int],
                                                    tmp_path: Path) -> None:
    top, fd = root
    (top / "app/old/inner").mkdir(parents=True)
    (top / "app/old/inner/f").write_text("x")
    (top / "app/file").write_text("x")
    (tmp_path / "file").mkdir()
    result = sync_in(fd, None, [{"target": "/app/old", "delete": True},
                                {"target": "/app/missing", "delete": True},
                                {"target": "/app/file", "host": str(tmp_path / "file")}])
    assert result == {"written": 1, "deleted": 1, "failed": []}
    assert not (top / "app/old").exists()
    assert (top / "app/file").is_dir()


def test_a_symlink_in_the_container_never_leads_out_of_its_root(root: tuple[Path, int],
                                                                tmp_path: Path) -> None:
    top, fd = root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("host data")
    os.symlink(str(outside), top / "escape")  # absolute: resolved inside the root
    os.symlink("../../../../../..", top / "up")
    (top / "app").mkdir()
    os.symlink(str(outside / "victim"), top / "app/link")
    (tmp_path / "payload").write_text("owned")
    payload = str(tmp_path / "payload")
    result = sync_in(fd, None, [{"target": "/escape/victim", "host": payload},
                                {"target": "/up" + str(outside / "victim"), "host": payload},
                                {"target": "/app/link", "host": payload},
                                {"target": "/escape/gone", "delete": True}])
    # /escape points at a path the root does not have: that write fails, the others go on.
    assert result["written"] == 2 and result["failed"] == [
        "/escape/victim: No such file or directory"]
    assert (outside / "victim").read_text() == "host data"
    assert (top / str(outside).lstrip("/") / "victim").read_text() == "owned"
    assert not (top / "app/link").is_symlink()  # replaced, not written through
    with pytest.raises(CopyError):
        sync_in(fd, None, [{"target": "/", "delete": True}])
