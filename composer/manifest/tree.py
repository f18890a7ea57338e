"""The located YAML tree that every loader phase passes along.

Mappings and sequences are ``dict``/``list`` subclasses that remember where they and each of
their entries came from; scalars stay plain Python values (``str``, ``int``, ``float``, ``bool``,
``None``), and their place is the one their parent records for them. A phase that rewrites a
value keeps its container (or builds a new one with :func:`ymap`/:func:`yseq` and the old
places), so an error found after interpolation or merging still points at the user's line.

Paths are tuples of keys and indexes, ``("services", "web", "ports", 0)``, shown in YAML words
as ``services.web.ports[0]`` by :func:`dotted`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from composer.errors import Loc

Path = tuple[str | int, ...]

#: Merge tags of the Compose Specification, kept per key on the mapping that holds the value.
RESET = "reset"
OVERRIDE = "override"


class YMap(dict[str, Any]):
    """A YAML mapping with its own place, each key's place, and per-key merge tags."""

    __slots__ = ("key_locs", "loc", "tags")

    def __init__(self, items: Iterable[tuple[str, Any]] | Mapping[str, Any] = (),
                 loc: Loc | None = None) -> None:
        super().__init__(items)
        self.loc = loc
        self.key_locs: dict[str, Loc] = {}
        self.tags: dict[str, str] = {}

    def loc_of(self, key: str) -> Loc | None:
        """Where ``key`` is written, or where this mapping is when the key was added later."""
        return self.key_locs.get(key, self.loc)


class YSeq(list[Any]):
    """A YAML sequence with its own place and each item's place."""

    __slots__ = ("item_locs", "loc")

    def __init__(self, items: Iterable[Any] = (), loc: Loc | None = None,
                 item_locs: Iterable[Loc | None] | None = None) -> None:
        super().__init__(items)
        self.loc = loc
        self.item_locs: list[Loc | None] = (
            list(item_locs) if item_locs is not None else [loc] * len(self))

    def loc_of(self, index: int) -> Loc | None:
        if 0 <= index < len(self.item_locs) and self.item_locs[index] is not None:
            return self.item_locs[index]
        return self.loc


def ymap(items: Iterable[tuple[str, Any]] | Mapping[str, Any] = (), like: Any = None) -> YMap:
    """A new mapping that keeps the places (and tags) of ``like`` for the keys it shares."""
    out = YMap(items, loc=getattr(like, "loc", None))
    if isinstance(like, YMap):
        out.key_locs = {k: v for k, v in like.key_locs.items() if k in out}
        out.tags = {k: v for k, v in like.tags.items() if k in out}
    return out


def yseq(items: Iterable[Any] = (), like: Any = None,
         item_locs: Iterable[Loc | None] | None = None) -> YSeq:
    """A new sequence placed where ``like`` is; items take ``item_locs`` or ``like``'s own."""
    items = list(items)
    if item_locs is None and isinstance(like, YSeq) and len(like.item_locs) == len(items):
        item_locs = like.item_locs
    return YSeq(items, loc=getattr(like, "loc", None), item_locs=item_locs)


def loc_of(node: Any) -> Loc | None:
    """The place of a container node (scalars have none of their own)."""
    return getattr(node, "loc", None)


def locate(root: Any, path: Path) -> Loc | None:
    """The most precise known place for ``path`` under ``root``.

    Walks as far as the path exists; the place of the deepest entry reached wins, so a
    missing key still points at the mapping that lacks it.
    """
    best = loc_of(root)
    node = root
    for step in path:
        inside_map = isinstance(node, YMap) and isinstance(step, str) and step in node
        inside_seq = isinstance(node, YSeq) and isinstance(step, int) and 0 <= step < len(node)
        if not (inside_map or inside_seq):
            break
        best = node.loc_of(step) or best
        node = node[step]
    return best


def dotted(path: Path) -> str:
    """``("services", "web", "ports", 0)`` -> ``services.web.ports[0]``."""
    out = ""
    for step in path:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            text = str(step)
            if not text or any(c in text for c in ".[] "):
                text = f'"{text}"'
            out += ("." if out else "") + text
    return out


def plain(node: Any) -> Any:
    """A deep copy of ``node`` as plain dicts and lists (for output and hashing)."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
