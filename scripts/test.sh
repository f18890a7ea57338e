#!/usr/bin/env bash
# The test command: set up (idempotently), then lint, type-check and run every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k loader).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/setup.sh
export PATH="$here/.venv/bin:$PATH"

echo "== ruff"
ruff check composer tests bench scripts
echo "== mypy --strict composer/"
mypy
echo "== pytest"
workers=$(python -c 'import os; print(max(1, min(4, os.cpu_count() or 1)))')
python -m pytest -n "$workers" -p no:cacheprovider "$@"
