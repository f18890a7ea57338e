"""Documents already found to match the schema, remembered as one empty file per digest.

Loading a project that has not changed since the last command then skips jsonschema: its
import and one validation are about 80 ms of the ~150 ms a command such as ``up`` or ``ps``
spends before it asks the engine anything. The digest covers the document (after coercion),
the schema file and composer's version, so an edit of any of them validates again. Only
successes are remembered: a document that fails is checked, and explained, every time.

The files live in ``$COMPOSER_CACHE_DIR``, else ``$XDG_CACHE_HOME/composer``, else
``~/.cache/composer``, under ``valid/``; the oldest go beyond :data:`KEEP`. Nothing breaks
without them: a cache that cannot be read or written only costs the validation.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from composer.__about__ import __version__

CACHE_ENV = "COMPOSER_CACHE_DIR"
KEEP = 256


def cache_dir() -> Path:
    """Where composer keeps what it may recompute at any time."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "composer"


def digest(document: Any, schema: bytes) -> str | None:
    """The key for ``document`` checked against the schema file's bytes ``schema``; None
    when the document holds something JSON cannot spell exactly (a YAML date, say), which is
    then always validated."""
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    hasher = hashlib.sha256(__version__.encode())
    hasher.update(b"\0")
    hasher.update(hashlib.sha256(schema).digest())
    hasher.update(text.encode())
    return hasher.hexdigest()


def known(key: str) -> bool:
    try:
        os.utime(cache_dir() / "valid" / key)  # a key in use is not among the oldest
    except OSError:
        return False
    return True


def remember(key: str) -> None:
    """Note ``key`` as valid; quietly nothing when the cache directory is not writable."""
    folder = cache_dir() / "valid"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        (folder / key).touch()
        entries = list(os.scandir(folder))
        if len(entries) > 2 * KEEP:  # trimmed now and then, not at every write
            entries.sort(key=lambda e: e.stat().st_mtime)
            for entry in entries[:-KEEP]:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
