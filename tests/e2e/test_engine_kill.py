"""Supervision that survives the engine: kill -9 it, containers go on; a new one adopts them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.e2e.conftest import IMAGE, Engine

COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"


def _lines(path: str) -> int:
    return len(Path(path).read_bytes().splitlines())


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.1)


def test_kill_9_of_the_engine_stops_nothing_and_loses_nothing(engine: Engine) -> None:
    names = [f"steady{i}" for i in range(4)]
    for name in names:
        engine.run_detached("--name", name, "--restart", "always", "--health-cmd", "true",
                            "--health-interval", "200ms", IMAGE, "sh", "-c", COUNTER)
    # The quitter ends on its own 4 s after each start: once while the engine is away.
    engine.run_detached("--name", "quitter", "--restart", "always", "--health-cmd", "true",
                        "--health-interval", "200ms", IMAGE, "sh", "-c",
                        "echo started; sleep 4; exit 3")
    for name in [*names, "quitter"]:
        engine.wait_for(name, lambda s: (s["State"].get("Health") or {}).get("Status")
                        == "healthy", what="health")
    before = {name: engine.inspect(name) for name in [*names, "quitter"]}
    pid = engine.engine_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: not Path(f"/proc/{pid}").exists(), 10, "engine exit")
    # Containers go on running and logging without the engine.
    for name in names:
        assert Path(f"/proc/{before[name]['State']['Pid']}").exists(), name
    counts = {name: _lines(before[name]["LogPath"]) for name in names}
    quitter_pid = before["quitter"]["State"]["Pid"]
    _wait(lambda: not Path(f"/proc/{quitter_pid}").exists(), 15, "the quitter's exit")
    for name in names:
        _wait(lambda n=name: _lines(before[n]["LogPath"]) > counts[n], 10,
              f"a new log line of {name} while the engine is away")
    # A new engine (started on demand) adopts them all.
    listed = engine.cli("container", "ls", check=True).stdout
    for name in names:
        assert name in listed
        state = engine.inspect(name)
        assert state["State"]["Pid"] == before[name]["State"]["Pid"]
        assert state["State"]["Health"]["Status"] == "healthy"
    quitter = engine.wait_for("quitter", lambda s: s["RestartCount"]
                              > before["quitter"]["RestartCount"], what="a restart")
    assert quitter["State"]["ExitCode"] == 3 or quitter["State"]["Status"] == "running"
    # No log line was lost: every counter value is there, in order, none missing.
    for name in names:
        values = [int(v) for v in engine.cli("container", "logs", name).stdout.split()]
        assert values == list(range(len(values))), f"{name} lost lines"


def test_after_a_reboot_stale_state_is_cleaned_and_always_restarts(engine: Engine,
                                                                   tmp_path: Path) -> None:
    boot = tmp_path / "boot_id"
    boot.write_text("boot-one\n")
    os.environ["COMPOSER_BOOT_ID_FILE"] = str(boot)  # inherited by the engine the CLI starts
    try:
        engine.run_detached("--name", "keeper", "--restart", "always", IMAGE, "sleep", "100")
        engine.run_detached("--name", "oneshot", IMAGE, "sleep", "100")
        pids = {n: engine.inspect(n)["State"]["Pid"] for n in ("keeper", "oneshot")}
        engine.cli("engine", "stop", check=True)
        # A stopped engine stops no container.
        assert all(Path(f"/proc/{pid}").exists() for pid in pids.values())
        # The "reboot": every process of the old boot is gone.
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
        for pid in pids.values():
            _wait(lambda p=pid: not Path(f"/proc/{p}").exists(), 10, "exit")
        boot.write_text("boot-two\n")
        keeper = engine.wait_for("keeper", lambda s: s["State"]["Status"] == "running",
                                 what="a start after the reboot")
        assert keeper["State"]["Pid"] != pids["keeper"]
        assert engine.inspect("oneshot")["State"]["Status"] == "exited"
    finally:
        del os.environ["COMPOSER_BOOT_ID_FILE"]
