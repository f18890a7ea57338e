"""Compose's commands over a project's existing containers (ps, logs, exec, stop, ...), with
real containers.

``up`` is not used: the project's containers are made as stand-ins by ``container run -d`` with
Compose's labels, as ``up`` labels them, and a compose.yaml naming the same services lets the
commands load the project. Each test has its own engine and a project name of its own.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, Engine

# Ends at once on SIGTERM (a shell as pid 1 ignores it otherwise), prints its hostname first.
LOOP = "trap 'exit 0' TERM; echo started $(hostname); while true; do sleep 0.05; done"
COMPOSE = """\
services:
  db:
    image: local/busybox
  web:
    image: local/busybox
    depends_on: [db]
  worker:
    image: local/busybox
  spare:
    image: local/busybox
    profiles: [extra]
"""


@dataclass
class Project:
    engine: Engine
    name: str
    directory: Path

    @property
    def file(self) -> Path:
        return self.directory / "compose.yaml"

    def cli(self, *args: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``composer -f compose.yaml ARGS`` (the project is loaded from its file)."""
        return self.run("-f", str(self.file), *args, stdin=stdin, env=env)

    def run(self, *args: str, stdin: bytes | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), input=stdin if stdin is not None else b"",
                              capture_output=True, env={**self.engine.env(), **(env or {})},
                              cwd=cwd or self.directory.parent, timeout=120)
        return subprocess.CompletedProcess(done.args, done.returncode,
                                           done.stdout.decode(errors="replace"),
                                           done.stderr.decode(errors="replace"))

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "composer", "--root", str(self.engine.root), *args]

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command("-f", str(self.file), *args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.engine.env())

    def container(self, service: str, number: int, *command: str, oneoff: bool = False,
                  extra: tuple[str, ...] = (), depends_on: str = "") -> str:
        name = f"{self.name}-{service}-{'run-' + secrets.token_hex(3) if oneoff else number}"
        labels = {"project": self.name, "service": service, "container-number": str(number),
                  "oneoff": "True" if oneoff else "False", "depends_on": depends_on}
        flags = [f for key, value in labels.items()
                 for f in ("--label", f"com.docker.compose.{key}={value}")]
        self.engine.run_detached("--name", name, *flags, *extra, IMAGE, *command)
        return name

    def ps_json(self, *args: str) -> list[dict[str, object]]:
        done = self.cli("ps", "--format", "json", *args)
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def status(self, name: str) -> str:
        return str(self.engine.inspect(name)["State"]["Status"])


@pytest.fixture
def project(engine: Engine, tmp_path: Path) -> Project:
    """db (1), web (2, the first publishing port 80, depending on db) and worker (exited 3),
    all of a project named for this test; 'spare' is declared, behind a profile, with none."""
    made = Project(engine, f"po{secrets.token_hex(4)}", tmp_path / "proj")
    made.directory.mkdir()
    made.file.write_text(f"name: {made.name}\n{COMPOSE}")
    made.container("db", 1, "sh", "-c", LOOP)
    made.container("web", 1, "sh", "-c", LOOP, extra=("-p", "127.0.0.1::80"),
                   depends_on="db:service_started:false")
    made.container("web", 2, "sh", "-c", LOOP, depends_on="db:service_started:false")
    made.container("worker", 1, "sh", "-c", "echo done; exit 3")
    engine.wait_for(f"{made.name}-worker-1", lambda s: s["State"]["Status"] == "exited")
    return made


_UNREAD: dict[int, list[bytes]] = {}  # by pid: what a read took beyond the line asked for


def _lines_until(proc: subprocess.Popen[bytes], pattern: str, *, limit: float = 30
                 ) -> list[str]:
    """Lines of ``proc``'s stdout up to one matching ``pattern`` (or its end, or ``limit``
    seconds without output). Lines read past the match are kept for the next call: one read
    often brings several."""
    assert proc.stdout is not None
    pending = _UNREAD.setdefault(proc.pid, [b""])
    lines: list[str] = []
    while True:
        *complete, rest = pending[0].split(b"\n")
        for i, raw in enumerate(complete):
            lines.append(raw.decode(errors="replace"))
            if re.search(pattern, lines[-1]):
                pending[0] = b"\n".join([*complete[i + 1:], rest])
                return lines
        pending[0] = rest
        ready, _, _ = select.select([proc.stdout], [], [], limit)
        if not ready:
            return lines
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            return lines
        pending[0] += chunk


