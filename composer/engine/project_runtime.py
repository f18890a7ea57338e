"""The executor's runtime for compose projects: each plan action as one call on the engine.

The planner's changes carry compose words (a service's normalized config, a network's
``spec``); this adapter turns them into the engine's own objects (a ContainerSpec through
:mod:`composer.engine.service_spec`, a network with its ipam config, a volume with its driver
options) and calls the same managers ``composer container ...`` uses, so a compose container
is an ordinary container with Compose's labels.

Starting and stopping a service container run its lifecycle hooks
(:mod:`composer.engine.project_hooks`). Every method keeps the two rules of
:mod:`composer.runtime.base`: ``ensure`` of what exists is success, ``remove`` of what is
gone is success. Failures are :class:`RuntimeFailure` with a
message that names the object, as the plan's output shows them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from composer.errors import ComposerError
from composer.runtime.base import RuntimeFailure

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager
    from composer.manifest.model import Project
    from composer.state.containers import ContainerRow

#: Something worth telling the user while a change runs (a build's output line, a warning).
Say = Callable[[str, str], None]  # (address text, message)


class ProjectRuntime:
    """The four concerns of :class:`composer.runtime.base.Runtime`, for one project's up."""

    def __init__(self, manager: ContainerManager, project: Project, *,
                 contents: Mapping[str, str], builds: Mapping[str, Mapping[str, Any]],
                 say: Say) -> None:
        self.images = _Images(manager, builds, say)
        self.containers = _Containers(manager, project, contents, say)
        self.networks = _Networks(manager)
        self.volumes = _Volumes(manager)


class _Images:
    def __init__(self, manager: ContainerManager, builds: Mapping[str, Mapping[str, Any]],
                 say: Say) -> None:
        self.m = manager
        self.builds = builds
        self.say = say

    def pull(self, ref: str, *, platform: str | None = None) -> str:
        _host_platform(ref, platform)
        try:
            return str(self.m.pull_image(ref).id)
        except ComposerError as e:
            raise RuntimeFailure(f"pull {ref}: {e}") from e

    def build(self, service: str, build: Mapping[str, Any], tag: str) -> str:
        from composer.engine.build import Builder
        from composer.engine.build_routes import request_from_body

        body = self.builds.get(service)
        if body is None:
            raise RuntimeFailure(f"service {service}: the client sent no build request for it")
        where = f"image {tag}"
        builder = Builder(self.m, emit=lambda step: self.say(where, _step_line(step)),
                          output=lambda step, line: self.say(where, line))
        try:
            return str(builder.build(request_from_body(body)).id)
        except ComposerError as e:
            raise RuntimeFailure(f"service {service}: the build failed: {e}") from e

    def remove(self, ref: str) -> None:
        try:
            if self.m.images.get(ref) is not None:
                from composer.state.containers import image_in_use

                self.m.images.remove(ref, in_use=lambda i: image_in_use(self.m.db, i))
        except ComposerError as e:
            raise RuntimeFailure(f"image {ref}: {e}") from e


def _step_line(step: Any) -> str:
    status = "CACHED" if step.cached else f"{step.seconds:.1f}s"
    return f"[{step.stage}] {step.instruction}  {status}"


def _host_platform(ref: str, platform: str | None) -> None:
    if platform:
        from composer.runtime.images.platform import Platform

        host = str(Platform.host())
        if platform.split("/")[:2] != host.split("/")[:2]:
            raise RuntimeFailure(f"image {ref}: platform {platform} is not this host's "
                                 f"({host}); composer runs no emulation")


