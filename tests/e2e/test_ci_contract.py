"""The CI contract (issue 10) end to end: locked image digests, exit codes, parallel copies
of one project, teardown after a crash. Real containers, a real ``docker-registry`` on
loopback, the CLI as a CI job runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IMAGE, Engine
from tests.integration.conftest import RegistryServer, start_registry


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path / "registry")
    yield server
    server.stop()


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def _image_id(engine: Engine, ref: str) -> str:
    return str(json.loads(engine.cli("image", "inspect", ref, check=True).stdout)[0]["Id"])


def test_a_locked_up_pulls_exactly_the_locked_digests(engine: Engine, registry: RegistryServer,
                                                      tmp_path: Path) -> None:
    remote = f"127.0.0.1:{registry.port}/ci/base:1"
    engine.cli("image", "tag", IMAGE, remote, check=True)
    pushed = engine.cli("image", "push", "-q", remote, check=True).stdout.strip().splitlines()[-1]
    first = _image_id(engine, remote)
    folder = tmp_path / "project"
    compose = _write(folder, "compose.yaml", f"""\
        name: locked
        services:
          app:
            image: {remote}
            command: ["sleep", "600"]
            stop_signal: SIGKILL
          built:
            build: ./b
            command: ["true"]
        """)
    _write(folder / "b", "Dockerfile", "FROM local/busybox:latest\n")
    lock = folder / "compose.lock.yaml"
    engine.cli("-f", str(compose), "config", "--lock-image-digests", "-o", str(lock), check=True)
    assert lock.read_text() == f"services:\n  app:\n    image: {remote}@{pushed}\n"
    resolved = engine.cli("-f", str(compose), "config", "--resolve-image-digests",
                          check=True).stdout
    assert f"image: {remote}@{pushed}" in resolved and "build:" in resolved
    # The tag moves on: another image is pushed under it.
    context = _write(tmp_path / "next", "Dockerfile", "FROM local/busybox:latest\n"
                     "RUN echo newer > /newer\n").parent
    engine.cli("image", "build", "-q", "-t", remote, str(context), check=True)
    engine.cli("image", "push", "-q", remote, check=True)
    engine.cli("image", "rm", remote, check=True)
    locked = ["-f", str(compose), "-f", str(lock)]
    engine.cli(*locked, "up", "-d", "app", check=True)
    running = engine.inspect("locked-app-1")
    assert running["Image"] == first  # the locked digest's image, not the tag's newer one
    ls = engine.cli("container", "exec", "locked-app-1", "ls", "/newer")
    assert ls.returncode != 0
    engine.cli(*locked, "down", check=True)
    # The locked digest is gone from the registry: up fails and names the image.
    request = urllib.request.Request(
        f"http://127.0.0.1:{registry.port}/v2/ci/base/manifests/{pushed}", method="DELETE")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202
    for ref in (f"{remote}@{pushed}", remote):
        engine.cli("image", "rm", ref)
    gone = engine.cli(*locked, "up", "-d", "app")
    assert gone.returncode == 1
    assert f"{remote}@{pushed}" in gone.stderr and "service app" in gone.stderr, gone.stderr
    engine.cli(*locked, "down", check=True)


MATRIX = """\
    name: matrix
    services:
      db:
        image: local/busybox:latest
        command: ["sh", "-c", "sleep 0.5; touch /ready; exec sleep 600"]
        stop_signal: SIGKILL
        healthcheck:
          test: ["CMD", "test", "-f", "/ready"]
          interval: 0.2s
      tests:
        image: local/busybox:latest
        command: ["sh", "-c", "echo testing; exit 0"]
        depends_on:
          db: {condition: service_healthy}
      migrate:
        image: local/busybox:latest
        command: ["sh", "-c", "echo migration failed >&2; exit 1"]
        profiles: [broken]
      needs-migrate:
        image: local/busybox:latest
        command: ["true"]
        profiles: [broken]
        depends_on:
          migrate: {condition: service_completed_successfully}
      sick:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
        profiles: [sick]
        healthcheck:
          test: ["CMD", "sh", "-c", "echo still warming up; exit 1"]
          interval: 0.2s
          retries: 2
      slow:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
        profiles: [slow]
        healthcheck:
          test: ["CMD", "test", "-f", "/never"]
          interval: 0.2s
          retries: 1000
    """


def test_the_exit_code_matrix(engine: Engine, tmp_path: Path) -> None:
    compose = _write(tmp_path / "project", "compose.yaml", MATRIX)
    stack = ["-f", str(compose)]
    up = engine.cli(*stack, "up", "-d", "--wait", "db", check=True)
    assert "Ready in" in up.stdout and "matrix-db-1" in up.stdout  # the summary
    # The tests pass / fail: run's exit code is theirs.
    assert engine.cli(*stack, "run", "--rm", "tests").returncode == 0
    assert engine.cli(*stack, "run", "--rm", "tests", "sh", "-c", "exit 3").returncode == 3
    # up --exit-code-from: the same, with the dependency brought up first.
    assert engine.cli(*stack, "up", "--exit-code-from", "tests", "tests").returncode == 0
    # A dependency that fails first is named, and the dependent never runs.
    broken = engine.cli(*stack, "--profile", "broken", "run", "--rm", "needs-migrate")
    assert broken.returncode == 1
    assert "matrix-migrate-1 exited with code 1" in broken.stderr, broken.stderr
    # A health check that never passes: --wait fails naming it, with its last output.
    sick = engine.cli(*stack, "--profile", "sick", "up", "-d", "--wait", "sick")
    assert sick.returncode == 1
    assert "matrix-sick-1" in sick.stderr and "unhealthy" in sick.stderr
    assert "still warming up" in sick.stderr, sick.stderr
    # A wait that times out: named, still starting.
    slow = engine.cli(*stack, "--profile", "slow", "up", "-d", "--wait", "--wait-timeout", "1",
                      "slow")
    assert slow.returncode == 1
    assert "matrix-slow-1" in slow.stderr and "starting" in slow.stderr, slow.stderr
    down = engine.cli(*stack, "--profile", "broken", "--profile", "sick", "--profile", "slow",
                      "down", "-v", "--remove-orphans")
    assert down.returncode == 0, down.stderr


COPIES = """\
    services:
      web:
        image: local/busybox:latest
        command: ["sh", "-c", "mkdir -p /www; hostname > /www/index.html; \\
    exec httpd -f -p 80 -h /www"]
        stop_signal: SIGKILL
        ports: ["80"]
        volumes: [data:/data]
    volumes:
      data: {}
    """


def test_two_copies_of_one_project_side_by_side(engine: Engine, tmp_path: Path) -> None:
    compose = _write(tmp_path / "project", "compose.yaml", COPIES)
    addresses = {}
    for copy in ("copy-a", "copy-b"):
        engine.cli("-f", str(compose), "-p", copy, "up", "-d", "--wait", check=True)
        port = engine.cli("-f", str(compose), "-p", copy, "port", "web", "80",
                          check=True).stdout.strip()
        addresses[copy] = port.rsplit(":", 1)[1]
    assert addresses["copy-a"] != addresses["copy-b"]  # random host ports, not the same one
    for copy, port in addresses.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            served = answer.read().decode().strip()
        assert served == engine.inspect(f"{copy}-web-1")["Config"]["Hostname"]
    engine.cli("-p", "copy-a", "exec", "-T", "web", "sh", "-c", "echo a > /data/mine",
               check=True)
    other = engine.cli("-p", "copy-b", "exec", "-T", "web", "ls", "/data")
    assert other.stdout.strip() == ""  # volumes of their own
    networks = engine.cli("network", "ls", check=True).stdout
    assert "copy-a_default" in networks and "copy-b_default" in networks
    engine.cli("-f", str(compose), "-p", "copy-a", "down", "-v", check=True)
    assert engine.inspect("copy-b-web-1")["State"]["Running"]  # the other copy goes on
    engine.cli("-f", str(compose), "-p", "copy-b", "down", "-v", check=True)


SLOW_UP = """\
    name: crashy
    services:
      first:
        image: local/busybox:latest
        command: ["sh", "-c", "sleep 1; touch /ready; exec sleep 600"]
        stop_signal: SIGKILL
        volumes: [data:/data, /scratch]
        healthcheck:
          test: ["CMD", "test", "-f", "/ready"]
          interval: 0.2s
      second:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
        ports: ["80"]
        depends_on:
          first: {condition: service_healthy}
    volumes:
      data: {}
    """


def _mid_up(engine: Engine, compose: Path) -> subprocess.Popen[bytes]:
    """``up -d --wait`` started, once its first container exists (the second waits for the
    first's health)."""
    proc = subprocess.Popen([sys.executable, "-m", "composer", "--root", str(engine.root),
                             "-f", str(compose), "up", "-d", "--wait"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=engine.env())
    deadline = time.monotonic() + 60
    while "crashy-first-1" not in engine.cli("container", "ls", "-a", check=True).stdout:
        assert time.monotonic() < deadline, "up made no container"
        time.sleep(0.05)
    return proc


@pytest.mark.parametrize("victim", ["engine", "cli"])
def test_down_cleans_up_after_a_kill_9_mid_up(engine: Engine, tmp_path: Path,
                                              victim: str) -> None:
    compose = _write(tmp_path / "project", "compose.yaml", SLOW_UP)
    proc = _mid_up(engine, compose)
    pid = engine.engine_pid() if victim == "engine" else proc.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # Teardown always succeeds and leaves nothing (the engine fixture checks the host).
    down = engine.cli("-f", str(compose), "down", "-v", "--remove-orphans", timeout=180)
    assert down.returncode == 0, down.stderr
    assert engine.cli("container", "ls", "-a", "-q", check=True).stdout.strip() == ""
    assert engine.cli("volume", "ls", "-q", check=True).stdout.strip() == ""
    assert "crashy" not in engine.cli("network", "ls", check=True).stdout
