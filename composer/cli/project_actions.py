"""How the project commands act on containers: a generation at a time, the containers of a
generation at once, with Compose's progress lines, and the waits between generations.

Starting waits for what a generation needs (``depends_on`` with ``service_healthy`` or
``service_completed_successfully``) by polling the engine's list; ``start --wait`` waits the
same way for what it started.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from composer.cli.app import App
from composer.cli.project_select import Container, Target
from composer.errors import ComposerError


class Reporter:
    """Compose's progress lines on stderr (`` ✔ Container demo-web-1  Stopped``), one writer
    at a time: the workers of a generation report from their own threads."""

    def __init__(self, app: App, options: argparse.Namespace) -> None:
        self.app = app
        self.quiet = options.progress == "quiet"
        self.dry_run = bool(getattr(options, "dry_run", False))
        self._lock = threading.Lock()

    def done(self, name: str, word: str) -> None:
        if not self.quiet:
            prefix = "DRY-RUN MODE - " if self.dry_run else ""
            with self._lock:
                self.app.err.write(f" {prefix}✔ Container {name}  {word}\n")

    def warn(self, message: str) -> None:
        with self._lock:
            self.app.warn(message)

    def failed(self, name: str, error: str) -> None:
        with self._lock:
            self.app.err.write(f" ✘ Container {name}  Error\n")
            self.app.error(error)


def each(reporter: Reporter, options: argparse.Namespace, containers: Sequence[Container],
         action: Callable[[Container], None], word: str) -> bool:
    """``action`` on every container at once (at most ``--parallel`` at a time); False if one
    failed. One flat pool per call, never nested: nested bounded pools deadlocked Compose."""
    if not containers:
        return True
    limit = options.parallel if options.parallel and options.parallel > 0 else len(containers)
    failed = False

    def one(c: Container) -> None:
        nonlocal failed
        try:
            if not reporter.dry_run:
                action(c)
        except ComposerError as exc:
            failed = True
            reporter.failed(c.name, str(exc))
            return
        reporter.done(c.name, word)

    with ThreadPoolExecutor(max_workers=min(limit, len(containers))) as pool:
        list(pool.map(one, containers))
    return not failed


def post(client: Any, verb: str, params: dict[str, Any] | None = None, *,
         reporter: Reporter | None = None) -> Callable[[Container], None]:
    """``verb`` on a container; with a ``reporter``, the compose form: the engine runs the
    service's lifecycle hooks around it (``hooks=1``) and its warnings are shown."""
    if reporter is not None:
        params = {**(params or {}), "hooks": 1}

    def act(c: Container) -> None:
        answer = client.request("POST", f"/v1/containers/{c.id}/{verb}", params=params)
        if reporter is not None and isinstance(answer, dict):
            for warning in answer.get("Warnings") or ():
                reporter.warn(str(warning))
    return act


def wait_dependencies(client: Any, target: Target, group: Sequence[Container],
                      started: Sequence[Container]) -> None:
    """Before starting ``group``: wait for the dependencies it needs healthy or completed
    (Compose's ``depends_on.condition``); plain ``service_started`` needs nothing more."""
    if target.project is None:
        return
    waits: dict[str, str] = {}
    for service in {c.service for c in group}:
        declared = target.project.services.get(service)
        for dep, need in (declared.depends_on.items() if declared else ()):
            if need.condition != "service_started":
                waits[dep] = need.condition
    for dep, condition in sorted(waits.items()):
        ids = {c.id for c in started if c.service == dep}
        if ids:
            wait_until(client, ids, condition, timeout=None)


def wait_until(client: Any, ids: set[str], condition: str, *, timeout: float | None) -> None:
    """Poll the engine until every container of ``ids`` meets ``condition``:
    ``service_healthy``, ``service_completed_successfully``, or ``running`` (healthy where it
    has a healthcheck, as ``--wait`` means it)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        listed = {c["Id"]: c for c in client.request("GET", "/v1/containers",
                                                     params={"all": 1}) if c["Id"] in ids}
        pending = []
        for cid in ids:
            c = listed.get(cid)
            if c is None:
                raise ComposerError(f"container {cid[:12]} is gone")
            state = c["State"]
            health = (state.get("Health") or {}).get("Status")
            if condition == "service_completed_successfully":
                if state["Status"] in ("exited", "dead"):
                    if state["ExitCode"]:
                        raise ComposerError(f'service "{_service_of(c)}" didn\'t complete '
                                            f"successfully: exit {state['ExitCode']}")
                    continue
            elif state["Status"] in ("exited", "dead", "created"):
                raise ComposerError(f"container {c['Name']} exited ({state['ExitCode']})")
            elif health == "unhealthy":
                raise ComposerError(f"container {c['Name']} is unhealthy")
            elif condition == "service_healthy" and health is None:
                raise ComposerError(f"container {c['Name']} has no healthcheck configured")
            elif state["Status"] == "running" and health in (None, "healthy"):
                continue
            pending.append(c["Name"])
        if not pending:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise ComposerError(f"timeout waiting for {', '.join(sorted(pending))}")
        time.sleep(0.2)


def _service_of(summary: dict[str, Any]) -> str:
    from composer.state.labels import LABEL_SERVICE

    return str((summary.get("Labels") or {}).get(LABEL_SERVICE, summary["Name"]))
