"""The resolver's records: its config file parsed and checked, and name lookups in it.

Pure (no sockets, no files beyond what a caller passes in), so it is unit-tested on its own and
shared by the engine side (which builds the file from :class:`NetworkRecords` and
:class:`ClientRecords` and checks it before writing) and the resolver process (which loads it).

The file, JSON::

    {"port": 53,
     "upstream": ["127.0.0.1:5354"],          # optional: else the host's resolv.conf servers
     "serial": 1700000000000000000,            # optional: echoed in the status file
     "networks": {"<net-id>": {"gateway": "172.18.0.1", "names": {"web": ["172.18.0.2"]}}},
     "clients": {"172.18.0.2": {"networks": ["<net-id>"], "dns": ["10.0.0.53"],
                                "names": {"database": ["172.18.0.4"]}}}}

Names are matched case-insensitively, without a trailing dot (they are stored lower-cased).
"""

from __future__ import annotations

import functools
import ipaddress
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DNS_PORT = 53
_SHORT_ID = re.compile(r"[0-9a-f]{12}")  # a container's short id, recorded as a name too
_TOP_KEYS = frozenset({"port", "upstream", "serial", "networks", "clients"})
_NETWORK_KEYS = frozenset({"gateway", "names"})
_CLIENT_KEYS = frozenset({"networks", "dns", "names"})
_SPACE = re.compile(r"\s")


class ConfigError(ValueError):
    """The config file is not what the resolver expects; the message says where."""


# --- What the engine hands over (plain, mutable: built up while planning a network) ----------


@dataclass
class NetworkRecords:
    """One composer network as the resolver sees it: where it listens, and the names any
    container on it may look up (service names, aliases, container names) with their
    addresses on this network (several for a scaled service)."""

    gateway: str
    names: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class ClientRecords:
    """One container, by its address: the networks whose names it sees, its own ``dns:``
    servers (forwarding goes there instead of upstream), and names only it sees (links)."""

    networks: list[str]
    dns: list[str] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)


def config_data(
    networks: Mapping[str, NetworkRecords],
    clients: Mapping[str, ClientRecords],
    *,
    port: int = DNS_PORT,
    upstream: Sequence[str] | None = None,
    serial: int | None = None,
) -> dict[str, Any]:
    """The JSON document for these records (what :func:`parse_config` reads back)."""
    data: dict[str, Any] = {
        "port": port,
        "networks": {
            net: {"gateway": n.gateway, "names": {k: list(v) for k, v in n.names.items()}}
            for net, n in networks.items()
        },
        "clients": {
            address: {"networks": list(c.networks), "dns": list(c.dns),
                      "names": {k: list(v) for k, v in c.names.items()}}
            for address, c in clients.items()
        },
    }
    if upstream is not None:
        data["upstream"] = list(upstream)
    if serial is not None:
        data["serial"] = serial
    return data


# --- The parsed, checked config (frozen: the server swaps whole configs on reload) -----------


@dataclass(frozen=True, slots=True)
class Server:
    """A DNS server to forward to."""

    host: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Network:
    gateway: str
    names: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Client:
    networks: tuple[str, ...]
    dns: tuple[Server, ...]
    names: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Config:
    port: int
    upstream: tuple[Server, ...] | None  # None: the host's resolv.conf servers, read at load
    networks: Mapping[str, Network]
    clients: Mapping[str, Client]
    serial: int | None = None

    def gateways(self) -> list[str]:
        """Every address to listen on, each once, in config order."""
        return list(dict.fromkeys(n.gateway for n in self.networks.values()))


