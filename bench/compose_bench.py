"""Compose benchmark: ``up -d`` and ``down`` of N busybox services, against bare runc and peers.

In one run, on a state root of its own (``--root``, default /tmp/bench-compose-root, made
here and removed at the end; the engine keeps its cgroups under ``bench-compose``), for each
size N (``--sizes``, default 1,10,50,200) and each round (``--rounds``, default 3; sizes over
50 ``--big-rounds``, default 1), in turn
(interleaved, so that every tool sees the same machine):

- composer: ``composer up -d`` of a project of N services, then the same ``up -d`` again (the
  no-op up: nothing changes), then ``composer down``;
- the floor: N containers made with bare runc in a loop, ``runc create`` + ``runc start`` of
  a prepared bundle each (the config.json composer wrote for such a service container, with
  its seccomp profile; one image root filesystem mounted once and shared; no network), then
  ``runc kill`` + ``runc delete`` of each for the down floor; also the same with 8 at a time
  (what composer's executor does, ``COMPOSE_PARALLEL_LIMIT``), for information;
- the peers, when they are set up (``/work/shared/peers``: ``20-docker.sh all``,
  ``30-podman.sh all``, ``30-podman.sh service-start``, ``40-compose.sh install``):
  Docker Compose v2 driving dockerd (``dc2``), the same binary driving podman through its
  Docker API socket (``dc2pod``) and podman-compose (``podc``); each ``up -d``, no-op
  ``up -d``, ``down``.

Every service is ``command: ["sleep", "3600"]`` with ``stop_signal: SIGKILL`` (busybox
``sleep`` as PID 1 ignores SIGTERM: without it every ``down`` would measure its 10 s stop
timeout rather than the tool), on the project's default network; the same file for every
tool but for the image's name in its store. Times are wall clock from the command's start
until it returns *and* the engine lists N running containers of the project (``up``) or none
(``down``); every round uses a fresh project name.

Budgets (2-core machine): the no-op ``up`` of 50 services under 0.5 s; ``up -d`` of 50
services within 3x the runc floor (the loop) and at least 3x faster than the fastest peer.
Run as root: ``.venv/bin/python -m bench.compose_bench [--sizes 1,10,50,200] [--no-peers]``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.harness import IMAGE, ROOT, composer, tear_down

CGROUP_ROOT = "bench-compose"
FLOOR_CGROUP = "bench-compose-floor"
PEERS = Path(os.environ.get("PEERS_WORK", "/tmp/composer-peers"))
DOCKER = "/usr/bin/docker"
COMPOSE_V2 = PEERS / "bin" / "docker-compose-v2"
PODMAN_COMPOSE = PEERS / "venv-pc" / "bin" / "podman-compose"
PODMAN_SOCKET = PEERS / "podman.sock"
PARALLEL = 8
TIMEOUT = 600.0


def project_yaml(services: int, image: str) -> str:
    lines = ["services:"]
    for i in range(services):
        lines += [f"  s{i}:", f"    image: {image}", '    command: ["sleep", "3600"]',
                  "    stop_signal: SIGKILL"]
    return "\n".join(lines) + "\n"


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=TIMEOUT)


@dataclass
class Tool:
    """A compose implementation: how to run it, and how to count a project's containers."""

    name: str
    label: str
    compose: list[str]
    image: str
    env: dict[str, str]
    count: Callable[[str, bool], int]  # (project, running only) -> containers
    files: dict[int, Path] = field(default_factory=dict)

    def command(self, project: str, services: int, *args: str) -> list[str]:
        return [*self.compose, "-p", project, "-f", str(self.files[services]), *args]


