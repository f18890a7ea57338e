#!/usr/bin/env bash
# Loader benchmarks: `composer --version` and `composer config -q` on a 500-service project,
# side by side with Docker Compose v2 when it is installed (DOCKER_COMPOSE, default
# docker-compose-v2 or `docker compose`). Budgets on a 2-core machine like CI's:
# --version < 150 ms, config -q (500 services) < 1 s. Figures go to bench/results/.
# Uses hyperfine (apt-get install hyperfine) when installed, else a Python timer.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
composer=${COMPOSER:-$here/.venv/bin/composer}
out=bench/results
mkdir -p "$out"
project=$(python3 bench/gen_project.py "$out/p500" 500)

commands=("$composer --version" "$composer -f $project config -q"
          "$composer -f $project config --format json")
peer=${DOCKER_COMPOSE:-$(command -v docker-compose-v2 || true)}
if [ -n "$peer" ]; then
  commands+=("$peer version" "$peer -f $project config -q" "$peer -f $project config --format json")
fi

if command -v hyperfine >/dev/null 2>&1; then
  hyperfine -N --warmup 3 --runs 20 --export-markdown "$out/loader.md" "${commands[@]}"
  cat "$out/loader.md"
else
  for command in "${commands[@]}"; do
    # shellcheck disable=SC2086  # each entry is a command line
    python3 bench/timeit_cmd.py 10 $command
  done
fi

echo "== planner"
"$here/.venv/bin/python" bench/plan_bench.py

if [ -x /usr/bin/docker-registry ] && [ "$(id -u)" -eq 0 ]; then
  echo "== images"
  "$here/.venv/bin/python" bench/images_bench.py 300
fi

if [ "$(id -u)" -eq 0 ]; then
  echo "== networks"
  "$here/.venv/bin/python" bench/networks_bench.py
fi

if [ "$(id -u)" -eq 0 ]; then
  echo "== builder"
  "$here/.venv/bin/python" bench/build_bench.py
fi

if [ "$(id -u)" -eq 0 ]; then
  echo "== compose up/down (peers when /work/shared/peers set them up; --no-peers to skip)"
  "$here/.venv/bin/python" -m bench.compose_bench
fi
