"""Watch benchmark: a save on the host to its content readable in the container, and a
manifest save to the changed service running again.

On a state root of its own (removed at the end), ``composer watch`` runs on a project of two
busybox services, ``web`` with a ``sync`` rule. Then

- 100 edits of one file under the rule's path, one at a time: the time from the write's end
  to the new content being readable at the target, read through the container's own root
  (``/proc/PID/root``, polled every 0.5 ms: an exec per poll would measure the exec);
  median and 95th percentile. The quiet period (50 ms) is included: it is part of the wait.
- 5 manifest saves that change ``web``'s environment: the time from the save to the new
  ``web`` container running (polled through the engine's API every 5 ms); median.

Budget (issue 9): sync under 150 ms at the 95th percentile; manifest change to running under
1 s plus the container's own start. Run as root after ``scripts/setup.sh``:
``.venv/bin/python bench/watch_bench.py [EDITS]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import IMAGE, composer, tear_down  # noqa: E402

COMPOSE = """\
    name: watchbench
    services:
      web:
        image: local/busybox:latest
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        environment: {ROUND: "0"}
        develop:
          watch:
            - {path: ./src, target: /app, action: sync}
      side:
        image: local/busybox:latest
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"""


def _web(client: Any) -> dict[str, Any] | None:
    for c in client.request("GET", "/v1/containers", params={"all": 1}):
        if c["Labels"].get("com.docker.compose.service") == "web" and \
                c["State"]["Status"] == "running":
            return dict(c)
    return None


def _sync_latencies(folder: Path, pid: int, edits: int) -> list[float]:
    source = folder / "src" / "edit.txt"
    target = Path(f"/proc/{pid}/root/app/edit.txt")
    found = []
    for i in range(edits):
        text = f"edit {i}\n"
        source.write_text(text)
        saved = time.perf_counter()
        while True:
            try:
                if target.read_text() == text:
                    break
            except OSError:
                pass
            time.sleep(0.0005)
        found.append(time.perf_counter() - saved)
        time.sleep(0.02)  # an editor's pace, not a burst
    return found


def _manifest_latencies(folder: Path, client: Any, rounds: int) -> list[float]:
    found = []
    compose = folder / "compose.yaml"
    for i in range(1, rounds + 1):
        before = _web(client)
        assert before is not None
        compose.write_text(textwrap.dedent(COMPOSE).replace('ROUND: "0"', f'ROUND: "{i}"'))
        saved = time.perf_counter()
        while True:
            now = _web(client)
            if now is not None and now["Id"] != before["Id"]:
                break
            time.sleep(0.005)
        found.append(time.perf_counter() - saved)
        time.sleep(0.5)
    return found


def main() -> int:
    edits = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    from composer.engine.client import EngineClient
    from composer.state.layout import open_images
    from tests.images import busybox_image

    cgroup_root = f"composer-bench-{os.getpid()}"
    os.environ["COMPOSER_CGROUP_ROOT"] = cgroup_root
    work = Path(tempfile.mkdtemp(prefix="composer-watch-bench-"))
    root = work / "root"
    folder = work / "project"
    (folder / "src").mkdir(parents=True)
    (folder / "compose.yaml").write_text(textwrap.dedent(COMPOSE))
    watch = None
    try:
        with open_images(root) as store:
            busybox_image(store, IMAGE)
        watch = subprocess.Popen(
            [sys.executable, "-m", "composer", "--root", str(root), "-f",
             str(folder / "compose.yaml"), "watch", "--quiet"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
        client = EngineClient(root / "run" / "engine.sock")
        deadline = time.monotonic() + 120
        while (web := _web_or_none(client)) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the project did not come up")
            time.sleep(0.1)
        time.sleep(1.0)  # the observer is set up once the project is up
        pid = _pid(root, web)
        syncs = sorted(_sync_latencies(folder, pid, edits))
        manifest = _manifest_latencies(folder, client, 5)
        p95 = syncs[max(0, round(0.95 * len(syncs)) - 1)]
        print(f"sync, save -> readable in the container ({edits} edits): "
              f"median {statistics.median(syncs) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, "
              f"max {syncs[-1] * 1000:.1f} ms")
        print(f"manifest save -> changed service running again ({len(manifest)} saves): "
              f"median {statistics.median(manifest) * 1000:.0f} ms, "
              f"max {max(manifest) * 1000:.0f} ms")
    finally:
        if watch is not None:
            watch.terminate()
            watch.wait(timeout=60)
        composer_down(root, folder)
        tear_down(root, work, [cgroup_root])
    return 0


def _web_or_none(client: Any) -> dict[str, Any] | None:
    try:
        return _web(client)
    except Exception:  # the engine is still starting
        return None


def _pid(root: Path, web: dict[str, Any]) -> int:
    import json

    found = json.loads(composer(root, "container", "inspect", web["Id"]).stdout)[0]
    return int(found["State"]["Pid"])


def composer_down(root: Path, folder: Path) -> None:
    subprocess.run([sys.executable, "-m", "composer", "--root", str(root), "-f",
                    str(folder / "compose.yaml"), "down"], capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


if __name__ == "__main__":
    sys.exit(main())