def timed(tool: Tool, project: str, services: int, action: str,
          failures: list[str]) -> float:
    """Seconds from the command's start until it returned and the project has ``services``
    running containers (``up``) or none left (``down``)."""
    args = ("up", "-d") if action != "down" else ("down",)
    start = time.perf_counter()
    done = run(tool.command(project, services, *args), tool.env)
    end = time.perf_counter()
    want = services if action != "down" else 0
    deadline = time.monotonic() + 120
    # Counted once the command has returned (not timed) and, if the engine is not there
    # yet, again until it is (then timed up to there).
    while (have := tool.count(project, action != "down")) != want and \
            time.monotonic() < deadline:
        time.sleep(0.05)
        end = time.perf_counter()
    if done.returncode != 0 or have != want:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        failures.append(f"{tool.name} {action} N={services} ({project}): rc {done.returncode}, "
                        f"{have} containers, want {want}: {' | '.join(tail)}")
    return end - start


# -- the tools ------------------------------------------------------------------------------


def composer_tool(root: Path) -> Tool:
    base = [sys.executable, "-m", "composer", "--root", str(root)]

    def count(project: str, running: bool) -> int:
        flags = ["--status", "running"] if running else ["-a"]
        done = run([*base, "-p", project, "ps", "-q", *flags], env)
        return len(done.stdout.split())

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return Tool("composer", "composer", base, IMAGE, env, count)


