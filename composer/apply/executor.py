"""Carry out a plan: walk its DAG in dependency order, in parallel, deciding nothing.

Every decision was made by the planner; each action maps to exactly one runtime call, whose
arguments come from the change's ``params`` and nowhere else:

=================  ===============================================  ==========================
action             params read (``?``: optional, default)          runtime call
=================  ===============================================  ==========================
ensure network     name, spec, labels                               networks.ensure
ensure volume      name, spec, labels                               volumes.ensure
pull image         ref, platform? (None)                            images.pull
build image        service, build, tag                              images.build
create             name, spec, labels                               containers.create
start              name                                             containers.start
wait healthy       name, timeout? (None)                            containers.wait_healthy
wait completed     name, timeout? (None), allow_failure? (False)    containers.wait_completed
stop               name, timeout? (None)                            containers.stop
remove             name, volumes? (False)                           containers.remove
rename             from, to, replaces? (None)                       containers.rename
remove orphan      name, volumes? (False)                           containers.remove
remove network     name                                             networks.remove
remove volume      name                                             volumes.remove
remove image       ref                                              images.remove
=================  ===============================================  ==========================

``wait completed`` fails when the exit code is not 0, unless ``allow_failure`` is true. A
missing required key fails that change (it is a planner bug, reported as such).

How it runs: the scheduler loop lives in the calling thread. It keeps the set of ready changes
(all ``requires`` done), hands them, lowest id first, to a thread pool of ``limit`` workers but
never has more than ``limit`` in flight, and sleeps in ``concurrent.futures.wait`` until one
finishes. The scheduler therefore never holds a worker slot and nothing is ever nested on the
pool: the two ways Compose's own bounded pool deadlocked (docker/compose #5864, #10532).

A failed change skips its transitive dependents; independent work goes on. Once ``cancel`` is
set nothing new starts, changes in flight finish, and the rest are skipped. Events go to the
sink from the calling thread only; the executor itself prints nothing.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from composer.apply.events import CANCELLED, Done, Failed, Progress, Sink, Skipped, Started
from composer.errors import ComposerError, UsageError
from composer.plan.actions import Action, Change, Plan
from composer.runtime.base import Runtime, RuntimeFailure

PARALLEL_ENV = "COMPOSE_PARALLEL_LIMIT"
DEFAULT_PARALLEL_LIMIT = 8


def parallel_limit(value: int) -> int:
    """``value`` when positive, else ``COMPOSE_PARALLEL_LIMIT`` when set, else 8."""
    if value > 0:
        return value
    text = os.environ.get(PARALLEL_ENV, "").strip()
    if not text:
        return DEFAULT_PARALLEL_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        # A pool needs a size: "unlimited" (Compose's -1) cannot be honoured, so say so.
        raise UsageError(f"{PARALLEL_ENV} must be a positive integer, not {text!r}")
    return limit


@dataclass(frozen=True)
class Result:
    """How a run ended: ids done, failed (with the error) and skipped, each sorted by id."""

    done: tuple[int, ...] = ()
    failed: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    skipped: tuple[int, ...] = ()
    #: True when cancellation left changes unstarted (a cancel after the last change is moot).
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


# --- one runtime call per action -----------------------------------------------------------

_Call = Callable[[Runtime, Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class _Step:
    needs: tuple[str, ...]
    call: _Call


def _ensure_network(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.networks.ensure(p["name"], p["spec"], p["labels"])


def _ensure_volume(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.volumes.ensure(p["name"], p["spec"], p["labels"])


def _pull(rt: Runtime, p: Mapping[str, Any]) -> str:
    return f"pulled {p['ref']}: {rt.images.pull(p['ref'], platform=p.get('platform'))}"


def _build(rt: Runtime, p: Mapping[str, Any]) -> str:
    return f"built {p['tag']}: {rt.images.build(p['service'], p['build'], p['tag'])}"


def _create(rt: Runtime, p: Mapping[str, Any]) -> str:
    return f"created {p['name']}: {rt.containers.create(p['name'], p['spec'], p['labels'])}"


def _start(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.containers.start(p["name"])


def _wait_healthy(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.containers.wait_healthy(p["name"], timeout=p.get("timeout"))


def _wait_completed(rt: Runtime, p: Mapping[str, Any]) -> str:
    code = rt.containers.wait_completed(p["name"], timeout=p.get("timeout"))
    if code != 0 and not p.get("allow_failure", False):
        raise RuntimeFailure(f"{p['name']} exited with code {code}")
    return f"{p['name']} exited with code {code}"


def _stop(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.containers.stop(p["name"], timeout=p.get("timeout"))


def _remove(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.containers.remove(p["name"], volumes=p.get("volumes", False))


def _rename(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.containers.rename(p["from"], p["to"], replaces=p.get("replaces"))


def _remove_network(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.networks.remove(p["name"])


def _remove_volume(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.volumes.remove(p["name"])


def _remove_image(rt: Runtime, p: Mapping[str, Any]) -> None:
    rt.images.remove(p["ref"])


#: The table in the module docstring, as data; a test checks it covers every Action.
STEPS: Mapping[Action, _Step] = MappingProxyType({
    Action.ENSURE_NETWORK: _Step(("name", "spec", "labels"), _ensure_network),
    Action.ENSURE_VOLUME: _Step(("name", "spec", "labels"), _ensure_volume),
    Action.PULL_IMAGE: _Step(("ref",), _pull),
    Action.BUILD_IMAGE: _Step(("service", "build", "tag"), _build),
    Action.CREATE: _Step(("name", "spec", "labels"), _create),
    Action.START: _Step(("name",), _start),
    Action.WAIT_HEALTHY: _Step(("name",), _wait_healthy),
    Action.WAIT_COMPLETED: _Step(("name",), _wait_completed),
    Action.STOP: _Step(("name",), _stop),
    Action.REMOVE: _Step(("name",), _remove),
    Action.RENAME: _Step(("from", "to"), _rename),
    Action.REMOVE_ORPHAN: _Step(("name",), _remove),
    Action.REMOVE_NETWORK: _Step(("name",), _remove_network),
    Action.REMOVE_VOLUME: _Step(("name",), _remove_volume),
    Action.REMOVE_IMAGE: _Step(("ref",), _remove_image),
})


@dataclass(frozen=True)
class _Outcome:
    message: str | None = None
    error: str | None = None


def _carry_out(change: Change, runtime: Runtime) -> _Outcome:
    """Run in a worker: never raises, so every failure reaches the scheduler as an outcome."""
    step = STEPS[change.action]
    missing = [key for key in step.needs if key not in change.params]
    if missing:
        keys = ", ".join(repr(key) for key in missing)
        return _Outcome(error=f"planner bug: {change.action.value} needs params {keys}")
    try:
        return _Outcome(message=step.call(runtime, change.params))
    except ComposerError as exc:
        return _Outcome(error=str(exc) or type(exc).__name__)
    except Exception as exc:
        # Not one of ours: keep the type name, it is the first clue to the bug.
        return _Outcome(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


# --- the plan as a DAG ---------------------------------------------------------------------


def _validate(plan: Plan) -> dict[int, Change]:
    """The changes by id; ValueError for duplicate or unknown ids and for a cycle."""
    changes: dict[int, Change] = {}
    for change in plan.changes:
        if change.id in changes:
            raise ValueError(f"plan has two changes with id {change.id}")
        changes[change.id] = change
    for change in changes.values():
        unknown = sorted(set(change.requires) - changes.keys())
        if unknown:
            raise ValueError(f"change {change.id} requires unknown change "
                             f"{', '.join(str(i) for i in unknown)}")
    cycle = _find_cycle(changes)
    if cycle:
        raise ValueError(f"plan has a cycle: {' -> '.join(str(i) for i in cycle)} "
                         "(each requires the next)")
    return changes


def _find_cycle(changes: Mapping[int, Change]) -> list[int]:
    """A cycle as a trail (first id repeated last), or [] when the plan is a DAG."""
    unmet = {i: len(set(c.requires)) for i, c in changes.items()}
    dependents: dict[int, list[int]] = {i: [] for i in changes}
    for change in changes.values():
        for required in set(change.requires):
            dependents[required].append(change.id)
    queue = [i for i, n in unmet.items() if n == 0]
    while queue:
        for dependent in dependents[queue.pop()]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0:
                queue.append(dependent)
    left = {i for i, n in unmet.items() if n > 0}
    if not left:
        return []
    # Every change left has a requirement left, so following them must come back round.
    trail: list[int] = [min(left)]
    seen = {trail[0]: 0}
    while True:
        following = min(r for r in changes[trail[-1]].requires if r in left)
        if following in seen:
            return [*trail[seen[following]:], following]
        seen[following] = len(trail)
        trail.append(following)


# --- the scheduler -------------------------------------------------------------------------


def execute(
    plan: Plan,
    runtime: Runtime,
    *,
    sink: Sink,
    parallel: int = 0,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Result:
    """Carry out ``plan`` on ``runtime``, at most ``parallel_limit(parallel)`` changes at once.

    Raises ValueError, before doing anything, when the plan is not a DAG of known ids. An
    exception from ``sink`` propagates once the changes in flight have finished.
    """
    changes = _validate(plan)
    limit = parallel_limit(parallel)

    dependents: dict[int, list[int]] = {i: [] for i in changes}
    unmet: dict[int, int] = {}
    for change in changes.values():
        unmet[change.id] = len(set(change.requires))
        for required in set(change.requires):
            dependents[required].append(change.id)
    ready = sorted(i for i, n in unmet.items() if n == 0)  # a sorted list is a valid heap
    pending = set(changes)  # neither started nor skipped
    done: list[int] = []
    failed: dict[int, str] = {}
    skipped: list[int] = []
    started_at: dict[int, float] = {}
    in_flight: dict[Future[_Outcome], int] = {}

    def skip(change_id: int, because: int) -> None:
        change = changes[change_id]
        pending.discard(change_id)
        skipped.append(change_id)
        sink(Skipped(change_id, change.address, change.action, because))

    def skip_dependents(failed_id: int) -> None:
        doomed: set[int] = set()
        stack = [failed_id]
        while stack:
            for dependent in dependents[stack.pop()]:
                if dependent in pending and dependent not in doomed:
                    doomed.add(dependent)
                    stack.append(dependent)
        for dependent in sorted(doomed):
            skip(dependent, failed_id)

    def finish(change_id: int, outcome: _Outcome) -> None:
        change = changes[change_id]
        if outcome.message is not None:
            sink(Progress(change_id, change.address, outcome.message))
        if outcome.error is not None:
            failed[change_id] = outcome.error
            sink(Failed(change_id, change.address, change.action, outcome.error))
            skip_dependents(change_id)
            return
        done.append(change_id)
        sink(Done(change_id, change.address, change.action, clock() - started_at[change_id]))
        for dependent in dependents[change_id]:
            unmet[dependent] -= 1
            if unmet[dependent] == 0 and dependent in pending:
                heapq.heappush(ready, dependent)

    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="composer-apply") as pool:
        while True:
            # Checked before each submission so a cancel set by the sink takes effect at once.
            while ready and len(in_flight) < limit and not (cancel is not None and cancel.is_set()):
                change = changes[heapq.heappop(ready)]
                pending.discard(change.id)
                started_at[change.id] = clock()
                sink(Started(change.id, change.address, change.action))
                in_flight[pool.submit(_carry_out, change, runtime)] = change.id
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            # Changes finishing together are reported by id, so the event order is stable.
            for future in sorted(finished, key=in_flight.__getitem__):
                finish(in_flight.pop(future), future.result())

    # Only cancellation leaves changes pending: the plan is a DAG and failures skip eagerly.
    cancelled = bool(pending)
    for change_id in sorted(pending):
        skip(change_id, CANCELLED)
    return Result(
        done=tuple(sorted(done)),
        failed=MappingProxyType(dict(sorted(failed.items()))),
        skipped=tuple(sorted(skipped)),
        cancelled=cancelled,
    )
