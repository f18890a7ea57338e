"""Container benchmark: start-to-exit latency against bare runc, and supervision memory.

In one run, on a state root of its own (removed at the end):

- ``composer container run --rm local/busybox true`` (engine already up);
- ``runc run`` of the same prepared bundle (the config.json composer wrote for such a
  container, its root filesystem mounted);
- the CLI's own start-up: ``composer container ls -q`` against the same engine (argument
  parsing, imports, one request);

N rounds of the three in turn (interleaved, so that they see the same machine), medians;
- 100 idle containers (``sleep``): the PSS of each one's supervision process (conmon), from
  /proc/PID/smaps_rollup, and the engine's own growth divided by 100.

Budget: composer's run within 1.5x bare runc plus the CLI's own start-up; supervision at most
1 MB PSS per container. Run as root after ``scripts/setup.sh``:
``.venv/bin/python bench/containers_bench.py [N]``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.harness import IMAGE, composer, tear_down


def timed_together(runs: int, commands: list[tuple[str, object]]) -> list[float]:
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for (_, func), got in zip(commands, samples, strict=True):
            start = time.perf_counter()
            func()  # type: ignore[operator]
            got.append(time.perf_counter() - start)
    medians = []
    for (label, _), got in zip(commands, samples, strict=True):
        median = statistics.median(got)
        print(f"  {label}: median {median * 1000:.1f} ms (min {min(got) * 1000:.1f})")
        medians.append(median)
    return medians


def pss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    from composer.runtime import rootfs
    from composer.state.layout import open_images
    from tests.images import busybox_image

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    # The engine (started below, inheriting this) keeps its cgroups under a tree of ours.
    cgroup_root = f"composer-bench-{os.getpid()}"
    os.environ["COMPOSER_CGROUP_ROOT"] = cgroup_root
    work = Path(tempfile.mkdtemp(prefix="composer-bench-", dir="/var/tmp"))
    root = work / "root"
    try:
        with open_images(root) as store:
            busybox_image(store, IMAGE)
        composer(root, "engine", "start")
        # --network none: the bare runc run it is compared with has no network either; the
        # cost of a bridge network is bench/networks_bench.py's to measure.
        composer(root, "container", "run", "--rm", "--network", "none", IMAGE, "true")
        # The same bundle under bare runc: keep one container's bundle and mount.
        made = composer(root, "container", "create", "--name", "template", IMAGE, "true")
        cid = made.stdout.split()[-1]
        composer(root, "container", "start", "template")
        composer(root, "container", "wait", "template")
        cdir = root / "containers" / cid
        with open_images(root) as store:
            image = store.get(IMAGE)
            assert image is not None
            rootfs.mount(cdir, store.lower_dirs(image))
        config = json.loads((cdir / "bundle" / "config.json").read_text())
        config["linux"]["cgroupsPath"] = "/composer-bench/bare"
        bare = work / "bare"
        bare.mkdir()
        (bare / "config.json").write_text(json.dumps(config))
        runc_root = work / "runc"
        n = iter(range(10**6))
        # Interleaved, one of each in turn, so that all three see the same machine (its load
        # and frequency drift over a run of this length).
        print(f"start-to-exit latency ({runs} rounds, the three commands in turn):")
        ours, cli, theirs = timed_together(runs, [
            ("composer container run --rm --network none busybox true",
             lambda: composer(root, "container", "run", "--rm", "--network", "none", IMAGE,
                              "true")),
            ("composer container ls -q (the CLI's own start-up)",
             lambda: composer(root, "container", "ls", "-q")),
            ("runc run (same bundle)", lambda: subprocess.run(
                ["runc", "--root", str(runc_root), "run", "-b", str(bare), f"bare{next(n)}"],
                check=True, stdin=subprocess.DEVNULL, capture_output=True)),
        ])
        rootfs.unmount(cdir)
        composer(root, "container", "rm", "template")
        budget = 1.5 * theirs + cli
        print(f"  budget 1.5 x runc + CLI = {budget * 1000:.1f} ms: composer "
              f"{'within' if ours <= budget else 'OVER'} it ({ours / theirs:.2f}x runc)")

        engine_pid = int((root / "run" / "engine.pid").read_text())
        engine_before = pss_kb(engine_pid)
        count = 100
        print(f"supervision memory ({count} idle containers):")
        for i in range(count):
            composer(root, "container", "run", "-d", "--name", f"idle{i}", IMAGE, "sleep",
                     "1000")
        conmons = []
        for i in range(count):
            state = json.loads(composer(root, "container", "inspect", f"idle{i}").stdout)[0]
            pid_file = root / "run" / "containers" / state["Id"] / "conmon.pid"
            conmons.append(int(pid_file.read_text()))
        pss = [pss_kb(pid) for pid in conmons]
        engine_after = pss_kb(engine_pid)
        per_engine = (engine_after - engine_before) / count
        print(f"  conmon PSS per container: median {statistics.median(pss):.0f} kB, "
              f"max {max(pss)} kB (budget 1024 kB)")
        print(f"  engine PSS growth per container: {per_engine:.0f} kB "
              f"({engine_before} -> {engine_after} kB)")
        print(f"  total per container: {statistics.median(pss) + max(per_engine, 0):.0f} kB")
    finally:
        tear_down(root, work, ["composer-bench", cgroup_root])


if __name__ == "__main__":
    main()
