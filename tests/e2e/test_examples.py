"""The stacks under ``examples/`` brought up for real, as their READMEs say to.

Their images build from ``local/busybox`` in the test's own state root; host ports come from
an env file so that tests running side by side never collide.
"""

from __future__ import annotations

import socket
import urllib.error
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
    # Generous: each answer is a CGI chain (web -> api -> store, names looked up on the
    # way) that a loaded CI machine may take seconds over.
    with urllib.request.urlopen(request, timeout=60) as answer:
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


def test_webstack_gates_on_health_keeps_its_volume_and_guards_with_the_secret(
        engine: Engine, tmp_path: Path) -> None:
    port = _free_port()
    folder = EXAMPLES / "webstack"
    stack = ["-f", str(folder / "compose.yaml"), "--env-file", _env_file(tmp_path, WEB_PORT=port)]
    engine.cli(*stack, "up", "-d", "--wait", timeout=300, check=True)
    api, store = engine.inspect("webstack-api-1"), engine.inspect("webstack-store-1")
    web, worker = engine.inspect("webstack-web-1"), engine.inspect("webstack-worker-1")
    # web and worker wait for a healthy api, which waits for a healthy store.
    assert api["State"]["StartedAtUnix"] >= store["State"]["StartedAtUnix"]
    for dependent in (web, worker):
        assert dependent["State"]["StartedAtUnix"] >= api["State"]["StartedAtUnix"]
    base = f"http://127.0.0.1:{port}/cgi-bin/api"

    def ask(url: str, data: bytes | None = None) -> str:
        """The answer, or a failure that carries the body and the stack's logs."""
        try:
            return _get(url, token, data)
        except urllib.error.HTTPError as failed:
            logs = engine.cli(*stack, "logs", "--no-color").stdout
            raise AssertionError(f"{url}: {failed.code} {failed.read().decode()}\n{logs}") \
                from None

    token = {"X-Api-Token": (folder / "secrets" / "api_token.txt").read_text().strip()}
    status = ask(f"{base}/status")
    assert "secret:         present" in status and "store:          up" in status, status
    try:
        _get(f"{base}/kv")
        raise AssertionError("the api answered without its token")
    except urllib.error.HTTPError as refused:
        assert refused.code == 401
    assert "stored" in ask(f"{base}/kv/greeting", b"hello")
    # The store's data is on its named volume: down and up keep it, down -v removes it.
    engine.cli(*stack, "down", check=True)
    engine.cli(*stack, "up", "-d", "--wait", timeout=300, check=True)
    assert ask(f"{base}/kv/greeting").strip() == "hello"
    inside = engine.cli(*stack, "exec", "-T", "api", "cat", "/run/secrets/api_token",
                        check=True)
    assert inside.stdout.strip() == token["X-Api-Token"]
    engine.cli(*stack, "down", "-v", check=True)
    assert "webstack_store-data" not in engine.cli("volume", "ls", "-q", check=True).stdout
