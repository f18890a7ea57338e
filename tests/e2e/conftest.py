"""An engine of the test's own, driven through the CLI as a user drives it.

``engine`` gives a state root under the test's tmp dir holding the busybox test image as
``local/busybox:latest``, and a ``cli(...)`` that runs ``composer --root ROOT ...``. The engine
starts on demand at the first container command. Teardown removes every container the test
made, stops the engine by its pid, then checks that nothing leaked: no mount under the root,
no process naming the root, no cgroup of the test's containers, no runtime state.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "local/busybox:latest"


def write_project(tmp_path: Path, text: str, name: str = "compose.yaml") -> Path:
    """``text`` (dedented) as ``<tmp_path>/project/<name>``, the project's compose file."""
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def compose(engine: Engine, path: Path, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``composer -f PATH ARGS`` as a user runs it."""
    return engine.cli("-f", str(path), *args, check=check, timeout=timeout)


def _needs(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (scripts/setup.sh installs it)")


@dataclass
class Engine:
    root: Path
    cgroup_root: str
    ids: set[str] = field(default_factory=set)

    def env(self) -> dict[str, str]:
        """The environment of the test's CLI (and so of the engine it starts)."""
        return {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(ROOT),
                "HOME": str(self.root / "home"), "LANG": "C.UTF-8",
                "COMPOSER_CGROUP_ROOT": self.cgroup_root,
                **{k: v for k, v in os.environ.items() if k == "COMPOSER_BOOT_ID_FILE"}}

    def cli(self, *args: str, stdin: bytes | None = None, timeout: float = 120,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "composer", "--root", str(self.root),
                               *args], input=stdin, capture_output=True, env=self.env(),
                              timeout=timeout)
        result = subprocess.CompletedProcess(done.args, done.returncode,
                                             done.stdout.decode(errors="replace"),
                                             done.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise AssertionError(f"composer {' '.join(args)} exited {result.returncode}: "
                                 f"{result.stderr}")
        return result

    def run_detached(self, *args: str) -> str:
        done = self.cli("container", "run", "-d", *args, check=True)
        container_id = done.stdout.strip().splitlines()[-1]
        self.ids.add(container_id)
        return container_id

    def inspect(self, name: str) -> dict[str, Any]:
        done = self.cli("container", "inspect", name, check=True)
        found: dict[str, Any] = json.loads(done.stdout)[0]
        self.ids.add(found["Id"])
        return found

    def wait_for(self, name: str, predicate: Any, timeout: float = 30,
                 what: str = "condition") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(name)
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: no {what} after {timeout} s: {state['State']}")
            time.sleep(0.1)

    def engine_pid(self) -> int | None:
        try:
            pid = int((self.root / "run" / "engine.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None


def _processes_naming(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


def network_leaks(root: Path) -> dict[str, list[str]]:
    """What a state root's engine may have left on the host, found by the root's tag: links
    (by alias and by name), the NAT table, iptables rules, network namespace files, subnet
    claims."""
    from composer.engine import subnet_claims
    from composer.engine.networks import root_tag

    tag = root_tag(root)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    netns = root / "run" / "netns"
    return {
        "links": [line.split(":")[1].strip() for line in links.splitlines()
                  if f"composer:{tag}" in line or f"cmb{tag[:4]}" in line
                  or f"cmv{tag[:4]}" in line],
        "nft tables": [t for t in tables.splitlines() if tag[:12] in t],
        "iptables rules": [r for r in rules.splitlines() if tag[:8] in r],
        "netns files": [str(p) for p in netns.iterdir()] if netns.is_dir() else [],
        "subnet claims": subnet_claims.mine(tag),
    }


def _mounts_under(path: Path) -> list[str]:
    text = Path("/proc/self/mountinfo").read_text()
    return [line.split()[4] for line in text.splitlines()
            if line.split()[4].startswith(str(path))]


@contextlib.contextmanager
def engine_at(root: Path) -> Iterator[Engine]:
    """An engine of its own on state root ``root`` (made here, with the busybox image), torn
    down afterwards: every container removed, the networks pruned, the engine stopped, then
    nothing of it may be left on the host."""
    if os.geteuid() != 0:
        pytest.skip("containers need root")
    for binary in ("runc", "conmon"):
        _needs(binary)
    import secrets

    from composer.state.layout import open_images
    from tests.images import busybox_image

    with open_images(root) as store:
        busybox_image(store, IMAGE)
    (root / "home").mkdir()
    engine = Engine(root, f"composer-e2e-{secrets.token_hex(4)}")
    try:
        yield engine
    finally:
        _tear_down(engine)


def _tear_down(engine: Engine) -> None:
    root = engine.root
    listed = engine.cli("container", "ls", "-aq", "--no-trunc")
    for container_id in listed.stdout.split():
        engine.cli("container", "rm", "-f", container_id)
    if engine.engine_pid() is not None:
        engine.cli("network", "prune", "-f")
    engine.cli("engine", "stop")
    # The engine's cgroup tree: only the group directories may remain, empty.
    base = Path("/sys/fs/cgroup")
    tree = [*base.glob(engine.cgroup_root), *base.glob(f"*/{engine.cgroup_root}")]
    cgroups_left = [str(c) for t in tree for c in t.glob("*/*") if c.is_dir()]
    for top in tree:
        for group in sorted(p for p in top.iterdir() if p.is_dir()):
            with contextlib.suppress(OSError):
                group.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
    leaked = {
        "processes": _processes_naming(str(root)),
        "mounts": _mounts_under(root),
        "cgroups": cgroups_left + [str(t) for t in tree if t.exists()],
        "runtime state": [str(p) for p in (root / "run" / "runtimes").glob("*/*")]
        if (root / "run" / "runtimes").is_dir() else [],
        **network_leaks(root),
    }
    for pid_line in leaked["processes"]:
        # Clean what this test left, by pid, before failing it.
        with contextlib.suppress(OSError):
            os.kill(int(pid_line.split(":")[0]), 9)
    assert not any(leaked.values()), f"leaked: {leaked}"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with engine_at(tmp_path / "root") as made:
        yield made