def _docker_count(cli: list[str], env: dict[str, str]) -> Callable[[str, bool], int]:
    def count(project: str, running: bool) -> int:
        flags = ["--filter", "status=running"] if running else ["-a"]
        done = run([*cli, "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                    *flags], env)
        return len(done.stdout.split())

    return count


def peer_tools(wanted: Sequence[str]) -> tuple[list[Tool], list[str]]:
    """The peers set up on this machine, and why the others are left out."""
    tools: list[Tool] = []
    skipped: list[str] = []
    env = dict(os.environ)
    podman_env = {**env, "CONTAINERS_CONF": str(PEERS / "containers.conf")}
    socket_env = {**env, "DOCKER_HOST": f"unix://{PODMAN_SOCKET}"}

    def works(argv: list[str], e: dict[str, str]) -> bool:
        try:
            return run(argv, e).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    if "dc2" in wanted:
        if not COMPOSE_V2.exists():
            skipped.append(f"dc2: no {COMPOSE_V2} (peers/40-compose.sh install)")
        elif not works([DOCKER, "image", "inspect", "busybox:latest"], env):
            skipped.append("dc2: dockerd not up or no busybox:latest (peers/20-docker.sh all)")
        else:
            version = run([str(COMPOSE_V2), "version", "--short"], env).stdout.strip()
            server = run([DOCKER, "version", "--format", "{{.Server.Version}}"], env)
            tools.append(Tool("dc2", f"Compose v{version} + dockerd {server.stdout.strip()}",
                              [str(COMPOSE_V2)], "busybox:latest", env,
                              _docker_count([DOCKER], env)))
    podman = shutil.which("podman")
    has_podman_image = podman is not None and works(
        [podman, "image", "exists", "localhost/busybox:latest"], podman_env)
    podman_version = run([podman, "--version"], podman_env).stdout.split()[-1] if podman else ""
    if "dc2pod" in wanted:
        if not COMPOSE_V2.exists() or not has_podman_image:
            skipped.append("dc2pod: no Compose v2 binary or podman busybox image "
                           "(peers/30-podman.sh all, 40-compose.sh install)")
        elif not works([DOCKER, "version"], socket_env):
            skipped.append(f"dc2pod: no podman API on {PODMAN_SOCKET} "
                           "(peers/30-podman.sh service-start)")
        else:
            assert podman is not None
            tools.append(Tool("dc2pod", f"Compose v2 + podman {podman_version} API",
                              [str(COMPOSE_V2)], "localhost/busybox:latest", socket_env,
                              _docker_count([podman], podman_env)))
    if "podc" in wanted:
        if not PODMAN_COMPOSE.exists() or not has_podman_image:
            skipped.append("podc: no podman-compose or podman busybox image "
                           "(peers/30-podman.sh all, 40-compose.sh install)")
        else:
            assert podman is not None
            said = run([str(PODMAN_COMPOSE), "version"], podman_env).stdout.splitlines()
            version = next((line.split()[-1] for line in said
                            if line.startswith("podman-compose")), "?")
            tools.append(Tool("podc", f"podman-compose {version} + "
                              f"podman {podman_version}", [str(PODMAN_COMPOSE)],
                              "localhost/busybox:latest", podman_env,
                              _docker_count([podman], podman_env)))
    return tools, skipped


# -- the floor ------------------------------------------------------------------------------


class Floor:
    """Bare runc: one bundle per container slot, all on one mounted image root filesystem."""

    def __init__(self, root: Path, work: Path, slots: int) -> None:
        from composer.runtime import rootfs
        from composer.state.layout import open_images

        self.work = work
        self.runc_root = work / "runc"
        # The config.json composer writes for a service container, from a project of one.
        template = work / "template"
        template.mkdir(parents=True)
        (template / "compose.yaml").write_text(project_yaml(1, IMAGE))
        composer(root, "-p", "cbtemplate", "-f", str(template / "compose.yaml"), "up", "-d")
        cid = composer(root, "-p", "cbtemplate", "-f", str(template / "compose.yaml"), "ps",
                       "-q").stdout.split()[0]
        cdir = next((root / "containers").glob(f"{cid}*"))
        config = json.loads((cdir / "bundle" / "config.json").read_text())
        for name in ("hostname", "hosts", "resolv.conf"):
            shutil.copy(cdir / name, work / name)
        composer(root, "-p", "cbtemplate", "-f", str(template / "compose.yaml"), "down")
        with open_images(root) as store:
            image = store.get(IMAGE)
            assert image is not None
            self.merged = rootfs.mount(work / "image", store.lower_dirs(image))
        config["root"] = {"path": str(self.merged), "readonly": False}
        # A network namespace of its own, empty: the floor has no network to join.
        config["linux"]["namespaces"] = [
            {"type": ns["type"]} for ns in config["linux"]["namespaces"]]
        for mount in config["mounts"]:
            source = Path(mount.get("source", ""))
            if source.parent == cdir:
                mount["source"] = str(work / source.name)
        self.bundles = []
        for i in range(slots):
            bundle = work / "bundles" / str(i)
            bundle.mkdir(parents=True)
            config["linux"]["cgroupsPath"] = f"/{FLOOR_CGROUP}/c{i}"
            (bundle / "config.json").write_text(json.dumps(config))
            self.bundles.append(bundle)

    def _runc(self, *args: str) -> None:
        # Not pipes: the container keeps the stdio runc create hands it, a pipe would never
        # reach its end. runc's errors go to a file.
        with open(self.work / "runc.log", "a") as log:
            subprocess.run(["runc", "--root", str(self.runc_root), *args], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                           timeout=60)

    def _start(self, i: int, prefix: str) -> None:
        self._runc("create", "-b", str(self.bundles[i]), f"{prefix}-{i}")
        self._runc("start", f"{prefix}-{i}")

    def _stop(self, i: int, prefix: str) -> None:
        self._runc("kill", f"{prefix}-{i}", "KILL")
        self._runc("delete", "--force", f"{prefix}-{i}")

    def up(self, n: int, prefix: str, parallel: int = 1) -> float:
        return self._each(self._start, n, prefix, parallel)

    def down(self, n: int, prefix: str, parallel: int = 1) -> float:
        return self._each(self._stop, n, prefix, parallel)

    def _each(self, step: Callable[[int, str], None], n: int, prefix: str,
              parallel: int) -> float:
        start = time.perf_counter()
        if parallel == 1:
            for i in range(n):
                step(i, prefix)
        else:
            with ThreadPoolExecutor(max_workers=parallel) as pool:
                list(pool.map(lambda i: step(i, prefix), range(n)))
        return time.perf_counter() - start

    def close(self) -> None:
        from composer.runtime import rootfs

        listed = subprocess.run(["runc", "--root", str(self.runc_root), "list", "-q"],
                                capture_output=True, text=True)
        for name in listed.stdout.split():
            subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", name],
                           capture_output=True)
        rootfs.unmount(self.work / "image")


# -- the run --------------------------------------------------------------------------------


def others_busy() -> list[str]:
    """Test runs of other users (pytest) that would skew the figures."""
    done = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True)
    mine = str(os.getpid())
    return [line for line in done.stdout.splitlines() if line.split()[0] != mine]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(seconds: float) -> str:
    return "–" if seconds != seconds else f"{seconds:.2f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compose_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,50,200")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big-rounds", type=int, default=1,
                        help="rounds for the sizes over 50 (default 1: the peers take minutes)")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--peers", default="dc2,dc2pod,podc",
                        help="which peers, of dc2,dc2pod,podc (default all set up)")
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-compose-root"))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" /
                        "compose_bench.json")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if os.geteuid() != 0:
        print("run as root (containers)", file=sys.stderr)
        return 2
    root: Path = args.root.absolute()
    if root.exists() and any(root.iterdir()):
        print(f"{root} exists: remove it (it is this bench's own) or pass --root",
              file=sys.stderr)
        return 2
    busy = others_busy()
    if busy:
        print("warning: other test runs are going on, figures will be skewed:\n  " +
              "\n  ".join(busy), file=sys.stderr)
    # The engine (started below, inheriting this) keeps its cgroups under a tree of ours.
    os.environ["COMPOSER_CGROUP_ROOT"] = CGROUP_ROOT
    # Byte-compiled first, as an installed package is: under PYTHONDONTWRITEBYTECODE (set on
    # some machines) every command would otherwise compile each module it imports again.
    compileall.compile_dir(ROOT / "composer", quiet=1)
    work = root / "bench-work"
    tools: list[Tool] = []
    floor: Floor | None = None
    failures: list[str] = []
    created: list[tuple[Tool, str, int]] = []
    load_before = os.getloadavg()
    try:
        from composer.state.layout import open_images
        from tests.images import busybox_image

        with open_images(root) as store:
            busybox_image(store, IMAGE)
        composer(root, "engine", "start")
        tools = [composer_tool(root)]
        if not args.no_peers:
            peers, skipped = peer_tools(args.peers.split(","))
            tools += peers
            for line in skipped:
                print(f"skipped {line}")
        for tool in tools:
            for n in {1, *sizes}:
                path = work / tool.name / str(n) / "compose.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(project_yaml(n, tool.image))
                tool.files[n] = path
        floor = Floor(root, work / "floor", max(sizes))
        print(f"tools: {', '.join(t.label for t in tools)}; runc "
              f"{run(['runc', '--version']).stdout.split()[2]}; {os.cpu_count()} CPUs; "
              f"load {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")

        # figures[(tool, n, action)] -> seconds per round
        figures: dict[tuple[str, int, str], list[float]] = {}

        def one(tool: Tool, n: int, tag: str, record: bool) -> None:
            project = f"{'cb' if tool.name == 'composer' else 'pb'}{n}x{tag}" + \
                ("" if tool.name == "composer" else tool.name)
            created.append((tool, project, n))
            for action in ("up", "noop", "down"):
                seconds = timed(tool, project, n, action, failures)
                if record:
                    figures.setdefault((tool.name, n, action), []).append(seconds)
            created.remove((tool, project, n))

        def floors(n: int, tag: str, record: bool) -> None:
            assert floor is not None
            for label, parallel in (("runc", 1), (f"runc{PARALLEL}", PARALLEL)):
                up = floor.up(n, f"f{n}x{tag}{parallel}", parallel)
                down = floor.down(n, f"f{n}x{tag}{parallel}", parallel)
                if record:
                    figures.setdefault((label, n, "up"), []).append(up)
                    figures.setdefault((label, n, "down"), []).append(down)

        print("warm-up (1 service, every tool)")
        for tool in tools:
            one(tool, 1, "0", record=False)
        floors(1, "0", record=False)
        rounds = {n: args.rounds if n <= 50 else args.big_rounds for n in sizes}
        for n in sizes:
            for r in range(1, rounds[n] + 1):
                for tool in tools:
                    one(tool, n, str(r), record=True)
                floors(n, str(r), record=True)
                line = ", ".join(
                    f"{name} {figures[(name, n, 'up')][-1]:.2f}/"
                    f"{figures[(name, n, 'down')][-1]:.2f}"
                    for name in [t.name for t in tools] + ["runc", f"runc{PARALLEL}"])
                print(f"N={n} round {r} (up/down s): {line}", flush=True)
        load_after = os.getloadavg()
        report(tools, sizes, figures, failures, rounds, load_before, load_after)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "tools": {t.name: t.label for t in tools}, "rounds": rounds,
            "load": [load_before, load_after], "failures": failures,
            "figures": [{"tool": k[0], "services": k[1], "action": k[2], "seconds": v}
                        for k, v in sorted(figures.items())]}, indent=1))
        print(f"raw figures: {args.json}")
        return 1 if failures else 0
    finally:
        for tool, project, n in created:
            run(tool.command(project, n, "down"), tool.env)
        if floor is not None:
            floor.close()
        tear_down(root, root, [CGROUP_ROOT, FLOOR_CGROUP])


