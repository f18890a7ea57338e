"""IPAM: subnets that avoid the host and each other, addresses never given twice."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from composer.runtime.ipam import IpamError, Plan, allocate, choose_subnet, parse_pools, plan


def test_the_first_free_pool_subnet_avoiding_routes_and_networks() -> None:
    assert choose_subnet([], []) == N("172.17.0.0/16")
    assert choose_subnet([N("172.17.0.0/16")], [N("172.18.5.0/24")]) == N("172.19.0.0/16")
    # A default route and host routes overlap everything: they do not count.
    assert choose_subnet([], [N("0.0.0.0/0"), N("172.17.0.9/32")]) == N("172.17.0.0/16")
    taken = [N(f"172.{i}.0.0/16") for i in range(17, 32)]
    assert choose_subnet(taken, []) == N("192.168.0.0/20")


def test_a_full_pool_is_a_clear_error() -> None:
    pools = parse_pools("base=10.9.0.0/23,size=24")
    assert choose_subnet([N("10.9.0.0/24")], [], pools) == N("10.9.1.0/24")
    with pytest.raises(IpamError, match="no free subnet left"):
        choose_subnet([N("10.9.0.0/23")], [], pools)


def test_ipam_config_subnet_gateway_range_and_aux() -> None:
    got = plan({"subnet": "10.5.0.0/24", "gateway": "10.5.0.254", "ip_range": "10.5.0.128/25",
                "aux_addresses": {"router": "10.5.0.129"}}, taken=[], host_routes=[])
    assert got == Plan(N("10.5.0.0/24"), A("10.5.0.254"), N("10.5.0.128/25"),
                       frozenset({A("10.5.0.129")}))
    assert allocate(got, []) == A("10.5.0.128")  # the range's first address is a host
    assert allocate(got, [A("10.5.0.128")]) == A("10.5.0.130")  # .129 is reserved


@pytest.mark.parametrize(("config", "message"), [
    ({"subnet": "10.1.0.0/16"}, "overlaps 10.1.2.0/24, which another network uses"),
    ({"subnet": "192.168.1.0/24"}, "overlaps the host's route to 192.168.1.0/24"),
    ({"subnet": "nonsense"}, "invalid subnet"),
    ({"subnet": "10.7.0.0/31"}, "too small"),
    ({"subnet": "10.7.0.0/24", "gateway": "10.8.0.1"}, "gateway 10.8.0.1 is not inside"),
    ({"subnet": "10.7.0.0/24", "ip_range": "10.7.1.0/25"}, "is not inside subnet"),
    ({"subnet": "10.7.0.0/24", "aux_addresses": {"x": "1.2.3.4"}}, "aux address x"),
])
def test_bad_ipam_config(config: dict[str, object], message: str) -> None:
    with pytest.raises(IpamError, match=message):
        plan(config, taken=[N("10.1.2.0/24")], host_routes=[N("192.168.1.0/24")])


def test_addresses_skip_the_gateway_reserved_and_leased_ones() -> None:
    net = plan({"subnet": "10.3.0.0/29", "aux_addresses": {"a": "10.3.0.2"}}, taken=[],
               host_routes=[])
    assert net.gateway == A("10.3.0.1")
    given = []
    for _ in range(4):
        given.append(allocate(net, given))
    assert given == [A("10.3.0.3"), A("10.3.0.4"), A("10.3.0.5"), A("10.3.0.6")]
    with pytest.raises(IpamError, match="no free address left"):
        allocate(net, given)


def test_static_addresses() -> None:
    net = plan({"subnet": "10.4.0.0/24"}, taken=[], host_routes=[])
    assert allocate(net, [A("10.4.0.2")], static="10.4.0.50") == A("10.4.0.50")
    for static, message in (("10.4.0.2", "already in use"), ("10.4.0.1", "already in use"),
                            ("10.4.0.0", "the network's own address"),
                            ("10.9.0.5", "not inside subnet")):
        with pytest.raises(IpamError, match=message):
            allocate(net, [A("10.4.0.2")], static=static)


def test_pool_strings() -> None:
    assert [str(p.base) for p in parse_pools("base=10.10.0.0/16,size=24;base=10.20.0.0/16,"
                                             "size=20")] == ["10.10.0.0/16", "10.20.0.0/16"]
    with pytest.raises(IpamError, match="write base=CIDR,size=PREFIX"):
        parse_pools("base=10.10.0.0/16")
    with pytest.raises(IpamError, match="size must be between"):
        parse_pools("base=10.10.0.0/16,size=8")
