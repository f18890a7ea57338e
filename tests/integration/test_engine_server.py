"""The engine's process, API server and client, for real: engine processes on their own state
roots, talking over real Unix sockets.

The engines run this module's :func:`setup` (test routes, no containers): started either as a
child running ``daemon.run`` (the API tests), or detached through ``connect`` and ``composer
engine start`` with ``COMPOSER_ENGINE_SETUP`` naming it (the process tests). Every engine is
stopped by its pid, and each test ends by checking that none it started is left running.
Waits are bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composer.__about__ import __version__
from composer.engine import daemon
from composer.engine.client import (
    EngineClient,
    EngineError,
    EngineUnavailable,
    EngineVersionError,
    connect,
    send_fds,
)
from composer.engine.daemon import EngineContext, process_alive
from composer.engine.server import ApiError, Hijack, Request, Router, Stream
from composer.errors import ComposerError

ROOT = Path(__file__).resolve().parents[2]
SETUP = "tests.integration.test_engine_server:setup"
_RUN = ("import sys\nfrom composer.engine import daemon\n"
        "from tests.integration.test_engine_server import setup\n"
        "sys.exit(daemon.run(daemon.paths(sys.argv[1], sys.argv[2]), setup))\n")

_started: set[int] = set()  # every engine pid the tests saw start


def setup(ctx: EngineContext, router: Router) -> Callable[[], None]:
    """The test engine's routes (this runs in the engine process)."""
    if os.environ.get("COMPOSER_TEST_SETUP_FAILS"):
        raise RuntimeError("the test setup fails on purpose")
    if os.environ.get("COMPOSER_TEST_API"):
        from composer.engine import server

        server.API_VERSION = int(os.environ["COMPOSER_TEST_API"])
    events: dict[str, threading.Event] = {
        name: threading.Event()
        for name in ("go", "slow-entered", "release", "forever-closed", "idle-closed")}

    def event(request: Request) -> threading.Event:
        try:
            return events[request.path_args["event"]]
        except KeyError:
            raise ApiError(404, f"no event {request.path_args['event']!r}") from None

    @router.route("POST", "/v1/test/events/{event}")
    def set_event(request: Request) -> None:
        event(request).set()

    @router.route("GET", "/v1/test/events/{event}")
    def wait_event(request: Request) -> dict[str, bool]:
        return {"set": event(request).wait(30)}

    @router.route("POST", "/v1/test/echo")
    def echo(request: Request) -> dict[str, Any]:
        assert request.peer is not None
        return {"body": request.body, "params": request.params, "peer": request.peer.pid,
                "follow": request.flag("follow")}

    @router.route("GET", "/v1/test/items/{name}/tags/{tag}")
    def item(request: Request) -> dict[str, str]:
        return request.path_args

    @router.route("GET", "/v1/test/images/{name:path}")
    def image(request: Request) -> dict[str, str]:
        return request.path_args

    @router.route("GET", "/v1/test/fail/{kind}")
    def fail(request: Request) -> None:
        kind = request.path_args["kind"]
        if kind == "api":
            raise ApiError(409, "that name is taken")
        if kind == "composer":
            raise ComposerError("the manifest is wrong")
        raise RuntimeError("boom")

    @router.route("GET", "/v1/test/stream")
    def stream(request: Request) -> Stream:
        def items() -> Iterator[dict[str, Any]]:
            yield {"n": 1}
            # Only a client that got item 1 before the end can have sent "go".
            yield {"n": 2, "go": events["go"].wait(30)}
        return Stream(items())

    @router.route("GET", "/v1/test/stream-fails")
    def stream_fails(request: Request) -> Stream:
        def items() -> Iterator[dict[str, Any]]:
            yield {"n": 1}
            raise ComposerError("it broke midway")
        return Stream(items())

    @router.route("GET", "/v1/test/forever")
    def forever(request: Request) -> Stream:
        def items() -> Iterator[dict[str, Any]]:
            try:
                n = 0
                while True:  # never looks at request.cancelled: only a failed write ends it
                    n += 1
                    yield {"n": n}
                    time.sleep(0.01)
            finally:
                events["forever-closed"].set()
        return Stream(items())

    @router.route("GET", "/v1/test/idle")
    def idle(request: Request) -> Stream:
        def items() -> Iterator[dict[str, Any]]:
            try:
                yield {"ready": True}
                request.cancelled.wait(60)  # writes nothing: only the hangup watch ends it
            finally:
                events["idle-closed"].set()
        return Stream(items())

    @router.route("POST", "/v1/test/slow")
    def slow(request: Request) -> dict[str, bool]:
        events["slow-entered"].set()
        return {"released": events["release"].wait(30)}

    @router.route("POST", "/v1/test/pipe")
    def pipe(request: Request) -> Hijack:
        text = request.body["text"]

        def talk(sock: socket.socket) -> None:
            [fd] = request.receive_fds(1)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
            sock.sendall(b"written")
        return Hijack(talk)

    def cleanup() -> None:
        (ctx.root / "cleanup-ran").write_text(str(os.getpid()))
    return cleanup


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineContext]:
    monkeypatch.setenv("COMPOSER_ENGINE_SETUP", SETUP)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    for name in ("COMPOSER_ROOT", "COMPOSER_RUN_ROOT", "COMPOSER_TEST_API",
                 "COMPOSER_TEST_SETUP_FAILS"):
        monkeypatch.delenv(name, raising=False)
    context = daemon.paths(tmp_path / "root", tmp_path / "run")
    yield context
    daemon.stop(context, timeout=5)  # what a failed test left behind
    assert daemon.status(context) is None
    left = sorted(pid for pid in _started if process_alive(pid))
    assert not left, f"engine processes left running: {left}"


