"""Times a command: `python3 bench/timeit_cmd.py RUNS CMD...` prints mean, min and max (ms)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def main() -> None:
    runs = int(sys.argv[1])
    command = sys.argv[2:]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # warm-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        samples.append((time.perf_counter() - start) * 1000)
    print(f"{' '.join(command)}: mean {statistics.mean(samples):.1f} ms, "
          f"min {min(samples):.1f} ms, max {max(samples):.1f} ms ({runs} runs)")


if __name__ == "__main__":
    main()
