"""``down``, planned: everything the project made goes, in reverse dependency order.

Containers stop dependents first (the reverse of start order), then every container is
removed, then the project's networks; named volumes only with ``volumes`` (``-v``), images
only with ``rmi`` (``local``: the images composer built for services without an ``image``;
``all``: every image the services use). What is removed is what the snapshot observed (found
by the project's labels), not what today's manifest says: a service deleted from the file
still has its containers removed when ``remove_orphans`` is set, and they are named in a
warning otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from composer.plan.actions import Action, Address, Kind, Plan
from composer.plan.builder import PlanBuilder
from composer.state.observed import RUNNING, Observed, ObservedContainer

if TYPE_CHECKING:
    from composer.manifest.model import Project


@dataclass(frozen=True)
class DownOptions:
    volumes: bool = False  # -v: named and anonymous volumes
    remove_orphans: bool = False
    rmi: str | None = None  # local | all
    timeout: float | None = None
    # ``down SERVICE...``: only these services' containers (and their one-offs) go; networks,
    # volumes and images only once no other container of the project is left.
    services: tuple[str, ...] = ()


def plan_down(desired: Project, observed: Observed, options: DownOptions | None = None) -> Plan:
    from composer.graph import ServiceGraph

    options = options or DownOptions()
    graph = ServiceGraph.from_project(desired)
    out = PlanBuilder(desired.name)
    removals: list[int] = []
    # A service stops only after its dependents have: their removals, by service.
    gone: dict[str, list[int]] = {}
    chosen = set(options.services or desired.services)
    for generation in graph.stop_generations():
        for name in generation:
            if name not in chosen:
                continue
            after = [i for d in graph.dependents(name) for i in gone.get(d, [])]
            gone[name] = _remove_containers(out, observed.of_service(name), options,
                                            Kind.SERVICE, after)
            removals += gone[name]
    orphans = sorted((c for c in observed.containers
                      if c.service not in desired.services and not c.oneoff),
                     key=lambda c: (c.service, c.number, c.name))
    # One-off containers (`run`) go with the project, as in Compose.
    oneoffs = sorted((c for c in observed.containers
                      if c.oneoff and (not options.services or c.service in chosen)),
                     key=lambda c: c.name)
    removals += _remove_containers(out, oneoffs, options, Kind.CONTAINER, [],
                                   reason="one-off")
    if orphans and options.remove_orphans:
        removals += _remove_containers(out, orphans, options, Kind.CONTAINER, [])
    elif orphans:
        out.warn(f"found orphan containers ({', '.join(c.name for c in orphans)}) for "
                 "services no longer in the project: run with --remove-orphans to remove them")
    going = {c.name for c in oneoffs} | {c.name for c in orphans if options.remove_orphans}
    if options.services and any(c.service not in chosen and c.name not in going
                                for c in observed.containers):
        return out.build()  # the rest of the project still uses its networks and volumes
    for network in sorted(observed.networks, key=lambda r: r.key):
        if not network.external:
            out.add(Action.REMOVE_NETWORK, Address(Kind.NETWORK, network.key), "down",
                    requires=removals, params={"name": network.name})
    if options.volumes:
        for volume in sorted(observed.volumes, key=lambda r: r.key):
            if not volume.external:
                out.add(Action.REMOVE_VOLUME, Address(Kind.VOLUME, volume.key), "down -v",
                        requires=removals, params={"name": volume.name})
    if options.rmi:
        _remove_images(out, desired, observed, options.rmi, removals)
    return out.build()


def _remove_containers(out: PlanBuilder, containers: list[ObservedContainer],
                       options: DownOptions, kind: Kind, after: list[int],
                       reason: str | None = None) -> list[int]:
    removed: list[int] = []
    # The highest numbers go first, as when scaling down.
    for container in sorted(containers, key=lambda c: c.number, reverse=True):
        address = (Address(kind, container.service, container.number) if kind is Kind.SERVICE
                   else Address(kind, container.name))
        why = reason or ("down" if kind is Kind.SERVICE else
                         f"orphan of service {container.service}")
        stop = None
        if container.state == RUNNING:
            stop = out.add(Action.STOP, address, why, requires=after,
                           params={"name": container.name, "timeout": options.timeout})
        action = Action.REMOVE if kind is Kind.SERVICE else Action.REMOVE_ORPHAN
        removed.append(out.add(action, address, why, requires=[stop] if stop else after,
                               params={"name": container.name, "volumes": options.volumes}))
    return removed


def _remove_images(out: PlanBuilder, desired: Project, observed: Observed, rmi: str,
                   removals: list[int]) -> None:
    from composer.plan.reconcile import image_ref

    refs: set[str] = set()
    for service in desired.services.values():
        if rmi == "all" or not service.image:
            refs.add(image_ref(desired, service))
    for ref in sorted(refs):
        if ref in observed.images:
            out.add(Action.REMOVE_IMAGE, Address(Kind.IMAGE, ref), f"down --rmi {rmi}",
                    requires=removals, params={"ref": ref})
