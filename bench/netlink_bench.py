"""Netlink microbenchmark: one container's network set-up and teardown, in this process.

Set-up is what :meth:`NetworkManager.attach` asks of :mod:`composer.runtime.netlink` for a
container on one network: a namespace (``create_netns``), then a veth on a bridge with an
address, a MAC and a default route (``ensure_veth``). Teardown is what ``detach`` asks: the
veth, then the namespace. Wall time and CPU time (the process's, so threads count) per run,
medians of ``--rounds`` after a warm-up; then a burst: ``--burst`` containers set up and torn
down by ``--workers`` threads at once, as a ``compose up`` of many services does.

``--before PATH`` also times another copy of netlink.py (the one before a change, say), in
turn with this one: ``cp composer/runtime/netlink.py /tmp/before.py`` before editing it.

Run as root: ``.venv/bin/python bench/netlink_bench.py [--rounds 30] [--before PATH]``.
Everything it makes is named ``nb<6 hex>...`` and lives under a temporary directory; it is
removed at the end, and the end says whether anything was left.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import ipaddress
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GATEWAY = ipaddress.IPv4Interface("10.247.0.1/16")
Sample = tuple[float, float]  # (wall, cpu) seconds


def load(path: Path | None) -> ModuleType:
    if path is None:
        from composer.runtime import netlink

        return netlink
    spec = importlib.util.spec_from_file_location(f"netlink_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def timed(work: Callable[[], object]) -> Sample:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


class Bench:
    def __init__(self, tag: str, work: Path) -> None:
        self.tag, self.work, self.count = tag, work, 0

    def names(self) -> tuple[str, Path, int]:
        self.count += 1
        n = self.count
        return f"{self.tag}v{n}", self.work / f"c{n}" / "net", n

    def veth(self, n: int) -> dict[str, object]:
        address = ipaddress.IPv4Interface(f"10.247.{n // 250}.{n % 250 + 2}/16")
        mac = "02:42:" + ":".join(f"{b:02x}" for b in address.ip.packed)
        return {"inner_name": "eth0", "address": address, "gateway": GATEWAY.ip, "mac": mac,
                "alias": f"composer-bench:{self.tag}:c{n}"}

    def two_calls(self, netlink: ModuleType) -> tuple[Sample, Sample]:
        host, netns, n = self.names()
        up = timed(lambda: (netlink.create_netns(netns),
                            netlink.ensure_veth(host_name=host, bridge=f"{self.tag}br",
                                                netns=netns, **self.veth(n))))
        return up, self.down(netlink, host, netns)

    @staticmethod
    def down(netlink: ModuleType, host: str, netns: Path) -> Sample:
        return timed(lambda: (netlink.remove_link(host), netlink.remove_netns(netns)))


def report(label: str, samples: list[tuple[Sample, Sample]]) -> None:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:6.2f}"

    up = [s[0] for s in samples]
    down = [s[1] for s in samples]
    print(f"  {label:<34} set-up wall {ms([w for w, _ in up])} cpu {ms([c for _, c in up])}"
          f" | teardown wall {ms([w for w, _ in down])} cpu {ms([c for _, c in down])} ms")


def burst(run: Callable[[], tuple[Sample, Sample]], count: int, workers: int) -> Sample:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return timed(lambda: list(pool.map(lambda _: run(), range(count))))


def leftovers(tag: str, work: Path) -> list[str]:
    links = [name for name in os.listdir("/sys/class/net") if name.startswith(tag)]
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(work))]
    return links + mounts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--before", type=Path, help="another netlink.py to time in turn")
    args = parser.parse_args()

    modules = {"this": load(None)}
    if args.before is not None:
        modules["before"] = load(args.before)
    tag = f"nb{secrets.token_hex(3)}"
    work = Path(tempfile.mkdtemp(prefix="composer-nlbench-"))
    bench = Bench(tag, work)
    ways: dict[str, Callable[[], tuple[Sample, Sample]]] = {}
    for name, module in modules.items():
        ways[f"{name}: create_netns + ensure_veth"] = (lambda m=module: bench.two_calls(m))
    load_average = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{os.cpu_count()} CPUs, kernel {os.uname().release}, load average {load_average}")
    netlink = modules["this"]
    try:
        netlink.ensure_bridge(f"{tag}br", alias=f"composer-bench:{tag}:net", gateway=GATEWAY,
                              mac="02:42:0a:f7:00:01")
        for run in ways.values():  # warm up: imports, caches
            run()
            run()
        samples: dict[str, list[tuple[Sample, Sample]]] = {label: [] for label in ways}
        for _ in range(args.rounds):
            for label, run in ways.items():
                samples[label].append(run())
        print(f"one container at a time, medians of {args.rounds}:")
        for label, got in samples.items():
            report(label, got)
        print(f"burst: {args.burst} containers set up and torn down, {args.workers} threads:")
        for label, run in ways.items():
            wall, cpu = burst(run, args.burst, args.workers)
            print(f"  {label:<34} wall {wall * 1000:7.1f} ms, cpu {cpu * 1000:7.1f} ms")
    finally:
        for name in os.listdir("/sys/class/net"):
            if name.startswith(tag) and name != f"{tag}br":
                with contextlib.suppress(Exception):
                    netlink.remove_link(name)
        for point in reversed(leftovers(tag, work)):
            if point.startswith(str(work)):
                with contextlib.suppress(Exception):
                    netlink.remove_netns(Path(point))
        with contextlib.suppress(Exception):
            netlink.remove_link(f"{tag}br")
        left = leftovers(tag, work)
        shutil.rmtree(work, ignore_errors=True)
        print(f"leak check: {'none' if not left else ', '.join(left)}")


if __name__ == "__main__":
    main()
