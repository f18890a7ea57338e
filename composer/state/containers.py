"""Container rows in the SQLite store: what the engine made and what it last saw of each.

The OCI runtime and conmon's exit files are the truth for what is running; a row is the truth
for what was asked (the spec), and for what must survive an engine restart: the restart count,
whether the user stopped the container (restart policies must not undo that), the health state,
and the conmon pid and boot id that let a new engine adopt what is still running.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from composer.errors import ComposerError
from composer.state.store import Store

Status = Literal["created", "running", "paused", "restarting", "exited", "dead"]

_COLUMNS = ("id", "name", "image_id", "image_ref", "spec", "created", "status", "started_at",
            "finished_at", "exit_code", "oom_killed", "restart_count", "stopped_by_user",
            "health", "boot_id", "conmon_pid", "pid", "runtime", "ports")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM containers"


class NameInUse(ComposerError):
    """Another container has the name asked for."""


@dataclass(frozen=True)
class ContainerRow:
    """One container. ``spec`` is the ContainerSpec as JSON, ``health`` the HealthState as
    JSON (None without a health check), times are Unix seconds."""

    id: str
    name: str
    image_id: str
    image_ref: str
    spec: Mapping[str, Any]
    created: float
    status: Status
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    restart_count: int = 0
    stopped_by_user: bool = False
    health: Mapping[str, Any] | None = None
    boot_id: str | None = None
    conmon_pid: int | None = None
    pid: int | None = None
    runtime: str | None = None
    #: Published ports while it runs: [{"protocol", "host_ip", "host_port", "container_port"}].
    ports: tuple[Mapping[str, Any], ...] | None = None

    @property
    def short_id(self) -> str:
        return self.id[:12]


def _row(values: tuple[Any, ...]) -> ContainerRow:
    data = dict(zip(_COLUMNS, values, strict=True))
    data["spec"] = json.loads(data["spec"])
    data["health"] = None if data["health"] is None else json.loads(data["health"])
    data["ports"] = None if data["ports"] is None else tuple(json.loads(data["ports"]))
    data["oom_killed"] = bool(data["oom_killed"])
    data["stopped_by_user"] = bool(data["stopped_by_user"])
    return ContainerRow(**data)


def _value(key: str, value: Any) -> Any:
    if key in ("spec", "health", "ports"):
        return None if value is None else json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    return value


def insert(db: Store, row: ContainerRow) -> None:
    """Record a new container; :class:`NameInUse` when its name is taken (checked in the same
    transaction, so two concurrent creates cannot both win)."""
    with db.transaction() as conn:
        taken = conn.execute("SELECT id FROM containers WHERE name = ?", (row.name,)).fetchone()
        if taken is not None:
            raise NameInUse(
                f'the container name "/{row.name}" is already in use by container '
                f'"{taken[0]}": remove (or rename) that container to be able to reuse that name')
        values = dataclasses.asdict(row)
        conn.execute(f"INSERT INTO containers ({', '.join(_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in _COLUMNS)})",
                     tuple(_value(k, values[k]) for k in _COLUMNS))


def update(db: Store, container_id: str, **fields: Any) -> None:
    """Change some columns of one container (unknown column names are a programming error)."""
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise ValueError(f"unknown container columns: {sorted(unknown)}")
    if not fields:
        return
    with db.transaction() as conn:
        conn.execute(f"UPDATE containers SET {', '.join(f'{k} = ?' for k in fields)} "
                     "WHERE id = ?", (*(_value(k, v) for k, v in fields.items()), container_id))


def get(db: Store, container_id: str) -> ContainerRow | None:
    with db.snapshot() as conn:
        found = conn.execute(f"{_SELECT} WHERE id = ?", (container_id,)).fetchone()
    return None if found is None else _row(found)


def find(db: Store, name_or_id: str) -> ContainerRow | None:
    """By exact name (a leading ``/`` allowed, as Docker), full id, or a unique id prefix."""
    text = name_or_id.removeprefix("/")
    with db.snapshot() as conn:
        found = conn.execute(f"{_SELECT} WHERE name = ? OR id = ?", (text, text)).fetchone()
        if found is None and text and all(c in "0123456789abcdef" for c in text):
            matches = conn.execute(f"{_SELECT} WHERE id LIKE ? LIMIT 2",
                                   (text + "%",)).fetchall()
            found = matches[0] if len(matches) == 1 else None
    return None if found is None else _row(found)


def all_rows(db: Store) -> list[ContainerRow]:
    """Every container, newest first."""
    with db.snapshot() as conn:
        rows = conn.execute(f"{_SELECT} ORDER BY created DESC, id").fetchall()
    return [_row(r) for r in rows]


@dataclass(frozen=True)
class Attached:
    """A container joined to its networks (``ports`` is set from attach to detach), as the
    network rebuild reads it: the spec left as the store's JSON text, so that the reader can
    keep what it decoded from the same text last time instead of decoding every spec again."""

    id: str
    name: str
    created: float
    spec_text: str
    ports: tuple[Mapping[str, Any], ...]


def attached(db: Store) -> list[Attached]:
    """The containers joined to their networks, oldest first."""
    with db.snapshot() as conn:
        found = conn.execute("SELECT id, name, created, spec, ports FROM containers "
                             "WHERE ports IS NOT NULL ORDER BY created, id").fetchall()
    return [Attached(cid, name, created, spec, tuple(json.loads(ports)))
            for cid, name, created, spec, ports in found]


def names(db: Store) -> set[str]:
    """Every container name in use (cheaper than reading every row)."""
    with db.snapshot() as conn:
        return {name for (name,) in conn.execute("SELECT name FROM containers")}


def delete(db: Store, container_id: str) -> bool:
    with db.transaction() as conn:
        return conn.execute("DELETE FROM containers WHERE id = ?",
                            (container_id,)).rowcount > 0


def image_in_use(db: Store, image_id: str) -> bool:
    """Whether a container uses the image (image GC keeps it then)."""
    with db.snapshot() as conn:
        return conn.execute("SELECT 1 FROM containers WHERE image_id = ? LIMIT 1",
                            (image_id,)).fetchone() is not None