def parse_config(data: object) -> Config:
    """Check the decoded JSON and build a :class:`Config`; :class:`ConfigError` names the
    first thing wrong (as a dotted path) so that a broken file is easy to fix."""
    top = _object(data, "config")
    _known_keys(top, _TOP_KEYS, "config")
    port = top.get("port", DNS_PORT)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise ConfigError(f"port: not a port number: {port!r}")
    serial = top.get("serial")
    if serial is not None and not _is_int(serial):
        raise ConfigError(f"serial: not an integer: {serial!r}")
    upstream = None
    if "upstream" in top:
        upstream = tuple(parse_server(s, f"upstream[{i}]")
                         for i, s in enumerate(_list(top["upstream"], "upstream")))
    networks: dict[str, Network] = {}
    for net, value in _object(top.get("networks", {}), "networks").items():
        where = f"networks.{net}"
        body = _object(value, where)
        _known_keys(body, _NETWORK_KEYS, where)
        if "gateway" not in body:
            raise ConfigError(f"{where}: no gateway")
        networks[net] = Network(_address(body["gateway"], f"{where}.gateway"),
                                _names(body.get("names", {}), f"{where}.names"))
    clients: dict[str, Client] = {}
    for address, value in _object(top.get("clients", {}), "clients").items():
        where = f"clients.{address}"
        client = _address(address, where)
        body = _object(value, where)
        _known_keys(body, _CLIENT_KEYS, where)
        nets = tuple(_string(n, f"{where}.networks[{i}]")
                     for i, n in enumerate(_list(body.get("networks", []), f"{where}.networks")))
        for net in nets:
            # The engine writes both halves together: a dangling id is its bug, said early.
            if net not in networks:
                raise ConfigError(f"{where}.networks: no network {net!r}")
        dns = tuple(parse_server(s, f"{where}.dns[{i}]")
                    for i, s in enumerate(_list(body.get("dns", []), f"{where}.dns")))
        clients[client] = Client(nets, dns, _names(body.get("names", {}), f"{where}.names"))
    return Config(port, upstream, networks, clients, serial)


def parse_server(text: object, where: str = "server") -> Server:
    """``HOST``, ``HOST:PORT``, ``[V6]:PORT`` or a bare IPv6 address; port 53 by default."""
    value = _string(text, where).strip()
    host, port = value, DNS_PORT
    if value.startswith("["):
        inside, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(f"{where}: not HOST[:PORT]: {value!r}")
        host = inside
        if rest:
            port = _port(rest[1:], value, where)
    elif value.count(":") == 1:
        host, _, number = value.partition(":")
        port = _port(number, value, where)
    return Server(_address(host, where), port)


def nameservers(resolv_conf: str) -> list[Server]:
    """The ``nameserver`` lines of a resolv.conf, as glibc reads them: comments start with
    ``#`` or ``;``, an address that does not parse is skipped, and a file with none means
    127.0.0.1 (glibc's default)."""
    found: list[Server] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "nameserver" or words[1][0] in "#;":
            continue
        try:
            found.append(Server(str(ipaddress.ip_address(words[1]))))
        except ValueError:
            continue
    return found or [Server("127.0.0.1")]


# --- Lookups ---------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    return name.rstrip(".").lower()


def lookup(config: Config, client: str, received_on_gateway: str, name: str) -> list[str] | None:
    """Every address of ``name`` as ``client`` sees it, or None when it does not know it.

    A known client sees the names of all its networks and its own link aliases, wherever its
    query arrived; an unknown one (a container started behind composer's back, the host)
    sees the names of the network whose gateway received the query."""
    key = normalize_name(name)
    found: list[str] = []
    known = False
    for names in _scopes(config, client, received_on_gateway):
        if key in names:
            known = True
            found.extend(names[key])
    return list(dict.fromkeys(found)) if known else None


def reverse_lookup(config: Config, client: str, received_on_gateway: str,
                   address: str) -> str | None:
    """The name to answer a PTR query for ``address`` with, among the names ``client`` sees.

    Several names share an address (service, alias, container name, short id); the one with
    the fewest addresses, then not a short id, then the longest, is most likely the
    container's own name (``proj-web-1`` over ``web`` and ``623175f5e2a5``), which is what
    Docker answers."""
    try:
        wanted = str(ipaddress.ip_address(address))
    except ValueError:
        return None
    best: tuple[int, bool, int, str] | None = None
    for names in _scopes(config, client, received_on_gateway):
        for name, addresses in names.items():
            if wanted in addresses:
                rank = (len(addresses), _SHORT_ID.fullmatch(name) is not None, -len(name), name)
                if best is None or rank < best:
                    best = rank
    return best[3] if best is not None else None


