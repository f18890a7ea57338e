#!/usr/bin/env bash
# Loader benchmarks: `composer --version` and `composer config -q` on a 500-service project.
# Budgets (2-core machine like CI's): --version < 150 ms, config -q (500 services) < 1 s.
# Uses hyperfine when installed (apt-get install hyperfine), else a Python timer.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
composer=${COMPOSER:-$here/.venv/bin/composer}
out=bench/results
mkdir -p "$out"
project=$(python3 bench/gen_project.py "$out/p500" 500)

if command -v hyperfine >/dev/null 2>&1; then
  hyperfine -N --warmup 3 --runs 20 --export-markdown "$out/loader.md" \
    "$composer --version" "$composer -f $project config -q"
  cat "$out/loader.md"
else
  python3 bench/timeit_cmd.py 20 "$composer" --version
  python3 bench/timeit_cmd.py 10 "$composer" -f "$project" config -q
fi
