"""The watch core without containers: debounce on a fake clock, rules and their ignores, a
batch's work per service, the files a project is made of, and the loop over fake effects."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from composer.errors import ComposerError, ManifestError
from composer.manifest.loader import load_project
from composer.manifest.model import Project
from composer.watch.batch import ServiceWork, SyncEntry, plan_batch
from composer.watch.debounce import Batcher, Worker
from composer.watch.loop import Watcher
from composer.watch.observe import directories
from composer.watch.rules import always_ignored, ephemeral, rules_of
from composer.watch.sources import manifest_files


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --- debounce ---------------------------------------------------------------------------------


def test_a_batch_is_due_after_the_quiet_period() -> None:
    clock = Clock()
    batcher = Batcher(quiet=0.05, max_wait=1.0, clock=clock)
    assert batcher.due_in() is None and batcher.take() is None
    batcher.add("a")
    clock.now += 0.03
    batcher.add("b")
    batcher.add("a")
    assert batcher.take() is None
    assert batcher.due_in() == pytest.approx(0.05)
    clock.now += 0.05
    assert batcher.take() == ["a", "b"]
    assert batcher.take() is None


def test_a_stream_that_never_pauses_is_cut_at_the_max_wait() -> None:
    clock = Clock()
    batcher = Batcher(quiet=0.05, max_wait=0.2, clock=clock)
    for i in range(10):
        batcher.add(f"f{i}")
        clock.now += 0.03
        if batcher.take() is not None:
            break
    assert i == 6  # 7 events, 0.21 s after the first one


def test_what_comes_during_a_run_makes_exactly_one_more_run() -> None:
    clock = Clock()
    runs: list[list[str]] = []
    worker: Worker

    def handle(paths: list[str]) -> None:
        runs.append(paths)
        if len(runs) == 1:  # a long reconcile: many saves meanwhile
            for i in range(50):
                worker.add(f"during{i}")

    worker = Worker(Batcher(quiet=0.05, clock=clock), handle)
    worker.add("first")
    clock.now += 0.1
    assert worker.step()
    assert not worker.step()  # the saves of the run are not quiet yet
    clock.now += 0.1
    assert worker.step()
    assert not worker.step()
    assert [len(r) for r in runs] == [1, 50]


def test_500_files_at_once_are_one_batch() -> None:
    clock = Clock()
    batches: list[list[str]] = []
    worker = Worker(Batcher(quiet=0.05, clock=clock), batches.append)
    for i in range(500):
        worker.add(f"/src/f{i}")
        clock.now += 0.0001
    clock.now += 0.05
    while worker.step():
        pass
    assert [len(b) for b in batches] == [500]


# --- rules ------------------------------------------------------------------------------------


def _project(tmp_path: Path, text: str) -> Project:
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load_project([str(tmp_path / "compose.yaml")], environ={})


RULES = """\
    services:
      web:
        image: local/busybox:latest
        develop:
          watch:
            - path: ./src
              target: /app
              action: sync
              ignore: ["*.log", "cache/"]
            - path: ./pkg
              action: rebuild
            - path: ./conf
              target: /etc/app
              action: sync+restart
              include: ["*.conf"]
            - path: ./hooks
              target: /hooks
              action: sync+exec
              exec:
                command: echo synced
