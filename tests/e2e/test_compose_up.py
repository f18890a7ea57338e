"""``composer up`` / ``down`` / ``run`` end to end: compose projects as real containers.

Each test writes a small compose file over the busybox test image, drives the CLI as a user
does, and reads the result back from the engine (container ids, start times, health logs);
the ``engine`` fixture checks afterwards that nothing leaked.
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Engine, compose, write_project

IMAGE = "local/busybox:latest"


def _containers(engine: Engine, project: str) -> dict[str, dict[str, Any]]:
    listed = engine.cli("container", "ls", "-a", "--format", "json", check=True).stdout
    return {str(item["Name"]): engine.inspect(str(item["Name"]))
            for item in json.loads(listed)
            if item["Labels"].get("com.docker.compose.project") == project}


def _ids(engine: Engine, project: str) -> dict[str, str]:
    return {name: c["Id"] for name, c in _containers(engine, project).items()}


def _started(container: dict[str, Any]) -> float:
    return float(container["State"]["StartedAtUnix"])


GATED = """\
    name: gated
    services:
      store:
        image: local/busybox:latest
        # Healthy only once the file exists, a moment after the start.
        command: ["sh", "-c", "sleep 1; mkdir -p /www; echo stored > /www/index.html; \
    exec httpd -f -p 80 -h /www"]
        stop_signal: SIGKILL  # httpd as pid 1 ignores SIGTERM: no 10 s stop in tests
        healthcheck:
          test: ["CMD", "test", "-f", "/www/index.html"]
          interval: 0.3s
          timeout: 2s
          retries: 20
      api:
        image: local/busybox:latest
        command: ["sh", "-c", "mkdir -p /www; echo api > /www/index.html; \
    exec httpd -f -p 80 -h /www"]
        stop_signal: SIGKILL  # httpd as pid 1 ignores SIGTERM: no 10 s stop in tests
        environment:
          MODE: one
        depends_on:
          store:
            condition: service_healthy
      web:
        image: local/busybox:latest
        command: ["sh", "-c", "mkdir -p /www; echo web > /www/index.html; \
    exec httpd -f -p 80 -h /www"]
        stop_signal: SIGKILL  # httpd as pid 1 ignores SIGTERM: no 10 s stop in tests
        ports:
          - "127.0.0.1::80"
        depends_on: [api]
    """


def test_up_gates_on_health_resolves_names_publishes_and_is_idempotent(
        engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, GATED)
    up = compose(engine, path, "up", "-d")
    assert "Container gated-web-1  Started" in up.stdout, up.stdout
    found = _containers(engine, "gated")
    assert sorted(found) == ["gated-api-1", "gated-store-1", "gated-web-1"]
    store, api, web = found["gated-store-1"], found["gated-api-1"], found["gated-web-1"]
    # Gating by the containers' own clocks: store cannot be healthy before its file exists,
    # a second after its start (the health log keeps only the last 5 checks, as Docker's).
    assert store["State"]["Health"]["Status"] == "healthy"
    assert _started(api) >= _started(store) + 1.0, (api["State"], store["State"])
    assert _started(web) >= _started(api)
    # Names: web reaches store and api by service name on the project network.
    for target, text in (("store", "stored"), ("api", "api")):
        got = engine.cli("container", "exec", "gated-web-1", "wget", "-qO-",
                         f"http://{target}/", check=True)
        assert got.stdout.strip() == text
    # The published port answers on the host.
    port = int(web["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
    assert _http_get("127.0.0.1", port).strip().endswith("web")
    # Compose's labels, as Docker Compose writes them.
    labels = web["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == "gated"
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    # A second up changes nothing: same containers, nothing done.
    before = _ids(engine, "gated")
    again = compose(engine, path, "up", "-d")
    assert "Created" not in again.stdout and "Started" not in again.stdout, again.stdout
    assert _ids(engine, "gated") == before
    plan = compose(engine, path, "plan")
    assert plan.stdout.strip() == "nothing to do"
    # One service's environment changed: only it is recreated, and the reason is printed.
    path.write_text(path.read_text().replace("MODE: one", "MODE: two"))
    changed = compose(engine, path, "up", "-d")
    assert "Recreate api: environment.MODE changed" in changed.stdout, changed.stdout
    after = _ids(engine, "gated")
    assert after["gated-store-1"] == before["gated-store-1"]
    assert after["gated-web-1"] == before["gated-web-1"]
    assert after["gated-api-1"] != before["gated-api-1"]
    assert engine.inspect("gated-api-1")["State"]["Running"]
    down = compose(engine, path, "down")
    assert "Network gated_default  Removed" in down.stdout, down.stdout
    assert _containers(engine, "gated") == {}


def _http_get(host: str, port: int) -> str:
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return data.decode(errors="replace")


SCALED = """\
    name: scaled
    services:
      web:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
      extra:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
    """


def test_scale_up_and_down_and_orphans(engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, SCALED)
    compose(engine, path, "up", "-d")
    first = _ids(engine, "scaled")
    compose(engine, path, "up", "-d", "--scale", "web=3")
    three = _ids(engine, "scaled")
    assert sorted(three) == ["scaled-extra-1", "scaled-web-1", "scaled-web-2", "scaled-web-3"]
    assert three["scaled-web-1"] == first["scaled-web-1"]
    # All three answer to the service's name.
    looked = engine.cli("container", "exec", "scaled-extra-1", "nslookup", "web", check=True)
    addresses = {line.split()[-1] for line in looked.stdout.splitlines()
                 if line.startswith("Address") and "#" not in line and ":53" not in line}
    assert len(addresses) >= 3, looked.stdout
    compose(engine, path, "up", "-d", "--scale", "web=1")
    assert sorted(_ids(engine, "scaled")) == ["scaled-extra-1", "scaled-web-1"]
    assert _ids(engine, "scaled")["scaled-web-1"] == first["scaled-web-1"]
    # down SERVICE takes only that service; the network stays for the rest.
    compose(engine, path, "down", "extra")
    assert sorted(_ids(engine, "scaled")) == ["scaled-web-1"]
    assert "scaled_default" in engine.cli("network", "ls", check=True).stdout
    compose(engine, path, "up", "-d")
    # extra leaves the file: it is an orphan, named, and removed only when asked.
    path.write_text(SCALED_WITHOUT_EXTRA)
    kept = compose(engine, path, "up", "-d")
    assert "orphan" in kept.stderr and "scaled-extra-1" in kept.stderr, kept.stderr
    assert "scaled-extra-1" in _ids(engine, "scaled")
    compose(engine, path, "up", "-d", "--remove-orphans")
    assert sorted(_ids(engine, "scaled")) == ["scaled-web-1"]
    compose(engine, path, "down")


SCALED_WITHOUT_EXTRA = textwrap.dedent(SCALED).split("  extra:")[0]


VOLUMED = """\
    name: volumed
    services:
      app:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
        volumes:
          - data:/data
    volumes:
      data: {}
    """


def test_volume_data_survives_down_and_down_v_removes_it(engine: Engine,
                                                         tmp_path: Path) -> None:
    path = write_project(tmp_path, VOLUMED)
    compose(engine, path, "up", "-d")
    engine.cli("container", "exec", "volumed-app-1", "sh", "-c", "echo kept > /data/file",
               check=True)
    compose(engine, path, "down")
    assert "volumed_data" in engine.cli("volume", "ls", "-q", check=True).stdout
    compose(engine, path, "up", "-d")
    got = engine.cli("container", "exec", "volumed-app-1", "cat", "/data/file", check=True)
    assert got.stdout.strip() == "kept"
    down = compose(engine, path, "down", "-v")
    assert "Volume volumed_data  Removed" in down.stdout, down.stdout
    assert "volumed_data" not in engine.cli("volume", "ls", "-q", check=True).stdout


def test_a_recreate_keeps_anonymous_volumes_and_renew_anon_volumes_renews_them(
        engine: Engine, tmp_path: Path) -> None:
    text = """\
        name: anon
        services:
          app:
            image: local/busybox:latest
            command: ["sleep", "600"]
            stop_signal: SIGKILL
            environment: {ROUND: "1"}
            volumes: ["/cache"]
        """
    path = write_project(tmp_path, text)
    compose(engine, path, "up", "-d")
    engine.cli("container", "exec", "anon-app-1", "sh", "-c", "echo kept > /cache/f",
               check=True)
    before = set(engine.cli("volume", "ls", "-q", check=True).stdout.split())
    path.write_text(textwrap.dedent(text).replace('"1"', '"2"'))
    assert "Recreate app" in compose(engine, path, "up", "-d").stdout
    got = engine.cli("container", "exec", "anon-app-1", "cat", "/cache/f", check=True)
    assert got.stdout.strip() == "kept"
    assert set(engine.cli("volume", "ls", "-q", check=True).stdout.split()) == before
    # -V: the recreated container starts with a new, empty anonymous volume; the old one goes.
    compose(engine, path, "up", "-d", "--force-recreate", "-V")
    renewed = engine.cli("container", "exec", "anon-app-1", "ls", "/cache", check=True)
    assert renewed.stdout.strip() == ""
    after = set(engine.cli("volume", "ls", "-q", check=True).stdout.split())
    assert len(after) == len(before) and after != before
    compose(engine, path, "down", "-v")
    assert engine.cli("volume", "ls", "-q", check=True).stdout.split() == []


JOBS = """\
    name: jobs
    services:
      server:
        image: local/busybox:latest
        command: ["sleep", "600"]
        stop_signal: SIGKILL
      tests:
        image: local/busybox:latest
        command: ["sh", "-c", "echo testing; exit 4"]
        depends_on: [server]
    """


def test_run_rm_and_exit_code_from(engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, JOBS)
    ran = compose(engine, path, "run", "--rm", "tests", "sh", "-c", "echo one-off; exit 3",
                   check=False)
    assert ran.returncode == 3, (ran.stdout, ran.stderr)
    assert "one-off" in ran.stdout
    left = _containers(engine, "jobs")
    assert not [n for n in left if "-run-" in n], left  # --rm removed it
    assert "jobs-server-1" in left  # its dependency was brought up
    up = compose(engine, path, "up", "--exit-code-from", "tests", check=False)
    assert up.returncode == 4, (up.stdout, up.stderr)
    assert "testing" in up.stdout and "jobs-tests-1" in up.stdout
    assert "exited with code 4" in up.stdout
    # --abort-on-container-exit stopped the server too.
    assert not engine.inspect("jobs-server-1")["State"]["Running"]
    compose(engine, path, "down")


def test_foreground_up_prefixes_logs_and_returns_when_all_exit(engine: Engine,
                                                               tmp_path: Path) -> None:
    path = write_project(tmp_path, """\
        name: fg
        services:
          first:
            image: local/busybox:latest
            command: ["echo", "hello from first"]
          second-longer:
            image: local/busybox:latest
            command: ["echo", "hello from second"]
        """)
    up = compose(engine, path, "up")
    assert up.returncode == 0
    lines = up.stdout.splitlines()
    # Compose's prefix: the name padded to one more than the longest name.
    assert "fg-first-1          | hello from first" in lines, up.stdout
    assert "fg-second-longer-1  | hello from second" in lines, up.stdout
    assert "fg-first-1 exited with code 0" in lines, up.stdout
    compose(engine, path, "down")


def test_failures_name_the_service_and_the_next_up_fixes_them(engine: Engine,
                                                              tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    path = write_project(tmp_path, f"""\
        name: broken
        services:
          missing:
            image: 127.0.0.1:9/no/such:image
          sick:
            image: local/busybox:latest
            command: ["sleep", "600"]
            stop_signal: SIGKILL
            healthcheck:
              test: ["CMD", "false"]
              interval: 0.2s
              retries: 2
          needs-sick:
            image: local/busybox:latest
            command: ["sleep", "600"]
            depends_on:
              sick:
                condition: service_healthy
          crashing:
            image: local/busybox:latest
            command: ["sh", "-c", "exit 7"]
          needs-crashing:
            image: local/busybox:latest
            command: ["sleep", "600"]
            depends_on:
              crashing:
                condition: service_completed_successfully
          porty:
            image: local/busybox:latest
            command: ["sleep", "600"]
            stop_signal: SIGKILL
            ports: ["127.0.0.1:{port}:80"]
        """)
    up = compose(engine, path, "up", "-d", check=False)
    taken.close()
    assert up.returncode == 1, up.stdout
    err = up.stderr
    assert "image 127.0.0.1:9/no/such:image" in err, err
    assert "broken-sick-1 is unhealthy" in err, err
    assert "broken-crashing-1 exited with code 7" in err, err
    assert "broken-porty-1" in err and str(port) in err, err
    # The dependents of the failed ones were not started; the rest of the project runs.
    assert "broken-needs-sick-1" not in _containers(engine, "broken") or \
        not engine.inspect("broken-needs-sick-1")["State"]["Running"]
    # Fixed: the next up converges from what the failed one left.
    path.write_text(path.read_text()
                    .replace("image: 127.0.0.1:9/no/such:image",
                             "image: local/busybox:latest\n    command: [sleep, '600']")
                    .replace('test: ["CMD", "false"]', 'test: ["CMD", "true"]')
                    .replace('"exit 7"', '"exit 0"'))
    fixed = compose(engine, path, "up", "-d", check=False)
    assert fixed.returncode == 0, (fixed.stdout, fixed.stderr)
    running = {n: c["State"]["Running"] for n, c in _containers(engine, "broken").items()}
    assert running["broken-needs-sick-1"] and running["broken-needs-crashing-1"], running
    assert running["broken-porty-1"], running
    compose(engine, path, "down")


BUILT = """\
    name: built
    services:
      app:
        build: ./app
        command: ["sh", "-c", "cat /msg; exec sleep 3600"]
        stop_signal: SIGKILL
