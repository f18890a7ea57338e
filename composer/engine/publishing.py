"""Which host ports a starting container publishes on: the ports it asks for, checked free
(by the engine's other containers, whose DNAT holds no socket, and by the host), and random
ones chosen; on a host with IPv6, a port on every address is checked on both families.

The records made here (``protocol``, ``host_ip``, ``host_port``, ``container_port``) are the
container row's ``ports``: the NAT table and the IPv6 port proxy are made from them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from composer.runtime.spec import ContainerSpec
from composer.state import containers as rows
from composer.state.containers import ContainerRow
from composer.state.store import Store


def _error(message: str) -> Exception:
    from composer.engine.networks import NetworkError

    return NetworkError(message)


@functools.cache
def host_has_ipv6() -> bool:
    """Whether the host has IPv6 (an address, and not disabled): then ports published on
    every address are published on its IPv6 addresses too, as Docker does."""
    try:
        disabled = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text().strip()
        return disabled == "0" and bool(Path("/proc/net/if_inet6").read_text().strip())
    except OSError:
        return False


def publish(db: Store, row: ContainerRow, spec: ContainerSpec,
            routed: bool) -> list[dict[str, Any]]:
    """The host ports of a starting container (``routed``: on a network with a way in):
    given ones checked free (by our other containers and by the host), random ones chosen."""
    from composer.runtime import ports

    if not spec.ports:
        return []
    if not routed:
        raise _error(f"container {row.name}: ports cannot be published from internal "
                     "networks only (they have no way in)")
    ours = {(p["protocol"], p["host_ip"], p["host_port"]): other.name
            for other in rows.all_rows(db) if other.id != row.id
            for p in other.ports or ()}
    published: list[dict[str, Any]] = []

    def clash(proto: str, host_ip: str, port: int) -> str | None:
        """The container of ours that has the port (on that address, or on all)."""
        return next((owner for (p, ip, n), owner in ours.items()
                     if (p, n) == (proto, port) and (ip == host_ip or "" in (ip, host_ip))),
                    None)

    dual = host_has_ipv6()
    for binding in spec.ports:
        host_ip = "" if binding.host_ip in ("", "0.0.0.0") else binding.host_ip
        if ":" in host_ip and not dual:
            raise _error(f"container {row.name}: cannot publish on [{host_ip}]: this host "
                         "has no IPv6")
        # "" on a host with IPv6 is both families: probing "::" (a dual-stack socket)
        # checks both at once.
        probe = "::" if dual and not host_ip else host_ip
        proto = binding.protocol
        if binding.host_port is not None and binding.host_port_end is None:
            port = binding.host_port
            holder = clash(proto, host_ip, port)
            if holder is not None:
                raise ports.PortInUse(
                    f"Bind for {host_ip or '0.0.0.0'}:{port}/{proto} failed: port is "
                    f"already allocated to container {holder}: stop it or publish "
                    "another port")
            ports.check_free(probe, port, proto)
        else:
            def unused(n: int, p: str = proto, ip: str = host_ip) -> bool:
                return clash(p, ip, n) is None

            port = _pick(probe, proto, binding.host_port, binding.host_port_end, unused)
        ours[(proto, host_ip, port)] = row.name
        published.append({"protocol": proto, "host_ip": host_ip, "host_port": port,
                          "container_port": binding.container_port})
    return published


def _pick(host_ip: str, proto: str, low: int | None, high: int | None,
          unused: Callable[[int], bool]) -> int:
    """A free host port (in low..high when given) that none of our containers has."""
    from composer.runtime import ports

    start = low
    for _ in range(64):
        port = ports.pick_free(host_ip, proto, start, high)
        if unused(port):
            return port
        if start is not None and high is not None:
            start = port + 1  # the host has it free, but one of ours publishes it
            if start > high:
                break
    raise _error(f"no free host port for {proto} on {host_ip or '0.0.0.0'}"
                 + (f" in {low}-{high}" if high is not None else "")
                 + ": free one, or publish a fixed port")
