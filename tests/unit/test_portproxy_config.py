"""The port proxy's config: what the engine writes is what the proxy reads back, and anything
else is refused with the place it went wrong."""

from __future__ import annotations

from typing import Any

import pytest

from composer.portproxy.config import (
    UDP_TIMEOUT,
    Config,
    ConfigError,
    ProxyEntry,
    config_data,
    parse_config,
)


def entry(**changes: Any) -> dict[str, Any]:
    return {"protocol": "tcp", "listen": "::", "port": 8080, "target": "172.17.0.2",
            "target_port": 80, **changes}


def test_round_trip() -> None:
    entries = [ProxyEntry("tcp", "::", 8080, "172.17.0.2", 80),
               ProxyEntry("udp", "::1", 5353, "172.17.0.3", 53)]
    assert parse_config(config_data(entries, serial=12)) == Config(12, tuple(entries))
    data = config_data(entries, udp_timeout=1.5)
    assert data["udp_timeout"] == 1.5 and "serial" not in data
    assert parse_config(data).udp_timeout == 1.5
    assert parse_config({}) == Config(None, (), UDP_TIMEOUT)


def test_addresses_come_out_canonical_and_keys_follow() -> None:
    parsed = parse_config({"entries": [entry(listen="0:0::0", target="::ffff:10.0.0.1"),
                                       entry(listen="FD00:0::2", protocol="udp")]})
    assert [(e.listen, e.target) for e in parsed.entries] == [
        ("::", "::ffff:a00:1"), ("fd00::2", "172.17.0.2")]
    assert [e.key for e in parsed.entries] == ["tcp/[::]:8080", "udp/[fd00::2]:8080"]
    # The engine's entry, not yet canonical, has the key the proxy will report it under.
    assert ProxyEntry("tcp", "0::0", 8080, "172.17.0.2", 80).key == "tcp/[::]:8080"
    assert ProxyEntry("tcp", "nowhere", 1, "172.17.0.2", 80).key == "tcp/[nowhere]:1"


def test_the_same_port_twice_is_refused_but_tcp_and_udp_may_share() -> None:
    parse_config({"entries": [entry(), entry(protocol="udp")]})
    parse_config({"entries": [entry(), entry(listen="::1")]})  # another address
    with pytest.raises(ConfigError, match=r"entries\[1\]: tcp/\[::\]:8080 is entries\[0\]"):
        parse_config({"entries": [entry(), entry(listen="0::", target="172.17.0.9")]})


@pytest.mark.parametrize(("data", "message"), [
    ([], r"config: expected an object, got list"),
    ({"entries": {}}, r"entries: expected a list, got dict"),
    ({"serial": "7"}, r"serial: not an integer: '7'"),
    ({"serial": True}, r"serial: not an integer: True"),
    ({"udp_timeout": 0}, r"udp_timeout: not a positive number of seconds: 0"),
    ({"udp_timeout": "30"}, r"udp_timeout: not a positive number"),
    ({"ports": []}, r"config: unknown key 'ports'"),
    ({"entries": ["tcp/8080"]}, r"entries\[0\]: expected an object, got str"),
    ({"entries": [entry(extra=1)]}, r"entries\[0\]: unknown key 'extra'"),
    ({"entries": [{"protocol": "tcp"}]}, r"entries\[0\]: no listen"),
    ({"entries": [entry(protocol="sctp")]}, r"entries\[0\].protocol: expected tcp or udp"),
    ({"entries": [entry(listen="0.0.0.0")]}, r"entries\[0\].listen: not an IPv6 address"),
    ({"entries": [entry(listen="localhost")]}, r"entries\[0\].listen: not an IP address"),
    ({"entries": [entry(listen=None)]}, r"entries\[0\].listen: not an IP address: None"),
    ({"entries": [entry(port=0)]}, r"entries\[0\].port: not a port number: 0"),
    ({"entries": [entry(port=65536)]}, r"entries\[0\].port: not a port number"),
    ({"entries": [entry(port="80")]}, r"entries\[0\].port: not a port number: '80'"),
    ({"entries": [entry(target_port=True)]}, r"entries\[0\].target_port: not a port number"),
    ({"entries": [entry(target="172.17.0")]}, r"entries\[0\].target: not an IP address"),
])
def test_what_is_refused(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
