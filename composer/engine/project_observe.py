"""What of one compose project is on this host: the planner's :class:`Observed` snapshot.

Everything is found by the labels composer put on it when it made it (the project label on
containers, networks and volumes), never by today's manifest: a service deleted from the file
still shows up, as an orphan, and a renamed network is still found under its old name.
The init containers of ``pre_start`` (:mod:`composer.engine.project_hooks`) are one-offs:
the planner leaves them alone and ``down`` removes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from composer.engine.project_hooks import HOOK
from composer.state import labels as L
from composer.state.observed import (
    CREATED,
    EXITED,
    PAUSED,
    RUNNING,
    Observed,
    ObservedContainer,
    ObservedResource,
)

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager
    from composer.state.containers import ContainerRow

# The engine's statuses, in the planner's four words.
_STATES = {"running": RUNNING, "restarting": RUNNING, "paused": PAUSED, "created": CREATED,
           "exited": EXITED, "dead": EXITED, "removing": EXITED}


def project_rows(manager: ContainerManager, project: str) -> list[ContainerRow]:
    """The project's containers (one-offs too), by service and number."""
    found = [row for row in manager.list(all=True)
             if _labels(row).get(L.LABEL_PROJECT) == project]
    return sorted(found, key=lambda r: (_labels(r).get(L.LABEL_SERVICE, ""), _number(r), r.name))


def observe(manager: ContainerManager, project: str, refs: Iterable[str] = ()) -> Observed:
    """The snapshot of ``project``; ``refs`` are the images whose ids the plan compares."""
    from composer.state import projects

    configs = projects.configs(manager.db)
    networks = [n for n in manager.networks.all() if n.labels.get(L.LABEL_PROJECT) == project]
    network_keys = {n.name: n.labels.get(L.LABEL_NETWORK, n.name) for n in networks}
    volumes = [v for v in manager.volumes.all() if v.labels.get(L.LABEL_PROJECT) == project]
    volume_keys = {v.name: v.labels.get(L.LABEL_VOLUME, v.name) for v in volumes}
    containers = tuple(_container(row, network_keys, volume_keys, configs.get(row.id))
                       for row in project_rows(manager, project))
    images: dict[str, str] = {}
    for ref in sorted(set(refs)):
        image = manager.images.get(ref)
        if image is not None:
            images[ref] = image.id
    return Observed(
        project=project, containers=containers,
        networks=tuple(ObservedResource(key=network_keys[n.name], name=n.name,
                                        config_hash=n.labels.get(L.LABEL_CONFIG_HASH, ""))
                       for n in networks),
        volumes=tuple(ObservedResource(key=volume_keys[v.name], name=v.name,
                                       config_hash=v.labels.get(L.LABEL_CONFIG_HASH, ""))
                      for v in volumes),
        images=images)


def _container(row: ContainerRow, network_keys: Mapping[str, str],
               volume_keys: Mapping[str, str],
               config: Mapping[str, Any] | None) -> ObservedContainer:
    labels = _labels(row)
    spec = row.spec
    attached = [str(a.get("network")) for a in spec.get("networks") or ()]
    mounted = [str(m.get("source")) for m in spec.get("mounts") or ()
               if m.get("type") == "volume"]
    health = (row.health or {}).get("Status") if row.health else None
    return ObservedContainer(
        id=row.id, name=row.name, service=labels.get(L.LABEL_SERVICE, ""),
        number=_number(row), config_hash=labels.get(L.LABEL_CONFIG_HASH, ""),
        state=_STATES.get(row.status, EXITED), image=row.image_ref, image_id=row.image_id,
        health=str(health) if health else None,
        exit_code=row.exit_code if row.status in ("exited", "dead") else None,
        # An init container (pre_start) is a one-off of its service, never a replica,
        # even if something made it without the one-off label.
        oneoff=labels.get(L.LABEL_ONEOFF) == "True" or HOOK in labels,
        networks=tuple(sorted(network_keys[n] for n in attached if n in network_keys)),
        volumes=tuple(sorted(volume_keys[v] for v in mounted if v in volume_keys)),
        config=config)


def _labels(row: ContainerRow) -> Mapping[str, str]:
    found: Mapping[str, str] = row.spec.get("labels") or {}
    return found


def _number(row: ContainerRow) -> int:
    try:
        return int(_labels(row).get(L.LABEL_NUMBER, "0"))
    except ValueError:
        return 0
