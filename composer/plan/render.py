"""A plan as text (canonical: golden tests compare it) and as JSON (for tools)."""

from __future__ import annotations

import json
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


def to_json(plan: Plan) -> str:
    return json.dumps(to_data(plan), indent=2, ensure_ascii=False)
