"""Running skopeo from tests without leaving a trace on the host.

As root, skopeo keeps a blob-info cache in /var/lib/containers whatever its flags say, so the
tests run it as nobody, with a home of their own (which nobody then owns).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NOBODY = 65534


def run_skopeo(*args: str, home: Path, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``skopeo --insecure-policy ARGS`` with ``home`` as HOME, XDG directories and tmpdir.

    Every path skopeo reads or writes must be under ``home``: its owner becomes nobody."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is absent (apt-get install skopeo)")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_RUNTIME_DIR": str(home / "run")}
    prefix: list[str] = []
    (home / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is absent: skopeo would write /var/lib/containers")
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        for path in [home, *home.rglob("*")]:
            os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    return subprocess.run([*prefix, "skopeo", "--insecure-policy", "--tmpdir", str(home), *args],
                          check=True, capture_output=True, env=env, timeout=timeout)
