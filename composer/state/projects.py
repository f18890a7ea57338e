"""Compose projects in the store: each one's desired state, and its containers' configs.

The desired project is what the last ``up`` asked for (the normalized model as JSON, the
options and the environment the files were read with); ``ls`` lists projects from it and the
engine can reconcile again without the compose files. A container's hashed configuration is
kept beside it so that a later plan can say which field changed, not only that the hash did.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from composer.state.store import Store


def save(db: Store, name: str, desired: Mapping[str, Any]) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO projects (name, desired, updated) VALUES (?, ?, ?)",
                     (name, json.dumps(desired, sort_keys=True), time.time()))


def get(db: Store, name: str) -> dict[str, Any] | None:
    with db.snapshot() as conn:
        row = conn.execute("SELECT desired FROM projects WHERE name = ?", (name,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def names(db: Store) -> list[str]:
    with db.snapshot() as conn:
        return sorted(str(r[0]) for r in conn.execute("SELECT name FROM projects"))


def forget(db: Store, name: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM projects WHERE name = ?", (name,))


def save_config(db: Store, container_id: str, config: Mapping[str, Any]) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO service_configs (container_id, config) "
                     "VALUES (?, ?)", (container_id, json.dumps(config, sort_keys=True)))


def configs(db: Store) -> dict[str, dict[str, Any]]:
    """container id -> the configuration it was created from."""
    with db.snapshot() as conn:
        return {str(cid): dict(json.loads(text)) for cid, text in
                conn.execute("SELECT container_id, config FROM service_configs")}
