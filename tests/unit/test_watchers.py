"""Background watchers without processes of their own: the watcher's command line, the
rows, and the identity check that keeps a reused pid from being taken for a watcher."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.engine.watchers import Watchers, start_ticks, watcher_argv
from composer.errors import UsageError
from composer.state import watchers
from composer.state.layout import Layout
from composer.state.store import Store
from composer.state.watchers import WatcherRow


def test_the_command_line_names_the_files_the_project_and_the_kept_flags() -> None:
    argv = watcher_argv("/py", Path("/r"), "demo", {
        "files": ["a.yaml", "b.yaml"], "project_dir": "/src", "env_files": [".env.x"],
        "profiles": ["dev"], "services": ["web"], "parallel": 2,
        "options": {"no_deps": True, "scale": ["web=2"], "timeout": 3.0, "no_build": False}})
    assert argv == ["/py", "-m", "composer", "--root", "/r", "-f", "a.yaml", "-f", "b.yaml",
                    "-p", "demo", "--project-directory", "/src", "--env-file", ".env.x",
                    "--profile", "dev", "--parallel", "2", "--progress", "plain", "watch",
                    "--no-up", "--no-deps", "--scale", "web=2", "--timeout", "3", "web"]


def test_stdin_and_flags_posing_as_services_are_refused() -> None:
    with pytest.raises(UsageError, match="stdin"):
        watcher_argv("/py", Path("/r"), "demo", {"files": ["-"]})
    with pytest.raises(UsageError, match="service"):
        watcher_argv("/py", Path("/r"), "demo", {"services": ["--stop"]})
    with pytest.raises(UsageError):
        watcher_argv("/py", Path("/r"), "demo", {"files": "a.yaml"})


def test_start_ticks_of_a_live_process_and_of_none() -> None:
    assert start_ticks(os.getpid()) == start_ticks(os.getpid()) is not None
    assert start_ticks(2 ** 22 + 1) is None  # above pid_max


def test_a_row_is_believed_only_with_its_start_time_and_boot(tmp_path: Path) -> None:
    with Store.open(tmp_path) as db:
        w = Watchers(Layout(tmp_path, tmp_path / "run"), db, boot_id=lambda: "boot-1")
        me, ticks = os.getpid(), start_ticks(os.getpid())
        assert ticks is not None
        watchers.save(db, WatcherRow("live", me, ticks, "boot-1", 1.0, "/l", ("x",)))
        watchers.save(db, WatcherRow("reused", me, ticks + 1, "boot-1", 1.0, "/l", ("x",)))
        watchers.save(db, WatcherRow("rebooted", me, ticks, "boot-0", 1.0, "/l", ("x",)))
        assert set(w.watched()) == {"live"}
        assert w.status("live") == {"Project": "live", "Pid": me, "StartedAt": 1.0,
                                    "Log": "/l", "Argv": ["x"]}
        # The dead ones lost their rows; stopping one signals nothing.
        assert [r.project for r in watchers.all_rows(db)] == ["live"]
        watchers.save(db, WatcherRow("reused", me, ticks + 1, "boot-1", 1.0, "/l", ("x",)))
        assert w.stop("reused") is None
        assert watchers.get(db, "reused") is None


def test_forget_keeps_a_row_that_names_another_watcher(tmp_path: Path) -> None:
    with Store.open(tmp_path) as db:
        watchers.save(db, WatcherRow("p", 10, 1, "b", 1.0, "/l", ()))
        watchers.forget(db, "p", 11)
        assert watchers.get(db, "p") is not None
        watchers.forget(db, "p", 10)
        assert watchers.get(db, "p") is None
