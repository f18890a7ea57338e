"""The watch loop: changed paths in, manifest reloads and ``develop.watch`` actions out.

Two workers, each with its own batch: the manifest's (reload, validate, plan, apply) and the
files' (the rules' actions). They never act at the same time (one lock), so a sync never
lands in a container that a reconcile is replacing. An invalid manifest is reported and the
project, its rules and what runs stay as they were; the next valid save applies.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from composer.errors import ComposerError
from composer.manifest.model import Project
from composer.watch.batch import ServiceWork, SyncEntry, initial_entries, plan_batch
from composer.watch.debounce import MAX_WAIT, Batcher, Clock, Worker
from composer.watch.observe import directories
from composer.watch.rules import Rule, rules_of


class Effects(Protocol):
    """What the loop asks of the world; the CLI implements it over the engine."""

    def load(self) -> tuple[Project, frozenset[str]]:
        """The project loaded again and the files it was loaded from (raises on errors)."""

    def apply(self, project: Project) -> None: ...
    def sync(self, project: Project, service: str, entries: Sequence[SyncEntry]) -> None: ...
    def restart(self, project: Project, service: str) -> None: ...
    def exec(self, project: Project, service: str, hook: Mapping[str, Any]) -> None: ...
    def rebuild(self, project: Project, service: str) -> None: ...
    def say(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...


class Watcher:
    def __init__(self, effects: Effects, project: Project, manifest: frozenset[str], *,
                 services: Sequence[str] = (), quiet: float = 0.05, max_wait: float = MAX_WAIT,
                 manifest_quiet: float = 0.1, clock: Clock = time.monotonic,
                 on_dirs: Callable[[Mapping[str, bool]], None] | None = None) -> None:
        self.effects = effects
        self.services = tuple(services)
        self.on_dirs = on_dirs
        self._acting = threading.Lock()
        self.files = Worker(Batcher(quiet=quiet, max_wait=max_wait, clock=clock),
                            self._files_changed, name="composer-watch-files",
                            on_error=self._failed)
        self.manifest = Worker(Batcher(quiet=manifest_quiet, max_wait=max_wait, clock=clock),
                               self._manifest_changed, name="composer-watch-manifest",
                               on_error=self._failed)
        self.project = project
        self.manifest_files = manifest
        self.rules: tuple[Rule, ...] = tuple(rules_of(project, self.services))
        self._dirs = self.directories()

    # -- events ---------------------------------------------------------------------------------

    def changed(self, path: str) -> None:
        """A path changed on the host (watchdog's thread)."""
        path = os.path.normpath(os.path.abspath(path))
        if path in self.manifest_files:
            self.manifest.add(path)
        if any(rule.accepts(path) for rule in self.rules):
            self.files.add(path)

    def directories(self) -> dict[str, bool]:
        return directories(self.manifest_files, (r.path for r in self.rules))

    def start(self) -> None:
        self.files.start()
        self.manifest.start()

    def stop(self) -> None:
        self.files.stop()
        self.manifest.stop()

    # -- what the batches do --------------------------------------------------------------------

    def initial_sync(self) -> None:
        """``initial_sync: true``: what the rule's path holds, into the containers."""
        by_service: dict[str, list[SyncEntry]] = {}
        for rule in self.rules:
            if rule.initial_sync:
                by_service.setdefault(rule.service, []).extend(initial_entries(rule))
        with self._acting:
            for service, entries in sorted(by_service.items()):
                if entries:
                    work = ServiceWork(service, entries=entries)
                    self.effects.sync(self.project, service, work.ordered_entries())
                    self.effects.say(f"{service}: initial sync of {len(entries)} path(s)")

    def _files_changed(self, paths: list[str]) -> None:
        with self._acting:
            for work in plan_batch(self.rules, paths):
                self._act(work)
        self._refresh_dirs()

    def _act(self, work: ServiceWork) -> None:
        service = work.service
        try:
            if work.rebuild:
                self.effects.say(f"{service}: rebuilding ({_which(work.paths)} changed)")
                self.effects.rebuild(self.project, service)
                return
            entries = work.ordered_entries()
            if entries:
                self.effects.sync(self.project, service, entries)
                self.effects.say(f"{service}: synced {_count(entries)}")
            if work.restart:
                self.effects.say(f"{service}: restarting ({_which(work.paths)} changed)")
                self.effects.restart(self.project, service)
            for hook in work.execs:
                self.effects.exec(self.project, service, hook)
        except ComposerError as exc:
            self.effects.error(f"{service}: {exc}")

    def _manifest_changed(self, paths: list[str]) -> None:
        with self._acting:
            self.effects.say(f"{_which(paths)} changed: reloading the project")
            try:
                project, manifest = self.effects.load()
            except ComposerError as exc:
                self.effects.error(f"{exc}\nthe running project is left as it was; "
                                   "watching for the next save")
                return
            try:
                self.effects.apply(project)
            except ComposerError as exc:
                self.effects.error(str(exc))
            # Applied or not, the new manifest is the one the files are compared with now.
            self.project = project
            self.manifest_files = manifest
            self.rules = tuple(rules_of(project, self.services))
        self._refresh_dirs()

    def _refresh_dirs(self) -> None:
        dirs = self.directories()
        if dirs != self._dirs:
            self._dirs = dirs
            if self.on_dirs is not None:
                self.on_dirs(dirs)

    def _failed(self, exc: Exception) -> None:
        self.effects.error(f"watch: internal error: {type(exc).__name__}: {exc}")


def _which(paths: Iterable[str]) -> str:
    names = sorted({os.path.basename(p) or p for p in paths})
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _count(entries: Sequence[SyncEntry]) -> str:
    written = sum(1 for e in entries if e.host is not None)
    deleted = len(entries) - written
    parts = [f"{written} written"] if written else []
    if deleted:
        parts.append(f"{deleted} deleted")
    return ", ".join(parts) or "nothing"
