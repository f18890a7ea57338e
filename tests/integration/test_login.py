"""``composer login``/``logout`` against a real registry behind htpasswd.

Credentials land where ``docker login`` puts them (``$DOCKER_CONFIG/config.json``), are
checked before anything is written, and are what a later push uses.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import PASSWORD, USER, RegistryServer
from tests.integration.test_pull_push import rootfs

ROOT = Path(__file__).resolve().parents[2]


def composer(scratch: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(ROOT),
           "HOME": str(scratch), "DOCKER_CONFIG": str(scratch / "docker")}
    return subprocess.run([sys.executable, "-m", "composer", "--root", str(scratch / "state"),
                           *args], input=stdin, capture_output=True, text=True, env=env,
                          timeout=60)


def test_login_push_logout(auth_registry: RegistryServer, scratch: Path) -> None:
    server = auth_registry.domain
    wrong = composer(scratch, "login", server, "-u", USER, "--password-stdin", stdin="nope\n")
    assert wrong.returncode == 1 and "composer login" in wrong.stderr
    assert not (scratch / "docker" / "config.json").exists()  # nothing written on failure

    ok = composer(scratch, "login", server, "-u", USER, "--password-stdin",
                  stdin=f"{PASSWORD}\n")
    assert (ok.returncode, ok.stdout) == (0, "Login Succeeded\n"), ok.stderr
    config = scratch / "docker" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert list(json.loads(config.read_text())["auths"]) == [server]

    ref = f"{server}/private/app:1"
    (scratch / "rootfs.tar.gz").write_bytes(rootfs())
    assert composer(scratch, "image", "import", str(scratch / "rootfs.tar.gz"),
                    ref).returncode == 0
    pushed = composer(scratch, "image", "push", "-q", ref)
    assert pushed.returncode == 0, pushed.stderr

    out = composer(scratch, "logout", server)
    assert out.stdout == f"Removing login credentials for {server}\n"
    assert json.loads(config.read_text())["auths"] == {}
    denied = composer(scratch, "image", "push", ref)
    assert denied.returncode == 1 and "composer login" in denied.stderr

