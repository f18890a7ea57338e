"""Builder benchmark: a full build and no-change rebuilds of a 10-step Dockerfile.

On a state root of its own (removed at the end), through the CLI and the engine as a user
runs them: the first build (every step made: three RUN containers, two COPY layers, five
config steps), then N rebuilds with nothing changed (every step a cache hit), then N rebuilds
after changing the file the last COPY copies (that step and the ones after it made again).
Medians, CLI start-up included. Budget: a no-change rebuild under 0.5 s.
Run as root after ``scripts/setup.sh``: ``.venv/bin/python bench/build_bench.py [N]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.harness import IMAGE, composer, tear_down

BUDGET_S = 0.5
DOCKERFILE = """\
FROM local/busybox
ENV APP=/srv/app
WORKDIR /srv/app
RUN mkdir -p conf logs && echo configured > conf/state
COPY lib/ ./lib/
RUN ls lib > lib.list
COPY main.sh ./
RUN chmod 755 main.sh
LABEL bench=build
USER 1000
CMD ["./main.sh"]
"""


def timed(action: object) -> float:
    start = time.perf_counter()
    action()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    from composer.state.layout import open_images
    from tests.images import busybox_image

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    cgroup_root = f"composer-bench-{os.getpid()}"
    os.environ["COMPOSER_CGROUP_ROOT"] = cgroup_root
    work = Path(tempfile.mkdtemp(prefix="composer-build-bench-", dir="/var/tmp"))
    root, context = work / "root", work / "ctx"
    try:
        with open_images(root) as store:
            busybox_image(store, IMAGE)
        (context / "lib").mkdir(parents=True)
        (context / "Dockerfile").write_text(DOCKERFILE)
        for i in range(50):
            (context / "lib" / f"module{i}.sh").write_text(f"echo module {i}\n" * 20)
        (context / "main.sh").write_text("#!/bin/sh\necho main\n")
        composer(root, "engine", "start")

        def build() -> None:
            composer(root, "image", "build", "-q", "-t", "local/bench:1", str(context))

        full = timed(build)
        unchanged = [timed(build) for _ in range(runs)]
        changed = []
        for i in range(runs):
            (context / "main.sh").write_text(f"#!/bin/sh\necho main {i}\n")
            changed.append(timed(build))
        nothing = statistics.median(unchanged)
        print(f"| build | median | min | max |\n|---|---:|---:|---:|\n"
              f"| full build (10 steps, 3 RUN containers) | {full * 1000:.0f} ms | | |\n"
              f"| no-change rebuild ({runs}x) | {nothing * 1000:.0f} ms | "
              f"{min(unchanged) * 1000:.0f} ms | {max(unchanged) * 1000:.0f} ms |\n"
              f"| rebuild after changing the last COPY's file ({runs}x) | "
              f"{statistics.median(changed) * 1000:.0f} ms | {min(changed) * 1000:.0f} ms | "
              f"{max(changed) * 1000:.0f} ms |")
        verdict = "PASS" if nothing < BUDGET_S else "FAIL"
        print(f"- {verdict}: no-change rebuild < {BUDGET_S * 1000:.0f} ms "
              f"({nothing * 1000:.0f} ms)")
    finally:
        tear_down(root, work, [cgroup_root])


if __name__ == "__main__":
    main()
