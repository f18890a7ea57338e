"""Phase 7: merge compose files (and an extended service under its child), as Compose does.

The rules are data: :data:`RULES` maps path patterns (``*`` matches one key) to a strategy.
Anything not listed merges the default way: mappings key by key (a ``null`` in the override
keeps the base value), sequences append, scalars replace. The trees are in canonical (long)
form when they get here, but short forms do not break anything: entries whose key cannot be
read are simply kept.

Merge tags: a key tagged ``!reset`` in the override removes the value; ``!override`` replaces
it whole. A ``!reset`` key still left in the base (the first file, or a file that was never
merged over) counts as absent, and :func:`strip_reset_tags` removes what is left at the end.

What Compose does, checked against Docker Compose v2.40.3, where it surprises:
``build.cache_from``, ``build.platforms``, ``build.secrets``, ``group_add``, ``security_opt``,
``external_links`` and ``volumes_from`` plainly append (Compose then rejects the duplicates
its schema forbids); a ``logging`` whose driver changes drops the base options; an ulimit is
replaced whole; ``null`` replaces an entry of ``environment``/``labels``/``build.args`` but
nowhere else; ``command``/``entrypoint`` are replaced even by ``null``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

from composer.manifest.tree import OVERRIDE, RESET, Path, YMap, YSeq, plain

Strategy = Callable[[Any, Any, Path], Any]
KeyFn = Callable[[Any], Hashable | None]
_T = TypeVar("_T")


def clone(node: _T) -> _T:
    """A deep copy of ``node`` that keeps every place and tag."""
    return cast(_T, _clone(node))


def _clone(node: Any) -> Any:
    if isinstance(node, YMap):
        out = YMap(((k, _clone(v)) for k, v in node.items()), loc=node.loc)
        out.key_locs = dict(node.key_locs)
        out.tags = dict(node.tags)
        return out
    if isinstance(node, YSeq):
        return YSeq((_clone(v) for v in node), loc=node.loc, item_locs=list(node.item_locs))
    if isinstance(node, dict):
        return YMap((k, _clone(v)) for k, v in node.items())
    if isinstance(node, list):
        return YSeq(_clone(v) for v in node)
    return node


def merge(base: YMap, override: YMap, *, at: Path = ()) -> YMap:
    """``override`` merged over ``base`` (neither is changed); ``at`` is where both sit."""
    result = _merge_value(base, override, at)
    assert isinstance(result, YMap)
    return result


def strip_reset_tags(root: YMap) -> None:
    """Remove every key tagged ``!reset`` left in ``root`` and forget the merge tags."""
    for key in [k for k, tag in root.tags.items() if tag == RESET]:
        root.pop(key, None)
        root.key_locs.pop(key, None)
    root.tags.clear()
    for value in root.values():
        _strip_nested(value)


def _strip_nested(node: Any) -> None:
    if isinstance(node, YMap):
        strip_reset_tags(node)
    elif isinstance(node, list):
        for item in node:
            _strip_nested(item)


# --- strategies ---------------------------------------------------------------------------


def _merge_value(base: Any, override: Any, path: Path) -> Any:
    """The strategy the table names for ``path``, or the default one."""
    return _rule_for(path)(base, override, path)


def default(base: Any, override: Any, path: Path) -> Any:
    """Mappings key by key, sequences appended, scalars replaced (``null`` keeps the base)."""
    if isinstance(base, dict) and isinstance(override, dict):
        return _merge_mappings(base, override, path, null_replaces=False)
    if isinstance(base, list) and isinstance(override, list):
        return append(base, override, path)
    if override is None:
        return clone(base)
    return clone(override)


def replace(base: Any, override: Any, path: Path) -> Any:
    """The override wins whole, even when it is ``null``."""
    return clone(override)


def append(base: Any, override: Any, path: Path) -> Any:
    """Base items then override items."""
    if not (isinstance(base, list) and isinstance(override, list)):
        return default(base, override, path)
    return _seq([*base, *override], base, override, [*_locs(base), *_locs(override)])


def unique(base: Any, override: Any, path: Path) -> Any:
    """Base items, then the override items not already there (equal as plain values)."""
    return by_key(_whole_item)(base, override, path)


def keyed_mapping(base: Any, override: Any, path: Path) -> Any:
    """``environment``-like mappings: entries replaced one by one, ``null`` included.

    The list form (``KEY=VALUE``) is merged by the name before ``=``.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        return _merge_mappings(base, override, path, null_replaces=True, deep=False)
    if isinstance(base, list) and isinstance(override, list):
        return by_key(lambda item: str(item).split("=", 1)[0])(base, override, path)
    return default(base, override, path)


