"""The engine's container API: routes over the ContainerManager.

``setup`` is what ``composer engine run`` calls: it opens the state root, adopts what is
running, and adds the ``/v1/containers`` routes. Bodies and answers are JSON; logs and ``run``
stream newline-delimited JSON; ``exec`` and ``attach`` take the connection over (see
``composer/cli/interactive.py`` for the client's side of those sessions).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from composer.engine import views
from composer.engine.containers import Conflict, ContainerManager, NoSuchContainer
from composer.engine.daemon import EngineContext
from composer.engine.server import ApiError, Hijack, Request, Router, Stream
from composer.errors import ComposerError
from composer.runtime.spec import ContainerSpec

log = logging.getLogger("composer.engine")


def setup(ctx: EngineContext, router: Router) -> Callable[[], None]:
    import sys

    from composer.engine.probes import HealthChecks
    from composer.engine.supervisor import Supervisor
    from composer.runtime.rootfs import check_state_root
    from composer.state.layout import Layout, open_images, open_store

    # The engine's threads mostly wait; when two want the GIL at once (a request and a
    # clean-up), the one answering a client should not wait the default 5 ms for its turn.
    sys.setswitchinterval(0.0005)
    check_state_root(ctx.root)
    layout = Layout(ctx.root, ctx.run_root)
    db = open_store(ctx.root)
    images = open_images(ctx.root, db)
    supervisor = Supervisor()
    manager = ContainerManager(layout, db, images, supervisor, pull=_puller(images))
    manager.health = HealthChecks(manager)
    manager.adopt()
    manager.networks.sweep()
    Routes(manager).add_to(router)
    from composer.engine.network_routes import NetworkRoutes

    NetworkRoutes(manager).add_to(router)
    from composer.engine.build_routes import BuildRoutes

    BuildRoutes(manager).add_to(router)
    from composer.engine.project_routes import ProjectRoutes
    from composer.engine.projects import ProjectManager

    projects = ProjectManager(manager)
    ProjectRoutes(projects).add_to(router)
    from composer.engine.watch_routes import WatchRoutes

    WatchRoutes(projects.watchers).add_to(router)

    def cleanup() -> None:
        supervisor.stop()
        images.close()
        db.close()

    return cleanup


def _puller(images: Any) -> Callable[[str], Any]:
    def pull(ref: str) -> Any:
        from composer.runtime.images.registry import RegistryClient
        from composer.runtime.images.transfer import pull as pull_image

        with RegistryClient() as client:
            return pull_image(images, client, ref)

    return pull


def _flag(request: Request, name: str) -> bool:
    value = request.params.get(name)
    if isinstance(value, list):
        value = value[-1]
    return str(value or "").lower() in ("1", "true", "yes")


def _param(request: Request, name: str) -> str | None:
    value = request.params.get(name)
    if isinstance(value, list):
        value = value[-1]
    return None if value in (None, "") else str(value)


def _line(item: Any) -> dict[str, Any]:
    from composer.runtime.logs import format_time

    return {"time": format_time(item.time_ns), "stream": item.stream,
            "line": item.data.decode("utf-8", "surrogateescape"), "partial": item.partial}


class Routes:
    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager

    def add_to(self, router: Router) -> None:
        r = router.add
        r("GET", "/v1/containers", self.listing)
        r("POST", "/v1/containers", self.create)
        r("POST", "/v1/containers/run", self.run)
        r("GET", "/v1/containers/{id}", self.inspect)
        r("DELETE", "/v1/containers/{id}", self.remove)
        for verb in ("start", "stop", "restart", "kill", "pause", "unpause", "wait"):
            r("POST", f"/v1/containers/{{id}}/{verb}", getattr(self, verb))
        r("GET", "/v1/containers/{id}/logs", self.logs)
        r("GET", "/v1/containers/{id}/top", self.top)
        r("GET", "/v1/containers/{id}/stats", self.stats)
        r("POST", "/v1/containers/{id}/exec", self.exec)
        r("POST", "/v1/containers/{id}/attach", self.attach)
        r("POST", "/v1/containers/{id}/commit", self.commit)
        r("POST", "/v1/containers/{id}/cp", self.cp)
        r("POST", "/v1/containers/{id}/sync", self.sync)
        r("GET", "/v1/volumes", self.volume_list)
        r("POST", "/v1/volumes", self.volume_create)
        r("POST", "/v1/volumes/prune", self.volume_prune)
        r("GET", "/v1/volumes/{name}", self.volume_inspect)
        r("DELETE", "/v1/volumes/{name}", self.volume_remove)

    # -- wrappers -------------------------------------------------------------------------------

    def _find(self, request: Request) -> Any:
        try:
            return self.m.find(request.path_args["id"])
        except NoSuchContainer as e:
            raise ApiError(404, str(e)) from e

    @staticmethod
    def _conflicts(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except NoSuchContainer as e:
            raise ApiError(404, str(e)) from e
        except Conflict as e:
            raise ApiError(409, str(e)) from e

    # -- routes ---------------------------------------------------------------------------------

    def listing(self, request: Request) -> Any:
        return [views.summary(self.m, row) for row in self.m.list(all=_flag(request, "all"))]

    def _spec(self, request: Request) -> ContainerSpec:
        body = request.body or {}
        try:
            return ContainerSpec.from_json(body["spec"])
        except (KeyError, TypeError, ValueError) as e:
            raise ApiError(400, f"a container spec is needed: {e}") from e

    def _create(self, request: Request) -> tuple[Any, list[str]]:
        from composer.runtime import bundle

        spec = self._spec(request)
        policy = (request.body or {}).get("pull") or "missing"
        if policy == "always":
            self.m.pull_image(spec.image)
        elif policy == "never" and self.m.images.get(spec.image) is None:
            raise ApiError(404, f"No such image: {spec.image}")
        row = self._conflicts(lambda: self.m.create(spec))
        return row, bundle.bundle_warnings(spec)

    def create(self, request: Request) -> Any:
        row, warnings = self._create(request)
        if (request.body or {}).get("start"):
            try:
                self.m.start(row.id)
            except ComposerError:
                if row.spec.get("auto_remove"):
                    self.m.remove(row.id, force=True)
                raise
        return {"Id": row.id, "Name": row.name, "Warnings": warnings}

    def run(self, request: Request) -> Any:
        """create + start + the output as it comes + the exit code (+ removal with --rm)."""
        row, warnings = self._create(request)

        def events() -> Iterator[Any]:
            yield {"id": row.id, "name": row.name}
            for warning in warnings:
                yield {"warning": warning}
            self.m.hold_files(row.id)
            try:
                try:
                    self.m.start(row.id)
                except ComposerError as e:
                    from composer.engine.exitcodes import start_failure_code

                    if row.spec.get("auto_remove"):
                        self.m.remove(row.id, force=True)
                    yield {"error": str(e), "code": start_failure_code(str(e))}
                    return
                for item in self.m.log_lines(row.id, follow=True):
                    yield _line(item)
                yield {"exit": self._exit_after_run(row)}
            finally:
                self.m.release_files(row.id)

        return Stream(events())

    def _exit_after_run(self, row: Any) -> int:
        # With --rm, answer once it is gone, as `docker run --rm` does.
        return self.m.wait(row.id, condition="removed" if row.spec.get("auto_remove")
                           else "not-running")

    def inspect(self, request: Request) -> Any:
        return views.inspect(self.m, self._find(request))

    def remove(self, request: Request) -> Any:
        row = self._find(request)
        return {"Id": self._conflicts(lambda: self.m.remove(
            row.id, force=_flag(request, "force"), volumes=_flag(request, "volumes")))}

    def _hooked(self, request: Request, verb: str) -> Any:
        """``?hooks=1`` (the compose commands): the verb with the service's lifecycle hooks."""
        from composer.engine.project_hooks import routed

        row = self._find(request)
        t = _param(request, "t")
        warnings = self._conflicts(lambda: routed(self.m, verb, row.id,
                                                  None if t is None else float(t)))
        return {"Id": row.id, "Warnings": warnings}

    def start(self, request: Request) -> Any:
        if _flag(request, "hooks"):
            return self._hooked(request, "start")
        row = self._find(request)
        self._conflicts(lambda: self.m.start(row.id))
        return {"Id": row.id}

    def stop(self, request: Request) -> Any:
        if _flag(request, "hooks"):
            return self._hooked(request, "stop")
        row = self._find(request)
        t = _param(request, "t")
        self.m.stop(row.id, timeout=None if t is None else float(t),
                    signal=_param(request, "signal"))
        return {"Id": row.id}

    def restart(self, request: Request) -> Any:
        if _flag(request, "hooks"):
            return self._hooked(request, "restart")
        row = self._find(request)
        t = _param(request, "t")
        self.m.restart(row.id, timeout=None if t is None else float(t))
        return {"Id": row.id}

    def kill(self, request: Request) -> Any:
        row = self._find(request)
        self._conflicts(lambda: self.m.kill(row.id, _param(request, "signal") or "SIGKILL"))
        return {"Id": row.id}

    def pause(self, request: Request) -> Any:
        row = self._find(request)
        self._conflicts(lambda: self.m.pause(row.id))
        return {"Id": row.id}

    def unpause(self, request: Request) -> Any:
        row = self._find(request)
        self._conflicts(lambda: self.m.unpause(row.id))
        return {"Id": row.id}

    def wait(self, request: Request) -> Any:
        row = self._find(request)
        return {"StatusCode": self.m.wait(row.id,
                                          condition=_param(request, "condition") or "not-running")}

    def logs(self, request: Request) -> Any:
        from composer.runtime.logs import parse_since

        row = self._find(request)
        now = time.time()
        since = _param(request, "since")
        until = _param(request, "until")
        tail = _param(request, "tail")
        items = self.m.logs(row.id, follow=_flag(request, "follow"),
                            since_ns=None if since is None else parse_since(since, now),
                            until_ns=None if until is None else parse_since(until, now),
                            tail=None if tail in (None, "all") else int(str(tail)))
        return Stream(_line(item) for item in items)

    def top(self, request: Request) -> Any:
        return views.top(self.m, self._find(request))

    def stats(self, request: Request) -> Any:
        row = self._find(request)
        if row.status not in ("running", "paused"):
            raise ApiError(409, f"container {row.name} is not running")
        return views.stats(self.m, row)

    def commit(self, request: Request) -> Any:
        from composer.engine.commit import commit

        row = self._find(request)
        body = request.body or {}
        image = commit(self.m, row, repository=body.get("repository"),
                       message=str(body.get("message") or ""),
                       author=str(body.get("author") or ""), pause=bool(body.get("pause", True)))
        return {"Id": image.id}

    def cp(self, request: Request) -> Any:
        from composer.engine.copy import copy

        row = self._find(request)
        body = request.body or {}
        copy(self.m, row, direction=str(body.get("direction")),
             container_path=str(body.get("container_path")), host_path=str(body.get("host_path")))
        return {}

    def sync(self, request: Request) -> Any:
        from composer.engine.copy import sync

        row = self._find(request)
        entries = (request.body or {}).get("entries")
        if not isinstance(entries, list):
            raise ApiError(400, "a sync needs its entries")
        return sync(self.m, row, entries)

    # -- volumes --------------------------------------------------------------------------------

    def volume_list(self, request: Request) -> Any:
        return [v.to_json() for v in self.m.volumes.all()]

    def volume_create(self, request: Request) -> Any:
        import secrets

        body = request.body or {}
        name = str(body.get("name") or secrets.token_hex(32))  # unnamed: random, as Docker
        return self.m.volumes.create(name, labels=body.get("labels") or {},
                                     driver=str(body.get("driver") or "local"),
                                     options=body.get("options") or {}).to_json()

    def volume_inspect(self, request: Request) -> Any:
        found = self.m.volumes.get(request.path_args["name"])
        if found is None:
            raise ApiError(404, f"No such volume: {request.path_args['name']}")
        return found.to_json()

    def volume_remove(self, request: Request) -> Any:
        from composer.runtime.volumes import VolumeError

        name = request.path_args["name"]
        try:
            self.m.volumes.remove(name, users=self.m.volume_users, force=_flag(request, "force"))
        except VolumeError as e:
            raise ApiError(404 if str(e).startswith("No such") else 409, str(e)) from e
        return {"Name": name}

    def volume_prune(self, request: Request) -> Any:
        return {"VolumesDeleted": self.m.volumes.prune(users=self.m.volume_users)}

    # -- sessions -------------------------------------------------------------------------------

    def exec(self, request: Request) -> Any:
        from composer.engine.sessions import exec_detached, exec_session

        row = self._find(request)
        if row.status != "running":
            raise ApiError(409, f"container {row.id} is not running")
        body = request.body or {}
        if body.get("detach"):
            exec_detached(self.m, row, body)
            return {}
        return Hijack(lambda sock: exec_session(self.m, row, body, sock))

    def attach(self, request: Request) -> Any:
        from composer.engine.sessions import attach_session

        row = self._find(request)
        rows, cols = _param(request, "rows"), _param(request, "cols")
        size = (int(rows), int(cols)) if rows and cols and rows.isdigit() and cols.isdigit() \
            else None
        return Hijack(lambda sock: attach_session(self.m, row, sock,
                                                  start=_flag(request, "start"),
                                                  remove=_flag(request, "remove"), size=size))


__all__ = ["Routes", "setup"]
