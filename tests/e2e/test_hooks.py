"""Lifecycle hooks end to end: ``post_start`` and ``pre_stop`` inside the service container,
``pre_start`` as init containers, over real containers and volumes.

Hooks leave their traces in files: inside the container (read back with ``exec``) or in a
named volume (read on the host at the volume's mount point), so nothing depends on timing.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Engine, compose, write_project


def _names(engine: Engine, project: str) -> list[str]:
    listed = engine.cli("container", "ls", "-a", "--format", "json", check=True).stdout
    return sorted(str(item["Name"]) for item in json.loads(listed)
                  if item["Labels"].get("com.docker.compose.project") == project)


def _volume_file(engine: Engine, volume: str, name: str) -> list[str]:
    found = json.loads(engine.cli("volume", "inspect", volume, check=True).stdout)
    path = Path((found[0] if isinstance(found, list) else found)["Mountpoint"]) / name
    return path.read_text().splitlines() if path.exists() else []


def _volumes(engine: Engine) -> set[str]:
    return set(engine.cli("volume", "ls", "-q", check=True).stdout.split())


POST_START = """\
    name: poststart
    services:
      web:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        stop_signal: SIGKILL
        post_start:
          - command: ["sh", "-c", "echo \\"first $$(id -u) $$(pwd) $$GREETING\\" > /tmp/hooked"]
            user: "1000"
            working_dir: /tmp
            environment:
              GREETING: hello
          - command: ["sh", "-c", "echo second >> /tmp/hooked"]
"""


def test_post_start_runs_in_order_with_the_user_env_and_workdir_given(engine: Engine,
                                                                       tmp_path: Path) -> None:
    path = write_project(tmp_path, POST_START)
    compose(engine, path, "up", "-d")
    hooked = compose(engine, path, "exec", "-T", "web", "cat", "/tmp/hooked").stdout
    assert hooked.splitlines() == ["first 1000 /tmp hello", "second"]
    # The hook ran in the service container: its main process is the same one still running.
    assert engine.inspect("poststart-web-1")["State"]["Status"] == "running"
    # restart runs it again (the file is rewritten by the first hook, then appended).
    compose(engine, path, "exec", "-T", "web", "rm", "/tmp/hooked")
    compose(engine, path, "restart")
    assert compose(engine, path, "exec", "-T", "web", "cat", "/tmp/hooked").stdout \
        .splitlines() == ["first 1000 /tmp hello", "second"]
    compose(engine, path, "down")


FAILING_POST_START = """\
    name: badpost
    services:
      web:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        stop_signal: SIGKILL
        post_start:
          - command: ["true"]
          - command: ["sh", "-c", "echo cannot register >&2; exit 3"]
      app:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        depends_on: [web]
"""


def test_a_failing_post_start_fails_up_naming_the_service(engine: Engine,
                                                          tmp_path: Path) -> None:
    path = write_project(tmp_path, FAILING_POST_START)
    done = compose(engine, path, "up", "-d", check=False)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert 'service "web": post_start[1] exited with code 3' in said, said
    assert "cannot register" in said
    # Its dependent is not started: the web container's start failed.
    assert engine.inspect("badpost-app-1")["State"]["Status"] == "created"
    compose(engine, path, "down")
    assert _names(engine, "badpost") == []


PRE_STOP = """\
    name: prestop
    services:
      web:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        stop_signal: SIGKILL
        volumes: [data:/data]
        pre_stop:
          - command: ["sh", "-c", "echo stopping $$HOSTNAME >> /data/log"]
          - command: ["sh", "-c", "echo not clean >&2; exit 5"]
    volumes:
      data: {}
