"""What the executor reports while it carries out a plan, one event at a time, to a sink.

Per change the sequence is ``Started``, any number of ``Progress``, then exactly one of
``Done`` or ``Failed``; a change that never starts gets ``Skipped`` alone. Events are emitted
from the thread that called ``execute`` (workers report back to it), so a sink needs no locking
and may write to the console directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from composer.plan.actions import Action, Address

#: ``Skipped.because`` when the run was cancelled rather than a dependency failing.
CANCELLED = -1


@dataclass(frozen=True, slots=True)
class Started:
    """The change was handed to a worker."""

    change_id: int
    address: Address
    action: Action


@dataclass(frozen=True, slots=True)
class Progress:
    """Something worth showing about a change still in progress (an image id, an exit code)."""

    change_id: int
    address: Address
    message: str


@dataclass(frozen=True, slots=True)
class Done:
    """The change succeeded, ``elapsed`` seconds after it started."""

    change_id: int
    address: Address
    action: Action
    elapsed: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The change failed; ``error`` says why, in the runtime's words."""

    change_id: int
    address: Address
    action: Action
    error: str


@dataclass(frozen=True, slots=True)
class Skipped:
    """The change never started: ``because`` is the id of the failed change, or CANCELLED."""

    change_id: int
    address: Address
    action: Action
    because: int


Event: TypeAlias = Started | Progress | Done | Failed | Skipped
Sink: TypeAlias = Callable[[Event], None]
