"""Compose projects in the engine: ``up`` and ``down`` planned against what runs, then applied.

The CLI loads and validates the files and sends the normalized project; here, under the
project's lock (two commands on one project never interleave), the engine

1. observes the project on the host (:mod:`composer.engine.project_observe`),
2. plans with the pure planner (:func:`composer.plan.reconcile.reconcile`),
3. carries the plan out with the executor over :class:`ProjectRuntime`,
4. plans again when images were pulled or built: a new image id recreates the containers
   that ran the old one (Compose pulls and builds before it converges, too),
5. with ``wait``, waits until every service is running, healthy, or completed.

Each step reports as it goes, as plain JSON events (see :func:`up`); the work runs in a thread
of its own, so a client that goes away (Ctrl-C, ``kill -9``) does not leave it half done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError, UsageError

if TYPE_CHECKING:
    from composer.apply.events import Event
    from composer.engine.containers import ContainerManager
    from composer.manifest.model import Project
    from composer.plan.actions import Plan
    from composer.state.containers import ContainerRow

Emit = Callable[[dict[str, Any]], None]


class ProjectManager:
    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        from composer.engine.watchers import Watchers

        self.watchers = Watchers(manager.layout, manager.db)  # `up -d --watch`'s processes

    def lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    # -- up -------------------------------------------------------------------------------------

    def up(self, request: Mapping[str, Any], emit: Emit) -> None:
        """``request``: ``project`` (:func:`composer.manifest.model.project_document`),
        ``options`` (the planner's :class:`~composer.plan.reconcile.Options` fields, plus
        ``wait`` and ``wait_timeout``), ``contents`` (secret digests), ``builds`` (service ->
        build request body). Emits ``plan``, executor events, ``say`` lines, ``waited``,
        then ``result``."""
        from composer.manifest.model import project_from_document
        from composer.state import projects

        project = project_from_document(request["project"])
        options = dict(request.get("options") or {})
        began = time.time()  # the summary of ``--wait`` counts from here
        lock = self.lock(project.name)
        if not lock.acquire(timeout=0.2):
            emit({"say": f"project {project.name}", "message": "waiting for another command "
                  "on this project to finish"})
            lock.acquire()
        try:
            if not options.get("dry_run"):
                projects.save(self.m.db, project.name, dict(request))
            touched: set[str] = set()

            def noting(event: dict[str, Any]) -> None:
                for change in (event.get("plan") or {}).get("changes") or ():
                    touched.add(str(change.get("target")))
                emit(event)

            ok = self._converge(project, request, options, noting)
            if ok and options.get("wait") and not options.get("dry_run"):
                ok = self._wait(project, options, emit, began)
            elif ok and not options.get("dry_run"):
                self._unchanged(project, options, touched, emit)
            emit({"result": {"ok": ok}})
        finally:
            lock.release()

    def _unchanged(self, project: Project, options: Mapping[str, Any], touched: set[str],
                   emit: Emit) -> None:
        """The selected containers this ``up`` left as they were, with their state (Compose
        prints ``Container web-1  Running`` for them: an ``up`` is never silent)."""
        from composer.engine.project_observe import project_rows

        services = set(options.get("services") or project.services)
        left = [{"name": row.name, "status": row.status}
                for row in project_rows(self.m, project.name)
                if _labels(row).get("com.docker.compose.service") in services
                and _labels(row).get("com.docker.compose.oneoff") != "True"
                and row.name not in touched]
        if left:
            emit({"unchanged": sorted(left, key=lambda c: c["name"])})

    def _converge(self, project: Project, request: Mapping[str, Any],
                  options: Mapping[str, Any], emit: Emit) -> bool:
        from composer.engine.project_observe import observe
        from composer.engine.project_runtime import ProjectRuntime
        from composer.plan.actions import Action
        from composer.plan.reconcile import image_ref, reconcile

        runtime = ProjectRuntime(self.m, project, contents=request.get("contents") or {},
                                 builds=request.get("builds") or {},
                                 say=lambda where, line: emit({"say": where, "message": line}))
        refs = [image_ref(project, s) for s in project.services.values()]
        plan_options = _plan_options(options, request)
        for round_number in (1, 2):
            plan = reconcile(project, observe(self.m, project.name, refs), plan_options)
            emit({"plan": _plan_data(plan), "round": round_number})
            if options.get("dry_run") or not plan:
                return True
            if not self._apply(plan, runtime, options, emit):
                return False
            images = {Action.PULL_IMAGE, Action.BUILD_IMAGE}
            if not any(c.action in images for c in plan.changes):
                return True
            # The images are there now: only what their new ids change is left to do.
            plan_options = _replace(plan_options, pull="never", build=False)
        return True

    def _apply(self, plan: Plan, runtime: Any, options: Mapping[str, Any],
               emit: Emit) -> bool:
        from composer.apply.executor import execute

        result = execute(plan, runtime, sink=lambda event: emit(_event(event)),
                         parallel=int(options.get("parallel") or 0))
        return result.ok

    def _wait(self, project: Project, options: Mapping[str, Any], emit: Emit,
              began: float) -> bool:
        """``up --wait``: every selected container running (healthy, when it has a health
        check) or, for a one-shot that ran, exited 0. ``wait_conditions`` (``run``'s
        dependencies) gives some services the condition their dependent has instead:
        ``service_started``, ``service_healthy`` or ``service_completed_successfully``."""
        from composer.engine.project_observe import project_rows

        timeout = options.get("wait_timeout")
        deadline = None if not timeout else time.monotonic() + float(timeout)
        services = set(options.get("services") or project.services)
        pending = [row for row in project_rows(self.m, project.name)
                   if _labels(row).get("com.docker.compose.service") in services
                   and _labels(row).get("com.docker.compose.oneoff") != "True"]
        conditions = dict(options.get("wait_conditions") or {})
        ok = True
        started = time.monotonic()
        for row in sorted(pending, key=lambda r: r.name):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            condition = conditions.get(_labels(row).get("com.docker.compose.service", ""))
            status, detail, settled = self._settle(row.id, left, condition)
            good = ("exited 0",) if condition == "service_completed_successfully" else \
                ("running", "healthy", "starting", "exited 0") \
                if condition == "service_started" else ("running", "healthy", "exited 0")
            ready = _ready_at(settled, status)
            emit({"waited": {"name": row.name, "status": status, "detail": detail,
                             "ok": status in good,
                             "seconds": round(time.monotonic() - started, 3),
                             # from the start of this up to running, healthy or completed
                             "ready_seconds": None if ready is None else
                             round(max(0.0, ready - began), 3)}})
            ok = ok and status in good
        return ok

    def _settle(self, container_id: str, timeout: float | None,
                condition: str | None = None) -> tuple[str, str, ContainerRow | None]:
        """The container's state once it settled (or at the timeout): a status word, the last
        health output where it explains the status, and its row (None when removed)."""
        from composer.engine.project_runtime import _last_output

        def settled(r: Any) -> bool:
            if r is None or r.status in ("exited", "dead"):
                return True
            if condition == "service_completed_successfully":
                return False  # only its exit will do
            if condition == "service_started":
                return bool(r.status == "running")
            health = (r.health or {}).get("Status")
            return r.status == "running" and health in (None, "healthy", "unhealthy")

        reached, row = self.m._wait_until(settled, container_id, timeout)
        if row is None:
            return "removed", "", None
        health = (row.health or {}).get("Status")
        if not reached:
            return ("starting" if health else row.status), _last_output(row), row
        if row.status in ("exited", "dead"):
            return f"exited {row.exit_code or 0}", "", row
        if health == "unhealthy":
            return "unhealthy", _last_output(row), row
        return health or "running", "", row

    # -- run ------------------------------------------------------------------------------------

    def oneoff(self, request: Mapping[str, Any], emit: Emit) -> None:
        """``composer run``: the service's networks, volumes and image made as ``up`` would,
        then a one-off container ``<project>-<service>-run-<id>`` created (not started) from
        the service's config with ``overrides`` (compose words: command, entrypoint,
        environment, user, working_dir, ports, volumes, tty, stdin_open, labels) applied.
        Emits what ``up`` emits, then ``{"created": {"Id", "Name"}}``."""
        import secrets

        from composer.engine.project_observe import observe
        from composer.engine.project_runtime import ProjectRuntime
        from composer.manifest.model import project_from_document, thaw
        from composer.plan.actions import Kind, Plan
        from composer.plan.reconcile import Options, image_ref, reconcile
        from composer.state.labels import container_labels

        project = project_from_document(request["project"])
        name = str(request["service"])
        service = project.services.get(name)
        if service is None:
            raise UsageError(f"no such service: {name}")
        runtime = ProjectRuntime(self.m, project, contents=request.get("contents") or {},
                                 builds=request.get("builds") or {},
                                 say=lambda where, line: emit({"say": where, "message": line}))
        with self.lock(project.name):
            plan = reconcile(project, observe(self.m, project.name,
                                              [image_ref(project, service)]),
                             Options(services=(name,), no_deps=True, no_start=True))
            # Only what the service stands on: its own containers are not this command's.
            kept = [c for c in plan.changes if c.address.kind is not Kind.SERVICE]
            ids = {c.id for c in kept}
            import dataclasses

            plan = Plan(project.name, tuple(dataclasses.replace(
                c, requires=tuple(r for r in c.requires if r in ids)) for c in kept))
            emit({"plan": _plan_data(plan), "round": 1})
            if plan and not self._apply(plan, runtime, {}, emit):
                emit({"result": {"ok": False}})
                return
            config = {**thaw(service.spec), **dict(request.get("overrides") or {})}
            config.pop("container_name", None)
            if not request.get("use_aliases"):
                config["networks"] = {key: {k: v for k, v in (value or {}).items()
                                            if k != "aliases"} or None
                                      for key, value in (config.get("networks") or {}).items()}
            container = request.get("name") or \
                f"{project.name}-{name}-run-{secrets.token_hex(6)}"
            labels = container_labels(project, service, 1, oneoff=True)
            labels.update({str(k): str(v) for k, v in (request.get("labels") or {}).items()})
            container_id = runtime.containers.create(
                container, {"service": name, "number": 1, "image": image_ref(project, service),
                            "config": config, "auto_remove": bool(request.get("remove"))},
                labels)
            emit({"created": {"Id": container_id, "Name": container}})
            emit({"result": {"ok": True}})

    # -- down -----------------------------------------------------------------------------------

    def down(self, request: Mapping[str, Any], emit: Emit) -> None:
        """``request``: ``name``, ``project`` (optional: the CLI's loaded project; else the
        one the last up stored), ``options`` (volumes, remove_orphans, rmi, timeout)."""
        from composer.engine.project_observe import observe
        from composer.engine.project_runtime import ProjectRuntime
        from composer.manifest.model import project_from_document
        from composer.plan.down import DownOptions, plan_down
        from composer.plan.reconcile import image_ref
        from composer.state import projects

        name = str(request["name"])
        options = dict(request.get("options") or {})
        document = request.get("project") or (projects.get(self.m.db, name) or {}).get("project")
        orphans = bool(options.get("remove_orphans"))
        if document is None:
            # Nothing says which services there are: everything labelled with the project
            # goes (what `docker compose -p NAME down` does without the files).
            document = {"name": name, "working_dir": "/", "tree": {"name": name}}
            orphans = True
        project = project_from_document(document)
        if not options.get("dry_run") and not options.get("services"):
            # First: a save during the down must not bring the project back.
            stopped = self.watchers.stop(name)
            if stopped is not None:
                emit({"say": f"watch {name}", "message": f"stopped (pid {stopped['Pid']})"})
        with self.lock(name):
            refs = [image_ref(project, s) for s in project.services.values()]
            plan = plan_down(project, observe(self.m, name, refs), DownOptions(
                volumes=bool(options.get("volumes")), remove_orphans=orphans,
                rmi=options.get("rmi"), timeout=options.get("timeout"),
                services=tuple(options.get("services") or ())))
            emit({"plan": _plan_data(plan), "round": 1})
            runtime = ProjectRuntime(self.m, project, contents={}, builds={},
                                     say=lambda where, line: emit({"say": where,
                                                                   "message": line}))
            ok = options.get("dry_run") or not plan or self._apply(plan, runtime, options, emit)
            if ok and not options.get("dry_run") and not options.get("services"):
                projects.forget(self.m.db, name)
            emit({"result": {"ok": bool(ok)}})

    # -- ls -------------------------------------------------------------------------------------

    def listing(self, *, all: bool = False) -> list[dict[str, Any]]:
        """``composer ls``: each project with the status of its containers and its files."""
        from composer.state import projects

        counts: dict[str, dict[str, int]] = {}
        files: dict[str, str] = {}
        for row in self.m.list(all=True):
            labels = _labels(row)
            name = labels.get("com.docker.compose.project")
            if not name:
                continue
            status = counts.setdefault(name, {})
            status[row.status] = status.get(row.status, 0) + 1
            files.setdefault(name, labels.get("com.docker.compose.project.config_files", ""))
        for name in projects.names(self.m.db):
            counts.setdefault(name, {})
            stored = (projects.get(self.m.db, name) or {}).get("project") or {}
            files[name] = ",".join(stored.get("files") or ()) or files.get(name, "")
        found = []
        watched = self.watchers.watched()
        for name in sorted(counts):
            status = counts[name]
            if not all and not status.get("running") and name not in watched:
                continue
            text = ", ".join(f"{state}({n})" for state, n in sorted(status.items()))
            text = f"{text or 'created(0)'}, watching" if name in watched else text
            found.append({"Name": name, "Status": text or "created(0)",
                          "ConfigFiles": files.get(name, "")})
        return found


def stream(work: Callable[[Emit], None]) -> Iterator[dict[str, Any]]:
    """Run ``work`` in a thread of its own and yield what it emits until it ends; a failure
    becomes an ``error`` event (the engine's log keeps the traceback of a bug)."""
    import queue

    events: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def run() -> None:
        try:
            work(events.put)
        except ComposerError as e:
            events.put({"error": str(e)})
        except Exception as e:
            events.put({"error": f"internal error: {type(e).__name__}: {e}"})
            raise
        finally:
            events.put(None)

    threading.Thread(target=run, name="composer-project", daemon=True).start()
    while (event := events.get()) is not None:
        yield event


def _labels(row: Any) -> Mapping[str, str]:
    labels: Mapping[str, str] = row.spec.get("labels") or {}
    return labels


def _ready_at(row: ContainerRow | None, status: str) -> float | None:
    """When the container (its row as it settled) got to ``status`` (unix time): its start
    when running, its exit when completed, the start of its run of passing checks when
    healthy."""
    from composer.engine.health import healthy_since

    if row is None:
        return None
    if status == "running":
        return row.started_at
    if status.startswith("exited"):
        return row.finished_at
    if status != "healthy":
        return None
    return healthy_since(row.health or {})


def _plan_data(plan: Plan) -> dict[str, Any]:
    """The plan as :func:`composer.plan.render.to_data` gives it, each change with the
    ``target`` it acts on (a container, network, volume or image name) for the output."""
    from composer.plan.render import to_data

    data = to_data(plan)
    for change, item in zip(plan.changes, data["changes"], strict=True):
        params = change.params
        item["target"] = str(params.get("to") or params.get("tag") or params.get("ref") or
                             params.get("name") or change.address.name)
        if params.get("services"):
            item["services"] = list(params["services"])
    return data


def _event(event: Event) -> dict[str, Any]:
    from composer.apply.events import Done, Failed, Progress, Skipped, Started

    data: dict[str, Any] = {"id": event.change_id, "address": str(event.address),
                            "kind": event.address.kind.value, "name": event.address.name,
                            "number": event.address.number}
    if isinstance(event, Started):
        return {"event": "started", "action": event.action.value, **data}
    if isinstance(event, Progress):
        return {"event": "progress", "message": event.message, **data}
    if isinstance(event, Done):
        return {"event": "done", "action": event.action.value,
                "elapsed": round(event.elapsed, 3), **data}
    if isinstance(event, Failed):
        return {"event": "failed", "action": event.action.value, "error": event.error, **data}
    assert isinstance(event, Skipped)
    return {"event": "skipped", "action": event.action.value, "because": event.because, **data}


_OPTION_FIELDS = ("services", "no_deps", "recreate", "recreate_deps", "remove_orphans",
                  "renew_anon_volumes", "scale", "no_start", "pull", "build", "no_build",
                  "timeout")


def _plan_options(options: Mapping[str, Any], request: Mapping[str, Any]) -> Any:
    from composer.plan.reconcile import Options

    values = {key: options[key] for key in _OPTION_FIELDS if key in options}
    if "services" in values:
        values["services"] = tuple(values["services"])
    for key in ("recreate", "recreate_deps"):
        if values.get(key) not in (None, "diverged", "force", "never"):
            raise UsageError(f"invalid {key}: {values[key]!r}")
    return Options(**values, contents=dict(request.get("contents") or {}))


def _replace(options: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(options, **changes)