"""


def test_paths_map_to_targets_and_ignores_apply(tmp_path: Path) -> None:
    rules = rules_of(_project(tmp_path, RULES))
    sync = rules[0]
    src = str(tmp_path / "src")
    assert sync.target_of(f"{src}/a/b.py") == "/app/a/b.py"
    assert sync.target_of(src) == "/app"
    assert sync.target_of(f"{src}/x.log") is None  # ignore, from the rule's path
    assert sync.target_of(f"{src}/cache/big") is None  # below an ignored directory
    assert sync.target_of(f"{src}/.git/HEAD") is None
    assert sync.target_of(f"{src}/.main.py.swp") is None
    assert sync.target_of(f"{src}-other/a") is None  # a sibling, not below the path
    conf = rules[2]
    assert conf.target_of(str(tmp_path / "conf/app.conf")) == "/etc/app/app.conf"
    assert conf.target_of(str(tmp_path / "conf/notes.txt")) is None  # include
    assert rules[1].target_of(str(tmp_path / "pkg/x")) is None  # rebuild syncs nothing
    assert rules[1].accepts(str(tmp_path / "pkg/x"))


def test_editor_temporary_files_are_ephemeral() -> None:
    for name in ("4913", "main.py~", ".main.py.swp", "#main.py#", ".#main.py",
                 "main.py___jb_tmp___"):
        assert ephemeral(name), name
    assert not ephemeral("main.py")
    assert always_ignored("/p/.git/objects/ab") and not always_ignored("/p/git/x")


def test_the_build_contexts_dockerignore_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM local/busybox:latest\n")
    (tmp_path / ".dockerignore").write_text("node_modules\n*.tmp\n")
    project = _project(tmp_path, """\
        services:
          web:
            build: .
            develop:
              watch:
                - {path: ., target: /app, action: sync}
    """)
    rule = rules_of(project)[0]
    assert rule.target_of(str(tmp_path / "index.js")) == "/app/index.js"
    assert rule.target_of(str(tmp_path / "node_modules/x/y.js")) is None
    assert rule.target_of(str(tmp_path / "a.tmp")) is None


# --- a batch's work ---------------------------------------------------------------------------


def test_a_batch_syncs_writes_and_deletions_then_restarts_and_execs(tmp_path: Path) -> None:
    rules = rules_of(_project(tmp_path, RULES))
    (tmp_path / "src/sub").mkdir(parents=True)
    (tmp_path / "src/sub/new.py").write_text("x")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/app.conf").write_text("y")
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks/h").write_text("z")
    paths = [str(tmp_path / p) for p in ("src/sub", "src/gone.py", "src/x.log",
                                         "conf/app.conf", "hooks/h")]
    [work] = plan_batch(rules, paths)
    assert work.restart and not work.rebuild
    assert [list(h["command"]) for h in work.execs] == [["echo", "synced"]]
    assert [(e.target, e.host is not None) for e in work.ordered_entries()] == [
        ("/app/gone.py", False), ("/app/sub", True), ("/app/sub/new.py", True),
        ("/etc/app/app.conf", True), ("/hooks/h", True)]


def test_a_rebuild_wins_over_the_syncs_of_its_service(tmp_path: Path) -> None:
    rules = rules_of(_project(tmp_path, RULES))
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("x")
    [work] = plan_batch(rules, [str(tmp_path / "src/a.py"), str(tmp_path / "pkg/lib.c")])
    assert work.rebuild and not work.entries and not work.restart


def test_deletions_go_deepest_first_and_writes_parents_first() -> None:
    work = ServiceWork("s", entries=[SyncEntry("/a/b"), SyncEntry("/a/b/c"),
                                     SyncEntry("/x/y", "/h/y"), SyncEntry("/x", "/h"),
                                     SyncEntry("/x", "/h")])
    assert [e.target for e in work.ordered_entries()] == ["/a/b/c", "/a/b", "/x", "/x/y"]
    assert SyncEntry("/a").to_json() == {"target": "/a", "delete": True}


# --- what is observed -------------------------------------------------------------------------


def test_every_file_the_project_is_made_of_is_watched(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=1\n")
    (tmp_path / "web.env").write_text("A=1\n")
    (tmp_path / "secret.txt").write_text("s\n")
    (tmp_path / "base.yaml").write_text("services:\n  base:\n    image: local/busybox\n")
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc/compose.yaml").write_text("services:\n  inc:\n    image: x\n")
    (tmp_path / "compose.yaml").write_text(textwrap.dedent("""\
        include: [inc/compose.yaml]
        services:
          web:
            extends: {file: base.yaml, service: base}
            env_file: web.env
            secrets: [token]
        secrets:
          token: {file: ./secret.txt}
    """))
    (tmp_path / "compose.override.yaml").write_text("services:\n  web:\n    init: true\n")
    found = manifest_files(cwd=str(tmp_path), environ={})
    assert found == {str(tmp_path / name) for name in (
        "compose.yaml", "compose.override.yaml", ".env", "web.env", "secret.txt",
        "base.yaml", "inc/compose.yaml")}


def test_directories_are_observed_without_overlaps(tmp_path: Path) -> None:
    (tmp_path / "src/deep").mkdir(parents=True)
    (tmp_path / "one.conf").write_text("")
    dirs = directories([str(tmp_path / "compose.yaml")],
                       [str(tmp_path), str(tmp_path / "src/deep"), str(tmp_path / "one.conf"),
                        str(tmp_path / "missing/later")])
    assert dirs == {str(tmp_path): True}
    dirs = directories([str(tmp_path / "compose.yaml")], [str(tmp_path / "src")])
    assert dirs == {str(tmp_path): False, str(tmp_path / "src"): True}


# --- the loop ---------------------------------------------------------------------------------


class FakeEffects:
    def __init__(self, project: Project, files: frozenset[str]) -> None:
        self.project = project
        self.files = files
        self.calls: list[tuple[Any, ...]] = []
        self.invalid = False

    def load(self) -> tuple[Project, frozenset[str]]:
        if self.invalid:
            raise ManifestError("bad edit")
        return self.project, self.files

    def apply(self, project: Project) -> None:
        self.calls.append(("apply", project.name))

    def sync(self, project: Project, service: str, entries: Sequence[SyncEntry]) -> None:
        self.calls.append(("sync", service, tuple(e.target for e in entries)))

    def restart(self, project: Project, service: str) -> None:
        self.calls.append(("restart", service))

    def exec(self, project: Project, service: str, hook: Mapping[str, Any]) -> None:
        self.calls.append(("exec", service))

    def rebuild(self, project: Project, service: str) -> None:
        self.calls.append(("rebuild", service))

    def say(self, text: str) -> None:
        pass

    def error(self, text: str) -> None:
        self.calls.append(("error", text.splitlines()[0]))


def test_the_loop_reloads_the_manifest_and_runs_the_rules(tmp_path: Path) -> None:
    project = _project(tmp_path, RULES)
    files = frozenset({str(tmp_path / "compose.yaml")})
    effects = FakeEffects(project, files)
    clock = Clock()
    watcher = Watcher(effects, project, files, clock=clock)
    (tmp_path / "src").mkdir()
    (tmp_path / "src/a.py").write_text("x")
    watcher.changed(str(tmp_path / "src/a.py"))
    watcher.changed(str(tmp_path / "src/.a.py.swp"))  # ignored: never even batched
    watcher.changed(str(tmp_path / "elsewhere.txt"))
    assert len(watcher.files.batcher) == 1
    watcher.changed(str(tmp_path / "compose.yaml"))
    clock.now += 1
    assert watcher.files.step() and watcher.manifest.step()
    assert effects.calls == [("sync", "web", ("/app/a.py",)), ("apply", project.name)]

    effects.calls.clear()
    effects.invalid = True
    watcher.changed(str(tmp_path / "compose.yaml"))
    clock.now += 1
    watcher.manifest.step()
    assert effects.calls == [("error", "bad edit")]  # and nothing applied
    assert watcher.project is project


def test_a_failed_action_is_reported_and_the_loop_goes_on(tmp_path: Path) -> None:
    project = _project(tmp_path, RULES)
    effects = FakeEffects(project, frozenset())

    def failing(*_: Any) -> None:
        raise ComposerError("no running container to sync to")

    effects.sync = failing  # type: ignore[method-assign]
    clock = Clock()
    watcher = Watcher(effects, project, frozenset(), clock=clock)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf/a.conf").write_text("x")
    watcher.changed(str(tmp_path / "conf/a.conf"))
    clock.now += 1
    watcher.files.step()
    assert effects.calls == [("error", "web: no running container to sync to")]
    assert os.path.exists(tmp_path / "conf/a.conf")
