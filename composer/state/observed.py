"""What is on the host for one project: one snapshot, taken once, then only read.

The planner compares the desired project with an :class:`Observed`; it never asks the host
anything itself. The snapshot is built from the runtime's own state (containers and their
labels, networks and volumes and theirs) by the engine; tests build it by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Container states, as OCI runtimes and Docker name them.
RUNNING, CREATED, EXITED, PAUSED = "running", "created", "exited", "paused"


@dataclass(frozen=True)
class ObservedContainer:
    """A container of the project, as its labels and the runtime describe it."""

    id: str
    name: str
    service: str
    number: int
    config_hash: str
    state: str = RUNNING
    image: str = ""
    image_id: str = ""
    health: str | None = None  # "healthy", "unhealthy", "starting", or None without a check
    exit_code: int | None = None
    oneoff: bool = False
    networks: tuple[str, ...] = ()  # network keys it is attached to
    volumes: tuple[str, ...] = ()  # named volume keys it mounts
    #: The hashed configuration it was created from (kept in the store): for the plan's
    #: field-level reasons. None when unknown (then the reason names the hashes).
    config: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ObservedResource:
    """A network or a volume of the project: its key in the manifest, real name and hash."""

    key: str
    name: str
    config_hash: str
    external: bool = False


@dataclass(frozen=True)
class Observed:
    """Everything of one project on the host. Order does not matter: the planner sorts."""

    project: str
    containers: tuple[ObservedContainer, ...] = ()
    networks: tuple[ObservedResource, ...] = ()
    volumes: tuple[ObservedResource, ...] = ()
    #: image reference -> image id, for the images present in the store
    images: dict[str, str] = field(default_factory=dict)

    def of_service(self, service: str) -> list[ObservedContainer]:
        """The service's containers (one-offs left out), by container number."""
        return sorted((c for c in self.containers if c.service == service and not c.oneoff),
                      key=lambda c: (c.number, c.id))
