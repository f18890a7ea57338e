"""``container port``'s output from Docker's ``NetworkSettings.Ports``."""

from __future__ import annotations

from composer.cli.commands.container import port_lines

PORTS: dict[str, list[dict[str, str]] | None] = {
    "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
    "53/udp": [{"HostIp": "0.0.0.0", "HostPort": "5353"}],
    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "32768"},
               {"HostIp": "::", "HostPort": "32768"},
               {"HostIp": "192.0.2.2", "HostPort": "8000"}],
    "9000/tcp": None,  # exposed or asked for, not published now
}


def test_every_binding_in_port_order() -> None:
    assert port_lines(PORTS, None) == [
        "53/udp -> 0.0.0.0:5353", "80/tcp -> 0.0.0.0:32768", "80/tcp -> [::]:32768",
        "80/tcp -> 192.0.2.2:8000",
        "8080/tcp -> 127.0.0.1:18080"]


def test_one_private_port_tcp_by_default() -> None:
    assert port_lines(PORTS, "80") == ["0.0.0.0:32768", "[::]:32768", "192.0.2.2:8000"]
    assert port_lines(PORTS, "53/udp") == ["0.0.0.0:5353"]
    assert port_lines(PORTS, "53") == []
    assert port_lines(PORTS, "9000") == []
