"""The CI contract (issue 10) end to end: locked image digests, exit codes, parallel copies
of one project, teardown after a crash. Real containers, a real ``docker-registry`` on
loopback, the CLI as a CI job runs it."""

from __future__ import annotations

import json
import textwrap
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
