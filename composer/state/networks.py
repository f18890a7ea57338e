"""Network rows in the SQLite store: what was asked of each network and what was chosen.

The kernel is the truth for what exists (the bridge, its address); a row is the truth for what
was allocated (the subnet, so no other network gets it) and for the bridge's name, which is how
the network's kernel objects are found again after a crash.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from composer.errors import ComposerError
from composer.state.store import Store

_COLUMNS = ("id", "name", "driver", "bridge", "subnet", "gateway", "ip_range", "reserved",
            "internal", "labels", "options", "created")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM networks"


class NetworkExists(ComposerError):
    """Another network has the name asked for."""


@dataclass(frozen=True)
class NetworkRow:
    """One network. ``reserved`` are the aux addresses never handed out; ``options`` are the
    driver options as given (``com.docker.network.driver.mtu``, ...)."""

    id: str
    name: str
    driver: str
    bridge: str
    subnet: str
    gateway: str
    ip_range: str
    created: float
    reserved: tuple[str, ...] = ()
    internal: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]


def _row(values: tuple[Any, ...]) -> NetworkRow:
    data = dict(zip(_COLUMNS, values, strict=True))
    data["reserved"] = tuple(json.loads(data["reserved"]))
    data["labels"] = json.loads(data["labels"])
    data["options"] = json.loads(data["options"])
    data["internal"] = bool(data["internal"])
    return NetworkRow(**data)


def _value(key: str, value: Any) -> Any:
    if key in ("reserved", "labels", "options"):
        return json.dumps(list(value) if key == "reserved" else dict(value), sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


def insert(db: Store, row: NetworkRow) -> None:
    """Record a new network; :class:`NetworkExists` when its name is taken (checked in the
    same transaction)."""
    with db.transaction() as conn:
        if conn.execute("SELECT 1 FROM networks WHERE name = ?", (row.name,)).fetchone():
            raise NetworkExists(f"network with name {row.name} already exists")
        values = dataclasses.asdict(row)
        conn.execute(f"INSERT INTO networks ({', '.join(_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in _COLUMNS)})",
                     tuple(_value(k, values[k]) for k in _COLUMNS))


def find(db: Store, name_or_id: str) -> NetworkRow | None:
    """By exact name, full id, or a unique id prefix (Docker's rule)."""
    with db.snapshot() as conn:
        found = conn.execute(f"{_SELECT} WHERE name = ? OR id = ?",
                             (name_or_id, name_or_id)).fetchone()
        if found is None and name_or_id and all(c in "0123456789abcdef" for c in name_or_id):
            matches = conn.execute(f"{_SELECT} WHERE id LIKE ? LIMIT 2",
                                   (name_or_id + "%",)).fetchall()
            found = matches[0] if len(matches) == 1 else None
    return None if found is None else _row(found)


def all_rows(db: Store) -> list[NetworkRow]:
    """Every network, by name."""
    with db.snapshot() as conn:
        return [_row(r) for r in conn.execute(f"{_SELECT} ORDER BY name").fetchall()]


def delete(db: Store, network_id: str) -> bool:
    """The row and its leases, in one transaction."""
    with db.transaction() as conn:
        conn.execute("DELETE FROM leases WHERE network = ?", (network_id,))
        return conn.execute("DELETE FROM networks WHERE id = ?", (network_id,)).rowcount > 0
