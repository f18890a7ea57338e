"""Planner benchmark: ``reconcile`` on generated projects of 10, 100 and 1,000 services.

The dependency shape is a realistic layered one: a few databases and caches at the bottom,
services in tiers above that each depend on two or three services of the tiers below, some
with ``service_healthy`` conditions, every service on two networks, one in ten with a named
volume. Two cases per size: a fresh ``up`` (nothing observed: every change is a create) and
a no-op ``up`` (everything running and up to date). Budget: 1,000 services in under 0.5 s,
growth close to linear. Run: ``.venv/bin/python bench/plan_bench.py``.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def compose_text(count: int, seed: int = 7) -> str:
    rnd = random.Random(seed)
    lines = ["services:"]
    tiers: list[list[str]] = [[]]
    for i in range(count):
        name = f"svc{i}"
        if len(tiers[-1]) >= max(3, count // 10):
            tiers.append([])
        below = [s for tier in tiers[:-1] for s in tier]
        lines += [f"  {name}:", f"    image: registry.local/app{i % 13}:1.{i % 4}",
                  f"    environment: {{INDEX: '{i}'}}", "    networks: [front, back]"]
        if i % 10 == 0:
            lines += [f"    volumes: [data{i % 7}:/data]"]
        if below:
            deps = rnd.sample(below, min(len(below), rnd.choice((2, 3))))
            lines.append("    depends_on:")
            for dep in sorted(deps):
                condition = "service_healthy" if rnd.random() < 0.3 else "service_started"
                lines.append(f"      {dep}: {{condition: {condition}}}")
        if i % 4 == 0:
            lines += ["    healthcheck: {test: [CMD, 'true'], interval: 5s}"]
        tiers[-1].append(name)
    lines += ["networks:", "  front: {}", "  back: {}", "volumes:"]
    lines += [f"  data{i}: {{}}" for i in range(7)]
    return "\n".join(lines) + "\n"


def measure(count: int, runs: int = 5) -> tuple[float, float, int]:
    from composer.plan.reconcile import reconcile
    from composer.state.observed import Observed
    from tests.unit.plan_cases import project, running

    with tempfile.TemporaryDirectory() as tmp:
        desired = project(Path(tmp), compose_text(count), name="bench")
    observed = running(desired)
    fresh, noop = [], []
    for _ in range(runs):
        start = time.perf_counter()
        plan = reconcile(desired, Observed(project="bench"))
        fresh.append(time.perf_counter() - start)
        start = time.perf_counter()
        unchanged = reconcile(desired, observed)
        noop.append(time.perf_counter() - start)
        assert not unchanged.changes, "a no-op up planned changes"
    return statistics.median(fresh), statistics.median(noop), len(plan.changes)


def main() -> None:
    print("| services | changes (fresh up) | fresh up | no-op up |")
    print("|---:|---:|---:|---:|")
    for count in (10, 100, 1000):
        fresh, noop, changes = measure(count)
        print(f"| {count} | {changes} | {fresh * 1000:.1f} ms | {noop * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
