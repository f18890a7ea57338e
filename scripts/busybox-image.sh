#!/usr/bin/env bash
# Makes local/busybox:latest in composer's image store from Debian's busybox-static, since
# these machines reach no Docker Hub: one layer with the static binary, a link per applet,
# and an /etc/passwd and /etc/group. Safe to run again (it does nothing when the image exists).
# Usage: scripts/busybox-image.sh [--root STATE_ROOT]
set -euo pipefail
composer=${COMPOSER:-composer}
if "$composer" "$@" image inspect local/busybox:latest >/dev/null 2>&1; then
  exit 0
fi
work=$(mktemp -d)
chmod 755 "$work"  # the image's /: mktemp makes it 0700, unreadable to other users
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"/{bin,dev,etc,proc,sys,root,home/app,var,run,tmp}
chmod 1777 "$work/tmp"
cp /bin/busybox "$work/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$work/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$work/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' >"$work/etc/group"
chown 1000:1000 "$work/home/app"
tar -C "$work" --numeric-owner -cf - . | "$composer" "$@" image import - local/busybox:latest >/dev/null
echo "busybox-image: made local/busybox:latest"
