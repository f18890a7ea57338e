"""The JSON documents of images (manifests, indexes, configs): read as objects, written compact.

One place for it, so the registry, the store, archives and transfers agree on what a document
that is not a JSON object is, each raising its own kind of error.
"""

from __future__ import annotations

import json
from typing import Any

from composer.errors import ComposerError


def json_object(data: bytes, what: str, error: type[ComposerError]) -> dict[str, Any]:
    """``data`` as a JSON object, or ``error`` saying that ``what`` is not one."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise error(f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise error(f"{what} is not a JSON object")
    return value


def canonical_json(value: Any) -> bytes:
    """Compact JSON bytes, as registries and Docker write manifests and configs."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