def _spawn(ctx: EngineContext, **env: str) -> subprocess.Popen[bytes]:
    ctx.root.mkdir(parents=True, exist_ok=True)
    with ctx.log_path.open("ab") as log:
        process = subprocess.Popen([sys.executable, "-c", _RUN, str(ctx.root), str(ctx.run_root)],
                                   cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env={**os.environ, **env})
    _started.add(process.pid)
    return process


def _answering(ctx: EngineContext, process: subprocess.Popen[bytes]) -> EngineClient:
    client = EngineClient(ctx.socket_path, log_path=ctx.log_path)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the engine exited ({process.returncode}):\n{ctx.log_path.read_text()}")
        try:
            client.version()
        except EngineUnavailable:
            return False
        return True
    _wait_for(up, "the engine to answer")
    return client


def _terminate(ctx: EngineContext, process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(20)
            pytest.fail("the engine ignored SIGTERM")


@dataclass
class Engine:
    ctx: EngineContext
    process: subprocess.Popen[bytes]
    client: EngineClient


@pytest.fixture
def engine(ctx: EngineContext) -> Iterator[Engine]:
    process = _spawn(ctx)
    running = Engine(ctx, process, _answering(ctx, process))
    yield running
    _terminate(ctx, process)
    # A graceful stop: the setup's cleanup ran, and the socket and pid file are gone.
    assert process.returncode == 0, ctx.log_path.read_text()
    assert (ctx.root / "cleanup-ran").read_text() == str(process.pid)
    assert not ctx.socket_path.exists() and not ctx.pid_path.exists()


def test_version_and_json_requests(engine: Engine) -> None:
    client = engine.client
    assert client.version() == {"api": 1, "version": __version__, "pid": engine.process.pid,
                                "started": pytest.approx(client.version()["started"])}
    body = {"name": "café", "list": [1, 2.5, None, True], "nested": {"a": {}}}
    answer = client.request("POST", "/v1/test/echo", body,
                            params={"all": True, "label": ["a=1", "b=2"], "n": 3, "skip": None,
                                    "follow": "1"})
    assert answer == {"body": body, "params": {"all": "true", "label": ["a=1", "b=2"], "n": "3",
                                               "follow": "1"},
                      "peer": os.getpid(), "follow": True}
    assert client.request("POST", "/v1/test/echo")["body"] is None
    assert client.request("GET", "/v1/test/items/a%2Fb/tags/v1") == {"name": "a/b", "tag": "v1"}
    assert client.request("GET", "/v1/test/images/docker.io/library/busybox") == {
        "name": "docker.io/library/busybox"}
    assert daemon.read_pid(engine.ctx) == engine.process.pid


def test_errors_come_back_with_status_and_message(engine: Engine) -> None:
    client = engine.client

    def error(method: str, path: str) -> EngineError:
        with pytest.raises(EngineError) as caught:
            client.request(method, path)
        return caught.value

    missing = error("GET", "/v1/nothing/here")
    assert (missing.status, missing.message) == (404, "no such API route: GET /v1/nothing/here")
    assert error("GET", "/version").status == 404
    wrong = error("GET", "/v1/test/echo")
    assert wrong.status == 405 and "allowed: POST" in wrong.message
    assert error("POST", "/v1/version").status == 405
    taken = error("GET", "/v1/test/fail/api")
    assert (taken.status, taken.message) == (409, "that name is taken")
    wrong_manifest = error("GET", "/v1/test/fail/composer")
    assert (wrong_manifest.status, wrong_manifest.message, wrong_manifest.kind) == (
        400, "the manifest is wrong", "ComposerError")
    crash = error("GET", "/v1/test/fail/crash")
    assert crash.status == 500
    assert "RuntimeError: boom" in crash.message and str(engine.ctx.log_path) in crash.message
    log = engine.ctx.log_path.read_text()
    assert "Traceback" in log and "RuntimeError: boom" in log
    with pytest.raises(EngineError, match="'follow' must be true or false"):
        client.request("POST", "/v1/test/echo", params={"follow": "maybe"})


def test_a_body_that_is_not_json_is_refused(engine: Engine) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(engine.ctx.socket_path))
        sock.sendall(b"POST /v1/test/echo HTTP/1.1\r\nHost: engine\r\nConnection: close\r\n"
                     b"Content-Length: 5\r\n\r\n{nope")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["message"].startswith("the request body is not JSON")


