"""Accumulates a plan's changes: ids in the order they are added, requirements by id.

The planner adds changes in a fixed order (networks, volumes, images, then services in
dependency order, containers by number), so the same inputs always give the same ids and the
same text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from composer.plan.actions import Action, Address, Change, Plan


class PlanBuilder:
    def __init__(self, project: str) -> None:
        self.project = project
        self._changes: list[Change] = []
        self.warnings: list[str] = []

    def add(self, action: Action, address: Address, reason: str, *,
            requires: Iterable[int | None] = (), fields: Iterable[str] = (),
            params: Mapping[str, Any] | None = None) -> int:
        """Add one change and return its id; ``None`` requirements are dropped."""
        change_id = len(self._changes) + 1
        needed = tuple(sorted({r for r in requires if r is not None}))
        self._changes.append(Change(
            id=change_id, action=action, address=address, reason=reason, requires=needed,
            fields=tuple(fields), params=MappingProxyType(dict(params or {}))))
        return change_id

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def build(self) -> Plan:
        return Plan(project=self.project, changes=tuple(self._changes),
                    warnings=tuple(self.warnings))