def address_from_reverse_name(name: str) -> str | None:
    """``2.0.18.172.in-addr.arpa`` -> ``172.18.0.2`` (and ``ip6.arpa`` nibbles); None when
    ``name`` is not a whole reverse name."""
    labels = normalize_name(name).split(".")
    if labels[-2:] == ["in-addr", "arpa"] and len(labels) == 6:
        text = ".".join(reversed(labels[:4]))
    elif labels[-2:] == ["ip6", "arpa"] and len(labels) == 34:
        nibbles = "".join(reversed(labels[:32]))
        text = ":".join(nibbles[i:i + 4] for i in range(0, 32, 4))
    else:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def rotated(addresses: Sequence[str], turn: int) -> list[str]:
    """``addresses`` started at position ``turn`` (modulo), wrapping round."""
    if not addresses:
        return []
    start = turn % len(addresses)
    return [*addresses[start:], *addresses[:start]]


class RoundRobin:
    """A turn counter per name, so that each answer for a name starts one address further on
    and clients that take the first address spread over the replicas. Thread-safe: the
    resolver answers from several threads."""

    def __init__(self) -> None:
        self._turns: dict[str, int] = {}
        self._lock = threading.Lock()

    def order(self, name: str, addresses: Sequence[str]) -> list[str]:
        key = normalize_name(name)
        with self._lock:
            turn = self._turns.get(key, 0)
            self._turns[key] = turn + 1
        return rotated(addresses, turn)

    def forget_except(self, names: Iterable[str]) -> None:
        """Drop the counters of names no longer in the config (they would only grow)."""
        keep = set(names)
        with self._lock:
            self._turns = {k: v for k, v in self._turns.items() if k in keep}


def all_names(config: Config) -> set[str]:
    names: set[str] = set()
    for network in config.networks.values():
        names.update(network.names)
    for client in config.clients.values():
        names.update(client.names)
    return names


def _scopes(config: Config, client: str,
            received_on_gateway: str) -> list[Mapping[str, tuple[str, ...]]]:
    try:
        known = config.clients.get(str(ipaddress.ip_address(client)))
    except ValueError:
        known = None
    if known is not None:
        return [*(config.networks[n].names for n in known.networks), known.names]
    return [n.names for n in config.networks.values() if n.gateway == received_on_gateway]


# --- Checking helpers ------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
    return value


def _known_keys(body: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")


def _address(value: object, where: str) -> str:
    text = _string(value, where)
    canonical = _canonical_address(text)
    if canonical is None:
        raise ConfigError(f"{where}: not an IP address: {text!r}")
    return canonical


@functools.lru_cache(maxsize=4096)
def _canonical_address(text: str) -> str | None:
    # Cached: every reload reads every container's address again (ipaddress is slow).
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _port(text: str, value: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{where}: not a port number in {value!r}")
    return int(text)


def _names(value: object, where: str) -> dict[str, tuple[str, ...]]:
    names: dict[str, list[str]] = {}
    for name, addresses in _object(value, where).items():
        key = normalize_name(name)
        # A name is one DNS name: no spaces, no empty labels (which no query can carry).
        if not key or _SPACE.search(key) or "" in key.split("."):
            raise ConfigError(f"{where}: not a DNS name: {name!r}")
        merged = names.setdefault(key, [])  # "Web" and "web" are one name
        for i, address in enumerate(_list(addresses, f"{where}.{name}")):
            canonical = _canonical_address(address) if isinstance(address, str) else None
            # The path is spelled out only for an error: this runs for every record.
            merged.append(canonical or _address(address, f"{where}.{name}[{i}]"))
    return {k: tuple(dict.fromkeys(v)) for k, v in names.items()}
