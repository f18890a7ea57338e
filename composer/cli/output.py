"""Plain JSON for the command line's own listings (``config --variables --format json``).

The project itself is printed by :mod:`composer.manifest.printing`, in Compose's form.
"""

from __future__ import annotations

import json
from typing import Any


def to_json(data: Any, *, indent: int = 2) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=False)
