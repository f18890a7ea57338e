"""How a project command finds its project and the project's containers.

The project is what the global options name (``-f``, ``-p``, ``--project-directory``,
``--profile``, ``--env-file``), loaded as ``config`` loads it. As in Docker Compose, the commands
that act on existing containers (``ps``, ``logs``, ``stop``, ``rm``, ...) also work from a name
alone (``-p NAME`` or ``COMPOSE_PROJECT_NAME``) where no compose file is found: the containers'
labels then say all that is needed, the order included (``com.docker.compose.depends_on``).

A project's containers are the engine's containers that carry its project label, whatever their
names: a container merely named like the project's is not the project's, and a renamed one still
is. Every listing is sorted (service, then number, one-offs last), never in the engine's order.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError, UsageError
from composer.state.labels import (
    LABEL_DEPENDS_ON,
    LABEL_NUMBER,
    LABEL_ONEOFF,
    LABEL_PROJECT,
    LABEL_SERVICE,
)

if TYPE_CHECKING:
    from composer.cli.app import App
    from composer.manifest.model import Project

#: Which one-off (``run``) containers a listing keeps.
ONEOFF_EXCLUDE = "exclude"
ONEOFF_INCLUDE = "include"
ONEOFF_ONLY = "only"

#: Docker's ``State.Running`` is true for these: "running" in the sense of ``ps`` without ``-a``.
RUNNING_STATES = frozenset({"running", "paused", "restarting"})


class NoSuchService(ComposerError):
    """A service named on the command line is not in the project (Compose's words, exit 1)."""


@dataclass(frozen=True)
class Target:
    """The project a command acts on: its name, and the loaded project when there is one."""

    name: str
    project: Project | None = None
    #: The variables of interpolation (``.env`` over the process environment): ``exec -e KEY``
    #: takes KEY's value from here, as Compose does.
    environment: Mapping[str, str] = field(default_factory=dict)

    def declared(self) -> tuple[str, ...]:
        """The project's service names, sorted; () when only a name is known."""
        return tuple(sorted(self.project.services)) if self.project is not None else ()

    def check(self, services: Iterable[str]) -> None:
        """Refuse a service the project does not declare (nothing to check without a project)."""
        if self.project is None:
            return
        for name in services:
            if name not in self.project.services:
                raise NoSuchService(f"no such service: {name}")


@dataclass(frozen=True)
class Container:
    """One container of a project, as the engine's list shows it."""

    id: str
    name: str
    service: str
    number: int
    oneoff: bool
    status: str  # Docker's State.Status: created, running, paused, restarting, exited, dead
    labels: Mapping[str, str]
    summary: Mapping[str, Any]  # the engine's whole list entry (Image, Command, State, ...)

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> Container:
        labels = dict(summary.get("Labels") or {})
        number = str(labels.get(LABEL_NUMBER, ""))
        return cls(id=str(summary["Id"]), name=str(summary["Name"]),
                   service=str(labels.get(LABEL_SERVICE, "")),
                   number=int(number) if number.isdigit() else 0,
                   oneoff=labels.get(LABEL_ONEOFF) == "True",
                   status=str((summary.get("State") or {}).get("Status", "")),
                   labels=labels, summary=summary)


def _sort_key(c: Container) -> tuple[str, bool, int, str]:
    return c.service, c.oneoff, c.number, c.name


# --- the project ----------------------------------------------------------------------------


def load_target(app: App, options: argparse.Namespace, services: Sequence[str] = (), *,
                whole: bool = False) -> Target:
    """The project the global options name, checked to declare ``services``.

    The project is loaded as for ``services`` (which switches on their profiles, as naming a
    service does in Compose); with ``whole``, every service stays in it, for commands that also
    act on the dependents of the named services (``restart``). Without a compose file but with
    ``-p`` or ``COMPOSE_PROJECT_NAME``, the target is that name alone."""
    name = options.project_name or os.environ.get("COMPOSE_PROJECT_NAME")
    if name and not _compose_file_around(options):
        from composer.manifest.source import normalize_project_name

        if normalize_project_name(name) != name:
            raise UsageError(f'invalid project name "{name}": use only lowercase letters, '
                             'digits, "-" and "_", starting with a letter or digit')
        return Target(name=name, environment=dict(os.environ))
    from composer.manifest.loader import LoadOptions, load
    from composer.manifest.model import build_project

    def loaded_for(selected: Sequence[str]) -> Any:
        return load(LoadOptions(
            files=options.files, project_dir=options.project_dir,
            project_name=options.project_name, env_files=options.env_files,
            profiles=options.profiles, services=selected))

    loaded = None
    if whole:
        loaded = loaded_for(())
        if any(s not in (loaded.tree.get("services") or {}) for s in services):
            loaded = None  # one is off (a profile) or unknown: the named ones decide
    if loaded is None:
        # The loader refuses an unknown name as "no such service: NAME", Compose's words,
        # with where the services are and the closest name as a hint.
        loaded = loaded_for(services)
    app.warnings(loaded.warnings)
    project = build_project(loaded)
    target = Target(name=project.name, project=project, environment=dict(loaded.env))
    target.check(services)
    return target


def _compose_file_around(options: argparse.Namespace) -> bool:
    """Whether loading would find a compose file (or be told of one): -f, COMPOSE_FILE, a .env
    that may set it, or a compose file in the directory or a parent, as the loader searches."""
    from composer.manifest.source import CANDIDATES

    if options.files or os.environ.get("COMPOSE_FILE"):
        return True
    directory = os.path.abspath(options.project_dir or os.getcwd())
    if os.path.isfile(os.path.join(directory, ".env")):
        return True
    while True:
        if any(os.path.isfile(os.path.join(directory, n)) for n in CANDIDATES):
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


# --- its containers -------------------------------------------------------------------------


def project_containers(engine: Any, project: str, services: Sequence[str] = (), *,
                       stopped: bool = True, oneoff: str = ONEOFF_EXCLUDE) -> list[Container]:
    """The containers of ``project`` (of ``services`` only, when named), sorted by service,
    then one-offs last, then number; ``stopped`` keeps those not running, as ``ps -a`` does."""
    listed = engine.request("GET", "/v1/containers", params={"all": int(stopped)})
    wanted = set(services)
    found = []
    for summary in listed:
        if (summary.get("Labels") or {}).get(LABEL_PROJECT) != project:
            continue
        c = Container.from_summary(summary)
        if wanted and c.service not in wanted:
            continue
        if (oneoff == ONEOFF_EXCLUDE and c.oneoff) or (oneoff == ONEOFF_ONLY and not c.oneoff):
            continue
        if not stopped and not c.running:
            continue  # it stopped between the engine's filter and now: be exact anyway
        found.append(c)
    return sorted(found, key=_sort_key)


def service_container(engine: Any, project: str, service: str, index: int | None = None, *,
                      stopped: bool = False, oneoff: str = ONEOFF_EXCLUDE) -> Container:
    """Container ``#index`` of ``service`` (the lowest numbered without ``index``), as ``exec``,
    ``port`` and ``cp --index`` pick it; running only unless ``stopped``."""
    found = [c for c in project_containers(engine, project, [service], stopped=stopped,
                                           oneoff=oneoff)
             if not index or c.number == index]
    if not found:
        if index:
            raise ComposerError(f'service "{service}" is not running container #{index}')
        raise ComposerError(f'service "{service}" is not running')
    # The lowest number first; a one-off only when no service container has that number.
    return min(found, key=lambda c: (c.number, c.oneoff, c.name))


# --- order ----------------------------------------------------------------------------------


def dependencies(target: Target, containers: Iterable[Container] = ()) -> dict[str, set[str]]:
    """What each service needs: from the project, else from the containers' depends_on labels
    (``name:condition:restart,...``, as Compose writes them)."""
    if target.project is not None:
        return {name: set(service.depends_on)
                for name, service in target.project.services.items()}
    needs: dict[str, set[str]] = {}
    for c in containers:
        label = c.labels.get(LABEL_DEPENDS_ON, "")
        needs.setdefault(c.service, set()).update(
            item.split(":", 1)[0] for item in label.split(",") if item.strip())
    return needs


def restarted_with(target: Target, services: Iterable[str]) -> set[str]:
    """``services`` and, transitively, their dependents that ``depends_on`` them with
    ``restart: true``: ``restart SERVICE`` restarts those too, as Compose does."""
    chosen = set(services)
    if target.project is None:
        return chosen
    changed = True
    while changed:
        changed = False
        for name, service in target.project.services.items():
            if name in chosen:
                continue
            if any(dep in chosen and need.restart for dep, need in service.depends_on.items()):
                chosen.add(name)
                changed = True
    return chosen


def generations(needs: Mapping[str, Iterable[str]], services: Iterable[str]
                ) -> list[list[str]]:
    """Start order of ``services``: each generation needs only services of earlier ones, each
    sorted by name. Edges leaving ``services`` are ignored; a cycle (only labels can hold one:
    the loader refuses them) is broken by name rather than refused, so that a stop still
    stops everything."""
    members = set(services)
    pending = {s: {d for d in needs.get(s, ()) if d in members and d != s} for s in members}
    order: list[list[str]] = []
    while pending:
        ready = sorted(s for s, deps in pending.items() if not deps)
        if not ready:
            ready = [min(pending)]
        order.append(ready)
        for s in ready:
            del pending[s]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def start_generations(target: Target, containers: Sequence[Container]) -> list[list[Container]]:
    """``containers`` grouped for starting: dependencies' containers in earlier groups."""
    return _grouped(generations(dependencies(target, containers),
                                {c.service for c in containers}), containers)


def stop_generations(target: Target, containers: Sequence[Container]) -> list[list[Container]]:
    """``containers`` grouped for stopping: dependents before what they need (Compose stops in
    reverse dependency order)."""
    return start_generations(target, containers)[::-1]


def _grouped(order: list[list[str]], containers: Sequence[Container]) -> list[list[Container]]:
    groups = []
    for generation in order:
        members = set(generation)
        group = sorted((c for c in containers if c.service in members), key=_sort_key)
        if group:
            groups.append(group)
    return groups
