"""``up``, planned: what must change for the project to run as its manifest says.

:func:`reconcile` is pure: desired project + observed snapshot + options in, :class:`Plan`
out; it never touches the host. It follows Docker Compose's convergence:

- networks and volumes first (a changed network is recreated; a changed volume is kept, with
  a warning, because recreating it would lose data), then images (pull or build as the pull
  policy says), then services in dependency order. Whether a pull or a build changes an
  image is known only once it is done: the engine then plans again, and that round recreates
  the containers whose image id changed (Compose does the same, pulling before converging);
- a container is recreated when the policy says ``force``, its config hash differs, its image
  changed, or a service it shares namespaces or ``volumes_from`` with is recreated; a
  recreate is *create new under a temporary name, stop old, remove old, rename new*;
- scale up creates the missing numbers, scale down removes the highest numbers first;
- a dependent starts after its dependency has started, is healthy, or has completed, as its
  ``depends_on`` condition says; ``depends_on.restart: true`` dependents are restarted when
  their dependency is recreated;
- orphans (containers of services no longer in the project) are removed only with
  ``remove_orphans``, otherwise named in a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from composer.manifest.model import built_image_name
from composer.plan.actions import Action, Address, Kind, Plan
from composer.plan.builder import PlanBuilder
from composer.state.observed import CREATED, EXITED, RUNNING, Observed, ObservedContainer

if TYPE_CHECKING:
    from composer.graph import ServiceGraph
    from composer.manifest.model import Project, Service

DIVERGED, FORCE, NEVER = "diverged", "force", "never"


@dataclass(frozen=True)
class Options:
    """Compose's ``up`` flags that change the plan."""

    services: tuple[str, ...] = ()  # targeted services; empty means all
    no_deps: bool = False
    recreate: str = DIVERGED  # --force-recreate: force, --no-recreate: never
    recreate_deps: str = DIVERGED  # --always-recreate-deps: force
    remove_orphans: bool = False
    renew_anon_volumes: bool = False
    scale: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    no_start: bool = False
    pull: str | None = None  # always | missing | never | build; None: each service's policy
    build: bool = False  # --build
    no_build: bool = False  # --no-build: never build, even an image that is missing
    timeout: float | None = None  # stop timeout, seconds
    # Digests of the secrets' and configs' content (composer.manifest.contents), read by the
    # caller: a changed secret file recreates the services that use it.
    contents: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def container_name(project: Project, service: Service, number: int) -> str:
    """``<project>-<service>-<n>``, or the service's ``container_name``."""
    return service.container_name or f"{project.name}-{service.name}-{number}"


def image_ref(project: Project, service: Service) -> str:
    """The image a service runs: its ``image``, or the one composer builds for it."""
    return service.image or built_image_name(project.name, service.name)


def reconcile(desired: Project, observed: Observed, options: Options | None = None) -> Plan:
    """The plan that brings ``observed`` to ``desired``; empty when nothing differs."""
    from composer.graph import ServiceGraph

    return _Planner(desired, observed, options or Options(), ServiceGraph.from_project(desired)
                    ).plan()