def test_stream_items_arrive_as_they_are_produced(engine: Engine) -> None:
    with engine.client.stream("GET", "/v1/test/stream") as items:
        assert next(items) == {"n": 1}
        engine.client.request("POST", "/v1/test/events/go")
        assert list(items) == [{"n": 2, "go": True}]


def test_a_failure_in_the_middle_of_a_stream_is_raised(engine: Engine) -> None:
    items = engine.client.stream("GET", "/v1/test/stream-fails")
    assert next(items) == {"n": 1}
    with pytest.raises(EngineError, match="it broke midway") as caught:
        next(items)
    assert caught.value.status == 400
    with pytest.raises(EngineError) as missing:
        engine.client.stream("GET", "/v1/test/no-such-stream")
    assert missing.value.status == 404
    # Asked for whole, a stream is the list of its items (or its error).
    engine.client.request("POST", "/v1/test/events/go")
    assert engine.client.request("GET", "/v1/test/stream") == [{"n": 1}, {"n": 2, "go": True}]
    with pytest.raises(EngineError, match="it broke midway"):
        engine.client.request("GET", "/v1/test/stream-fails")


def test_a_stream_ends_when_its_client_goes_away(engine: Engine) -> None:
    client = engine.client
    items = client.stream("GET", "/v1/test/forever")
    assert next(items) == {"n": 1}
    items.close()
    assert client.request("GET", "/v1/test/events/forever-closed") == {"set": True}
    # One that waits without writing ends too: the server watches for the hangup.
    with client.stream("GET", "/v1/test/idle") as idle:
        assert next(idle) == {"ready": True}
    assert client.request("GET", "/v1/test/events/idle-closed") == {"set": True}


def test_hijack_passes_a_file_descriptor(engine: Engine) -> None:
    read_end, write_end = os.pipe()
    try:
        with engine.client.hijack("POST", "/v1/test/pipe", {"text": "from the engine"}) as sock:
            send_fds(sock, [write_end])
            os.close(write_end)
            write_end = -1
            assert sock.recv(16) == b"written"
        received = b""
        while chunk := os.read(read_end, 4096):  # EOF: the engine closed its copy too
            received += chunk
        assert received == b"from the engine"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    with pytest.raises(EngineError, match="upgrades the connection") as plain:
        engine.client.request("POST", "/v1/test/pipe", {"text": "x"})
    assert plain.value.status == 400