def by_key(key_fn: KeyFn) -> Strategy:
    """Sequence entries with the same key: the override's entry replaces the base's in place.

    New keys are appended; entries without a key (``None``) are always kept.
    """

    def strategy(base: Any, override: Any, path: Path) -> Any:
        if not (isinstance(base, list) and isinstance(override, list)):
            return default(base, override, path)
        items = list(base)
        locs = _locs(base)
        index: dict[Hashable, int] = {}
        for i, item in enumerate(items):
            key = key_fn(item)
            if key is not None:
                index.setdefault(key, i)
        for item, loc in zip(override, _locs(override), strict=True):
            key = key_fn(item)
            if key is not None and key in index:
                items[index[key]] = item
                locs[index[key]] = loc
                continue
            if key is not None:
                index[key] = len(items)
            items.append(item)
            locs.append(loc)
        return _seq(items, base, override, locs)

    return strategy


def logging(base: Any, override: Any, path: Path) -> Any:
    """A different driver starts over (its options do not mix with the old driver's)."""
    if isinstance(base, dict) and isinstance(override, dict):
        old, new = base.get("driver"), override.get("driver")
        if old and new and old != new:
            return clone(override)
    return default(base, override, path)


def ipam_config(base: Any, override: Any, path: Path) -> Any:
    """The override's pools, each merged over the base pool with the same subnet.

    Compose keeps only the override's pools; its own result mixes up which base pool merges
    into which (v2.40.3), so composer does what that code means to do.
    """
    if not (isinstance(base, list) and isinstance(override, list)):
        return default(base, override, path)
    pools = {p.get("subnet"): p for p in base if isinstance(p, dict) and p.get("subnet")}
    items = []
    for pool in override:
        old = pools.get(pool.get("subnet")) if isinstance(pool, dict) else None
        items.append(default(old, pool, path) if old is not None else pool)
    return _seq(items, base, override, _locs(override))


# --- keys of sequence entries -------------------------------------------------------------


def _whole_item(item: Any) -> Hashable:
    return repr(plain(item))


def _field(name: str) -> KeyFn:
    def key(item: Any) -> Hashable | None:
        if isinstance(item, dict):
            value = item.get(name)
            return None if value is None else str(value)
        return _whole_item(item)

    return key


def _port_key(item: Any) -> Hashable | None:
    if isinstance(item, dict):
        return (str(item.get("host_ip") or ""), str(item.get("target")),
                str(item.get("published") or ""), str(item.get("protocol") or "tcp"))
    return _whole_item(item)


def _volume_key(item: Any) -> Hashable | None:
    if isinstance(item, dict):
        target = item.get("target")
        return None if target is None else str(target)
    if isinstance(item, str):
        # Short syntax SOURCE:TARGET[:MODE] (or just TARGET): the target decides.
        parts = item.split(":")
        return parts[1] if len(parts) > 1 else parts[0]
    return _whole_item(item)


def _mount_key(default_dir: str) -> KeyFn:
    """Secrets and configs: the target, else where Compose puts the source by default."""

    def key(item: Any) -> Hashable | None:
        if isinstance(item, dict):
            if item.get("target"):
                return str(item["target"])
            return f"{default_dir}/{item.get('source')}"
        return f"{default_dir}/{item}"

    return key


# --- the table ----------------------------------------------------------------------------

_S = ("services", "*")

