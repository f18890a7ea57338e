"""What one batch of changed host paths asks of each service: pure, apart from reading the
host's files (what a path is now decides, not which events came: level-triggered).

Per service, a ``rebuild`` rule wins (the new image holds the files anyway); otherwise the
sync rules' files are written or deleted, then the service restarts if a ``restart`` or
``sync+restart`` rule matched, then the ``sync+exec`` hooks run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from composer.watch.rules import RESTART_ACTIONS, Rule


@dataclass(frozen=True)
class SyncEntry:
    """A path to write (``host`` is what to copy) or, without ``host``, to delete."""

    target: str
    host: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "host": self.host} if self.host is not None else \
            {"target": self.target, "delete": True}


@dataclass
class ServiceWork:
    service: str
    rebuild: bool = False
    restart: bool = False
    entries: list[SyncEntry] = field(default_factory=list)
    execs: list[Mapping[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def ordered_entries(self) -> list[SyncEntry]:
        """Deletions first, deepest first; then writes, parents before children."""
        unique = {(e.target, e.host): e for e in self.entries}.values()
        deletes = sorted((e for e in unique if e.host is None), key=lambda e: e.target,
                         reverse=True)
        writes = sorted((e for e in unique if e.host is not None), key=lambda e: e.target)
        return [*deletes, *writes]


def plan_batch(rules: Sequence[Rule], paths: Iterable[str]) -> list[ServiceWork]:
    """The work of every service a path of the batch triggers, services sorted by name."""
    work: dict[str, ServiceWork] = {}
    for path in paths:
        for rule in rules:
            if not rule.accepts(path):
                continue
            item = work.setdefault(rule.service, ServiceWork(rule.service))
            item.paths.append(path)
            if rule.action == "rebuild":
                item.rebuild = True
                continue
            if rule.action in RESTART_ACTIONS:
                item.restart = True
            if rule.exec is not None and rule.exec not in item.execs:
                item.execs.append(rule.exec)
            if rule.syncs:
                item.entries.extend(entries_for(rule, path))
    for item in work.values():
        if item.rebuild:
            item.entries.clear()
            item.execs.clear()
            item.restart = False
    return [work[name] for name in sorted(work)]


def entries_for(rule: Rule, path: str) -> Iterator[SyncEntry]:
    """A path as the rule syncs it: gone on the host, it goes in the container too; a
    directory comes with everything in it the rule takes (a directory moved in gives one
    event for all its files)."""
    target = rule.target_of(path)
    if target is None:
        return
    if not os.path.lexists(path):
        yield SyncEntry(target)
        return
    yield SyncEntry(target, path)
    if os.path.isdir(path) and not os.path.islink(path):
        for top, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                inner = os.path.join(top, name)
                inner_target = rule.target_of(inner)
                if inner_target is not None:
                    yield SyncEntry(inner_target, inner)
            # An ignored directory is not walked into (node_modules, .git).
            dirs[:] = [d for d in dirs if rule.accepts(os.path.join(top, d))]


def initial_entries(rule: Rule) -> list[SyncEntry]:
    """Everything the rule takes under its path, for ``initial_sync``."""
    if not rule.syncs or not os.path.lexists(rule.path):
        return []
    return list(entries_for(rule, rule.path))