def test_a_slow_request_does_not_hold_up_others(engine: Engine) -> None:
    client = engine.client
    answers: list[Any] = []
    slow = threading.Thread(target=lambda: answers.append(
        client.request("POST", "/v1/test/slow")))
    slow.start()
    try:
        assert client.request("GET", "/v1/test/events/slow-entered") == {"set": True}
        assert client.version()["pid"] == engine.process.pid
        assert answers == []
    finally:
        client.request("POST", "/v1/test/events/release")
        slow.join(30)
    assert answers == [{"released": True}]


def test_a_request_that_outlasts_the_client_timeout(engine: Engine) -> None:
    impatient = EngineClient(engine.ctx.socket_path, timeout=0.2)
    try:
        with pytest.raises(EngineUnavailable, match=r"did not answer within 0\.2 s"):
            impatient.request("POST", "/v1/test/slow")  # released only below
    finally:
        engine.client.request("POST", "/v1/test/events/release")


def test_the_socket_is_root_only(engine: Engine) -> None:
    assert engine.ctx.socket_path.stat().st_mode & 0o7777 == 0o600
    assert not [p for p in engine.ctx.run_root.iterdir() if p.name.startswith(".engine-")]


def test_sigterm_ends_open_streams_then_runs_the_cleanup(ctx: EngineContext) -> None:
    process = _spawn(ctx)
    client = _answering(ctx, process)
    items = client.stream("GET", "/v1/test/idle")
    assert next(items) == {"ready": True}
    os.kill(process.pid, signal.SIGTERM)
    assert list(items) == []  # a clean end of the stream, not a cut connection
    assert process.wait(20) == 0
    assert (ctx.root / "cleanup-ran").read_text() == str(process.pid)
    assert not ctx.socket_path.exists() and not ctx.pid_path.exists()
    with pytest.raises(EngineUnavailable, match="no engine answers"):
        client.version()


def test_a_second_engine_on_the_same_root_is_refused(engine: Engine) -> None:
    second = _spawn(engine.ctx)
    assert second.wait(30) == 1
    log = engine.ctx.log_path.read_text()
    assert f"an engine (pid {engine.process.pid}) already runs for {engine.ctx.root}" in log
    assert f"stop it with 'composer --root {engine.ctx.root} engine stop'" in log
    assert engine.client.version()["pid"] == engine.process.pid


def test_a_socket_path_longer_than_sun_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    long_ctx = daemon.paths(deep / "root", deep / "run")
    assert len(str(long_ctx.socket_path)) > 108
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    process = _spawn(long_ctx)
    try:
        client = _answering(long_ctx, process)
        assert client.request("GET", "/v1/test/items/x/tags/y") == {"name": "x", "tag": "y"}
        assert daemon.status(long_ctx)["pid"] == process.pid  # type: ignore[index]
    finally:
        _terminate(long_ctx, process)
    assert process.returncode == 0


def test_connect_starts_a_detached_engine_on_demand(ctx: EngineContext) -> None:
    assert daemon.status(ctx) is None
    client = connect(ctx.root, ctx.run_root)
    info = daemon.status(ctx)
    assert info is not None
    pid = info["pid"]
    _started.add(pid)
    assert (info["answering"], info["api"], info["version"]) == (True, 1, __version__)
    assert client.version()["pid"] == pid == daemon.read_pid(ctx)
    # Detached: a session of its own, not our child, no terminal, identifiable.
    assert os.getsid(pid) == pid
    assert int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1]) != \
        os.getpid()
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "composer-engine"
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    assert argv[1:7] == ["-m", "composer", "--root", str(ctx.root), "engine", "run"]
    assert ctx.socket_path.stat().st_mode & 0o777 == 0o600
    # A second connect finds the same engine.
    assert connect(ctx.root, ctx.run_root).version()["pid"] == pid
    assert daemon.start(ctx) == pid
    assert daemon.stop(ctx) is True
    assert not process_alive(pid)
    assert daemon.status(ctx) is None and not ctx.socket_path.exists()
    assert (ctx.root / "cleanup-ran").read_text() == str(pid)
    assert daemon.stop(ctx) is False
    with pytest.raises(EngineUnavailable):
        connect(ctx.root, ctx.run_root, start=False)


