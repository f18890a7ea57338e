"""The engine's background-watch API: ``/v1/projects/{name}/watch``, over :class:`Watchers`.

``POST`` starts the project's watcher (``composer up -d --watch``) and answers once it
watches, ``DELETE`` stops it (``composer watch --stop``), ``GET`` is its status (``ps``).
"""

from __future__ import annotations

from typing import Any

from composer.engine.watchers import Watchers


class WatchRoutes:
    def __init__(self, watchers: Watchers) -> None:
        self.watchers = watchers

    def add_to(self, router: Any) -> None:
        router.add("GET", "/v1/projects/{name}/watch", self.status)
        router.add("POST", "/v1/projects/{name}/watch", self.start)
        router.add("DELETE", "/v1/projects/{name}/watch", self.stop)

    def status(self, request: Any) -> Any:
        found = self.watchers.status(request.path_args["name"])
        return {"Watching": False} if found is None else {"Watching": True, **found}

    def start(self, request: Any) -> Any:
        from composer.engine.server import ApiError

        body = request.body or {}
        if not isinstance(body, dict):
            raise ApiError(400, "a watch needs the files and options to watch with")
        return {"Watching": True, **self.watchers.start(request.path_args["name"], body)}

    def stop(self, request: Any) -> Any:
        found = self.watchers.stop(request.path_args["name"])
        return {"Stopped": False} if found is None else {"Stopped": True, **found}