#: Path pattern -> strategy. ``*`` matches any one key; the first pattern that fits wins.
RULES: dict[Path, Strategy] = {
    (*_S, "command"): replace,
    (*_S, "entrypoint"): replace,
    (*_S, "healthcheck", "test"): replace,
    (*_S, "ulimits", "*"): replace,
    (*_S, "logging"): logging,
    (*_S, "ports"): by_key(_port_key),
    (*_S, "volumes"): by_key(_volume_key),
    (*_S, "devices"): by_key(_field("target")),
    (*_S, "secrets"): by_key(_mount_key("/run/secrets")),
    (*_S, "configs"): by_key(_mount_key("")),
    (*_S, "env_file"): by_key(_field("path")),
    (*_S, "label_file"): unique,
    (*_S, "cap_add"): unique,
    (*_S, "cap_drop"): unique,
    (*_S, "dns"): unique,
    (*_S, "dns_opt"): unique,
    (*_S, "dns_search"): unique,
    (*_S, "expose"): unique,
    (*_S, "extra_hosts"): unique,
    (*_S, "links"): unique,
    (*_S, "profiles"): unique,
    (*_S, "tmpfs"): unique,
    (*_S, "networks", "*", "aliases"): unique,
    (*_S, "networks", "*", "link_local_ips"): unique,
    (*_S, "build", "tags"): unique,
    (*_S, "build", "extra_hosts"): unique,
    (*_S, "environment"): keyed_mapping,
    (*_S, "labels"): keyed_mapping,
    (*_S, "annotations"): keyed_mapping,
    (*_S, "sysctls"): keyed_mapping,
    (*_S, "build", "args"): keyed_mapping,
    (*_S, "build", "labels"): keyed_mapping,
    (*_S, "build", "additional_contexts"): keyed_mapping,
    (*_S, "deploy", "labels"): keyed_mapping,
    ("networks", "*", "labels"): keyed_mapping,
    ("volumes", "*", "labels"): keyed_mapping,
    ("networks", "*", "ipam", "config"): ipam_config,
}


#: Strategies that decide on the entries of a sequence by a key, so a sequence can hold each
#: key once. Compose enforces that inside a single file too (the last entry wins, in the
#: place of the first): :func:`enforce_unicity` applies them to each sequence on its own.
_NOT_UNIQUE = (replace, logging, ipam_config, default)


def enforce_unicity(root: YMap) -> None:
    """Collapse duplicate entries of keyed sequences (``ports``, ``volumes``, ...) in place."""
    for pattern, strategy in RULES.items():
        if strategy in _NOT_UNIQUE:
            continue
        for parent, key, path in _walk(root, pattern):
            value = parent[key]
            if isinstance(value, list) and len(value) > 1:
                parent[key] = strategy(YSeq(), value, path)


def _walk(node: Any, pattern: Path, at: Path = ()) -> list[tuple[dict[str, Any], str, Path]]:
    """(parent mapping, key, path) for every place in ``node`` that ``pattern`` names."""
    if not isinstance(node, dict) or not pattern:
        return []
    step, rest = pattern[0], pattern[1:]
    keys = list(node) if step == "*" else [step] if step in node else []
    if not rest:
        return [(node, str(k), (*at, k)) for k in keys]
    return [found for k in keys for found in _walk(node[k], rest, (*at, k))]


def _matches(pattern: Path, path: Path) -> bool:
    return len(pattern) == len(path) and all(
        p == "*" or p == step for p, step in zip(pattern, path, strict=True))


def _rule_for(path: Path) -> Strategy:
    for pattern, strategy in RULES.items():
        if _matches(pattern, path):
            return strategy
    return default


# --- helpers ------------------------------------------------------------------------------


def _merge_mappings(base: dict[str, Any], override: dict[str, Any], path: Path, *,
                    null_replaces: bool, deep: bool = True) -> YMap:
    """Key by key, honouring the override's merge tags; places of the override win."""
    base_tags = base.tags if isinstance(base, YMap) else {}
    over_tags = override.tags if isinstance(override, YMap) else {}
    result = YMap(loc=getattr(override, "loc", None) or getattr(base, "loc", None))
    for key, value in base.items():
        if base_tags.get(key) == RESET:
            continue  # a reset left in the base file means "not set there"
        result[key] = clone(value)
        if isinstance(base, YMap) and key in base.key_locs:
            result.key_locs[key] = base.key_locs[key]
    for key, value in override.items():
        tag = over_tags.get(key)
        if tag == RESET:
            result.pop(key, None)
            result.key_locs.pop(key, None)
            continue
        if key not in result or tag == OVERRIDE:
            result[key] = clone(value)
        elif deep:
            result[key] = _merge_value(result[key], value, (*path, key))
        elif value is not None or null_replaces:
            result[key] = clone(value)
        if isinstance(override, YMap) and key in override.key_locs:
            result.key_locs[key] = override.key_locs[key]
    return result


def _locs(node: Any) -> list[Any]:
    if isinstance(node, YSeq):
        return [node.loc_of(i) for i in range(len(node))]
    return [None] * len(node)


def _seq(items: list[Any], base: Any, override: Any, locs: list[Any]) -> YSeq:
    loc = getattr(override, "loc", None) or getattr(base, "loc", None)
    return YSeq((clone(item) for item in items), loc=loc, item_locs=locs)
