"""Secrets and configs (``ContainerSpec.files``): written into a tmpfs of the container's own at
each start, with the owner and mode asked (never the host file's), bound read-only at their
targets; nothing left mounted once the run ends or the container goes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from composer.runtime.spec import ContainerSpec, File
from tests.e2e.conftest import IMAGE, Engine

SHOW = ("for f in /run/secrets/token /run/secrets/from-host /app/conf.ini; do "
        "stat -c '%n %u %g %a' $f; cat $f; done; touch /run/secrets/token 2>&1 | "
        "grep -c Read-only; grep -c ' /run/secrets/token .*ro,' /proc/self/mountinfo")


def _client(engine: Engine) -> Any:
    from composer.engine.client import EngineClient
    from composer.engine.daemon import paths

    engine.cli("engine", "start", check=True)  # with the test's environment
    ctx = paths(engine.root, engine.root / "run")
    return EngineClient(ctx.socket_path, timeout=60)


def _mounted_under(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


def test_files_have_the_owner_and_mode_asked_and_nothing_stays_mounted(
        engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "host-secret"
    source.write_text("from the host\n")
    os.chown(source, 4321, 4321)
    os.chmod(source, 0o600)
    spec = ContainerSpec(image=IMAGE, name="app", command=("sh", "-c", SHOW), files=(
        File("/run/secrets/token", content="s3cret\n", uid="1000", gid="1001", mode=0o440),
        File("/run/secrets/from-host", source=str(source)),
        File("/app/conf.ini", content="[a]\nb = 1\n", mode=0o644)))
    client = _client(engine)
    made = client.request("POST", "/v1/containers", {"spec": spec.to_json(), "pull": "never"})
    engine.ids.add(made["Id"])
    files = engine.root / "containers" / made["Id"] / "files"
    for _ in range(2):  # written again at each start
        client.request("POST", f"/v1/containers/{made['Id']}/start")
        assert engine.cli("container", "wait", "app").stdout.strip() == "0"
        # `stop` waits for the container's lock, which the engine holds while it handles the
        # exit (the unmount included): no race with the check below.
        engine.cli("container", "stop", "app", check=True)
        # The run ended: its files' tmpfs is unmounted.
        assert _mounted_under(engine.root / "containers") == []
        assert not files.exists()
    lines = engine.cli("container", "logs", "app").stdout.splitlines()
    expected = ["/run/secrets/token 1000 1001 440", "s3cret",
                "/run/secrets/from-host 0 0 444", "from the host",
                "/app/conf.ini 0 0 644", "[a]", "b = 1", "1", "1"]
    assert lines == expected * 2
    # The host's file is as it was: its owner and mode did not travel, nor change.
    info = os.stat(source)
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (4321, 4321, 0o600)
    engine.cli("container", "rm", "app", check=True)


def test_files_of_a_running_container_are_on_its_tmpfs_until_removed(engine: Engine) -> None:
    spec = ContainerSpec(image=IMAGE, name="svc", command=("sleep", "1000"),
                         files=(File("/run/secrets/a", content="a"),))
    client = _client(engine)
    made = client.request("POST", "/v1/containers", {"spec": spec.to_json(), "pull": "never",
                                                     "start": True})
    engine.ids.add(made["Id"])
    files = engine.root / "containers" / made["Id"] / "files"
    assert _mounted_under(files) == [str(files)]
    fstype = [line.split(" - ")[1].split()[0] for line in
              Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4] == str(files)]
    assert fstype == ["tmpfs"]
    assert engine.cli("container", "exec", "svc", "cat", "/run/secrets/a").stdout == "a"
    engine.cli("container", "rm", "-f", "svc", check=True)
    assert _mounted_under(engine.root / "containers") == []


def test_bad_files_are_refused_with_the_reason(engine: Engine, tmp_path: Path) -> None:
    from composer.engine.client import EngineError

    client = _client(engine)
    for file, message in (
            (File("/run/secrets/x", content="x", uid="app"), "uid 'app' must be a number"),
            (File("/run/secrets/x", source=str(tmp_path / "absent")),
             "cannot read its source"),
            (File("relative", content="x"), "must be an absolute path")):
        spec = ContainerSpec(image=IMAGE, command=("true",), files=(file,))
        made = client.request("POST", "/v1/containers", {"spec": spec.to_json(),
                                                         "pull": "never"})
        engine.ids.add(made["Id"])
        try:
            client.request("POST", f"/v1/containers/{made['Id']}/start")
        except EngineError as e:
            assert message in e.message
        else:
            raise AssertionError(f"{file} was accepted")
        assert _mounted_under(engine.root / "containers" / made["Id"] / "files") == []
        engine.cli("container", "rm", made["Id"], check=True)
