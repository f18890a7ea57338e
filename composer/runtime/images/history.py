"""``image history``: an image's build steps, newest first, each with the layer it made.

An image config's ``history`` lists every step; the steps that made no layer (``ENV``,
``CMD``, ...) say ``empty_layer: true``. The other steps are paired, in order, with the
config's layers: that is how Docker reads it, and what lets it show a size per step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Step:
    """One line of ``image history``: ``layer`` is the chain id of the layer the step made
    (None for a step without one), ``size`` its unpacked size in bytes (0 without a layer,
    None when the store does not know it)."""

    created: float | None
    created_by: str
    comment: str
    layer: str | None
    size: int | None


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def steps(config: Mapping[str, Any], layers: list[tuple[str, int | None]]) -> list[Step]:
    """The steps of an image, newest first. ``layers`` are (chain id, size), bottom first.

    A config without history (some tools write none) gets one step per layer, so that every
    layer is shown; layers beyond the steps that claim one are shown the same way.
    """
    entries = config.get("history")
    out: list[Step] = []
    remaining = list(layers)
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping):
            continue
        layer: str | None = None
        size: int | None = 0
        if not entry.get("empty_layer") and remaining:
            layer, size = remaining.pop(0)
        out.append(Step(created=_time(entry.get("created")),
                        created_by=str(entry.get("created_by") or ""),
                        comment=str(entry.get("comment") or ""), layer=layer, size=size))
    out.extend(Step(created=None, created_by="", comment="", layer=chain, size=size)
               for chain, size in remaining)
    out.reverse()
    return out


def human_size(size: int | None) -> str:
    """Sizes as Docker prints them (decimal units, three significant digits): ``1.23MB``."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}" if unit != "B" else f"{size}B"
        value /= 1000
    raise AssertionError("unreachable")
