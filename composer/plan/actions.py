"""The closed vocabulary of a plan: actions, the things they act on, and one change each.

A :class:`Plan` is a DAG of :class:`Change` objects: each names its action, its address
(``service web #2``), a reason a person understands (``environment.DEBUG changed: "0" ->
"1"``), and the changes that must be done before it. The executor carries changes out and
decides nothing; everything it needs is in the change's ``params``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


class Action(enum.Enum):
    """What one change does. The value is how the plan's text writes it."""

    ENSURE_NETWORK = "ensure network"
    ENSURE_VOLUME = "ensure volume"
    PULL_IMAGE = "pull image"
    BUILD_IMAGE = "build image"
    CREATE = "create"
    START = "start"
    WAIT_HEALTHY = "wait healthy"
    WAIT_COMPLETED = "wait completed"
    STOP = "stop"
    REMOVE = "remove"
    RENAME = "rename"
    REMOVE_ORPHAN = "remove orphan"
    REMOVE_NETWORK = "remove network"
    REMOVE_VOLUME = "remove volume"
    REMOVE_IMAGE = "remove image"


class Kind(enum.Enum):
    """What an address names."""

    SERVICE = "service"
    NETWORK = "network"
    VOLUME = "volume"
    IMAGE = "image"
    CONTAINER = "container"


@dataclass(frozen=True, order=True)
class Address:
    """``service web #2``, ``network default``, ``image nginx:1.27``, ``container old-1``."""

    kind: Kind
    name: str
    number: int | None = None

    def __str__(self) -> str:
        text = f"{self.kind.value} {self.name}"
        return f"{text} #{self.number}" if self.number is not None else text


@dataclass(frozen=True)
class Change:
    """One step: ``id`` is its place in the plan, ``requires`` the ids that come first."""

    id: int
    action: Action
    address: Address
    reason: str
    requires: tuple[int, ...] = ()
    fields: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def line(self) -> str:
        """The change as one line of the plan's text form: ``12 start service web #1: ...``,
        ``1 ensure network front: missing`` (the kind is said once)."""
        after = f"  (after {', '.join(str(i) for i in self.requires)})" if self.requires else ""
        target = str(self.address)
        if self.action.value.endswith(f" {self.address.kind.value}"):
            target = target.removeprefix(f"{self.address.kind.value} ")
        return f"{self.id:>3} {self.action.value} {target}: {self.reason}{after}"


@dataclass(frozen=True)
class Plan:
    """What to do, in an order that respects every ``requires``; empty when nothing changes."""

    project: str
    changes: tuple[Change, ...] = ()
    #: What the user should know but that is not a change (orphans kept, a volume kept).
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __iter__(self) -> Any:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)
