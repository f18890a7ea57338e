"""``composer watch`` end to end: real containers, real edits of real files.

A project is brought up by ``composer watch`` itself; the test edits files the way an editor
saves them and reads the result back from the containers (``exec``) and the engine
(container ids, start times). Waits poll the result with a generous bound: no timed
assertion here (bench/watch_bench.py measures the latencies).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Engine

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.slow]


@dataclass
class Watch:
    """A running ``composer watch`` of the project in ``folder``, its output collected."""

    engine: Engine
    folder: Path
    name: str
    proc: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    command: tuple[str, ...] = ("watch",)

    @property
    def file(self) -> Path:
        return self.folder / "compose.yaml"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.cli("-f", str(self.file), *args, check=check)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "composer", "--root", str(self.engine.root), "-f",
             str(self.file), *self.command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=self.engine.env())
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.expect(r"^watching ")

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def expect(self, pattern: str, *, after: int = 0, limit: float = 60) -> str:
        """The first output line from index ``after`` on that matches ``pattern``."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if re.search(pattern, line):
                    return line
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))

    def read(self, service: str, path: str) -> str | None:
        done = self.cli("exec", "-T", service, "cat", path, check=False)
        return done.stdout if done.returncode == 0 else None

    def ids(self) -> dict[str, str]:
        listed = json.loads(self.engine.cli("container", "ls", "-a", "--format", "json",
                                            check=True).stdout)
        return {str(c["Labels"]["com.docker.compose.service"]): str(c["Id"]) for c in listed
                if c["Labels"].get("com.docker.compose.project") == self.name}

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(timeout=60)
            if self.reader is not None:
                self.reader.join(timeout=60)
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        self.cli("down", check=False)


def until(what: str, probe: Callable[[], Any], limit: float = 60) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


@pytest.fixture
def watch(engine: Engine, tmp_path: Path) -> Iterator[Callable[[str], Watch]]:
    made: list[Watch] = []

    def make(text: str) -> Watch:
        name = f"w{os.getpid() % 1000}{len(made)}x{abs(hash(tmp_path)) % 10000}"
        folder = tmp_path / "project"
        folder.mkdir(exist_ok=True)
        (folder / "compose.yaml").write_text(f"name: {name}\n" + textwrap.dedent(text))
        w = Watch(engine, folder, name)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop()


LOOP = '["sh", "-c", "trap \'exit 0\' TERM; while true; do sleep 0.2; done"]'

SYNCING = f"""\
    services:
      web:
        image: local/busybox:latest
        user: app
        command: {LOOP}
        develop:
          watch:
            - path: ./src
              target: /app
              action: sync
              ignore: ["*.log"]
            - path: ./conf
              target: /etc/web
              action: sync+restart
      side:
        image: local/busybox:latest
        command: {LOOP}
"""


def test_sync_writes_as_the_user_deletes_and_batches(watch: Callable[[str], Watch]) -> None:
    w = watch(SYNCING)
    (w.folder / "src").mkdir()
    (w.folder / "conf").mkdir()
    w.start()
    (w.folder / "src/hello.txt").write_text("hello\n")
    until("the file is in the container", lambda: w.read("web", "/app/hello.txt") == "hello\n")
    owner = w.cli("exec", "-T", "web", "stat", "-c", "%u:%g", "/app/hello.txt").stdout
    assert owner.strip() == "1000:1000"  # the image's "app" user

    (w.folder / "src/skip.log").write_text("no\n")
    (w.folder / "src/hello.txt").unlink()
    until("the deletion propagated", lambda: w.read("web", "/app/hello.txt") is None)
    assert w.read("web", "/app/skip.log") is None  # ignored

    mark = len(w.lines)
    (w.folder / "src/many").mkdir()
    for i in range(500):  # a branch switch: hundreds of files at once
        (w.folder / f"src/many/f{i:03}").write_text(str(i))
    w.expect(r"web: synced \d+ written", after=mark)
    until("all 500 are there", lambda: w.read("web", "/app/many/f499") == "499")
    synced = [line for line in w.lines[mark:] if "web: synced" in line]
    assert synced == ["watch: web: synced 501 written"]  # one batch: the folder, its files


