"""``composer plan``: what ``up`` would change, and why, against what runs on this host.

The engine observes the project and plans as for ``up --dry-run``, changing nothing; this
command prints the plan (text, as the golden plans are written, or JSON).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError


def register(commands: Any) -> None:
    plan = commands.add_parser("plan", help="show what 'up' would change, and why")
    plan.add_argument("--format", choices=("text", "json"), default="text")
    plan_flags(plan)
    plan.set_defaults(handler=run_plan)


def plan_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of ``up`` that change its plan (``up``, ``create`` and ``plan`` share them)."""
    recreate = parser.add_mutually_exclusive_group()
    recreate.add_argument("--force-recreate", action="store_true")
    recreate.add_argument("--no-recreate", action="store_true")
    parser.add_argument("--always-recreate-deps", action="store_true")
    parser.add_argument("--no-deps", action="store_true")
    parser.add_argument("--remove-orphans", action="store_true")
    parser.add_argument("-V", "--renew-anon-volumes", action="store_true")
    parser.add_argument("--no-start", action="store_true")
    build = parser.add_mutually_exclusive_group()
    build.add_argument("--build", action="store_true")
    build.add_argument("--no-build", action="store_true")
    parser.add_argument("--pull", choices=("always", "missing", "never", "build"))
    parser.add_argument("--quiet-pull", action="store_true")
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=N")
    parser.add_argument("-t", "--timeout", type=float)
    parser.add_argument("services_selected", nargs="*", metavar="SERVICE")


def run_plan(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.project_up import load, request_of, up_options

    project = load(app, options, options.services_selected)
    options.dry_run = True
    body = {**request_of(project), "options": up_options(options, project)}
    plans = [e["plan"] for e in engine_client(options).stream(
        "POST", f"/v1/projects/{project.name}/up", body) if "plan" in e]
    plan = plans[0] if plans else {"changes": [], "warnings": []}
    if options.format == "json":
        app.print(json.dumps(plan, indent=2, ensure_ascii=False))
        return 0
    from composer.plan.render import from_data, to_text

    app.print(to_text(from_data(plan)).rstrip("\n"))
    return 0


def scale_of(values: list[str], services: Any) -> dict[str, int]:
    scale: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"invalid --scale {value!r}: write SERVICE=NUMBER, e.g. web=3")
        if name not in services:
            raise UsageError(f"--scale {value}: no such service: {name}")
        scale[name] = int(count)
    return scale
