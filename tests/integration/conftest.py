"""Fixtures for tests against real registries: the CNCF distribution registry on 127.0.0.1.

``registry`` is an open registry, ``auth_registry`` one behind htpasswd (user ``user``,
password ``pass``), ``token_registry`` one behind bearer tokens issued by a small token server
in a thread (JWTs signed RS256 with the ``openssl`` command). ``serve`` starts fake HTTP
servers whose answers a test scripts. Each registry is a ``/usr/bin/docker-registry serve``
process started here and stopped by its pid (SIGTERM, then SIGKILL after 5 s); every temporary
directory is removed, and the session ends by checking that no registry process is left.
"""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import yaml

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "user", "pass"
TOKEN_SERVICE, TOKEN_ISSUER = "composer-test-registry", "composer-test-issuer"

_started: set[int] = set()  # pids of the registries started in this session


def _alive(pid: int) -> bool:
    """Whether ``pid`` is (still) one of our registries; a reused pid running something else
    is not."""
    try:
        return "docker-registry" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(
            errors="replace")
    except OSError:
        return False


@dataclass
class RegistryServer:
    """A running registry process: ``url`` and ``domain`` to reach it, ``stop()`` to end it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.domain}"

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        pid = self.process.pid
        if self.process.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.process.wait(5)
        assert self.process.returncode is not None, f"registry {pid} did not exit"
        assert not _alive(pid), f"registry {pid} is still running"
        _started.discard(pid)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        response = conn.getresponse()
        response.read()
        return response.status in (200, 401)
    except OSError:
        return False
    finally:
        conn.close()


def start_registry(workdir: Path, auth: dict[str, Any] | None = None) -> RegistryServer:
    """Start a registry storing under ``workdir``; retried on another port if one is taken."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} is absent: install the Debian package docker-registry "
                    "(the CNCF distribution registry) to run the registry tests")
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = _free_port()
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(workdir / "storage")},
                        "delete": {"enabled": True}},
            "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
        }
        if auth is not None:
            config["auth"] = auth
        config_file = workdir / f"config-{port}.yml"
        config_file.write_text(yaml.safe_dump(config))
        log = workdir / f"registry-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([REGISTRY_BIN, "serve", str(config_file)],
                                       stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
        _started.add(process.pid)
        server = RegistryServer(process, port, log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port):
                return server
            time.sleep(0.02)
        server.stop()
        if "address already in use" not in server.logs():
            raise RuntimeError(f"the registry did not answer within 10 s:\n{server.logs()}")
    raise RuntimeError("no free port for the registry after 5 tries")


@pytest.fixture(scope="session", autouse=True)
def _no_registry_left() -> Iterator[None]:
    yield
    left = sorted(pid for pid in _started if _alive(pid))
    assert not left, f"registry processes left running: {left}"


def _mkdtemp() -> Iterator[Path]:
    # Not pytest's tmp_path: that one keeps the last runs' directories around.
    path = Path(tempfile.mkdtemp(prefix="composer-registry-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    yield from _mkdtemp()


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary directory for one test, removed afterwards."""
    yield from _mkdtemp()


@pytest.fixture(scope="module")
def registry(workdir: Path) -> Iterator[RegistryServer]:
    server = start_registry(workdir / "open")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_registry(workdir: Path) -> Iterator[RegistryServer]:
    if not os.access("/usr/bin/htpasswd", os.X_OK):
        pytest.skip("/usr/bin/htpasswd is absent (Debian package apache2-utils)")
    entry = subprocess.run(["/usr/bin/htpasswd", "-Bbn", USER, PASSWORD], check=True,
                           capture_output=True).stdout
    (workdir / "htpasswd").write_bytes(entry)
    server = start_registry(workdir / "basic", {
        "htpasswd": {"realm": "composer-test", "path": str(workdir / "htpasswd")}})
    yield server
    server.stop()


@dataclass
class Seen:
    """A request a FakeServer received."""

    method: str
    path: str
    headers: Message
    body: bytes
    peer: int  # the client's port: one per connection

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class FakeServer:
    """An HTTP/1.1 server on 127.0.0.1 answering with ``respond(seen)``; ``seen`` lists all.

    A reply with the header ``X-Test-Close`` is sent without it, and the connection is then
    closed without warning, as servers do with idle kept-alive connections."""

    respond: Callable[[Seen], Reply]
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as registries do

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, self.headers, self.rfile.read(length),
                            self.client_address[1])
                server.seen.append(seen)
                status, headers, body = server.respond(seen)
                headers = dict(headers)
                self.close_connection = headers.pop("X-Test-Close", None) is not None
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Seen], Reply]], FakeServer]]:
    """``serve(respond)`` starts a FakeServer, closed after the test."""
    servers: list[FakeServer] = []

    def start(respond: Callable[[Seen], Reply]) -> FakeServer:
        servers.append(FakeServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenRegistry:
    """A registry that wants bearer tokens, and the token server that issues them."""

    registry: RegistryServer
    tokens: FakeServer

    @property
    def domain(self) -> str:
        return self.registry.domain


@pytest.fixture(scope="module")
def token_registry(workdir: Path) -> Iterator[TokenRegistry]:
    """Tokens: USER/PASSWORD get whatever they ask for; anonymous clients get pull access to
    ``public/*`` only; wrong credentials get 401."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is absent: it signs the test's tokens")
    keys = workdir / "token"
    keys.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=composer-test-token-issuer", "-keyout", str(keys / "key.pem"),
                    "-out", str(keys / "cert.pem")], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(keys / "cert.pem"), "-outform", "DER"],
                         check=True, capture_output=True).stdout

    def sign(claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(keys / "key.pem")],
                                   input=signing_input.encode(), check=True,
                                   capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def respond(seen: Seen) -> Reply:
        authorization = seen.headers.get("Authorization") or ""
        user = None
        if authorization.startswith("Basic "):
            if base64.b64decode(authorization[6:]).decode() != f"{USER}:{PASSWORD}":
                return 401, {}, b'{"details": "wrong credentials"}'
            user = USER
        access = []
        for scope in seen.query.get("scope", []):
            kind, name, actions = scope.split(":")
            if user is None:
                actions = "pull" if name.startswith("public/") and "pull" in actions else ""
            if actions:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = sign({"iss": TOKEN_ISSUER, "sub": user or "", "aud": TOKEN_SERVICE,
                      "exp": now + 300, "nbf": now - 10, "iat": now,
                      "jti": secrets.token_hex(8), "access": access})
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"token": token, "expires_in": 300}).encode()

    tokens = FakeServer(respond)
    try:
        server = start_registry(workdir / "token", {"token": {
            "realm": f"http://{tokens.domain}/token", "service": TOKEN_SERVICE,
            "issuer": TOKEN_ISSUER, "rootcertbundle": str(keys / "cert.pem")}})
        try:
            yield TokenRegistry(server, tokens)
        finally:
            server.stop()
    finally:
        tokens.close()
