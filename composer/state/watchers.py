"""Background watchers in the store: which ``composer watch`` process watches which project.

A row names a process by its pid, the time it started (clock ticks since boot, from
``/proc/PID/stat``) and the boot it ran in; :mod:`composer.engine.watchers` checks all three
before it believes or signals the process. Rows outlive the engine that wrote them, as the
watchers do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from composer.state.store import Store


@dataclass(frozen=True, slots=True)
class WatcherRow:
    project: str
    pid: int
    start_ticks: int
    boot_id: str
    started_at: float
    log_path: str
    argv: tuple[str, ...]


_COLUMNS = "project, pid, start_ticks, boot_id, started_at, log_path, argv"


def save(db: Store, row: WatcherRow) -> None:
    with db.transaction() as conn:
        conn.execute(f"INSERT OR REPLACE INTO watchers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (row.project, row.pid, row.start_ticks, row.boot_id,
                      row.started_at or time.time(), row.log_path, json.dumps(list(row.argv))))


def get(db: Store, project: str) -> WatcherRow | None:
    with db.snapshot() as conn:
        found = conn.execute(f"SELECT {_COLUMNS} FROM watchers WHERE project = ?",
                             (project,)).fetchone()
    return None if found is None else _row(found)


def all_rows(db: Store) -> list[WatcherRow]:
    with db.snapshot() as conn:
        return [_row(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM watchers "
                                              "ORDER BY project")]


def forget(db: Store, project: str, pid: int | None = None) -> None:
    """Remove the project's row (only if it still names ``pid``, when given: a watcher
    started meanwhile keeps its row)."""
    with db.transaction() as conn:
        if pid is None:
            conn.execute("DELETE FROM watchers WHERE project = ?", (project,))
        else:
            conn.execute("DELETE FROM watchers WHERE project = ? AND pid = ?", (project, pid))


def _row(r: tuple[object, ...]) -> WatcherRow:
    project, pid, ticks, boot, started, log_path, argv = r
    return WatcherRow(str(project), int(str(pid)), int(str(ticks)), str(boot),
                      float(str(started)), str(log_path),
                      tuple(str(a) for a in json.loads(str(argv))))
