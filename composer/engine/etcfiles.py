"""/etc/hostname, /etc/hosts and /etc/resolv.conf of a container, written as Docker writes them.

Each container gets its own copies in its directory, bind-mounted over the image's:

- ``network: host``: the host's hosts and resolver files (and name, unless one is given);
- bridge networks: loopback names, the container's address under its hostname (and its FQDN),
  ``links`` and ``extra_hosts``; resolv.conf names the network's resolver (the first network's
  gateway, where composer's resolver answers container names and forwards the rest), with the
  host's search domains and options unless ``dns_search``/``dns_opt`` are given;
- ``container:NAME``: that container's own three files (it shares its network namespace).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from composer.runtime import bundle
from composer.runtime.spec import ContainerSpec, Mount

LOOPBACK_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                  "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                  "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
FILES = ("hostname", "hosts", "resolv.conf")


class EtcError(ValueError):
    pass


@dataclass(frozen=True)
class Addressing:
    """What the network layer gave a container, for its files: its addresses (first network
    first), the resolver's address, the host's address as seen from it (``host-gateway``),
    and the ``links`` lines."""

    addresses: Sequence[str] = ()
    resolver: str | None = None
    host_gateway: str | None = None
    links: Sequence[tuple[str, str]] = ()


def etc_files(container_dir: Path, container_id: str, spec: ContainerSpec,
              addressing: Addressing | None = None, *,
              shared_from: Path | None = None) -> tuple[Mount, ...]:
    """Write the three files into ``container_dir``; the mounts that put them in place."""
    if shared_from is not None:
        for name in FILES:
            shutil.copyfile(shared_from / name, container_dir / name)
        return _mounts(container_dir, spec)
    addressing = addressing or Addressing()
    hostname = bundle.hostname_of(spec, container_id)
    if spec.network == "host" and spec.hostname is None:
        hostname = os.uname().nodename
    (container_dir / "hostname").write_text(hostname + "\n")
    if spec.network == "host":
        hosts = _read_host("/etc/hosts") or "127.0.0.1\tlocalhost\n"
    else:
        hosts = LOOPBACK_HOSTS
    names = f"{hostname}.{spec.domainname}\t{hostname}" if spec.domainname else hostname
    for address in addressing.addresses[:1]:
        hosts += f"{address}\t{names}\n"
    for address, linked in addressing.links:
        hosts += f"{address}\t{linked}\n"
    for entry in spec.extra_hosts:
        hosts += _extra_host(entry, addressing.host_gateway)
    (container_dir / "hosts").write_text(hosts)
    (container_dir / "resolv.conf").write_text(resolv_conf(
        _read_host("/etc/resolv.conf") or "", spec, addressing.resolver))
    return _mounts(container_dir, spec)


def drop_mount_points(upper: Path) -> None:
    """Take the placeholders of the /etc files out of a container's upper dir before it
    becomes a layer (a build step's, a commit's): the runtime made them as mount points, what
    the container wrote there went to the bound files, and Docker leaves them out too."""
    etc = upper / "etc"
    for name in FILES:
        placeholder = etc / name
        if placeholder.is_file() and not placeholder.is_symlink() and \
                placeholder.stat().st_size == 0:
            placeholder.unlink()
    with contextlib.suppress(OSError):
        etc.rmdir()  # only when nothing else changed under /etc


def _mounts(container_dir: Path, spec: ContainerSpec) -> tuple[Mount, ...]:
    return tuple(Mount("bind", f"/etc/{n}", str(container_dir / n), read_only=spec.read_only)
                 for n in FILES)


def resolv_conf(host: str, spec: ContainerSpec, resolver: str | None) -> str:
    """The container's resolv.conf. With a resolver of ours the nameserver is it alone (the
    ``dns`` servers become its upstream for this container); without one (``network: none``
    or host) the host's servers or ``dns``."""
    lines = [line.split() for line in host.splitlines()]
    host_servers = [w[1] for w in lines if len(w) > 1 and w[0] == "nameserver"]
    host_search = next((w[1:] for w in reversed(lines) if w and w[0] in ("search", "domain")),
                       [])
    host_options = [o for w in lines if w and w[0] == "options" for o in w[1:]]
    if resolver is not None:
        servers = [resolver]
    else:
        servers = list(spec.dns) or host_servers
    search = list(spec.dns_search) or host_search
    options = list(spec.dns_opt) or host_options
    out = [f"nameserver {s}" for s in servers]
    if search and search != ["."]:
        out.append("search " + " ".join(search))
    if options:
        out.append("options " + " ".join(options))
    return "\n".join(out) + "\n"


_HOST_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def _extra_host(entry: str, host_gateway: str | None) -> str:
    """``NAME:IP`` (or Docker's newer ``NAME=IP``); IP may be ``host-gateway``."""
    name, sep, address = entry.partition("=") if "=" in entry else entry.partition(":")
    if not sep or not _HOST_NAME.fullmatch(name) or not address:
        raise EtcError(f"extra_hosts: invalid entry {entry!r}: write NAME:IP (for example "
                       "host.docker.internal:host-gateway)")
    if address == "host-gateway":
        address = host_gateway or "127.0.0.1"
    return f"{address.strip('[]')}\t{name}\n"


def _read_host(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None