@pytest.fixture
def watcher(project: Project) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Background commands of a test (logs -f, events, wait), ended by their pid after it."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


# --- ps ---------------------------------------------------------------------------------------


def test_ps_lists_the_projects_containers_as_compose_does(project: Project) -> None:
    other = Project(project.engine, "someoneelse", project.directory)
    other.container("web", 1, "sh", "-c", LOOP)
    oneoff = project.container("web", 1, "sh", "-c", LOOP, oneoff=True)
    table = project.cli("ps")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS",
                              "PORTS"]
    # Running only, by name, no one-off, nothing of the other project.
    assert [r.split()[0] for r in rows] == [f"{project.name}-{s}" for s in
                                            ("db-1", "web-1", "web-2")]
    web = project.engine.inspect(f"{project.name}-web-1")
    port = web["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert f"127.0.0.1:{port}->80/tcp" in rows[1]

    listed = {str(c["Name"]): c for c in project.ps_json("-a")}
    # -a: the stopped ones and the one-offs too.
    assert sorted(listed) == sorted([oneoff, *(f"{project.name}-{s}" for s in
                                               ("db-1", "web-1", "web-2", "worker-1"))])
    worker = listed[f"{project.name}-worker-1"]
    assert (worker["State"], worker["ExitCode"], worker["Service"], worker["Project"]) == \
        ("exited", 3, "worker", project.name)
    assert str(worker["Status"]).startswith("Exited (3)")
    first = listed[f"{project.name}-web-1"]
    assert first["ID"] == web["Id"][:12] and first["Health"] == ""
    assert first["Publishers"] == [{"URL": "127.0.0.1", "TargetPort": 80,
                                    "PublishedPort": int(port), "Protocol": "tcp"}]
    assert f"com.docker.compose.project={project.name}" in str(first["Labels"])

    quiet = project.cli("ps", "-q", "web")
    assert quiet.stdout.split() == [web["Id"],
                                    project.engine.inspect(f"{project.name}-web-2")["Id"]]
    assert project.cli("ps", "--services", "-a").stdout.split() == ["db", "web", "worker"]
    exited = project.cli("ps", "--status", "exited", "--format", "{{.Name}} {{.State}}")
    assert exited.stdout.splitlines() == [f"{project.name}-worker-1 exited"]
    running = project.cli("ps", "--filter", "status=running", "--format", "{{.Service}}")
    assert running.stdout.split() == ["db", "web", "web"]
    missing = project.cli("ps", "nope")
    assert missing.returncode == 1 and "no such service: nope" in missing.stderr
    bad = project.cli("ps", "--filter", "colour=blue")
    assert bad.returncode == 2 and "unknown filter colour" in bad.stderr


def test_a_project_name_alone_is_enough_without_a_compose_file(project: Project,
                                                               tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    listed = project.run("-p", project.name, "ps", "--format", "{{.Name}}", cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [f"{project.name}-{s}" for s in ("db-1", "web-1", "web-2")]
    # The order comes from the containers' depends_on labels: web stops before db.
    stopped = project.run("-p", project.name, "stop", cwd=elsewhere)
    assert stopped.returncode == 0, stopped.stderr
    order = [line.split()[2] for line in stopped.stderr.splitlines() if "Stopped" in line]
    assert order.index(f"{project.name}-db-1") == 2, stopped.stderr


# --- logs -------------------------------------------------------------------------------------


def test_logs_are_prefixed_aligned_and_filtered(project: Project) -> None:
    n = project.name
    done = project.cli("logs")
    assert done.returncode == 0, done.stderr
    width = len(f"{n}-worker-1") + 1
    lines = done.stdout.splitlines()
    assert f"{f'{n}-worker-1':<{width}} | done" in lines
    assert sorted(line.split(" | ")[0].rstrip() for line in lines) == \
        [f"{n}-db-1", f"{n}-web-1", f"{n}-web-2", f"{n}-worker-1"]
    assert all(line.index("|") == width + 1 for line in lines), lines
    web2 = project.engine.inspect(f"{n}-web-2")["Config"]["Hostname"]
    one = project.cli("logs", "--index", "2", "--no-log-prefix", "web")
    assert one.stdout.splitlines() == [f"started {web2}"]
    stamped = project.cli("logs", "-t", "--tail", "1", "worker").stdout.splitlines()
    assert len(stamped) == 1
    assert re.fullmatch(rf"{n}-worker-1  \| \d{{4}}-\d\d-\d\dT[\d:.]+Z done", stamped[0])
    assert "\033[" not in done.stdout  # no colours when stdout is no terminal
    coloured = project.cli("--ansi", "always", "logs", "worker").stdout
    assert coloured.startswith("\033[36m") and "\033[0mdone" in coloured


def test_logs_follow_every_container_and_end_when_they_stop(
        project: Project, watcher: list[subprocess.Popen[bytes]]) -> None:
    n = project.name
    follow = project.popen("logs", "-f", "--no-color", "db", "web")
    watcher.append(follow)
    wanted = {f"{n}-db-1", f"{n}-web-1", f"{n}-web-2"}
    seen: set[str] = set()
    while seen != wanted:  # what each container wrote before, one line at a time
        line = _lines_until(follow, ".")
        assert line, f"logs -f ended or stalled after {sorted(seen)}"
        seen.add(line[-1].split(" | ")[0].rstrip())
    assert follow.poll() is None  # still following
    project.engine.cli("container", "exec", f"{n}-db-1", "sh", "-c", "echo late > /proc/1/fd/1",
                       check=True)
    assert any(line.endswith("| late") for line in _lines_until(follow, r"\| late$")), \
        "a line written after the start was not followed"
    assert project.cli("stop", "-t", "5").returncode == 0
    # Every followed container stopped: logs -f ends by itself, successfully.
    assert follow.wait(timeout=30) == 0


def test_exec_passes_the_exit_code_env_user_and_workdir(project: Project) -> None:
    failed = project.cli("exec", "-T", "web", "sh", "-c", "exit 4")
    assert failed.returncode == 4, failed.stderr
    done = project.cli("exec", "-T", "-e", "A=b", "-e", "FROM_SHELL", "-e", "UNSET_ONE",
                       "-u", "1000", "-w", "/tmp", "web", "sh", "-c",
                       "echo $A $FROM_SHELL ${UNSET_ONE-unset}; id -u; pwd; hostname",
                       env={"FROM_SHELL": "shell"})
    assert done.returncode == 0, done.stderr
    web1 = project.engine.inspect(f"{project.name}-web-1")["Config"]["Hostname"]
    assert done.stdout.splitlines() == ["b shell unset", "1000", "/tmp", web1]
    second = project.cli("exec", "--index", "2", "web", "hostname")
    assert second.stdout.strip() == \
        project.engine.inspect(f"{project.name}-web-2")["Config"]["Hostname"]
    stdin = project.cli("exec", "-T", "db", "cat", stdin=b"piped in")
    assert stdin.stdout == "piped in"
    stopped = project.cli("exec", "worker", "true")
    assert stopped.returncode == 1 and 'service "worker" is not running' in stopped.stderr
    third = project.cli("exec", "--index", "3", "web", "true")
    assert 'service "web" is not running container #3' in third.stderr
    unknown = project.cli("exec", "nope", "true")
    assert unknown.returncode == 1 and "no such service: nope" in unknown.stderr
    detached = project.cli("exec", "-d", "db", "sh", "-c", "echo bg > /tmp/detached")
    assert detached.returncode == 0 and detached.stdout == "", detached.stderr
    # It runs on its own: look until its file is there (bounded, not timed).
    for _ in range(100):
        if project.cli("exec", "-T", "db", "cat", "/tmp/detached").stdout == "bg\n":
            break
    else:
        raise AssertionError("exec -d never ran its command")


# --- start, stop, restart, kill, pause, unpause -----------------------------------------------


def _order(stderr: str, word: str) -> list[str]:
    return [line.split()[2] for line in stderr.splitlines() if line.endswith(word)]


def test_stop_and_start_follow_the_dependency_order(project: Project) -> None:
    n = project.name
    stopped = project.cli("stop", "-t", "5")
    assert stopped.returncode == 0, stopped.stderr
    order = _order(stopped.stderr, "Stopped")
    assert sorted(order) == [f"{n}-db-1", f"{n}-web-1", f"{n}-web-2"]
    assert order[-1] == f"{n}-db-1"  # its dependents first
    assert {project.status(f"{n}-{s}") for s in ("db-1", "web-1", "web-2")} == {"exited"}
    started = project.cli("start", "web", "db")
    assert started.returncode == 0, started.stderr
    order = _order(started.stderr, "Started")
    assert order[0] == f"{n}-db-1" and sorted(order[1:]) == [f"{n}-web-1", f"{n}-web-2"]
    assert {project.status(f"{n}-{s}") for s in ("db-1", "web-1", "web-2")} == {"running"}
    none = project.cli("--profile", "extra", "start", "spare")
    assert none.returncode == 1 and 'service "spare" has no container to start' in none.stderr


def test_restart_kill_pause_and_unpause(project: Project) -> None:
    n = project.name
    before = project.engine.inspect(f"{n}-db-1")["State"]["StartedAt"]
    restarted = project.cli("restart", "-t", "5", "db")
    assert restarted.returncode == 0, restarted.stderr
    assert _order(restarted.stderr, "Started") == [f"{n}-db-1"]  # web: no restart: true
    after = project.engine.inspect(f"{n}-db-1")["State"]
    assert after["Status"] == "running" and after["StartedAt"] != before
    paused = project.cli("pause", "web")
    assert paused.returncode == 0, paused.stderr
    assert {project.status(f"{n}-web-{i}") for i in (1, 2)} == {"paused"}
    shown = project.cli("ps", "--format", "{{.Name}} {{.State}}", "web").stdout.splitlines()
    assert shown == [f"{n}-web-1 paused", f"{n}-web-2 paused"]
    assert project.cli("unpause", "web").returncode == 0
    assert {project.status(f"{n}-web-{i}") for i in (1, 2)} == {"running"}
    killed = project.cli("kill", "-s", "SIGTERM", "db")
    assert killed.returncode == 0, killed.stderr
    state = project.engine.wait_for(f"{n}-db-1", lambda s: s["State"]["Status"] == "exited")
    assert state["State"]["ExitCode"] == 0  # its trap ran: the signal was SIGTERM
    again = project.cli("kill", "db")
    assert again.returncode == 0 and "no container to kill" in again.stderr


def test_rm_asks_first_and_removes_only_stopped_containers(project: Project) -> None:
    n = project.name
    declined = project.cli("rm")
    assert declined.returncode == 0, declined.stderr
    assert f"Going to remove {n}-worker-1" in declined.stdout
    project.engine.inspect(f"{n}-worker-1")  # still there: no answer is no
    accepted = project.cli("rm", stdin=b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert project.engine.cli("container", "inspect", f"{n}-worker-1").returncode != 0
    nothing = project.cli("rm", "-f")
    assert nothing.returncode == 0 and "No stopped containers" in nothing.stderr
    forced = project.cli("rm", "-f", "-s", "-v", "web")
    assert forced.returncode == 0, forced.stderr
    assert f"Going to remove {n}-web-1, {n}-web-2" in forced.stdout
    listed = project.cli("ps", "-a", "--format", "{{.Name}}").stdout.split()
    assert listed == [f"{n}-db-1"]
    project.engine.ids.discard(f"{n}-web-1")


# --- port, top, cp, wait, stats, events -------------------------------------------------------


def test_port_and_top(project: Project) -> None:
    n = project.name
    web = project.engine.inspect(f"{n}-web-1")
    port = web["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    found = project.cli("port", "web", "80")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"127.0.0.1:{port}"
    assert project.cli("port", "web").stdout.splitlines() == [f"80/tcp -> 127.0.0.1:{port}"]
    missing = project.cli("port", "web", "81")
    assert missing.returncode == 1
    assert f"no port 81/tcp for container {n}-web-1: {port}/tcp" in missing.stderr
    second = project.cli("port", "--index", "2", "web", "80")
    assert second.returncode == 1 and f"container {n}-web-2" in second.stderr

    top = project.cli("top", "web")
    assert top.returncode == 0, top.stderr
    header, *rows = top.stdout.splitlines()
    assert header.split() == ["SERVICE", "#", "UID", "PID", "PPID", "C", "STIME", "TTY",
                              "TIME", "CMD"]
    shells = [r.split() for r in rows if "trap" in r]
    assert [(r[0], r[1], r[2]) for r in shells] == [("web", "1", "root"), ("web", "2", "root")]


def test_cp_copies_into_every_container_and_out_of_the_first(project: Project,
                                                             tmp_path: Path) -> None:
    n = project.name
    source = tmp_path / "note.txt"
    source.write_text("hello\n")
    into = project.cli("cp", str(source), "web:/tmp/note.txt")
    assert into.returncode == 0, into.stderr
    for index in ("1", "2"):
        seen = project.cli("exec", "-T", "--index", index, "web", "cat", "/tmp/note.txt")
        assert seen.stdout == "hello\n", seen.stderr
    project.cli("exec", "-T", "--index", "2", "web", "sh", "-c", "echo two > /tmp/own")
    back = tmp_path / "back"
    back.mkdir()
    out = project.cli("cp", "web:/tmp/note.txt", str(back / "note.txt"))
    assert out.returncode == 0, out.stderr
    assert (back / "note.txt").read_text() == "hello\n"
    indexed = project.cli("cp", "--index", "2", "web:/tmp/own", str(back))
    assert indexed.returncode == 0, indexed.stderr
    assert (back / "own").read_text() == "two\n"
    # A stopped container is copied from too, as Compose does.
    stopped = project.cli("cp", "worker:/etc/hostname", str(back / "hostname"))
    assert stopped.returncode == 0, stopped.stderr
    none = project.cli("--profile", "extra", "cp", "spare:/etc/hostname", str(back))
    assert none.returncode == 1 and 'no container found for service "spare"' in none.stderr
    both = project.cli("cp", "web:/a", "db:/b")
    assert both.returncode == 1 and "copying between services is not supported" in both.stderr
    assert n  # the containers are the project's, named as above


def test_wait_exits_with_the_code_of_the_container(project: Project,
                                                  watcher: list[subprocess.Popen[bytes]]
                                                  ) -> None:
    job = project.container("job", 1, "sh", "-c",
                            "while [ ! -f /tmp/go ]; do sleep 0.05; done; exit 5")
    project.file.write_text(f"name: {project.name}\n{COMPOSE}  job:\n    image: local/busybox\n")
    proc = project.popen("wait", "job")
    watcher.append(proc)
    go = project.cli("exec", "-T", "job", "touch", "/tmp/go")
    assert go.returncode == 0, go.stderr
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    job_id = project.engine.inspect(job)["Id"]
    assert out.decode().strip() == f'container "{job_id}" exited with status code 5'
    none = project.cli("wait", "worker")
    assert none.returncode == 1 and f'no containers for project "{project.name}"' in none.stderr


def test_stats_once(project: Project) -> None:
    table = project.cli("stats", "--no-stream")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert re.split(r"\s{2,}", header.strip()) == ["CONTAINER ID", "NAME", "CPU %",
                                                   "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                                                   "BLOCK I/O", "PIDS"]
    assert sorted(r.split()[1] for r in rows) == \
        [f"{project.name}-{s}" for s in ("db-1", "web-1", "web-2")]
    samples = [json.loads(line) for line in
               project.cli("stats", "--no-stream", "--format", "json", "db").stdout.splitlines()]
    assert [s["Name"] for s in samples] == [f"{project.name}-db-1"]
    assert int(samples[0]["PIDs"]) >= 1 and samples[0]["CPUPerc"].endswith("%")


def test_events_json_sees_a_stop(project: Project,
                                 watcher: list[subprocess.Popen[bytes]]) -> None:
    proc = project.popen("events", "--json", "db")
    watcher.append(proc)
    db = project.engine.inspect(f"{project.name}-db-1")["Id"]
    seen: list[dict[str, object]] = []
    # The first listing of the events command may come after a stop: stop and start again
    # until it has seen one (each round is a die and a start).
    for _ in range(10):
        project.cli("stop", "db")
        lines = _lines_until(proc, '"action":"die"', limit=3)
        seen += [json.loads(line) for line in lines]
        if any(e["action"] == "die" for e in seen):
            break
        project.cli("start", "db")
    die = next(e for e in seen if e["action"] == "die")
    assert die["id"] == db and die["service"] == "db" and die["type"] == "container"
    attributes = die["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["name"] == f"{project.name}-db-1" and attributes["exitCode"] == "0"
    assert not any(k.startswith("com.docker.compose.") for k in attributes)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                        str(die["time"]))
