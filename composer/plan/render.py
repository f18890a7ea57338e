"""A plan as text (canonical: golden tests compare it) and as JSON (for tools)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from composer.plan.actions import Plan


def to_text(plan: Plan) -> str:
    """One change a line, in id order; warnings after; ``nothing to do`` for an empty plan."""
    lines = [change.line() for change in plan.changes] or ["nothing to do"]
    lines += [f"warning: {text}" for text in plan.warnings]
    return "\n".join(lines) + "\n"


def to_data(plan: Plan) -> dict[str, Any]:
    return {
        "project": plan.project,
        "changes": [{"id": c.id, "action": c.action.value, "address": str(c.address),
                     "kind": c.address.kind.value, "name": c.address.name,
                     "number": c.address.number, "reason": c.reason,
                     "requires": list(c.requires), "fields": list(c.fields)}
                    for c in plan.changes],
        "warnings": list(plan.warnings),
    }


def from_data(data: Mapping[str, Any]) -> Plan:
    """The plan :func:`to_data` gave (as the engine sends it), for printing on this side."""
    from composer.plan.actions import Action, Address, Change, Kind

    return Plan(str(data.get("project", "")), tuple(
        Change(int(c["id"]), Action(c["action"]),
               Address(Kind(c["kind"]), str(c["name"]), c.get("number")), str(c["reason"]),
               tuple(c.get("requires") or ()), tuple(c.get("fields") or ()))
        for c in data.get("changes") or ()), tuple(data.get("warnings") or ()))


def to_json(plan: Plan) -> str:
    return json.dumps(to_data(plan), indent=2, ensure_ascii=False)
