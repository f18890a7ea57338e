"""The mount points a RUN's mounts leave in its upper dir: which the image did not have, and
taking them (and parents copied up only for them) out again."""

from __future__ import annotations

import os
from pathlib import Path

from composer.engine.build_mounts import Stubs, _target, drop_stubs, plan_stubs


def _image(tmp_path: Path) -> Path:
    files = tmp_path / "image"
    for d in ("etc", "run", "tmp", "usr/local", "dev"):
        (files / d).mkdir(parents=True)
    (files / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\n")
    os.symlink("/elsewhere", files / "link")
    return files


def test_relative_targets_are_under_the_workdir() -> None:
    assert _target("cache", "/src") == "/src/cache"
    assert _target("/abs/../x", "/src") == "/x"
    assert _target("./a/", "/") == "/a"


def test_plan_notes_what_the_image_does_not_have(tmp_path: Path) -> None:
    files = _image(tmp_path)
    stubs = plan_stubs(files, ["/run/secrets/tok", "/usr/local/cache/go", "/etc/passwd",
                               "/tmp", "/dev/pipes/EOF", "/link/x", "/new"])
    # Deepest first, so a directory goes after what the runtime made inside it.
    assert stubs.made == ("usr/local/cache/go", "run/secrets/tok", "usr/local/cache",
                          "run/secrets", "new")
    mode = os.stat(files / "usr").st_mode & 0o7777
    assert stubs.kept["usr"] == (mode, os.getuid(), os.getgid())
    assert set(stubs.kept) == {"run", "usr", "usr/local"}


def test_drop_takes_out_untouched_stubs_and_keeps_what_the_run_wrote(tmp_path: Path) -> None:
    files = _image(tmp_path)
    stubs = plan_stubs(files, ["/run/secrets/tok", "/usr/local/cache/go", "/new/a"])
    upper = tmp_path / "upper"
    # What the runtime made, and what the RUN wrote beside it.
    (upper / "run/secrets").mkdir(parents=True)
    (upper / "run/secrets/tok").write_text("")
    (upper / "usr/local/cache/go").mkdir(parents=True)
    (upper / "usr/local/kept").write_text("written by the RUN\n")
    (upper / "new/a").mkdir(parents=True)
    (upper / "new/b").write_text("b\n")
    for relative in ("run", "usr", "usr/local"):
        os.chmod(upper / relative, os.stat(files / relative).st_mode & 0o7777)
    drop_stubs(upper, stubs)
    left = sorted(str(p.relative_to(upper)) for p in upper.rglob("*"))
    assert left == ["new", "new/b", "usr", "usr/local", "usr/local/kept"], left


def test_a_copied_up_directory_the_run_changed_stays(tmp_path: Path) -> None:
    files = _image(tmp_path)
    stubs = plan_stubs(files, ["/run/secrets/tok"])
    upper = tmp_path / "upper"
    (upper / "run/secrets").mkdir(parents=True)
    (upper / "run/secrets/tok").write_text("")
    os.chmod(upper / "run", 0o700)  # chmod'ed by the RUN: not the image's any more
    drop_stubs(upper, stubs)
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["run"]


def test_a_stub_file_the_run_could_not_write_but_is_not_empty_stays(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "x").mkdir(parents=True)
    (upper / "x/file").write_text("not a stub")
    drop_stubs(upper, Stubs(made=("x/file", "x")))
    assert (upper / "x/file").exists()
