#!/usr/bin/env bash
# Sets composer up on a Debian/Ubuntu machine, as root: system packages (idempotently),
# a virtual environment in .venv with composer and its test tools, and /usr/local/bin/composer.
# Safe to run again: it installs only what is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (composer manages containers, like dockerd)" >&2
  exit 1
fi

# System packages composer needs now; later features add theirs here.
packages=(python3 python3-venv python3-pip ca-certificates git
          runc crun conmon tini              # OCI runtimes, the container monitor, a static init
          docker-registry skopeo apache2-utils  # a real registry, skopeo and htpasswd for tests
          busybox-static                     # the base of the test and example images
          nftables iptables conntrack)       # published ports, masquerade, isolation
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
# Reinstall only when the project's metadata changed since the last install.
stamp=.venv/.composer-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing composer-oci and its test tools into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  touch "$stamp"
fi
ln -sf "$here/.venv/bin/composer" /usr/local/bin/composer
# A base image for the examples (no Docker Hub here): local/busybox:latest.
COMPOSER="$here/.venv/bin/composer" bash scripts/busybox-image.sh
echo "setup: ready ($(.venv/bin/composer --version))"
