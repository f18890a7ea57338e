"""What the benchmarks share: the CLI on a state root of theirs, and the teardown that leaves
the host as it was (containers, the engine, mounts, the work folder, cgroup trees)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "local/busybox:latest"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def composer(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "composer", "--root", str(root), *args],
                          capture_output=True, text=True, check=True, timeout=300, env=_env())


def tear_down(root: Path, work: Path, cgroup_roots: Sequence[str]) -> None:
    """Every container of ``root`` removed, its engine stopped, what is mounted under
    ``work`` unmounted, ``work`` deleted, the cgroup trees named removed (empty ones only)."""
    from composer.runtime import rootfs

    base = [sys.executable, "-m", "composer", "--root", str(root)]
    listed = subprocess.run([*base, "container", "ls", "-aq"], capture_output=True, text=True,
                            env=_env())
    for container_id in listed.stdout.split():
        subprocess.run([*base, "container", "rm", "-f", container_id], capture_output=True,
                       env=_env())
    subprocess.run([*base, "engine", "stop"], capture_output=True, env=_env())
    for leftover in rootfs.mounts_under(work):
        subprocess.run(["umount", "-l", str(leftover)], check=False)
    shutil.rmtree(work, ignore_errors=True)
    for name in cgroup_roots:
        for top in Path("/sys/fs/cgroup").glob(f"*/{name}"):
            for group in [p for p in top.iterdir() if p.is_dir()]:
                with contextlib.suppress(OSError):
                    group.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
