"""COPY from the build context: sources with wildcards, the content digest, and the upper
directory a step's layer is made from (Docker's rules for where things land)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.runtime.images.build.context import (
    ContextError,
    Source,
    content_digest,
    destination,
    sources,
    stage_copy,
)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "ctx"
    (root / "src/pkg").mkdir(parents=True)
    (root / "src/main.py").write_text("print(1)\n")
    (root / "src/pkg/util.py").write_text("x = 1\n")
    (root / "README.md").write_text("readme\n")
    (root / "a.log").write_text("log\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    os.symlink("src/main.py", root / "link")
    return root


def rel(found: list[Source]) -> list[str]:
    return [s.relative for s in found]


def test_sources_with_wildcards_in_order_and_once(context: Path) -> None:
    assert rel(sources(context, ["*.md", "src"])) == ["README.md", "src"]
    assert rel(sources(context, ["src/*.py", "src/main.py"])) == ["src/main.py"]
    assert rel(sources(context, ["src/*/util.py"])) == ["src/pkg/util.py"]
    assert rel(sources(context, ["/README.md", "./a.log"])) == ["README.md", "a.log"]
    assert sources(context, ["."]) == [Source("", True)]
    assert sources(context, ["src"])[0].is_dir


def test_missing_outside_and_excluded_sources_are_errors(context: Path) -> None:
    with pytest.raises(ContextError, match="nope: no such file"):
        sources(context, ["nope"])
    with pytest.raises(ContextError, match="outside the build context"):
        sources(context, ["../etc/passwd"])
    with pytest.raises(ContextError, match=r"excluded by \.dockerignore"):
        sources(context, ["*.log"], excluded=lambda p: p.endswith(".log"))


def test_the_digest_follows_content_and_modes_not_times(context: Path) -> None:
    chosen = sources(context, ["src", "run.sh"])
    first = content_digest(context, chosen)
    os.utime(context / "src/main.py", (1, 1))
    assert content_digest(context, chosen) == first
    (context / "src/main.py").write_text("print(2)\n")
    second = content_digest(context, chosen)
    assert second != first
    os.chmod(context / "run.sh", 0o700)
    assert content_digest(context, chosen) != second
    assert content_digest(context, chosen, excluded=lambda p: p == "src/pkg") != \
        content_digest(context, chosen)


def test_destinations_are_under_workdir_unless_absolute() -> None:
    assert destination("app/", "/srv") == "/srv/app/"
    assert destination("/opt/x", "/srv") == "/opt/x"
    assert destination(".", "/srv") == "/srv"
    assert destination("./", "") == "/"


def test_a_directory_copies_its_contents_a_file_may_be_renamed(context: Path,
                                                              tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    written = stage_copy(context, sources(context, ["src"]), "/app/", upper, uid=1000,
                         gid=1001)
    assert written == ["/app", "/app/main.py", "/app/pkg", "/app/pkg/util.py"]
    assert (upper / "app/pkg/util.py").read_text() == "x = 1\n"
    info = os.lstat(upper / "app/main.py")
    assert (info.st_uid, info.st_gid) == (1000, 1001)
    stage_copy(context, sources(context, ["run.sh"]), "/usr/local/bin/start", upper,
               mode=0o750)
    start = os.lstat(upper / "usr/local/bin/start")
    assert oct(start.st_mode & 0o7777) == oct(0o750) and start.st_uid == 0
    assert oct(os.lstat(upper / "usr/local").st_mode & 0o777) == oct(0o755)
    stage_copy(context, sources(context, ["link"]), "/app/", upper)
    assert os.readlink(upper / "app/link") == "src/main.py"  # copied as a link, not followed


def test_several_sources_need_a_directory(context: Path, tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="must be a directory and end with /"):
        stage_copy(context, sources(context, ["README.md", "a.log"]), "/x", tmp_path)
