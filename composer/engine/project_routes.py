"""The engine's compose API: ``/v1/projects``, over the :class:`ProjectManager`.

``up`` and ``down`` stream newline-delimited JSON events (see :mod:`composer.engine.projects`)
and keep working when the client goes away; ``GET /v1/projects`` is ``composer ls``.
"""

from __future__ import annotations

from typing import Any

from composer.engine.projects import ProjectManager, stream


class ProjectRoutes:
    def __init__(self, projects: ProjectManager) -> None:
        self.projects = projects

    def add_to(self, router: Any) -> None:
        router.add("GET", "/v1/projects", self.listing)
        router.add("POST", "/v1/projects/{name}/up", self.up)
        router.add("POST", "/v1/projects/{name}/down", self.down)
        router.add("POST", "/v1/projects/{name}/run", self.run)

    def listing(self, request: Any) -> Any:
        value = request.params.get("all")
        if isinstance(value, list):
            value = value[-1]
        return self.projects.listing(all=str(value or "").lower() in ("1", "true", "yes"))

    def up(self, request: Any) -> Any:
        from composer.engine.server import ApiError, Stream

        body = request.body or {}
        project = body.get("project") or {}
        if project.get("name") != request.path_args["name"] or "tree" not in project:
            raise ApiError(400, "an up needs the project (name, tree) it names")
        return Stream(stream(lambda emit: self.projects.up(body, emit)))

    def run(self, request: Any) -> Any:
        from composer.engine.server import ApiError, Stream

        body = request.body or {}
        if "project" not in body or "service" not in body:
            raise ApiError(400, "a run needs the project and the service")
        return Stream(stream(lambda emit: self.projects.oneoff(body, emit)))

    def down(self, request: Any) -> Any:
        from composer.engine.server import Stream

        body = {**(request.body or {}), "name": request.path_args["name"]}
        return Stream(stream(lambda emit: self.projects.down(body, emit)))
