"""/etc/hostname, /etc/hosts and /etc/resolv.conf of a container, written as Docker writes them.

Each container gets its own copies in its directory, bind-mounted over the image's: with
``network: host`` the host's hosts and resolver files (and name, unless one is given), else a
hosts file of loopback names. Bridge networks will add the container's addresses and the
network's resolver here.
"""

from __future__ import annotations

import os
from pathlib import Path

from composer.runtime import bundle
from composer.runtime.spec import ContainerSpec, Mount

LOOPBACK_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                  "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                  "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def etc_files(container_dir: Path, container_id: str, spec: ContainerSpec) -> tuple[Mount, ...]:
    """Write the three files into ``container_dir``; the mounts that put them in place."""
    hostname = bundle.hostname_of(spec, container_id)
    if spec.network == "host" and spec.hostname is None:
        hostname = os.uname().nodename
    (container_dir / "hostname").write_text(hostname + "\n")
    if spec.network == "host":
        hosts = _read_host("/etc/hosts") or "127.0.0.1\tlocalhost\n"
    else:
        hosts = LOOPBACK_HOSTS
    (container_dir / "hosts").write_text(hosts)
    (container_dir / "resolv.conf").write_text(_read_host("/etc/resolv.conf") or "")
    return tuple(Mount("bind", f"/etc/{n}", str(container_dir / n), read_only=spec.read_only)
                 for n in ("hostname", "hosts", "resolv.conf"))


def _read_host(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
