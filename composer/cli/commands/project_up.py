"""``composer up``, ``create``, ``down``, ``run`` and ``ls``: the compose project over the engine.

The CLI loads and validates the files (its warnings are shown here), sends the normalized
project to the engine, and renders the events the engine streams back while it plans and
applies (:mod:`composer.engine.projects`). Plans are made against what really runs: a second
``up`` with nothing changed prints nothing to do and touches nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError

# Past tense of each action, as Compose's progress lines say them.
_DONE_WORDS = {
    "ensure network": ("Network", "Created"), "ensure volume": ("Volume", "Created"),
    "pull image": ("Image", "Pulled"), "build image": ("Image", "Built"),
    "create": ("Container", "Created"), "start": ("Container", "Started"),
    "wait healthy": ("Container", "Healthy"), "wait completed": ("Container", "Exited"),
    "stop": ("Container", "Stopped"), "remove": ("Container", "Removed"),
    "remove orphan": ("Container", "Removed"), "remove network": ("Network", "Removed"),
    "remove volume": ("Volume", "Removed"), "remove image": ("Image", "Removed"),
}
_TEMPORARY = re.compile(r"^[0-9a-f]{12}_")


def register(commands: Any) -> None:
    from composer.cli.commands.plan import plan_flags

    up = commands.add_parser("up", help="create and start the project's containers")
    up.add_argument("-d", "--detach", action="store_true")
    up.add_argument("--wait", action="store_true",
                    help="wait until services are running/healthy (implies -d)")
    up.add_argument("--wait-timeout", type=float, metavar="SECONDS")
    up.add_argument("--abort-on-container-exit", action="store_true")
    up.add_argument("--abort-on-container-failure", action="store_true")
    up.add_argument("--exit-code-from", metavar="SERVICE")
    up.add_argument("--attach", action="append", default=[], metavar="SERVICE")
    up.add_argument("--no-attach", action="append", default=[], metavar="SERVICE")
    up.add_argument("--attach-dependencies", action="store_true")
    up.add_argument("--timestamps", action="store_true")
    up.add_argument("--no-log-prefix", action="store_true")
    up.add_argument("--no-color", action="store_true")
    up.add_argument("-y", "--yes", action="store_true")
    up.add_argument("-w", "--watch", action="store_true",
                    help="watch the files and apply changes (see 'composer watch')")
    up.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS)
    plan_flags(up)
    up.set_defaults(handler=run_up)

    create = commands.add_parser("create", help="create the project's containers, not start")
    plan_flags(create)
    create.set_defaults(handler=run_create)

    down = commands.add_parser("down", help="stop and remove the project's containers and "
                               "networks")
    down.add_argument("-v", "--volumes", action="store_true")
    down.add_argument("--rmi", choices=("local", "all"))
    down.add_argument("--remove-orphans", action="store_true")
    down.add_argument("-t", "--timeout", type=float)
    down.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS)
    down.add_argument("services_selected", nargs="*", metavar="SERVICE")
    down.set_defaults(handler=run_down)

    ls = commands.add_parser("ls", help="list the projects")
    ls.add_argument("-a", "--all", action="store_true")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.add_argument("-q", "--quiet", action="store_true")
    ls.add_argument("--filter", action="append", default=[], metavar="name=NAME")
    ls.set_defaults(handler=run_ls)

    from composer.cli.commands.project_run import add_run_parser

    add_run_parser(commands)


# --- loading and sending ----------------------------------------------------------------------


def load(app: App, options: argparse.Namespace, services: Iterable[str] = ()) -> Any:
    """The whole project (a service named on the command line turns its profile on)."""
    from composer.manifest.loader import load_project

    named = list(services)
    project = load_project(options.files, project_dir=options.project_dir,
                           project_name=options.project_name, env_files=options.env_files,
                           profiles=options.profiles)
    if any(name not in project.services for name in named):
        # Only a profile keeps it out; naming it turns that on (Compose's rule).
        project = load_project(options.files, project_dir=options.project_dir,
                               project_name=options.project_name,
                               env_files=options.env_files, profiles=options.profiles,
                               services=named)
    app.warnings(project.warnings)
    return project


def request_of(project: Any, *, pull_always: bool = False) -> dict[str, Any]:
    """What every project request carries: the project, its secrets' digests, and a build
    request for each service that builds (used only if the plan builds it)."""
    from composer.cli.commands.project_build import build_body
    from composer.manifest.contents import contents
    from composer.manifest.model import project_document

    build_flags = argparse.Namespace(build_arg=[], no_cache=False, pull=pull_always)
    return {"project": project_document(project), "contents": contents(project),
            "builds": {name: build_body(project, service, build_flags)
                       for name, service in project.services.items() if service.build}}


def up_options(options: argparse.Namespace, project: Any) -> dict[str, Any]:
    from composer.cli.commands.plan import scale_of

    remove_orphans = options.remove_orphans or _true(os.environ.get("COMPOSE_REMOVE_ORPHANS"))
    return {
        "services": list(options.services_selected), "no_deps": options.no_deps,
        "recreate": "force" if options.force_recreate else
        "never" if options.no_recreate else "diverged",
        "recreate_deps": "force" if options.always_recreate_deps else "diverged",
        "remove_orphans": remove_orphans, "renew_anon_volumes": options.renew_anon_volumes,
        "scale": scale_of(options.scale, project.services), "no_start": options.no_start,
        "pull": options.pull, "build": options.build,
        "no_build": options.no_build, "timeout": options.timeout,
        "dry_run": bool(getattr(options, "dry_run", False)),
        "parallel": options.parallel if options.parallel > 0 else 0,
    }


def _true(value: str | None) -> bool:
    return str(value or "").lower() in ("1", "true", "yes")


class Progress:
    """Renders the engine's events: Compose's progress lines, the reasons of recreates,
    build output, and for ``--progress json`` the events themselves."""

    def __init__(self, app: App, mode: str) -> None:
        self.app = app
        self.mode = "plain" if mode in ("auto", "tty") else mode
        self.targets: dict[int, str] = {}
        self.users: dict[int, list[str]] = {}  # change id -> the services an image is for
        self.errors: list[str] = []
        self.created: dict[str, Any] | None = None
        self.waited: list[dict[str, Any]] = []
        self.ok = True

    def show(self, events: Iterable[Mapping[str, Any]]) -> bool:
        for event in events:
            self.one(event)
        return self.ok and not self.errors

    def one(self, event: Mapping[str, Any]) -> None:
        if self.mode == "json":
            self.app.print(json.dumps(event, sort_keys=True))
        if "plan" in event:
            self._plan(event["plan"])
        elif "event" in event:
            self._change(event)
        elif "say" in event:
            if self.mode == "plain":
                self.app.print(f" {event['say']}  {event['message']}")
        elif "waited" in event:
            self.waited.append(dict(event["waited"]))
            self._waited(event["waited"])
        elif "unchanged" in event:
            if self.mode == "plain":
                for c in event["unchanged"]:
                    self.app.print(f" ✔ Container {c['name']}  {str(c['status']).capitalize()}")
        elif "created" in event:
            self.created = dict(event["created"])
        elif "error" in event:
            self.errors.append(str(event["error"]))
            self.app.error(str(event["error"]))
        elif "result" in event:
            self.ok = bool(event["result"].get("ok"))
            if self.ok and self.waited and self.mode == "plain":
                self._summary()

    def _plan(self, plan: Mapping[str, Any]) -> None:
        for change in plan.get("changes") or ():
            self.targets[int(change["id"])] = _TEMPORARY.sub("", str(change.get("target")))
            self.users[int(change["id"])] = list(change.get("services") or ())
            reason = str(change.get("reason") or "")
            if change["action"] == "create" and change.get("kind") == "service" and \
                    reason not in ("missing",) and not reason.startswith("scale ") and \
                    self.mode == "plain":
                number = change.get("number")
                which = change["name"] if number in (None, 1) else f"{change['name']} #{number}"
                self.app.print(f"Recreate {which}: {reason}")
        for warning in plan.get("warnings") or ():
            self.app.warn(str(warning))

    def _change(self, event: Mapping[str, Any]) -> None:
        kind, word = _DONE_WORDS.get(str(event.get("action")), ("", ""))
        target = self.targets.get(int(event["id"]), str(event.get("address")))
        if event["event"] == "failed":
            self.ok = False
            self.errors.append(f"{target}: {event['error']}")
            if self.mode != "json":
                self.app.print(f" ✘ {kind} {target}  Error")
                users = self.users.get(int(event["id"])) or []
                who = f"service {', '.join(users)}: " if users else ""
                self.app.error(f"{who}{event['address']}: {event['error']}")
        elif event["event"] == "done" and word and event.get("action") != "rename" and \
                self.mode == "plain":
            self.app.print(f" ✔ {kind} {target}  {word}")

    def _waited(self, waited: Mapping[str, Any]) -> None:
        good = bool(waited.get("ok", waited["status"] in ("running", "healthy", "exited 0")))
        if self.mode == "plain" or (not good and self.mode != "json"):
            detail = f" {waited['detail']}" if waited.get("detail") else ""
            mark = "✔" if good else "✘"
            seconds = waited.get("ready_seconds")
            if seconds is None:
                seconds = waited["seconds"]
            self.app.print(f" {mark} Container {waited['name']}  "
                           f"{str(waited['status']).capitalize()}{detail} "
                           f"({seconds:.1f}s)")
        if not good:
            status = str(waited["status"])
            code = status.removeprefix("exited ")
            self.app.error(f"container {waited['name']} exited with code {code}"
                           if code != status else
                           f"container {waited['name']} is {status}"
                           f"{': ' + waited['detail'] if waited.get('detail') else ''}")

    def _summary(self) -> None:
        """``up --wait``'s last words: each container's time from the start of ``up`` to
        running, healthy or completed, slowest last (what a CI log wants to see)."""
        ready = sorted((w for w in self.waited if w.get("ready_seconds") is not None),
                       key=lambda w: (w["ready_seconds"], w["name"]))
        if not ready:
            return
        width = max(len(w["name"]) for w in ready)
        self.app.print(f"Ready in {ready[-1]['ready_seconds']:.1f}s:")
        for w in ready:
            status = "completed" if str(w["status"]).startswith("exited") else w["status"]
            self.app.print(f"  {w['name']:<{width}}  {status:<9}  {w['ready_seconds']:6.1f}s")


# --- commands ---------------------------------------------------------------------------------


def run_up(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client

    if options.exit_code_from:
        options.abort_on_container_exit = True
    detached = options.detach or options.wait
    if detached and (options.abort_on_container_exit or options.abort_on_container_failure):
        raise UsageError("--abort-on-container-exit and --exit-code-from cannot be combined "
                         "with -d or --wait")
    watch = getattr(options, "watch", False)  # `create` has no --watch
    if detached and watch and "-" in options.files:
        raise UsageError("up -d --watch: a project read from stdin cannot be watched in the "
                         "background: name its files with -f")
    project = load(app, options, options.services_selected)
    if options.exit_code_from and options.exit_code_from not in project.services:
        raise UsageError(f"--exit-code-from: no such service: {options.exit_code_from}")
    body = {**request_of(project, pull_always=options.pull == "always"),
            "options": {**up_options(options, project), "wait": options.wait,
                        "wait_timeout": options.wait_timeout}}
    engine = engine_client(options)
    progress = Progress(app, "quiet" if options.progress == "quiet" else options.progress)
    ok = progress.show(engine.stream("POST", f"/v1/projects/{project.name}/up", body))
    if getattr(options, "dry_run", False):
        return 0 if ok else 1
    if not ok:
        return 1
    if detached and watch:  # the engine keeps watching: project_watch.py
        from composer.cli.commands.project_watch import watch_in_background

        return watch_in_background(app, engine, project, options)
    if detached:
        return 0
    if options.watch:  # the watch beside the logs: composer/cli/commands/project_watch.py
        from composer.cli.commands.project_watch import watch_attached

        return watch_attached(app, engine, project, options)
    from composer.cli.commands.project_attach import attach_project

    return attach_project(app, engine, project, options)


def run_create(app: App, options: argparse.Namespace) -> int:
    options.no_start = True
    for name in ("wait", "detach", "abort_on_container_exit", "abort_on_container_failure"):
        setattr(options, name, False)
    options.exit_code_from = None
    options.wait_timeout = None
    options.detach = True
    return run_up(app, options)


def run_down(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client
    from composer.manifest.model import project_document

    project = _maybe_load(app, options)
    name = project.name if project is not None else options.project_name
    if not name:
        raise UsageError("no compose file found and no project name given: run in the "
                         "project's directory, or name it with -p NAME")
    unknown = [s for s in options.services_selected
               if project is not None and s not in project.services]
    if unknown:
        raise UsageError(f"no such service: {', '.join(unknown)}")
    remove_orphans = options.remove_orphans or _true(os.environ.get("COMPOSE_REMOVE_ORPHANS"))
    body = {"project": project_document(project) if project is not None else None,
            "options": {"volumes": options.volumes, "rmi": options.rmi,
                        "remove_orphans": remove_orphans, "timeout": options.timeout,
                        "services": list(options.services_selected),
                        "dry_run": bool(getattr(options, "dry_run", False))}}
    engine = engine_client(options)
    progress = Progress(app, "quiet" if options.progress == "quiet" else options.progress)
    ok = progress.show(engine.stream("POST", f"/v1/projects/{name}/down", body))
    return 0 if ok else 1


def _maybe_load(app: App, options: argparse.Namespace) -> Any:
    """The project of the files, or None when there are none and ``-p`` names the project
    (Compose's ``down``/``ps``/``logs`` work from anywhere with ``-p``)."""
    from composer.errors import ManifestError

    try:
        return load(app, options)
    except ManifestError:
        if options.project_name and not options.files:
            return None
        raise


def run_ls(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client

    found = engine_client(options).request("GET", "/v1/projects",
                                           params={"all": int(options.all)})
    for item in options.filter:
        key, _, value = item.partition("=")
        if key != "name":
            raise UsageError(f"ls --filter {item}: only name=NAME is supported")
        found = [p for p in found if value in p["Name"]]
    if options.quiet:
        for project in found:
            app.print(project["Name"])
    elif options.format == "json":
        app.print(json.dumps(found))
    else:
        rows = [("NAME", "STATUS", "CONFIG FILES")] + [
            (p["Name"], p["Status"], p["ConfigFiles"]) for p in found]
        widths = [max(len(r[i]) for r in rows) for i in range(2)]
        for r in rows:
            app.print(f"{r[0]:<{widths[0]}}   {r[1]:<{widths[1]}}   {r[2]}".rstrip())
    return 0
