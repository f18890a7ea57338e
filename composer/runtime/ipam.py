"""IP address management: subnets for networks, addresses for containers. Pure.

The rules Docker follows, with the store of leases and the host's routes passed in so that
this module decides without touching anything:

- A network without ``ipam.config`` gets the first subnet of the pool (Docker's default:
  172.17.0.0/16 ... 172.31.0.0/16, then 192.168.0.0/20 ... in /20 steps) that overlaps
  neither the host's routes nor another network's subnet.
- A given ``subnet`` must not overlap those either; ``gateway`` defaults to the subnet's first
  address; ``ip_range`` narrows where container addresses come from; ``aux_addresses`` are
  never handed out.
- Container addresses: a static ``ipv4_address`` must be inside the subnet and free; else the
  lowest free address of the range (skipping the network and broadcast addresses, the
  gateway and the aux addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from composer.errors import ComposerError

Network = ipaddress.IPv4Network
Address = ipaddress.IPv4Address


class IpamError(ComposerError):
    """No subnet or address can be given as asked."""


@dataclass(frozen=True)
class Pool:
    """Where subnets come from: ``base`` cut into subnets of ``/size``."""

    base: Network
    size: int

    def subnets(self) -> Iterable[Network]:
        return self.base.subnets(new_prefix=self.size)


DEFAULT_POOLS = (Pool(ipaddress.IPv4Network("172.17.0.0/16"), 16),
                 Pool(ipaddress.IPv4Network("172.18.0.0/15"), 16),
                 Pool(ipaddress.IPv4Network("172.20.0.0/14"), 16),
                 Pool(ipaddress.IPv4Network("172.24.0.0/13"), 16),
                 Pool(ipaddress.IPv4Network("192.168.0.0/16"), 20))


@dataclass(frozen=True)
class Plan:
    """A network's addressing: where containers get addresses, and what is never given."""

    subnet: Network
    gateway: Address
    ip_range: Network
    reserved: frozenset[Address] = field(default_factory=frozenset)


def parse_pools(text: str) -> tuple[Pool, ...]:
    """``base=10.10.0.0/16,size=24;base=...`` (Docker's ``default-address-pools`` as one
    string), for an engine setting."""
    pools = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields = dict(item.partition("=")[::2] for item in part.split(","))
        try:
            pools.append(Pool(ipaddress.IPv4Network(fields["base"]), int(fields["size"])))
        except (KeyError, ValueError) as e:
            raise IpamError(f"invalid address pool {part!r}: write base=CIDR,size=PREFIX "
                            "(for example base=10.10.0.0/16,size=24)") from e
        if pools[-1].size < pools[-1].base.prefixlen or pools[-1].size > 30:
            raise IpamError(f"invalid address pool {part!r}: size must be between the base's "
                            f"prefix (/{pools[-1].base.prefixlen}) and /30")
    return tuple(pools)


def _overlapping(subnet: Network, taken: Iterable[Network]) -> Network | None:
    return next((t for t in taken if subnet.overlaps(t)), None)


def choose_subnet(taken: Sequence[Network], host_routes: Sequence[Network],
                  pools: Sequence[Pool] = DEFAULT_POOLS) -> Network:
    """The first free subnet of the pools. Host routes count unless they are a default
    route (0.0.0.0/0 overlaps everything) or a host route of its own (/32)."""
    routes = [r for r in host_routes if 0 < r.prefixlen < 32]
    for pool in pools:
        for subnet in pool.subnets():
            if _overlapping(subnet, taken) is None and _overlapping(subnet, routes) is None:
                return subnet
    raise IpamError("no free subnet left in the address pools: remove unused networks "
                    "(composer network prune) or give the network an ipam subnet")


def plan(config: Mapping[str, object] | None, *, taken: Sequence[Network],
         host_routes: Sequence[Network], pools: Sequence[Pool] = DEFAULT_POOLS) -> Plan:
    """The addressing of a network from its ``ipam.config`` entry (None: all defaults)."""
    config = dict(config or {})
    if config.get("subnet"):
        try:
            subnet = ipaddress.IPv4Network(str(config["subnet"]))
        except ValueError as e:
            raise IpamError(f"invalid subnet {config['subnet']!r}: {e}") from e
        clash = _overlapping(subnet, taken)
        if clash is not None:
            raise IpamError(f"subnet {subnet} overlaps {clash}, which another network uses: "
                            "choose another subnet")
        route = _overlapping(subnet, [r for r in host_routes if 0 < r.prefixlen < 32])
        if route is not None:
            raise IpamError(f"subnet {subnet} overlaps the host's route to {route}: traffic "
                            "would go the wrong way; choose another subnet")
    else:
        subnet = choose_subnet(taken, host_routes, pools)
    if subnet.num_addresses < 4:
        raise IpamError(f"subnet {subnet} is too small: it needs room for a gateway and a "
                        "container (a /30 at least)")
    gateway = _address(config.get("gateway"), subnet, "gateway") if config.get("gateway") \
        else subnet.network_address + 1
    ip_range = subnet
    if config.get("ip_range"):
        try:
            ip_range = ipaddress.IPv4Network(str(config["ip_range"]))
        except ValueError as e:
            raise IpamError(f"invalid ip_range {config['ip_range']!r}: {e}") from e
        if not ip_range.subnet_of(subnet):
            raise IpamError(f"ip_range {ip_range} is not inside subnet {subnet}")
    aux = config.get("aux_addresses") or {}
    if not isinstance(aux, Mapping):
        raise IpamError("aux_addresses must map host names to addresses")
    reserved = frozenset(_address(v, subnet, f"aux address {k}") for k, v in aux.items())
    return Plan(subnet=subnet, gateway=gateway, ip_range=ip_range, reserved=reserved)


def _address(value: object, subnet: Network, what: str) -> Address:
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError as e:
        raise IpamError(f"invalid {what} {value!r}: {e}") from e
    if address not in subnet:
        raise IpamError(f"{what} {address} is not inside subnet {subnet}")
    return address


def allocate(network: Plan, leased: Iterable[Address], *,
             static: str | None = None) -> Address:
    """An address for a container: ``static`` when free, else the lowest free one."""
    used = set(leased) | set(network.reserved) | {network.gateway}
    if static is not None:
        address = _address(static, network.subnet, "ipv4_address")
        if address in (network.subnet.network_address, network.subnet.broadcast_address):
            raise IpamError(f"ipv4_address {address} is the network's own address")
        if address in used:
            raise IpamError(f"ipv4_address {address} is already in use on {network.subnet}")
        return address
    # Every address of the range (its own first and last too): only the subnet's network
    # and broadcast addresses are not hosts.
    for address in network.ip_range:
        if address not in used and address not in (network.subnet.network_address,
                                                   network.subnet.broadcast_address):
            return address
    raise IpamError(f"no free address left in {network.ip_range}: the network is full")
