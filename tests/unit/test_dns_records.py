"""The resolver's records: config checking, who sees which names, round robin, resolv.conf."""

from __future__ import annotations

from typing import Any

import pytest

from composer.dns.records import (
    ClientRecords,
    Config,
    ConfigError,
    NetworkRecords,
    RoundRobin,
    Server,
    address_from_reverse_name,
    config_data,
    lookup,
    nameservers,
    parse_config,
    parse_server,
    reverse_lookup,
    rotated,
)

FRONT, BACK = "172.18.0.1", "172.19.0.1"  # the two networks' gateways


def two_networks() -> Config:
    """``web`` (2 replicas) on front and back, ``db`` on back only, ``cache`` on front only; the
    first web replica is a known client on both networks with a link alias for db, the proxy
    is a known client on front only."""
    return parse_config(config_data(
        {"front": NetworkRecords(FRONT, {"web": ["172.18.0.2", "172.18.0.3"],
                                         "proj-web-1": ["172.18.0.2"],
                                         "cache": ["172.18.0.9"]}),
         "back": NetworkRecords(BACK, {"Web": ["172.19.0.2", "172.19.0.3"],
                                       "db": ["172.19.0.4"]})},
        {"172.18.0.2": ClientRecords(["front", "back"], names={"database": ["172.19.0.4"]}),
         "172.18.0.5": ClientRecords(["front"], dns=["10.0.0.53"])},
        upstream=["127.0.0.1:5354"], serial=7))


def test_the_config_round_trips_normalized() -> None:
    config = two_networks()
    assert config.port == 53
    assert config.serial == 7
    assert config.upstream == (Server("127.0.0.1", 5354),)
    assert config.gateways() == [FRONT, BACK]
    assert config.networks["back"].names["web"] == ("172.19.0.2", "172.19.0.3")  # lower-cased
    assert config.clients["172.18.0.5"].dns == (Server("10.0.0.53", 53),)
    assert parse_config({}).upstream is None  # then the host's resolv.conf is used


def test_a_known_client_sees_its_networks_and_its_links_only() -> None:
    config = two_networks()
    # Both networks' replicas, whichever gateway the query reached.
    assert lookup(config, "172.18.0.2", FRONT, "web") == [
        "172.18.0.2", "172.18.0.3", "172.19.0.2", "172.19.0.3"]
    assert lookup(config, "172.18.0.2", FRONT, "DB.") == ["172.19.0.4"]
    assert lookup(config, "172.18.0.2", BACK, "database") == ["172.19.0.4"]  # its link alias
    # The proxy is on front only: back's db and the other container's alias are not its names.
    assert lookup(config, "172.18.0.5", BACK, "db") is None
    assert lookup(config, "172.18.0.5", FRONT, "database") is None
    assert lookup(config, "172.18.0.5", FRONT, "cache") == ["172.18.0.9"]
    assert lookup(config, "172.18.0.5", FRONT, "example.com") is None


def test_an_unknown_client_sees_the_receiving_network() -> None:
    config = two_networks()
    assert lookup(config, "172.19.0.77", BACK, "db") == ["172.19.0.4"]
    assert lookup(config, "172.19.0.77", BACK, "cache") is None
    assert lookup(config, "172.18.0.77", FRONT, "cache") == ["172.18.0.9"]
    assert lookup(config, "172.18.0.77", FRONT, "db") is None
    assert lookup(config, "127.0.0.1", "10.9.9.9", "web") is None  # no network there


def test_a_name_with_no_addresses_is_still_known() -> None:
    """Known but empty (every replica stopped) answers NOERROR, not a forward."""
    config = parse_config({"networks": {"n": {"gateway": FRONT, "names": {"web": []}}}})
    assert lookup(config, "172.18.0.2", FRONT, "web") == []


def test_reverse_names_and_ptr_targets() -> None:
    assert address_from_reverse_name("2.0.18.172.in-addr.arpa.") == "172.18.0.2"
    assert address_from_reverse_name("0.18.172.in-addr.arpa") is None  # a zone, not a host
    assert address_from_reverse_name("x.0.18.172.in-addr.arpa") is None
    six = ".".join(reversed("20010db8000000000000000000000001")) + ".ip6.arpa."
    assert address_from_reverse_name(six) == "2001:db8::1"
    assert address_from_reverse_name("web") is None
    config = two_networks()
    # The container's own name (one address, the longest) rather than its service's.
    assert reverse_lookup(config, "172.18.0.5", FRONT, "172.18.0.2") == "proj-web-1"
    assert reverse_lookup(config, "172.18.0.5", FRONT, "172.18.0.3") == "web"
    assert reverse_lookup(config, "172.18.0.5", FRONT, "172.19.0.4") is None  # not its network