class _Planner:
    def __init__(self, project: Project, observed: Observed, options: Options,
                 graph: ServiceGraph) -> None:
        self.project = project
        self.observed = observed
        self.options = options
        self.graph = graph
        self.out = PlanBuilder(project.name)
        targeted = options.services or graph.services
        self.targeted = set(targeted)
        self.selected = graph.with_dependencies(targeted, no_deps=options.no_deps)
        self.chosen = frozenset(self.selected)  # for membership tests: selected is a tuple
        self.containers: dict[str, list[ObservedContainer]] = {}
        for container in sorted(observed.containers, key=lambda c: (c.number, c.id)):
            if not container.oneoff:
                self.containers.setdefault(container.service, []).append(container)
        self.network_ids: dict[str, int] = {}
        self.volume_ids: dict[str, int] = {}
        self.image_ids: dict[str, int] = {}
        self.recreated: set[str] = set()
        # Containers removed up front because a network they are on is recreated.
        self.removed: dict[str, str] = {}
        # What a dependent waits for before it starts: service -> the ids of its readiness.
        self.ready: dict[str, list[int]] = {}
        self.started: dict[str, list[int]] = {}

    def plan(self) -> Plan:
        self._networks()
        self._volumes()
        self._images()
        for generation in self.graph.generations(self.selected):
            for name in generation:
                self._service(self.project.services[name])
        self._orphans()
        return self.out.build()

    # --- resources --------------------------------------------------------------------------

    def _used(self, kind: str) -> list[str]:
        keys: set[str] = set()
        for name in self.selected:
            service = self.project.services[name]
            if kind == "networks":
                keys.update(service.networks)
            else:
                keys.update(m.source for m in service.volumes
                            if m.type == "volume" and m.source)
        return sorted(keys)

    def _networks(self) -> None:
        from composer.state.labels import network_hash

        observed = {r.key: r for r in self.observed.networks}
        for key in self._used("networks"):
            resource = self.project.networks.get(key)
            if resource is None or resource.external:
                continue
            address = Address(Kind.NETWORK, key)
            wanted = network_hash(resource)
            params = {"name": resource.name, "spec": dict(resource.spec),
                      "labels": _resource_labels(self.project.name, "network", key, wanted)}
            have = observed.get(key)
            if have is None:
                self.network_ids[key] = self.out.add(
                    Action.ENSURE_NETWORK, address, "missing", params=params)
            elif have.config_hash != wanted:
                self.network_ids[key] = self._replace_network(key, have.name, params)

    def _replace_network(self, key: str, old_name: str, params: dict[str, Any]) -> int:
        """A changed network is made anew, as Compose does: its containers go first (they
        are created again afterwards), then the old network."""
        removals: list[int] = []
        attached = sorted((c for c in self.observed.containers if key in c.networks),
                          key=lambda c: (c.service, c.number, c.name))
        for container in attached:
            address = (Address(Kind.SERVICE, container.service, container.number)
                       if container.service in self.project.services
                       else Address(Kind.CONTAINER, container.name))
            reason = f"network {key} is recreated"
            stop = self.out.add(Action.STOP, address, reason,
                                params={"name": container.name, "timeout": self.options.timeout})
            removals.append(self.out.add(Action.REMOVE, address, reason, requires=[stop],
                                         params={"name": container.name}))
            self.removed[container.id] = reason
        address = Address(Kind.NETWORK, key)
        remove = self.out.add(Action.REMOVE_NETWORK, address, "config changed",
                              requires=removals, params={"name": old_name})
        return self.out.add(Action.ENSURE_NETWORK, address, "config changed: made anew",
                            requires=[remove], params=params)

    def _volumes(self) -> None:
        from composer.state.labels import volume_hash

        observed = {r.key: r for r in self.observed.volumes}
        for key in self._used("volumes"):
            resource = self.project.volumes.get(key)
            if resource is None or resource.external:
                continue
            wanted = volume_hash(resource)
            have = observed.get(key)
            if have is None:
                self.volume_ids[key] = self.out.add(
                    Action.ENSURE_VOLUME, Address(Kind.VOLUME, key), "missing",
                    params={"name": resource.name, "spec": dict(resource.spec),
                            "labels": _resource_labels(self.project.name, "volume", key,
                                                       wanted)})
            elif have.config_hash != wanted:
                self.out.warn(f"volume {key}: its configuration changed, but composer keeps "
                              "the existing volume and its data (remove it with "
                              "'down -v' to recreate it)")

    def _images(self) -> None:
        for name in sorted(self.selected):
            service = self.project.services[name]
            ref = image_ref(self.project, service)
            if ref in self.image_ids:
                continue
            action, reason = self._image_action(service, ref)
            if action is Action.BUILD_IMAGE:
                assert service.build is not None
                self.image_ids[ref] = self.out.add(
                    action, Address(Kind.IMAGE, ref), reason,
                    params={"service": name, "build": dict(service.build.spec), "tag": ref})
            elif action is Action.PULL_IMAGE:
                self.image_ids[ref] = self.out.add(
                    action, Address(Kind.IMAGE, ref), reason,
                    params={"ref": ref, "platform": service.spec.get("platform"),
                            # who needs it, for the error when the pull fails
                            "services": sorted(
                                n for n in self.selected
                                if image_ref(self.project, self.project.services[n]) == ref)})

    def _image_action(self, service: Service, ref: str) -> tuple[Action | None, str]:
        present = ref in self.observed.images
        policy = self.options.pull or str(service.spec.get("pull_policy") or "missing")
        if service.build is not None and self.options.no_build:
            if not present and not service.image:
                self.out.warn(f"service {service.name}: image {ref} is not built and --no-build"
                              f" was given: run 'composer build {service.name}' first")
                return None, ""
        elif service.build is not None and (self.options.build or policy == "build"):
            return Action.BUILD_IMAGE, "--build" if self.options.build else "pull_policy: build"
        if service.build is not None and not self.options.no_build and not present and (
                not service.image or policy in ("missing", "never")):
            return Action.BUILD_IMAGE, "not built yet"
        if policy == "always":
            return Action.PULL_IMAGE, "pull policy: always"
        if not present and policy != "never":
            return Action.PULL_IMAGE, "not in the image store"
        if not present:
            self.out.warn(f"image {ref} is not in the store and the pull policy is 'never'")
        return None, ""

    # --- services ---------------------------------------------------------------------------

    def _policy(self, name: str) -> str:
        return self.options.recreate if name in self.targeted else self.options.recreate_deps

    def _service(self, service: Service) -> None:
        from composer.state.labels import service_hash

        name = service.name
        wanted = self.options.scale.get(name, service.replicas)
        everything = self.containers.get(name, [])
        have = [c for c in everything if c.id not in self.removed]
        config_hash = service_hash(service, self.options.contents)
        kept = [c for c in have if c.number <= wanted]
        ready: list[int | None] = []
        started: list[int] = []
        for number in range(1, wanted + 1):
            current = next((c for c in kept if c.number == number), None)
            if current is None:
                gone = next((c for c in everything if c.number == number), None)
                reason = (self.removed[gone.id] if gone is not None else
                          f"scale {len(have)} -> {wanted}" if have else "missing")
                start = self._create_and_start(service, number, config_hash, reason)
            else:
                start = self._converge(service, current, config_hash)
            if start is not None:
                started.append(start)
                ready.append(self._wait(service, number, start))
        for extra in sorted((c for c in have if c.number > wanted),
                            key=lambda c: c.number, reverse=True):
            address = Address(Kind.SERVICE, name, extra.number)
            stop = self.out.add(Action.STOP, address, f"scale {len(have)} -> {wanted}",
                                params={"name": extra.name, "timeout": self.options.timeout})
            # Its anonymous volumes go with it: no later replica could ever reach them.
            self.out.add(Action.REMOVE, address, f"scale {len(have)} -> {wanted}",
                         requires=[stop], params={"name": extra.name, "volumes": True})
        self.started[name] = started
        self.ready[name] = [r for r in ready if r is not None]

    def _needs(self, service: Service) -> list[int]:
        """What must be done before one of the service's containers starts."""
        needs: list[int] = []
        for edge in self.graph.edges_of(service.name):
            if edge.dependency not in self.chosen:
                continue
            if edge.condition == "service_started":
                needs += self.started.get(edge.dependency, [])
            else:
                needs += self.ready.get(edge.dependency, [])
        return needs

    def _created_needs(self, service: Service) -> list[int]:
        ref = image_ref(self.project, service)
        needs = [self.image_ids.get(ref)]
        needs += [self.network_ids.get(key) for key in sorted(service.networks)]
        needs += [self.volume_ids.get(m.source) for m in service.volumes
                  if m.type == "volume" and m.source]
        return [n for n in needs if n is not None]

    def _create_params(self, service: Service, number: int, config_hash: str,
                       name: str) -> dict[str, Any]:
        from composer.manifest.model import thaw
        from composer.state.labels import container_labels

        return {"name": name, "spec": {"service": service.name, "number": number,
                                       "image": image_ref(self.project, service),
                                       "config": thaw(service.spec)},
                "labels": container_labels(self.project, service, number,
                                           config_hash=config_hash),
                "config_hash": config_hash}

    def _create_and_start(self, service: Service, number: int, config_hash: str,
                          reason: str) -> int | None:
        address = Address(Kind.SERVICE, service.name, number)
        name = container_name(self.project, service, number)
        create = self.out.add(Action.CREATE, address, reason,
                              requires=self._created_needs(service),
                              params=self._create_params(service, number, config_hash, name))
        if self.options.no_start:
            return None
        return self.out.add(Action.START, address, "created",
                            requires=[create, *self._needs(service)], params={"name": name})

    def _converge(self, service: Service, current: ObservedContainer,
                  config_hash: str) -> int | None:
        reasons, fields = self._must_recreate(service, current, config_hash)
        address = Address(Kind.SERVICE, service.name, current.number)
        if reasons:
            return self._recreate(service, current, config_hash, "; ".join(reasons), fields)
        if current.state in (CREATED, EXITED) and not self.options.no_start:
            if self._completed_one_shot(service, current):
                return None
            return self.out.add(Action.START, address, f"not running ({current.state})",
                                requires=self._needs(service), params={"name": current.name})
        dependency = self._restart_with_dependency(service)
        if dependency is not None and current.state == RUNNING:
            stop = self.out.add(Action.STOP, address,
                                f"restarts with {dependency} (depends_on.restart)",
                                requires=self._needs(service),
                                params={"name": current.name, "timeout": self.options.timeout})
            return self.out.add(Action.START, address,
                                f"restarts with {dependency} (depends_on.restart)",
                                requires=[stop], params={"name": current.name})
        return None

    def _completed_one_shot(self, service: Service, current: ObservedContainer) -> bool:
        """An up-to-date container that exited 0 and is awaited as completed stays as it is."""
        awaited = any(edge.condition == "service_completed_successfully"
                      for edge in self.graph.dependent_edges(service.name))
        return awaited and current.state == EXITED and current.exit_code == 0

    def _restart_with_dependency(self, service: Service) -> str | None:
        for edge in self.graph.edges_of(service.name):
            if edge.restart and edge.dependency in self.recreated:
                return edge.dependency
        return None

    def _must_recreate(self, service: Service, current: ObservedContainer,
                       config_hash: str) -> tuple[list[str], list[str]]:
        policy = self._policy(service.name)
        if policy == NEVER:
            return [], []
        if policy == FORCE:
            return ["--force-recreate" if service.name in self.targeted
                    else "--always-recreate-deps"], []
        reasons: list[str] = []
        fields: list[str] = []
        if current.config_hash != config_hash:
            changes = self._field_changes(service, current)
            if changes:
                reasons += [c.reason() for c in changes]
                fields += [c.path for c in changes]
            else:
                reasons.append(f"config hash changed ({current.config_hash[:12]} -> "
                               f"{config_hash[:12]})")
        # A pull or a build in this plan may or may not change the image: the engine plans
        # again once images are done, and that round sees the new image id here.
        ref = image_ref(self.project, service)
        if current.image_id and self.observed.images.get(ref, current.image_id) \
                != current.image_id:
            reasons.append(f"image changed ({_short(current.image_id)} -> "
                           f"{_short(self.observed.images[ref])})")
        parents = [d for d in self.graph.dependencies(service.name)
                   if d in self.recreated and service.name in self.graph.cascade(d)]
        reasons += [f"shares namespaces or volumes with {p}, which is recreated" for p in parents]
        return reasons, fields

    def _field_changes(self, service: Service, current: ObservedContainer) -> list[Any]:
        if current.config is None:
            return []
        from composer.state.labels import diff_configs, service_config

        return diff_configs(current.config, service_config(service, self.options.contents))

    def _recreate(self, service: Service, current: ObservedContainer, config_hash: str,
                  reason: str, fields: list[str]) -> int | None:
        """Compose's four steps: create new under a temporary name, stop and remove the old
        one, give the new one the name."""
        self.recreated.add(service.name)
        address = Address(Kind.SERVICE, service.name, current.number)
        temporary = f"{current.id[:12]}_{current.name}"
        create = self.out.add(
            Action.CREATE, address, reason, fields=fields,
            requires=self._created_needs(service),
            params=self._create_params(service, current.number, config_hash, temporary))
        stop = self.out.add(Action.STOP, address, "replaced", requires=[create],
                            params={"name": current.name, "timeout": self.options.timeout})
        renewed = " (anonymous volumes renewed)" if self.options.renew_anon_volumes else ""
        remove = self.out.add(Action.REMOVE, address, f"replaced{renewed}", requires=[stop],
                              params={"name": current.name,
                                      "volumes": self.options.renew_anon_volumes})
        rename = self.out.add(Action.RENAME, address, f"{temporary} -> {current.name}",
                              requires=[remove], params={"from": temporary, "to": current.name,
                                                      "replaces": current.id})
        if self.options.no_start:
            return None
        return self.out.add(Action.START, address, "recreated",
                            requires=[rename, *self._needs(service)],
                            params={"name": current.name})

    def _wait(self, service: Service, number: int, start: int) -> int | None:
        """A wait action when a dependent's condition needs more than a start."""
        conditions = {edge.condition for edge in self.graph.dependent_edges(service.name)
                      if edge.service in self.chosen}
        name = container_name(self.project, service, number)
        address = Address(Kind.SERVICE, service.name, number)
        if "service_completed_successfully" in conditions:
            return self.out.add(Action.WAIT_COMPLETED, address, "a dependent needs it completed",
                                requires=[start], params={"name": name})
        if "service_healthy" in conditions:
            return self.out.add(Action.WAIT_HEALTHY, address, "a dependent needs it healthy",
                                requires=[start], params={"name": name})
        return start

    # --- orphans ----------------------------------------------------------------------------

    def _orphans(self) -> None:
        orphans = sorted((c for c in self.observed.containers
                          if c.service not in self.project.services and not c.oneoff),
                         key=lambda c: (c.service, c.number, c.name))
        if not orphans:
            return
        if not self.options.remove_orphans:
            names = ", ".join(c.name for c in orphans)
            self.out.warn(f"found orphan containers ({names}) for services no longer in the "
                          "project: run with --remove-orphans to remove them")
            return
        for container in orphans:
            address = Address(Kind.CONTAINER, container.name)
            stop = self.out.add(Action.STOP, address,
                                f"orphan of service {container.service}",
                                params={"name": container.name, "timeout": self.options.timeout})
            self.out.add(Action.REMOVE_ORPHAN, address, f"orphan of service {container.service}",
                         requires=[stop], params={"name": container.name})


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _resource_labels(project: str, kind: str, key: str, config_hash: str) -> dict[str, str]:
    from composer.state.labels import LABEL_CONFIG_HASH, LABEL_PROJECT

    return {LABEL_PROJECT: project, f"com.docker.compose.{kind}": key,
            LABEL_CONFIG_HASH: config_hash}
