"""The builder's cache in the store: a build step's key -> the image that step made.

A key is a digest over everything that decides a step's result (:func:`step_key`): the parent
image, the instruction as expanded, the build args and env it sees, and for ``COPY``/``ADD``
the content of its sources. Equal keys mean an equal result, so a hit is reused as it is.

Rows go with their image (``ON DELETE CASCADE``): an image removed or pruned is a cache miss,
never a hit on something gone. A step made again replaces its row.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping

from composer.state.store import Store

KEY_VERSION = "1"  # part of every key: a change of what keys hold misses the old rows


def step_key(parent: str | None, instruction: str, *, env: Mapping[str, str] | None = None,
             args: Mapping[str, str] | None = None, content: str = "") -> str:
    """The key of one step: ``parent`` (an image id; None for a stage from scratch), the
    instruction as it runs, the env and args it sees, and ``content`` (the digest of the
    files it copies, "" for the others)."""
    document = {"v": KEY_VERSION, "parent": parent or "", "instruction": instruction,
                "env": dict(sorted((env or {}).items())),
                "args": dict(sorted((args or {}).items())), "content": content}
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def lookup(db: Store, key: str) -> str | None:
    """The image id a step with this key made, if the image is still there."""
    with db.snapshot() as conn:
        row = conn.execute("SELECT image_id FROM build_cache WHERE key = ?", (key,)).fetchone()
    return str(row[0]) if row is not None else None


def record(db: Store, key: str, image_id: str) -> None:
    """Remember that the step ``key`` made ``image_id`` (which must be in the store)."""
    with db.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO build_cache (key, image_id, created) "
                     "VALUES (?, ?, ?)", (key, image_id, time.time()))


def images(db: Store) -> set[str]:
    """Every image the cache holds (for ``image prune``: they are the cache)."""
    with db.snapshot() as conn:
        return {str(image_id) for (image_id,) in
                conn.execute("SELECT DISTINCT image_id FROM build_cache")}
