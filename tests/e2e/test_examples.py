"""The stacks under ``examples/`` brought up for real, as their READMEs say to.

Their images build from ``local/busybox`` in the test's own state root; host ports come from
an env file so that tests running side by side never collide.
"""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

from tests.e2e.conftest import ROOT, Engine

EXAMPLES = ROOT / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_file(tmp_path: Path, **values: int | str) -> str:
    path = tmp_path / "ports.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return str(path)


def _get(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> str:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.read().decode())


def test_migrate_job_gates_the_app(engine: Engine, tmp_path: Path) -> None:
    port = _free_port()
    stack = ["-f", str(EXAMPLES / "migrate" / "compose.yaml"),
             "--env-file", _env_file(tmp_path, APP_PORT=port)]
    engine.cli(*stack, "up", "-d", "--wait", timeout=300, check=True)
    job = engine.inspect("migrate-migrate-1")
    app = engine.inspect("migrate-app-1")
    assert job["State"]["Status"] == "exited" and job["State"]["ExitCode"] == 0
    assert app["State"]["StartedAtUnix"] >= job["State"]["FinishedAtUnix"]
    assert _get(f"http://127.0.0.1:{port}/schema/version").strip() == "2"
    engine.cli(*stack, "down", "-v", check=True)
    # A failing migration: the app is never started, and up says which dependency failed.
    failing = ["-f", str(EXAMPLES / "migrate" / "compose.yaml"), "--env-file",
               _env_file(tmp_path, APP_PORT=port, MIGRATE_FAIL=1)]
    up = engine.cli(*failing, "up", "-d", timeout=300)
    assert up.returncode == 1
    assert "migrate-migrate-1 exited with code 1" in up.stderr, up.stderr
    engine.cli(*failing, "down", "-v", check=True)


def test_loadbalanced_replicas_share_one_name(engine: Engine, tmp_path: Path) -> None:
    port = _free_port()
    stack = ["-f", str(EXAMPLES / "loadbalanced" / "compose.yaml"),
             "--env-file", _env_file(tmp_path, PROXY_PORT=port)]
    engine.cli(*stack, "up", "-d", "--wait", timeout=300, check=True)
    # "proxy ID -> backend (ADDRESS): backend ID at ADDRESS: request N to this replica"
    reached = {_get(f"http://127.0.0.1:{port}/").split(": backend ")[1].split(" at ")[0]
               for _ in range(6)}
    assert len(reached) == 3, reached
    engine.cli(*stack, "down", check=True)