"""


def test_up_builds_rebuilds_on_build_and_recreates_only_when_the_image_changed(
        engine: Engine, tmp_path: Path) -> None:
    path = write_project(tmp_path, BUILT)
    dockerfile = path.parent / "app" / "Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM local/busybox:latest\nRUN echo one > /msg\n")
    first = compose(engine, path, "up", "-d")
    assert "Image built-app  Built" in first.stdout
    original = _ids(engine, "built")
    # A changed Dockerfile alone changes nothing (as Compose): the image exists.
    dockerfile.write_text("FROM local/busybox:latest\nRUN echo two > /msg\n")
    assert compose(engine, path, "up", "-d").stdout.strip() == \
        "✔ Container built-app-1  Running"
    assert _ids(engine, "built") == original
    # --build rebuilds; the new image recreates the container and says why.
    rebuilt = compose(engine, path, "up", "-d", "--build")
    assert "Recreate app: image changed" in rebuilt.stdout
    assert _ids(engine, "built") != original
    assert "two" in compose(engine, path, "logs", "app").stdout
    # A rebuild from the cache gives the same image: nothing is recreated.
    again = _ids(engine, "built")
    cached = compose(engine, path, "up", "-d", "--build")
    assert "CACHED" in cached.stdout and "Recreate" not in cached.stdout
    assert _ids(engine, "built") == again
    # pull_policy: build builds on every up, without --build.
    path.write_text(textwrap.dedent(BUILT).replace("build: ./app",
                                                   "build: ./app\n    pull_policy: build"))
    dockerfile.write_text("FROM local/busybox:latest\nRUN echo three > /msg\n")
    policy = compose(engine, path, "up", "-d")
    assert "Recreate app: image changed" in policy.stdout
    assert "three" in compose(engine, path, "logs", "app").stdout
    # A failing build fails up, naming the service, the line and the exit code.
    dockerfile.write_text("FROM local/busybox:latest\nRUN exit 7\n")
    failed = compose(engine, path, "up", "-d", check=False)
    assert failed.returncode != 0
    assert "service app" in failed.stderr and "Dockerfile:2" in failed.stderr
    assert "code 7" in failed.stderr
    # --no-build never builds: a missing image is named with what to do.
    path.write_text(textwrap.dedent(BUILT))
    compose(engine, path, "down")
    engine.cli("image", "rm", "built-app", check=True)
    missing = compose(engine, path, "up", "-d", "--no-build", check=False)
    assert missing.returncode != 0
    assert "--no-build" in missing.stderr and "composer build app" in missing.stderr
    compose(engine, path, "down")


def test_create_makes_the_containers_and_start_starts_them(engine: Engine,
                                                           tmp_path: Path) -> None:
    path = write_project(tmp_path, VOLUMED.replace("volumed", "created"))
    compose(engine, path, "create")
    assert engine.inspect("created-app-1")["State"]["Status"] == "created"
    compose(engine, path, "start")
    assert engine.inspect("created-app-1")["State"]["Running"]
    compose(engine, path, "down", "-v")
