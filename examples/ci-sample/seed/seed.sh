#!/bin/sh
# Writes the greeting the web service serves; exits 1 when there is none to write.
set -e
if [ -z "$GREETING" ]; then
  echo "seed: GREETING is empty; nothing to write" >&2
  exit 1
fi
printf '%s\n' "$GREETING" >/data/greeting
echo "seed: wrote greeting '$GREETING' to /data/greeting"