class _Containers:
    def __init__(self, manager: ContainerManager, project: Project,
                 contents: Mapping[str, str], say: Say) -> None:
        from composer.engine.service_spec import project_context

        self.m = manager
        self.project = project
        self.contents = contents
        self.say = say
        self.context = project_context(project)

    def _row(self, name: str) -> ContainerRow | None:
        from composer.engine.containers import NoSuchContainer

        try:
            return self.m.find(name)
        except NoSuchContainer:
            return None

    def create(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> str:
        from composer.engine.service_spec import container_spec
        from composer.runtime.spec import ContainerSpec
        from composer.state import projects
        from composer.state.labels import service_config

        service = str(spec["service"])
        plain, warnings = container_spec(self.context, service, spec["config"], name=name,
                                         image=str(spec["image"]), labels=labels)
        if spec.get("auto_remove"):  # `run --rm`: the engine removes it when it exits
            plain["auto_remove"] = True
        for warning in warnings:
            self.say(f"service {service}", f"warning: {warning}")
        self._check_external(service)
        try:
            row = self.m.create(ContainerSpec.from_json(plain))
        except ComposerError as e:
            raise RuntimeFailure(f"container {name}: {e}") from e
        model = self.project.services.get(service)
        if model is not None:
            projects.save_config(self.m.db, row.id, service_config(model, self.contents))
        return str(row.id)

    def _check_external(self, service: str) -> None:
        """An external network or volume must exist already: say so by its compose name."""
        model = self.project.services.get(service)
        if model is None:
            return
        for key in model.networks:
            network = self.project.networks.get(key)
            if network is not None and network.external:
                try:
                    self.m.networks.find(network.name)
                except ComposerError:
                    raise RuntimeFailure(
                        f"network {network.name} declared as external, but could not be found"
                        f": create it with 'composer network create {network.name}'") from None
        for mount in model.volumes:
            volume = self.project.volumes.get(mount.source or "")
            if mount.type == "volume" and volume is not None and volume.external and \
                    self.m.volumes.get(volume.name) is None:
                raise RuntimeFailure(
                    f"external volume \"{volume.name}\" not found: create it with "
                    f"'composer volume create {volume.name}'")

    def start(self, name: str) -> None:
        """Start it with its lifecycle hooks: pre_start steps, then post_start
        (:mod:`composer.engine.project_hooks`); a hook's failure names its service."""
        from composer.engine import project_hooks

        try:
            project_hooks.start(self.m, name, project=self.project, say=self.say)
        except RuntimeFailure:
            raise
        except ComposerError as e:
            raise RuntimeFailure(f"container {name}: {e}") from e

    def stop(self, name: str, *, timeout: float | None = None) -> None:
        """Stop it after its pre_stop hooks (a failing one is a warning, said)."""
        from composer.engine import project_hooks

        if self._row(name) is None:
            return
        try:
            project_hooks.stop(self.m, name, timeout=timeout, say=self.say)
        except ComposerError as e:
            raise RuntimeFailure(f"container {name}: {e}") from e

    def remove(self, name: str, *, volumes: bool = False) -> None:
        from composer.engine.containers import NoSuchContainer
        from composer.engine.project_hooks import remove_steps_of

        row = self._row(name)
        if row is None:
            return
        try:
            remove_steps_of(self.m, row, every=volumes)
            self.m.remove(row.id, force=True, volumes=volumes)
        except NoSuchContainer:
            return  # removed meanwhile (down removes init containers by two ways at once)
        except ComposerError as e:
            raise RuntimeFailure(f"container {name}: {e}") from e

    def rename(self, old: str, new: str, *, replaces: str | None = None) -> None:
        from composer.engine.mounts import hand_over_anonymous

        try:
            row = self.m.rename(old, new)
            if replaces:
                hand_over_anonymous(self.m, replaces, row.id)
        except ComposerError as e:
            raise RuntimeFailure(f"container {old}: {e}") from e

    def wait_healthy(self, name: str, *, timeout: float | None) -> None:
        row = self._row(name)
        if row is None:
            raise RuntimeFailure(f"container {name} is gone")
        if row.health is None and not self.m.spec(row).healthcheck and \
                not self.m.image_config(row).get("Healthcheck"):
            raise RuntimeFailure(f"container {name} has no healthcheck configured")

        def settled(r: ContainerRow | None) -> bool:
            return r is None or r.status not in ("running", "restarting") or \
                (r.health or {}).get("Status") in ("healthy", "unhealthy")

        reached, last = self.m._wait_until(settled, row.id, timeout)
        if last is None:
            raise RuntimeFailure(f"container {name} was removed while starting")
        status = (last.health or {}).get("Status")
        if status == "healthy":
            return
        if not reached:
            raise RuntimeFailure(f"container {name} is not healthy after {timeout:g}s"
                                 f"{_last_output(last)}")
        if status == "unhealthy":
            raise RuntimeFailure(f"container {name} is unhealthy{_last_output(last)}")
        raise RuntimeFailure(f"container {name} exited ({last.exit_code or 0}) before it was "
                             "healthy")

    def wait_completed(self, name: str, *, timeout: float | None) -> int:
        row = self._row(name)
        if row is None:
            raise RuntimeFailure(f"container {name} is gone")
        reached, last = self.m._wait_until(
            lambda r: r is None or r.status in ("exited", "dead"), row.id, timeout)
        if not reached:
            raise RuntimeFailure(f"container {name} has not completed after {timeout:g}s")
        return int(last.exit_code or 0) if last is not None else 0


def _last_output(row: ContainerRow) -> str:
    log = (row.health or {}).get("Log") or []
    if not log:
        return ""
    output = str(log[-1].get("Output") or "").strip()
    return f" (last check: exit {log[-1].get('ExitCode')}{': ' + output if output else ''})"


class _Networks:
    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager
        self._lock = threading.Lock()

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        from composer.engine.networks import NoSuchNetwork

        with self._lock:  # two services asking for one network at once make it once
            try:
                self.m.networks.find(name)
                return
            except NoSuchNetwork:
                pass
            ipam = spec.get("ipam") or {}
            try:
                self.m.networks.create(
                    name, driver=str(spec.get("driver") or "bridge"),
                    internal=bool(spec.get("internal")),
                    labels={**{str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
                            **labels},
                    options={str(k): str(v) for k, v in (spec.get("driver_opts") or {}).items()},
                    ipam_config=list(ipam.get("config") or ()))
            except ComposerError as e:
                raise RuntimeFailure(f"network {name}: {e}") from e

    def remove(self, name: str) -> None:
        from composer.engine.networks import NoSuchNetwork

        try:
            self.m.networks.remove(name)
        except NoSuchNetwork:
            return
        except ComposerError as e:
            raise RuntimeFailure(f"network {name}: {e}") from e


class _Volumes:
    def __init__(self, manager: ContainerManager) -> None:
        self.m = manager

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        try:
            self.m.volumes.create(
                name, driver=str(spec.get("driver") or "local"),
                labels={**{str(k): str(v) for k, v in (spec.get("labels") or {}).items()},
                        **labels},
                options={str(k): str(v) for k, v in (spec.get("driver_opts") or {}).items()})
        except ComposerError as e:
            raise RuntimeFailure(f"volume {name}: {e}") from e

    def remove(self, name: str) -> None:
        if self.m.volumes.get(name) is None:
            return
        try:
            self.m.volumes.remove(name, users=self.m.volume_users)
        except ComposerError as e:
            raise RuntimeFailure(f"volume {name}: {e}") from e
