"""Published ports as people write them (``-p``, compose's short syntax), as PortBindings. Pure.

``[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]``, where ports may be ranges (``8000-8010``)
and an IPv6 host address is bracketed (``[::1]:8080:80``). Docker's rules for ranges: equal
host and container ranges map one to one; a host range for one container port means "the
first free port of the range"; no host port means a random one for each container port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, cast

from composer.runtime.spec import PortBinding

Protocol = Literal["tcp", "udp", "sctp"]
PROTOCOLS = ("tcp", "udp", "sctp")
_PORTS = re.compile(r"(\d+)(?:-(\d+))?")


class PortSpecError(ValueError):
    pass


def _range(text: str, whole: str, what: str) -> tuple[int, int]:
    match = _PORTS.fullmatch(text)
    if match is None:
        raise PortSpecError(f"invalid {what} {text!r} in port {whole!r}: write a number or a "
                            "range like 8000-8010")
    low = int(match[1])
    high = int(match[2]) if match[2] else low
    if not (0 < low <= high <= 65535) and not (what == "host port" and low == 0 == high):
        raise PortSpecError(f"invalid {what} {text!r} in port {whole!r}: ports are 1-65535 "
                            "and a range goes upwards")
    return low, high


def parse(text: str) -> list[PortBinding]:
    """One ``-p`` value as the bindings it stands for."""
    whole = text
    body, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in PROTOCOLS:
        raise PortSpecError(f"invalid protocol {protocol!r} in port {whole!r}: use "
                            f"{', '.join(PROTOCOLS)}")
    host_ip = ""
    if body.startswith("["):
        end = body.find("]")
        if end < 0 or body[end + 1:end + 2] != ":":
            raise PortSpecError(f"invalid port {whole!r}: write [IPv6]:HOST:CONTAINER")
        host_ip, body = body[1:end], body[end + 2:]
    parts = body.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip, parts = parts[0], parts[1:]
    if len(parts) > 2 or (host_ip and len(parts) == 1):
        raise PortSpecError(f"invalid port {whole!r}: write [HOST_IP:][HOST_PORT:]"
                            "CONTAINER_PORT[/PROTOCOL]")
    container = _range(parts[-1], whole, "container port")
    host = _range(parts[0], whole, "host port") if len(parts) == 2 and parts[0] else None
    if host == (0, 0):
        host = None  # "0:80": Docker's way of asking for a random port
    count = container[1] - container[0] + 1
    proto = cast(Protocol, protocol)
    if host is None:
        return [PortBinding(p, proto, host_ip) for p in range(container[0], container[1] + 1)]
    host_count = host[1] - host[0] + 1
    if count == 1 and host_count > 1:
        return [PortBinding(container[0], proto, host_ip, host[0], host[1])]
    if host_count != count:
        raise PortSpecError(f"invalid port {whole!r}: the host range has {host_count} ports "
                            f"and the container range {count}; give ranges of one length")
    return [PortBinding(c, proto, host_ip, h)
            for c, h in zip(range(container[0], container[1] + 1),
                            range(host[0], host[1] + 1), strict=True)]


def parse_expose(text: str) -> list[tuple[int, str]]:
    """One ``--expose``/``EXPOSE`` value (``80``, ``80/udp``, ``9000-9002/tcp``) as
    (port, protocol) pairs."""
    body, _, protocol = str(text).partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in PROTOCOLS:
        raise PortSpecError(f"invalid protocol {protocol!r} in exposed port {text!r}: use "
                            f"{', '.join(PROTOCOLS)}")
    low, high = _range(body, str(text), "container port")
    return [(port, protocol) for port in range(low, high + 1)]


def publish_all(bindings: Sequence[PortBinding], exposed: Iterable[str]) -> list[PortBinding]:
    """``-P``: ``bindings`` plus a random host port for each exposed port none of them
    publishes. An exposed value that does not parse (an image's) is passed over."""
    taken: set[tuple[int, str]] = {(b.container_port, b.protocol) for b in bindings}
    added: list[PortBinding] = []
    for text in exposed:
        try:
            pairs = parse_expose(text)
        except PortSpecError:
            continue
        for port, protocol in pairs:
            if (port, protocol) not in taken:
                taken.add((port, protocol))
                added.append(PortBinding(port, cast(Protocol, protocol)))
    return [*bindings, *sorted(added, key=lambda b: (b.container_port, b.protocol))]
