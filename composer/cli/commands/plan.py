"""``composer plan`` and ``composer up --dry-run``: the plan for the project, not carried out.

There is no engine yet (it comes with the runtime), so nothing of the project runs on this
host and every plan starts from an empty snapshot: everything is a create. Once the engine
exists it plans against what really runs, and this command only renders what it sends back.
"""

from __future__ import annotations

import argparse
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError


def register(commands: Any) -> None:
    plan = commands.add_parser("plan", help="show what 'up' would change, and why")
    plan.add_argument("--format", choices=("text", "json"), default="text")
    _plan_flags(plan)
    plan.set_defaults(handler=run_plan)
    up = commands.add_parser("up", help="create and start the project (only --dry-run for now)")
    up.add_argument("-d", "--detach", action="store_true")
    # Global in Compose, and accepted after the command too; SUPPRESS keeps the global value.
    up.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS)
    _plan_flags(up)
    up.set_defaults(handler=run_up)


def _plan_flags(parser: argparse.ArgumentParser) -> None:
    recreate = parser.add_mutually_exclusive_group()
    recreate.add_argument("--force-recreate", action="store_true")
    recreate.add_argument("--no-recreate", action="store_true")
    parser.add_argument("--always-recreate-deps", action="store_true")
    parser.add_argument("--no-deps", action="store_true")
    parser.add_argument("--remove-orphans", action="store_true")
    parser.add_argument("-V", "--renew-anon-volumes", action="store_true")
    parser.add_argument("--no-start", action="store_true")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--pull", choices=("always", "missing", "never", "build"))
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=N")
    parser.add_argument("-t", "--timeout", type=float)
    parser.add_argument("services_selected", nargs="*", metavar="SERVICE")


def run_plan(app: App, options: argparse.Namespace) -> int:
    from composer.plan import render

    plan = _plan(app, options)
    app.print(render.to_json(plan) if options.format == "json" else render.to_text(plan).rstrip())
    return 0


def run_up(app: App, options: argparse.Namespace) -> int:
    from composer.plan import render

    if not options.dry_run:
        app.abort("'composer up' needs the engine, which is not implemented yet: "
                  "'composer up --dry-run' (or 'composer plan') shows what it would do")
    app.print(render.to_text(_plan(app, options)).rstrip())
    return 0


def _plan(app: App, options: argparse.Namespace) -> Any:
    from composer.manifest.contents import contents
    from composer.manifest.loader import LoadOptions, load
    from composer.manifest.model import build_project
    from composer.plan.reconcile import FORCE, NEVER, Options, reconcile
    from composer.state.observed import Observed

    loaded = load(LoadOptions(
        files=options.files, project_dir=options.project_dir,
        project_name=options.project_name, env_files=options.env_files,
        profiles=options.profiles, services=options.services_selected))
    app.warnings(loaded.warnings)
    project = build_project(loaded)
    plan_options = Options(
        services=tuple(options.services_selected), no_deps=options.no_deps,
        recreate=FORCE if options.force_recreate else NEVER if options.no_recreate else
        "diverged",
        recreate_deps=FORCE if options.always_recreate_deps else "diverged",
        remove_orphans=options.remove_orphans, renew_anon_volumes=options.renew_anon_volumes,
        scale=_scale(options.scale, project.services), no_start=options.no_start,
        pull=options.pull, build=options.build, timeout=options.timeout,
        contents=contents(project))
    return reconcile(project, Observed(project=project.name), plan_options)


def _scale(values: list[str], services: Any) -> dict[str, int]:
    scale: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise UsageError(f"invalid --scale {value!r}: write SERVICE=NUMBER, e.g. web=3")
        if name not in services:
            raise UsageError(f"--scale {value}: no such service: {name}")
        scale[name] = int(count)
    return scale