def test_sync_restart_restarts_and_the_rest_is_untouched(watch: Callable[[str], Watch],
                                                         engine: Engine) -> None:
    w = watch(SYNCING)
    (w.folder / "src").mkdir()
    (w.folder / "conf").mkdir()
    w.start()
    ids = w.ids()
    before = {s: engine.inspect(i)["State"]["StartedAtUnix"] for s, i in ids.items()}
    (w.folder / "conf/web.conf").write_text("port=1\n")
    w.expect(r"Container .*web-1\s+Restarted")
    assert w.read("web", "/etc/web/web.conf") == "port=1\n"
    after = {s: engine.inspect(i)["State"]["StartedAtUnix"] for s, i in ids.items()}
    assert w.ids() == ids
    assert after["web"] > before["web"] and after["side"] == before["side"]


def test_rebuild_recreates_only_that_service(watch: Callable[[str], Watch]) -> None:
    w = watch(f"""\
        services:
          app:
            build: ./app
            command: {LOOP}
            develop:
              watch:
                - path: ./app/version
                  action: rebuild
          side:
            image: local/busybox:latest
            command: {LOOP}
    """)
    (w.folder / "app").mkdir()
    (w.folder / "app/Dockerfile").write_text("FROM local/busybox:latest\nCOPY version /\n")
    (w.folder / "app/version").write_text("1\n")
    w.start()
    ids = w.ids()
    assert w.read("app", "/version") == "1\n"
    (w.folder / "app/version").write_text("2\n")
    until("app runs the new image", lambda: w.read("app", "/version") == "2\n")
    now = w.ids()
    assert now["app"] != ids["app"] and now["side"] == ids["side"]


def test_a_manifest_edit_recreates_only_the_changed_service_and_a_bad_one_nothing(
        watch: Callable[[str], Watch], engine: Engine) -> None:
    w = watch(f"""\
        services:
          api:
            image: local/busybox:latest
            command: {LOOP}
            environment: {{MODE: one}}
          db:
            image: local/busybox:latest
            command: {LOOP}
    """)
    w.start()
    ids = w.ids()
    text = w.file.read_text()
    mark = len(w.lines)
    w.file.write_text(text.replace("{MODE: one}", "{MODE: [two}"))
    w.expect(r"compose\.yaml:\d+:\d+: invalid YAML", after=mark)
    w.expect(r"left as it was", after=mark)
    assert w.ids() == ids
    mark = len(w.lines)
    w.file.write_text(text.replace("{MODE: one}", "{MODE: two}"))
    w.expect(r'Recreate api: environment\.MODE changed: "one" -> "two"', after=mark)
    until("api runs again", lambda: w.ids()["api"] != ids["api"] and engine.inspect(
        w.ids()["api"])["State"]["Status"] == "running")
    now = w.ids()
    assert "MODE=two" in engine.inspect(now["api"])["Config"]["Env"]
    assert now["api"] != ids["api"] and now["db"] == ids["db"]
    assert not any("Recreate db" in line for line in w.lines)


def test_up_watch_follows_the_logs_of_a_recreated_container(
        watch: Callable[[str], Watch]) -> None:
    import signal

    w = watch("""\
        services:
          app:
            image: local/busybox:latest
            environment: {MODE: one}
            command: ["sh", "-c", "echo mode $$MODE; trap 'exit 0' TERM; while :; do sleep 1; done"]
        """)
    w.command = ("up", "--watch")
    w.start()
    w.expect(r"app-1 +\| mode one$")
    w.file.write_text(w.file.read_text().replace("MODE: one", "MODE: two"))
    # The recreated container's output comes in the same stream, under the same prefix.
    w.expect(r"app-1 +\| mode two$")
    assert w.proc is not None
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(timeout=60) == 130
    assert not w.engine.inspect(f"{w.name}-app-1")["State"]["Running"]


# -- in the background: `up -d --watch`, the engine's watcher ------------------------------------