def test_after_kill_9_connect_starts_a_new_engine(ctx: EngineContext) -> None:
    first = connect(ctx.root, ctx.run_root).version()["pid"]
    _started.add(first)
    os.kill(first, signal.SIGKILL)
    _wait_for(lambda: daemon.holder(ctx) is None, "the killed engine's lock to go")
    assert ctx.socket_path.exists() and daemon.read_pid(ctx) == first  # stale, left behind
    assert daemon.status(ctx) is None
    second = connect(ctx.root, ctx.run_root).version()["pid"]
    _started.add(second)
    assert second != first and daemon.read_pid(ctx) == second
    assert daemon.stop(ctx)


def test_an_engine_that_fails_to_start_names_its_log(ctx: EngineContext,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSER_TEST_SETUP_FAILS", "1")
    with pytest.raises(EngineUnavailable) as caught:
        connect(ctx.root, ctx.run_root)
    message = str(caught.value)
    assert "exited during start-up" in message and str(ctx.log_path) in message
    assert "the test setup fails on purpose" in message
    assert daemon.status(ctx) is None and not ctx.socket_path.exists()


def test_an_engine_of_another_api_version_is_refused(ctx: EngineContext) -> None:
    process = _spawn(ctx, COMPOSER_TEST_API="99")
    try:
        _answering(ctx, process)
        with pytest.raises(EngineVersionError) as caught:
            connect(ctx.root, ctx.run_root, start=False)
        assert f"'composer --root {ctx.root} engine stop'" in str(caught.value)
        assert "speaks API 99" in str(caught.value)
        assert daemon.stop(ctx) is True
        assert process.wait(20) == 0
    finally:
        _terminate(ctx, process)


def test_the_pid_file_alone_never_gets_a_process_killed(ctx: EngineContext) -> None:
    ctx.run_root.mkdir(parents=True)
    ctx.pid_path.write_text(f"{os.getpid()}\n")  # a live process, but no engine lock
    assert daemon.status(ctx) is None
    assert daemon.stop(ctx) is False


def _cli(ctx: EngineContext, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "composer", "--root", str(ctx.root), "engine", *args],
        env={**os.environ, "COMPOSER_RUN_ROOT": str(ctx.run_root)}, cwd=ROOT,
        capture_output=True, text=True, timeout=60, check=False)


def test_the_engine_commands(ctx: EngineContext) -> None:
    stopped = _cli(ctx, "status")
    assert (stopped.returncode, stopped.stdout) == (1, f"not running (socket {ctx.socket_path})\n")
    started = _cli(ctx, "start")
    assert started.returncode == 0, started.stderr
    pid = int(started.stdout)
    _started.add(pid)
    again = _cli(ctx, "start")
    assert (again.returncode, int(again.stdout)) == (0, pid)
    assert "already runs" in again.stderr
    shown = _cli(ctx, "status")
    assert shown.returncode == 0
    assert f"running   pid {pid}\n" in shown.stdout
    assert f"socket    {ctx.socket_path}\n" in shown.stdout
    assert f"api       1 (composer {__version__})\n" in shown.stdout
    assert "uptime" in shown.stdout
    as_json = json.loads(_cli(ctx, "status", "--format", "json").stdout)
    assert (as_json["pid"], as_json["api"], as_json["socket"]) == (pid, 1, str(ctx.socket_path))
    done = _cli(ctx, "stop")
    assert (done.returncode, done.stdout) == (0, f"stopped the engine (pid {pid})\n")
    assert not process_alive(pid)
    assert _cli(ctx, "status").returncode == 1
    assert _cli(ctx, "stop").stdout == "the engine is not running\n"