"""


def test_pre_stop_runs_on_stop_and_down_not_on_kill_and_a_failure_warns(
        engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, PRE_STOP)
    compose(engine, path, "up", "-d")
    stopped = compose(engine, path, "stop")
    assert _volume_file(engine, "prestop_data", "log") == ["stopping " + _host(engine)]
    # The failing second hook is a warning; the container is stopped all the same.
    assert 'pre_stop[1] exited with code 5' in stopped.stderr and "not clean" in stopped.stderr
    assert engine.inspect("prestop-web-1")["State"]["Status"] == "exited"
    # Stopping what is stopped runs nothing; kill runs nothing.
    compose(engine, path, "stop")
    compose(engine, path, "start")
    compose(engine, path, "kill")
    assert len(_volume_file(engine, "prestop_data", "log")) == 1
    compose(engine, path, "start")
    down = compose(engine, path, "down")
    assert 'pre_stop[1] exited with code 5' in down.stdout + down.stderr
    assert len(_volume_file(engine, "prestop_data", "log")) == 2
    compose(engine, path, "down", "-v")


def _host(engine: Engine) -> str:
    return str(engine.inspect("prestop-web-1")["Config"]["Hostname"])


PRE_START = """\
    name: prestart
    services:
      web:
        image: local/busybox:latest
        command: ["sh", "-c", "cat /data/once > /tmp/seen; exec sleep 1000"]
        stop_signal: SIGKILL
        scale: 2
        volumes: [data:/data, /scratch]
        environment:
          FROM_SERVICE: service
        pre_start:
          - command: ["sh", "-c", "echo once $$FROM_SERVICE >> /data/once"]
          - command: ["sh", "-c", "echo each >> /data/each; echo mine > /scratch/mine"]
            per_replica: true
    volumes:
      data: {}
"""


def test_pre_start_runs_once_per_service_or_per_replica_and_not_again(
        engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, PRE_START)
    compose(engine, path, "up", "-d")
    assert _volume_file(engine, "prestart_data", "once") == ["once service"]
    assert _volume_file(engine, "prestart_data", "each") == ["each", "each"]
    # The service saw what its pre_start wrote before it started.
    assert compose(engine, path, "exec", "-T", "web", "cat", "/tmp/seen").stdout.strip() \
        == "once service"
    # A per-replica step sees its replica's anonymous volume too.
    for index in ("1", "2"):
        assert compose(engine, path, "exec", "-T", "--index", index, "web", "cat",
                        "/scratch/mine").stdout.strip() == "mine"
    assert _names(engine, "prestart") == [
        "prestart-web-1", "prestart-web-1-pre_start-1", "prestart-web-2",
        "prestart-web-2-pre_start-1", "prestart-web-pre_start-0"]
    # ps lists the service's containers only.
    listed = compose(engine, path, "ps", "--format", "{{.Name}}").stdout.split()
    assert sorted(listed) == ["prestart-web-1", "prestart-web-2"]

    # Nothing changed: a second up, a stop and start, and a scale-up run no step again
    # (the new replica runs its own per-replica step).
    up = compose(engine, path, "up", "-d")
    assert "orphan" not in up.stdout + up.stderr
    compose(engine, path, "stop")
    compose(engine, path, "start")
    compose(engine, path, "up", "-d", "--scale", "web=3")
    assert _volume_file(engine, "prestart_data", "once") == ["once service"]
    assert _volume_file(engine, "prestart_data", "each") == ["each"] * 3

    # A recreate runs them again: once for the service, once per replica (two again: the
    # third replica goes, with its init container).
    before = _volumes(engine)
    compose(engine, path, "up", "-d", "--force-recreate")
    # The recreated replicas took over their predecessors' anonymous volumes.
    assert _volumes(engine) - before == set()
    assert len(_volume_file(engine, "prestart_data", "once")) == 2
    assert len(_volume_file(engine, "prestart_data", "each")) == 5
    assert len(_names(engine, "prestart")) == 5
    # down removes the init containers with the service's.
    compose(engine, path, "down", "-v")
    assert _names(engine, "prestart") == []
    # Their anonymous volumes went too: no init container kept them in use.
    assert _volumes(engine) == set(), _volumes(engine)


FAILING_PRE_START = """\
    name: badpre
    services:
      web:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        pre_start:
          - command: ["sh", "-c", "echo migration failed; exit 2"]
      app:
        image: local/busybox:latest
        command: ["sleep", "1000"]
        depends_on: [web]
"""


def test_a_failing_pre_start_blocks_the_service_and_names_it(engine: Engine,
                                                             tmp_path: Path) -> None:
    path = write_project(tmp_path, FAILING_PRE_START)
    done = compose(engine, path, "up", "-d", check=False)
    assert done.returncode != 0
    said = done.stdout + done.stderr
    assert 'service "web": pre_start[0] exited with code 2' in said, said
    assert "migration failed" in said
    assert engine.inspect("badpre-web-1")["State"]["Status"] == "created"
    assert engine.inspect("badpre-app-1")["State"]["Status"] == "created"
    # It is tried again by the next up, and fails again: a failure is no record.
    again = compose(engine, path, "up", "-d", check=False)
    assert again.returncode != 0 and "pre_start[0]" in again.stdout + again.stderr
    compose(engine, path, "down")
    assert _names(engine, "badpre") == []
