"""What the port proxy forwards: the entries, their JSON form, and its checking (pure).

Both sides use this module: the engine checks what it is about to write (a bad entry is its
caller's error, raised there rather than logged by the proxy), and the proxy checks what it
reads. Addresses come out in their canonical form, so that an entry's :attr:`ProxyEntry.key`
(what the status file reports bind errors under) is the same on both sides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STEM = "proxy"  # its files in the directory: proxy.pid, proxy.status, proxy.log
UDP_TIMEOUT = 30.0  # seconds a UDP session may stay idle (docker-proxy keeps them 90 s)
PROTOCOLS = ("tcp", "udp")
_ENTRY_KEYS = frozenset({"protocol", "listen", "port", "target", "target_port"})
_TOP_KEYS = frozenset({"serial", "entries", "udp_timeout"})


class ConfigError(ValueError):
    """The config is not what the proxy expects; the message says where (a dotted path)."""


@dataclass(frozen=True)
class ProxyEntry:
    """One forwarded port: ``protocol`` ("tcp" or "udp") on IPv6 address ``listen`` ("::" for
    all of them), port ``port``, to ``target:target_port`` (a container's IPv4 address)."""

    protocol: str
    listen: str
    port: int
    target: str
    target_port: int

    @property
    def key(self) -> str:
        """What the entry is known by (``tcp/[::]:8080``): one listener per key."""
        try:
            listen = ipaddress.ip_address(self.listen).compressed
        except ValueError:
            listen = self.listen  # not an address: parse_config refuses it, by this name
        return f"{self.protocol}/[{listen}]:{self.port}"


@dataclass(frozen=True)
class Config:
    serial: int | None
    entries: tuple[ProxyEntry, ...]
    udp_timeout: float = UDP_TIMEOUT


def config_data(entries: Sequence[ProxyEntry], *, serial: int | None = None,
                udp_timeout: float = UDP_TIMEOUT) -> dict[str, Any]:
    """The JSON document for these entries (what :func:`parse_config` reads back)."""
    data: dict[str, Any] = {
        "entries": [{"protocol": e.protocol, "listen": e.listen, "port": e.port,
                     "target": e.target, "target_port": e.target_port} for e in entries],
    }
    if udp_timeout != UDP_TIMEOUT:
        data["udp_timeout"] = udp_timeout
    if serial is not None:
        data["serial"] = serial
    return data


def parse_config(data: object) -> Config:
    """Check the decoded JSON and build a :class:`Config`; :class:`ConfigError` names the
    first thing wrong."""
    top = _mapping(data, "config", _TOP_KEYS)
    serial = top.get("serial")
    if serial is not None and not _is_int(serial):
        raise ConfigError(f"serial: not an integer: {serial!r}")
    udp_timeout = top.get("udp_timeout", UDP_TIMEOUT)
    if not isinstance(udp_timeout, int | float) or isinstance(udp_timeout, bool) \
            or not udp_timeout > 0:
        raise ConfigError(f"udp_timeout: not a positive number of seconds: {udp_timeout!r}")
    raw = top.get("entries", [])
    if not isinstance(raw, list):
        raise ConfigError(f"entries: expected a list, got {type(raw).__name__}")
    entries: list[ProxyEntry] = []
    seen: dict[str, int] = {}
    for i, value in enumerate(raw):
        entry = parse_entry(value, f"entries[{i}]")
        if entry.key in seen:
            raise ConfigError(f"entries[{i}]: {entry.key} is entries[{seen[entry.key]}] "
                              f"already")
        seen[entry.key] = i
        entries.append(entry)
    return Config(serial, tuple(entries), float(udp_timeout))


def parse_entry(value: object, where: str) -> ProxyEntry:
    body = _mapping(value, where, _ENTRY_KEYS)
    missing = sorted(_ENTRY_KEYS - set(body))
    if missing:
        raise ConfigError(f"{where}: no {missing[0]}")
    protocol = body["protocol"]
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol: expected tcp or udp, got {protocol!r}")
    listen = _address(body["listen"], f"{where}.listen")
    # The IPv4 side of a published port is the kernel's NAT; this proxy is for what NAT
    # cannot do (IPv6 to an IPv4-only container, and ::1).
    if listen.version != 6:
        raise ConfigError(f"{where}.listen: not an IPv6 address: {body['listen']!r}")
    return ProxyEntry(protocol, listen.compressed, _port(body["port"], f"{where}.port"),
                      _address(body["target"], f"{where}.target").compressed,
                      _port(body["target_port"], f"{where}.target_port"))


def _mapping(value: object, where: str, known: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _port(value: object, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    raise ConfigError(f"{where}: not a port number: {value!r}")


def _address(value: object, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        if not isinstance(value, str):
            raise ValueError
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{where}: not an IP address: {value!r}") from None
    return address
