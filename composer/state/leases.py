"""IP leases in the store: the address each container holds on each network.

Allocation reads the leases and writes the new one in one write transaction (``BEGIN
IMMEDIATE``), so two engines, or two threads, can never be given the same address, and a
crash leaves either the lease or nothing. Releasing a lease that is gone is success.
"""

from __future__ import annotations

import ipaddress
import time

from composer.runtime.ipam import Plan, allocate
from composer.state.store import Store


def lease(db: Store, network: str, container: str, addressing: Plan, *,
          static: str | None = None) -> ipaddress.IPv4Address:
    """The container's address on ``network``: the one it already holds, else a new one."""
    with db.transaction() as conn:
        held = conn.execute("SELECT address FROM leases WHERE network = ? AND container = ?",
                            (network, container)).fetchone()
        if held is not None and (static is None or held[0] == static):
            return ipaddress.IPv4Address(held[0])
        if held is not None:  # asked for another static address: give the old one back
            conn.execute("DELETE FROM leases WHERE network = ? AND container = ?",
                         (network, container))
        leased = [ipaddress.IPv4Address(a) for (a,) in conn.execute(
            "SELECT address FROM leases WHERE network = ?", (network,))]
        address = allocate(addressing, leased, static=static)
        conn.execute("INSERT INTO leases (network, address, container, created) "
                     "VALUES (?, ?, ?, ?)", (network, str(address), container, time.time()))
        return address


def release(db: Store, network: str, container: str) -> bool:
    with db.transaction() as conn:
        return conn.execute("DELETE FROM leases WHERE network = ? AND container = ?",
                            (network, container)).rowcount > 0


def release_all(db: Store, container: str) -> int:
    """Every lease of a container (it is being removed)."""
    with db.transaction() as conn:
        return conn.execute("DELETE FROM leases WHERE container = ?", (container,)).rowcount


def networks_of(db: Store, container: str) -> list[str]:
    """The networks where ``container`` holds an address."""
    with db.snapshot() as conn:
        return [str(n) for (n,) in conn.execute(
            "SELECT network FROM leases WHERE container = ? ORDER BY network", (container,))]


def leases_of(db: Store, network: str) -> dict[str, str]:
    """container -> address on ``network``."""
    with db.snapshot() as conn:
        return dict(conn.execute("SELECT container, address FROM leases WHERE network = ?",
                                 (network,)).fetchall())