def test_round_robin_rotates_each_answer() -> None:
    addresses = ["a", "b", "c"]
    assert rotated(addresses, 4) == ["b", "c", "a"]
    assert rotated([], 3) == []
    rr = RoundRobin()
    assert [rr.order("web", addresses)[0] for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.order("WEB.", addresses) == ["b", "c", "a"]  # one counter per name, any spelling
    assert rr.order("db", ["x", "y"]) == ["x", "y"]
    rr.forget_except({"db"})
    assert rr.order("web", addresses) == ["a", "b", "c"]


def test_resolv_conf_nameservers() -> None:
    text = """# generated
search example.com
nameserver 10.0.0.2
nameserver   fd00::53
; nameserver 10.0.0.3
nameserver not-an-address
options ndots:2
nameserver
"""
    assert nameservers(text) == [Server("10.0.0.2"), Server("fd00::53")]
    assert nameservers("search lan\n") == [Server("127.0.0.1")]  # glibc's default


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.1", Server("10.0.0.1", 53)),
    ("10.0.0.1:5354", Server("10.0.0.1", 5354)),
    ("[fd00::1]:5354", Server("fd00::1", 5354)),
    ("fd00::1", Server("fd00::1", 53)),
])
def test_server_addresses(text: str, expected: Server) -> None:
    assert parse_server(text) == expected
    assert str(expected) in {text, f"{text}:53", f"[{text}]:53"}


def _config(**top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"networks": {"n": {"gateway": FRONT, "names": {"web": [
        "172.18.0.2"]}}}, "clients": {"172.18.0.2": {"networks": ["n"]}}}
    base.update(top)
    return base


@pytest.mark.parametrize(("data", "message"), [
    ([], "config: expected an object, got list"),
    (_config(ports=53), "config: unknown key 'ports'"),
    (_config(port=0), "port: not a port number: 0"),
    (_config(port="53"), "port: not a port number: '53'"),
    (_config(port=True), "port: not a port number: True"),
    (_config(serial="1"), "serial: not an integer"),
    (_config(upstream="1.1.1.1"), "upstream: expected a list, got str"),
    (_config(upstream=["1.1.1.1:99999"]), r"upstream\[0\]: not a port number in '1.1.1.1:99999'"),
    (_config(upstream=["dns.example:53"]), r"upstream\[0\]: not an IP address: 'dns.example'"),
    (_config(networks={"n": {}}), "networks.n: no gateway"),
    (_config(networks={"n": {"gateway": "172.18.0"}}),
     "networks.n.gateway: not an IP address: '172.18.0'"),
    (_config(networks={"n": {"gateway": FRONT, "names": {"web": "172.18.0.2"}}}),
     "networks.n.names.web: expected a list, got str"),
    (_config(networks={"n": {"gateway": FRONT, "names": {"web": ["x"]}}}),
     r"networks.n.names.web\[0\]: not an IP address: 'x'"),
    (_config(networks={"n": {"gateway": FRONT, "names": {"a b": []}}}),
     "networks.n.names: not a DNS name: 'a b'"),
    (_config(networks={"n": {"gateway": FRONT, "names": {"a..b": []}}}),
     "networks.n.names: not a DNS name: 'a..b'"),
    (_config(clients={"web": {"networks": []}}), "clients.web: not an IP address: 'web'"),
    (_config(clients={"172.18.0.2": {"networks": ["m"]}}),
     "clients.172.18.0.2.networks: no network 'm'"),
    (_config(clients={"172.18.0.2": {"networks": ["n"], "dns": ["x"]}}),
     r"clients.172.18.0.2.dns\[0\]: not an IP address: 'x'"),
    (_config(clients={"172.18.0.2": {"networks": ["n"], "search": []}}),
     "clients.172.18.0.2: unknown key 'search'"),
])
def test_config_errors_say_where(data: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)
