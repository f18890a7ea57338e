"""``composer image`` as a user runs it, on a state root of the test's own."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def composer(state: Path, *args: str,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(ROOT),
           "HOME": "/nonexistent"}
    result = subprocess.run([sys.executable, "-m", "composer", "--root", str(state), *args],
                            input=stdin, capture_output=True, env=env, timeout=60)
    return subprocess.CompletedProcess(result.args, result.returncode,
                                       result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


def rootfs(tmp_path: Path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("etc/motd")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return path


def test_import_ls_tag_save_load_rm_prune(tmp_path: Path) -> None:
    state = tmp_path / "state"
    made = composer(state, "image", "import", str(rootfs(tmp_path)), "local/app:1")
    assert made.returncode == 0, made.stderr
    image_id = made.stdout.strip()
    assert image_id.startswith("sha256:") and len(image_id) == 71
    assert composer(state, "image", "tag", "local/app:1", "local/app:2").returncode == 0
    listing = composer(state, "image", "ls").stdout.splitlines()
    assert listing[0].split() == ["REPOSITORY:TAG", "IMAGE", "ID", "CREATED"]
    assert sorted(line.split()[0] for line in listing[1:]) == ["local/app:1", "local/app:2"]
    inspected = json.loads(composer(state, "image", "inspect", "local/app:1").stdout)
    assert inspected[0]["Id"] == image_id
    archive = tmp_path / "app.tar"
    assert composer(state, "image", "save", "local/app:1", "-o", str(archive)).returncode == 0
    removed = composer(state, "image", "rm", "local/app:1", "local/app:2").stdout.splitlines()
    assert removed[:2] == ["Untagged: local/app:1", "Untagged: local/app:2"]
    assert f"Deleted: {image_id}" in removed
    loaded = composer(state, "image", "load", "-i", str(archive))
    assert loaded.stdout.strip() == "Loaded image: docker.io/local/app:1"
    assert json.loads(composer(state, "image", "inspect", "local/app:1").stdout)[0]["Id"] \
        == image_id
    assert composer(state, "image", "rm", "local/app:1").returncode == 0
    assert composer(state, "image", "ls", "-q").stdout == ""


def test_unknown_image_is_a_clear_error(tmp_path: Path) -> None:
    result = composer(tmp_path / "state", "image", "inspect", "nope")
    assert result.returncode == 1
    assert "no such image: nope" in result.stderr
