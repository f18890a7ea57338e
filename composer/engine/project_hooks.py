"""Compose's lifecycle hooks, run by the engine around a service container's start and stop.

- ``post_start``: after the container has started, each command runs inside it (as ``exec``
  does), in order. A non-zero exit fails that start; the container is left running, as
  Docker Compose leaves it, so that its logs and state can be looked at.
- ``pre_stop``: before composer stops a running container (``down``, ``stop``, ``restart``,
  a recreate, Ctrl-C of ``up``), each command runs inside it; a failure is a warning and the
  stop goes on. Nothing runs for a container that is not running, nor on ``kill``.
- ``pre_start``: before the container starts, each step runs in a one-shot *init container*
  (the service's config with the step's command, image, user, working_dir, privileged and
  environment; the service container's volumes through ``volumes_from``; its networks
  without its aliases, addresses or published ports). A non-zero exit fails the start. A
  step that succeeded is not run again while its record holds: the same step, image id and
  service config hash, and (per service) a container of the service that was there when it
  ran, or (``per_replica``) this very container. So a second ``up``, a ``stop`` + ``start``
  or a scale-up skip it; a changed service (recreated), ``--force-recreate`` or ``down`` +
  ``up`` run it again.

Init containers are named ``<project>-<service>-pre_start-<i>`` (``<i>`` counts from 0, as
the ``pre_start[i]`` of messages), or ``<container>-pre_start-<i>`` with ``per_replica``
(``demo-web-2-pre_start-0``). They are labelled as one-offs of their service
(``com.docker.compose.oneoff=True``) plus :data:`HOOK` and the record labels: the planner and
``ps`` leave one-offs out, ``down`` removes them. They are kept after they exit: the kept
container is the record that the step succeeded.

The hooks of post_start and pre_stop are read from the configuration the container was
created from (kept in the store), so a recreate runs the old container's ``pre_stop``;
pre_start needs the whole project (networks, volumes and image of the service): the caller's,
else the one the last ``up`` stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError
from composer.runtime.base import RuntimeFailure
from composer.state import labels as L

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager
    from composer.manifest.model import Project, Service
    from composer.state.containers import ContainerRow

#: Something to tell the user: (where, message), as ProjectRuntime's ``say``.
Say = Callable[[str, str], None]

#: On an init container: the hook kind ("pre_start") and its index in the service's list.
HOOK = "io.composer.hook"
HOOK_INDEX = "io.composer.hook.index"
#: The record of a run: what it ran (hash) and the service container it ran before (id).
HOOK_HASH = "io.composer.hook.hash"
HOOK_FOR = "io.composer.hook.for"

_RUNNING = ("running", "paused")  # what ContainerManager.start leaves alone
_TAIL_LINES = 5
_TAIL_CHARS = 600

# One lock per init container name: the replicas of a service start in parallel, and its
# once-per-service steps must run once, the other replicas waiting for the outcome.
_init_locks: dict[str, threading.Lock] = {}
_init_guard = threading.Lock()


def _quiet(where: str, message: str) -> None:
    return None


# --- the entry points --------------------------------------------------------------------------


def start(manager: ContainerManager, ref: str, *, project: Project | None = None,
          say: Say = _quiet) -> None:
    """Start a service container with its hooks: pre_start steps, the start, post_start.
    A container that runs already is left alone (no hook runs twice for one start)."""
    row = manager.find(ref)
    if row.status in _RUNNING:
        return
    service = _labels(row).get(L.LABEL_SERVICE, "")
    if not _is_oneoff(row):
        project = project or stored_project(manager, _labels(row).get(L.LABEL_PROJECT, ""))
        model = project.services.get(service) if project is not None else None
        if project is not None and model is not None:
            run_pre_start(manager, project, model, row, say)
    manager.start(row.id)
    if not _is_oneoff(row):
        run_post_start(manager, manager.find(row.id))


def stop(manager: ContainerManager, ref: str, *, timeout: float | None = None,
         say: Say = _quiet) -> list[str]:
    """Stop a service container after its pre_stop hooks; returns their warnings (also
    told through ``say``)."""
    row = manager.find(ref)
    warnings = run_pre_stop(manager, row) if row.status == "running" else []
    for warning in warnings:
        say(f"service {_labels(row).get(L.LABEL_SERVICE, row.name)}", f"warning: {warning}")
    manager.stop(row.id, timeout=timeout)
    return warnings


def restart(manager: ContainerManager, ref: str, *, timeout: float | None = None,
            say: Say = _quiet) -> list[str]:
    warnings = stop(manager, ref, timeout=timeout, say=say)
    start(manager, ref, say=say)
    return warnings


def routed(manager: ContainerManager, verb: str, ref: str, timeout: float | None) -> list[str]:
    """``POST /v1/containers/{id}/{verb}?hooks=1`` (the project commands ``start``, ``stop``,
    ``restart`` and Ctrl-C of ``up``): the verb with the hooks; the warnings to answer."""
    if verb == "start":
        start(manager, ref)
        return []
    if verb == "stop":
        return stop(manager, ref, timeout=timeout)
    return restart(manager, ref, timeout=timeout)


# --- post_start and pre_stop: commands inside the container ----------------------------------


def hooks_of(manager: ContainerManager, row: ContainerRow, kind: str) -> list[Mapping[str, Any]]:
    """The ``kind`` hooks of the configuration ``row`` was created from ([] if unknown)."""
    from composer.state import projects

    config = projects.configs(manager.db).get(row.id) or {}
    return [h for h in config.get(kind) or () if isinstance(h, Mapping)]


def run_post_start(manager: ContainerManager, row: ContainerRow) -> None:
    service = _labels(row).get(L.LABEL_SERVICE, row.name)
    for index, hook in enumerate(hooks_of(manager, row, "post_start")):
        current = manager.find(row.id)
        if current.status != "running":
            raise RuntimeFailure(
                f'service "{service}": post_start[{index}] cannot run: container {row.name} '
                f"is {current.status} (exit code {current.exit_code or 0})")
        code, output = run_hook(manager, row, hook)
        if code != 0:
            raise RuntimeFailure(
                f'service "{service}": post_start[{index}] exited with code {code} in '
                f"container {row.name}{tail(output)}")


def run_pre_stop(manager: ContainerManager, row: ContainerRow) -> list[str]:
    """Run the pre_stop hooks; their failures as warnings (the stop goes on regardless)."""
    service = _labels(row).get(L.LABEL_SERVICE, row.name)
    warnings = []
    for index, hook in enumerate(hooks_of(manager, row, "pre_stop")):
        try:
            code, output = run_hook(manager, row, hook)
        except ComposerError as e:
            code, output = -1, str(e)
        if code != 0:
            warnings.append(f'service "{service}": pre_stop[{index}] exited with code {code} '
                            f"in container {row.name}{tail(output)}; stopping it anyway")
    return warnings


def run_hook(manager: ContainerManager, row: ContainerRow,
             hook: Mapping[str, Any]) -> tuple[int, str]:
    """One hook's command inside the running container, as ``exec`` runs it: (exit code,
    output). No timeout, as in Compose: a hook is the user's to keep short."""
    import os

    from composer.engine.probes import process_file

    args = command_words(hook.get("command"))
    path = process_file(manager, row.id, args, env=environment(hook) or None,
                        user=_text(hook.get("user")), working_dir=_text(hook.get("working_dir")),
                        privileged=bool(hook.get("privileged")))
    try:
        done = subprocess.run(manager.runtime(row).exec_command(row.id, str(path)),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return done.returncode, done.stdout.decode(errors="replace")


# --- pre_start: init containers ----------------------------------------------------------------


def init_name(project: str, service: Service, index: int, replica: str | None) -> str:
    """``<project>-<service>-pre_start-<i>``, or ``<replica container>-pre_start-<i>``."""
    return f"{replica or f'{project}-{service.name}'}-pre_start-{index}"


def run_pre_start(manager: ContainerManager, project: Project, service: Service,
                  row: ContainerRow, say: Say = _quiet) -> None:
    """Each pre_start step of ``service`` before container ``row`` starts, in order."""
    for index, hook in enumerate(service.spec.get("pre_start") or ()):
        per_replica = bool(hook.get("per_replica"))
        name = init_name(project.name, service, index, row.name if per_replica else None)
        with _init_lock(name):
            if _init_step(manager, project, service, row, index, hook, name, per_replica):
                say(f"service {service.name}", f"pre_start[{index}] completed ({name})")


def _init_lock(name: str) -> threading.Lock:
    with _init_guard:
        return _init_locks.setdefault(name, threading.Lock())


def _init_step(manager: ContainerManager, project: Project, service: Service,
               row: ContainerRow, index: int, hook: Mapping[str, Any], name: str,
               per_replica: bool) -> bool:
    """Run one step unless its record holds; True when it ran (and succeeded)."""
    from composer.engine.containers import NoSuchContainer
    from composer.runtime.spec import ContainerSpec

    where = f'service "{service.name}": pre_start[{index}]'
    ref = init_image(project, service, hook)
    try:
        image = manager.images.get(ref) or manager.pull_image(ref)
    except ComposerError as e:
        raise RuntimeFailure(f"{where}: image {ref}: {e}") from e
    wanted = record_hash(hook, ref, image.id, _labels(row).get(L.LABEL_CONFIG_HASH, ""))
    try:
        kept: ContainerRow | None = manager.find(name)
    except NoSuchContainer:
        kept = None
    if kept is not None:
        if succeeded(kept, wanted) and (
                _labels(kept).get(HOOK_FOR) == row.id if per_replica
                else _older_replica(manager, project, service, kept)):
            return False
        manager.remove(kept.id, force=True)
    from composer.engine.service_spec import container_spec, project_context

    labels = {**L.container_labels(project, service, _number(row), oneoff=True),
              HOOK: "pre_start", HOOK_INDEX: str(index), HOOK_HASH: wanted, HOOK_FOR: row.id}
    plain, _ = container_spec(project_context(project), service.name,
                              init_config(service, hook), name=name, image=ref, labels=labels)
    try:
        created = manager.create(ContainerSpec.from_json(init_plain(plain, row.id)))
        manager.start(created.id)
        code = manager.wait(created.id)
    except ComposerError as e:
        raise RuntimeFailure(f"{where}: init container {name}: {e}") from e
    if code != 0:
        raise RuntimeFailure(f"{where} exited with code {code} (init container {name}): "
                             f"{service.name} is not started{tail(_log_text(manager, created.id))}")
    return True


def init_image(project: Project, service: Service, hook: Mapping[str, Any]) -> str:
    from composer.plan.reconcile import image_ref

    return str(hook.get("image") or image_ref(project, service))


def record_hash(hook: Mapping[str, Any], ref: str, image_id: str, service_hash: str) -> str:
    """What a successful step's record must match for the step to be skipped."""
    from composer.manifest.model import thaw

    text = json.dumps({"hook": thaw(hook), "image": ref, "image_id": image_id,
                       "service": service_hash}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def succeeded(kept: ContainerRow, wanted: str) -> bool:
    """Whether the kept init container ran ``wanted`` and exited 0."""
    return (kept.status == "exited" and (kept.exit_code or 0) == 0
            and _labels(kept).get(HOOK_HASH) == wanted)


def init_config(service: Service, hook: Mapping[str, Any]) -> dict[str, Any]:
    """The service's canonical config made into its init container's: the step's command
    and overrides; nothing that would clash with the service's own container (published
    ports, a fixed name or address, aliases) or keep it alive (restart, health checks)."""
    from composer.manifest.model import thaw

    config: dict[str, Any] = thaw(service.spec)
    config["command"] = command_words(hook.get("command"))
    if hook.get("image"):
        config["image"] = hook["image"]
        config.pop("entrypoint", None)  # another image: its own entrypoint, not the service's
    for key in ("user", "working_dir"):
        if hook.get(key) is not None:
            config[key] = hook[key]
    if hook.get("privileged"):
        config["privileged"] = True
    config["environment"] = {**(config.get("environment") or {}), **environment(hook)}
    for key in ("ports", "container_name", "mac_address", "volumes", "volumes_from",
                "restart", "develop", "stdin_open", "tty"):
        config.pop(key, None)
    config["healthcheck"] = {"disable": True}
    deploy = dict(config.get("deploy") or {})
    deploy.pop("restart_policy", None)
    config["deploy"] = deploy
    networks = config.get("networks")
    if isinstance(networks, Mapping):
        config["networks"] = {key: {k: v for k, v in (value or {}).items()
                                    if k in ("priority", "driver_opts")} or None
                              for key, value in networks.items()}
    return config


def init_plain(plain: dict[str, Any], service_container: str) -> dict[str, Any]:
    """The init container's spec JSON: no network aliases (the service name must not resolve
    to it), the service container's volumes (its anonymous ones too) through volumes_from."""
    out = dict(plain)
    out["networks"] = [{**a, "aliases": [], "ipv4_address": None, "mac_address": None}
                       for a in plain.get("networks") or ()]
    out["mounts"] = [m for m in plain.get("mounts") or () if m.get("type") == "tmpfs"]
    out["volumes_from"] = [service_container]
    out["auto_remove"] = False
    return out


def stored_project(manager: ContainerManager, name: str) -> Project | None:
    """The project the last ``up`` of ``name`` stored, if any."""
    from composer.manifest.model import project_from_document
    from composer.state import projects

    document = (projects.get(manager.db, name) or {}).get("project") if name else None
    return project_from_document(document) if document else None


def _older_replica(manager: ContainerManager, project: Project, service: Service,
                   kept: ContainerRow) -> bool:
    """Whether a container of the service made before the step ran is still there: the
    service was not replaced as a whole since (a recreate makes every replica anew; a scale
    up or down keeps some)."""
    from composer.engine.project_observe import project_rows

    return any(r.created < kept.created for r in project_rows(manager, project.name)
               if _labels(r).get(L.LABEL_SERVICE) == service.name and not _is_oneoff(r))


def remove_steps_of(manager: ContainerManager, row: ContainerRow, *, every: bool) -> None:
    """Before service container ``row`` is removed: remove its per-replica init containers
    (their record is of a container that goes), and with ``every`` (its anonymous volumes go
    too: ``down -v``) also the per-service ones recorded for it, which take its volumes
    through ``volumes_from`` and would keep those volumes in use."""
    prefix = f"{row.name}-pre_start-"
    for other in manager.list(all=True):
        labels = _labels(other)
        if HOOK in labels and labels.get(HOOK_FOR) == row.id and (
                every or other.name.startswith(prefix)):
            with contextlib.suppress(ComposerError):  # gone meanwhile: `down` removes it too
                manager.remove(other.id, force=True)


def _log_text(manager: ContainerManager, container_id: str) -> str:
    try:
        return "".join(item.data.decode(errors="replace") +
                       ("" if item.partial else "\n")
                       for item in manager.logs(container_id, tail=_TAIL_LINES))
    except ComposerError:
        return ""


# --- small pieces ------------------------------------------------------------------------------


def command_words(command: Any) -> list[str]:
    """A hook's command as argv: the loader gives a list; a raw string is split as Compose
    splits it."""
    if isinstance(command, str):
        from composer.manifest.shortsyntax import shell_split

        return shell_split(command)
    return [str(word) for word in command or ()]


def environment(hook: Mapping[str, Any]) -> dict[str, str]:
    """A hook's ``environment`` (a mapping once loaded); a name without a value is left out,
    as Compose leaves out a variable it has no value for."""
    values = hook.get("environment") or {}
    if not isinstance(values, Mapping):
        values = dict(str(item).partition("=")[::2] for item in values)
    return {str(k): _scalar(v) for k, v in values.items() if v is not None}


def tail(output: str) -> str:
    """The last lines of a hook's output, for a message (empty when it said nothing)."""
    lines = [line for line in output.strip().splitlines() if line.strip()][-_TAIL_LINES:]
    text = "\n".join(lines)
    if len(text) > _TAIL_CHARS:
        text = "..." + text[-_TAIL_CHARS:]
    return f"; its last output:\n{text}" if text else ""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _labels(row: ContainerRow) -> Mapping[str, str]:
    found: Mapping[str, str] = row.spec.get("labels") or {}
    return found


def _is_oneoff(row: ContainerRow) -> bool:
    labels = _labels(row)
    return labels.get(L.LABEL_ONEOFF) == "True" or HOOK in labels


def _number(row: ContainerRow) -> int:
    try:
        return int(_labels(row).get(L.LABEL_NUMBER, "1"))
    except ValueError:
        return 1


__all__ = ["HOOK", "restart", "routed", "start", "stop"]
