"""Published ports as written (-p, compose short syntax) into bindings, with Docker's rules."""

from __future__ import annotations

import re

import pytest

from composer.runtime.portspec import PortSpecError, parse
from composer.runtime.spec import PortBinding


@pytest.mark.parametrize(("text", "expected"), [
    ("80", [PortBinding(80)]),
    ("8080:80", [PortBinding(80, "tcp", "", 8080)]),
    ("53:53/udp", [PortBinding(53, "udp", "", 53)]),
    ("127.0.0.1:8080:80", [PortBinding(80, "tcp", "127.0.0.1", 8080)]),
    ("127.0.0.1::80", [PortBinding(80, "tcp", "127.0.0.1", None)]),
    ("0:80", [PortBinding(80)]),
    ("[::1]:8080:80", [PortBinding(80, "tcp", "::1", 8080)]),
    ("8000-8001:80-81", [PortBinding(80, "tcp", "", 8000), PortBinding(81, "tcp", "", 8001)]),
    ("8000-8010:80", [PortBinding(80, "tcp", "", 8000, 8010)]),
    ("80-81/udp", [PortBinding(80, "udp"), PortBinding(81, "udp")]),
])
def test_ports_as_docker_reads_them(text: str, expected: list[PortBinding]) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("80/icmp", "invalid protocol 'icmp'"),
    ("http", "invalid container port 'http'"),
    ("70000", "ports are 1-65535"),
    ("90-80", "a range goes upwards"),
    ("8000-8002:80-81", "the host range has 3 ports and the container range 2"),
    ("1.2.3.4:80", "invalid host port '1.2.3.4'"),
    ("a:b:c:d", "[HOST_IP:][HOST_PORT:]CONTAINER_PORT"),
    ("[::1:80", "write [IPv6]:HOST:CONTAINER"),
])
def test_malformed_ports_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(PortSpecError, match=re.escape(message)):
        parse(text)