def report(tools: list[Tool], sizes: list[int],
           figures: dict[tuple[str, int, str], list[float]], failures: list[str],
           rounds: dict[int, int], load_before: tuple[float, ...],
           load_after: tuple[float, ...]) -> None:
    peers = [t.name for t in tools if t.name != "composer"]
    names = ["composer", "runc", f"runc{PARALLEL}", *peers]

    def get(name: str, n: int, action: str) -> float:
        return median(figures.get((name, n, action), []))

    counts = ", ".join(f"{n}: {r}" for n, r in rounds.items())
    print(f"\nmedians of the rounds ({counts}); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    head = ("| N | action | composer | runc loop | runc 8 at a time | "
            + " | ".join(peers) + (" | " if peers else "")
            + "composer / runc loop | fastest peer / composer |")
    print(head)
    print("|" + "---:|" * (head.count("|") - 1))
    for n in sizes:
        for action in ("up", "noop", "down"):
            cells = [fmt(get(name, n, action)) if not (action == "noop" and
                                                      name.startswith("runc")) else "–"
                     for name in names]
            ours = get("composer", n, action)
            base = get("runc", n, action)
            fastest = min((get(p, n, action) for p in peers), default=float("nan"))
            ratio_floor = f"{ours / base:.2f}x" if action != "noop" else "–"
            ratio_peer = f"{fastest / ours:.1f}x" if peers else "–"
            label = {"up": "up -d", "noop": "no-op up -d", "down": "down"}[action]
            print(f"| {n} | {label} | " + " | ".join(cells) +
                  f" | {ratio_floor} | {ratio_peer} |")
    if 50 in sizes:
        print("\nbudgets (50 services):")
        noop = get("composer", 50, "noop")
        up = get("composer", 50, "up")
        floor = get("runc", 50, "up")
        print(f"  no-op up under 0.5 s: {noop:.2f} s: {'pass' if noop < 0.5 else 'FAIL'}")
        print(f"  up within 3x the runc floor ({3 * floor:.2f} s): {up:.2f} s "
              f"({up / floor:.2f}x): {'pass' if up <= 3 * floor else 'FAIL'}")
        if peers:
            best = min(peers, key=lambda p: get(p, 50, "up"))
            theirs = get(best, 50, "up")
            print(f"  up at least 3x faster than the fastest peer ({best} {theirs:.2f} s): "
                  f"{theirs / up:.1f}x: {'pass' if theirs >= 3 * up else 'FAIL'}")
        else:
            print("  up against the peers: no peer set up")
    for line in failures:
        print(f"failure: {line}")


if __name__ == "__main__":
    sys.exit(main())