BACKGROUND = f"""\
    services:
      web:
        image: local/busybox:latest
        command: {LOOP}
        develop:
          watch:
            - path: ./src
              target: /app
              action: sync
"""


def _background(w: Watch, *flags: str) -> int:
    """``up -d --watch`` of ``w``'s project, the CLI gone when this returns: the pid of the
    engine's watcher, as ``ps`` reports it."""
    (w.folder / "src").mkdir(exist_ok=True)
    done = w.cli("up", *flags, "--watch")
    assert re.search(rf"^watching {w.name} in the background \(composer watch --stop ends "
                     r"it; log: .*/watch/" + re.escape(w.name) + r"\.log\)$", done.stderr,
                     re.MULTILINE), done.stderr
    pid = _watching(w)
    assert pid is not None, "ps shows no watch"
    return pid


def _watching(w: Watch) -> int | None:
    done = w.cli("ps")
    found = re.search(r"^watching: pid (\d+) since \S+ \S+ \(log: .*\)$", done.stderr,
                      re.MULTILINE)
    return int(found.group(1)) if found else None


def _runs(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _status(w: Watch) -> str:
    listed = json.loads(w.cli("ls", "-a", "--format", "json").stdout)
    return next((str(p["Status"]) for p in listed if p["Name"] == w.name), "")


def test_up_detached_watch_syncs_with_the_cli_gone_until_watch_stop(
        watch: Callable[[str], Watch]) -> None:
    w = watch(BACKGROUND)
    pid = _background(w, "-d")
    assert _status(w) == "running(1), watching"
    # ps --format json stays JSON lines on stdout
    lines = w.cli("ps", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["Service"] for line in lines] == ["web"]

    (w.folder / "src/hello.txt").write_text("hello\n")
    until("the file is in the container", lambda: w.read("web", "/app/hello.txt") == "hello\n")
    again = w.cli("up", "-d", "--watch")  # the same watch again: kept, not doubled
    assert f"watching {w.name} already (pid {pid}) in the background" in again.stderr
    assert _watching(w) == pid

    stopped = w.cli("watch", "--stop")
    assert f"stopped watching {w.name} (pid {pid})" in stopped.stderr
    assert not _runs(pid)
    assert _watching(w) is None and _status(w) == "running(1)"
    assert "is not watched" in w.cli("watch", "--stop").stderr
    # Nothing watches any more: a later save stays on the host (the process is gone, above;
    # this only shows the container did not get it by another way).
    (w.folder / "src/later.txt").write_text("later\n")
    time.sleep(1)
    assert w.read("web", "/app/later.txt") is None


def test_down_ends_the_background_watch(watch: Callable[[str], Watch]) -> None:
    w = watch(BACKGROUND)
    pid = _background(w, "--wait")
    done = w.cli("down")
    assert f"watch {w.name}  stopped (pid {pid})" in done.stdout
    assert not _runs(pid)
    assert _status(w) == ""


def test_the_watch_outlives_a_killed_engine_and_the_next_engine_knows_it(
        watch: Callable[[str], Watch], engine: Engine) -> None:
    import signal

    w = watch(BACKGROUND)
    pid = _background(w, "-d")
    first = engine.engine_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    until("the engine is gone", lambda: not _runs(first))
    assert _runs(pid)
    # The watcher starts an engine when it needs one, as any command does.
    (w.folder / "src/after.txt").write_text("after\n")
    until("the file is in the container", lambda: w.read("web", "/app/after.txt") == "after\n")
    assert engine.engine_pid() not in (None, first)
    assert _watching(w) == pid and _status(w) == "running(1), watching"

    # A watcher that dies is shown as not watching, and its row goes. (Killed here by the
    # pid the engine reported, after checking it is this root's watcher.)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"watch" in cmdline and str(engine.root).encode() in cmdline
    os.kill(pid, signal.SIGKILL)
    until("the watcher is gone", lambda: not _runs(pid))
    assert _watching(w) is None and _status(w) == "running(1)"
    assert "is not watched" in w.cli("watch", "--stop").stderr
