"""The executor: one runtime call per change, dependency order, a bounded pool, failure and cancel.

Plans are built by hand; the runtime is the in-memory one (tests/unit/memory_runtime.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from composer.apply.events import CANCELLED, Done, Event, Failed, Progress, Skipped, Started
from composer.apply.executor import DEFAULT_PARALLEL_LIMIT, STEPS, Result, execute, parallel_limit
from composer.errors import UsageError
from composer.plan.actions import Action, Address, Change, Kind, Plan
from composer.runtime.base import RuntimeFailure
from tests.unit.memory_runtime import MemoryRuntime

#: Generous: the tests take milliseconds; this only turns a deadlock into a failure.
TIMEOUT = 5.0


def vol(change_id: int, *requires: int) -> Change:
    """A change with no preconditions: ensure volume ``v<id>``."""
    return Change(change_id, Action.ENSURE_VOLUME, Address(Kind.VOLUME, f"v{change_id}"),
                  "missing", requires=requires,
                  params={"name": f"v{change_id}", "spec": {}, "labels": {}})


def plan_of(*changes: Change) -> Plan:
    return Plan("p", changes)


def run(plan: Plan, runtime: MemoryRuntime, **options: Any) -> tuple[Result, list[Event]]:
    events: list[Event] = []
    result = execute(plan, runtime, sink=events.append, **options)
    return result, events


def run_in_thread(call: Callable[[], Result]) -> Result:
    """Run ``call`` on a daemon thread, so a deadlock fails the test instead of hanging it."""
    box: list[Result] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the executor deadlocked"
    assert box, "the executor raised (see the thread's traceback above)"
    return box[0]


def volume_order(runtime: MemoryRuntime, what: str) -> list[int]:
    """Change ids in the order their runtime call began (``what="begin"``) or ended."""
    return [int(key[1:]) for edge, _, key in runtime.timeline if edge == what]


def assert_dependency_order(plan: Plan, runtime: MemoryRuntime, events: list[Event]) -> None:
    position = {(edge, key): i for i, (edge, _, key) in enumerate(runtime.timeline)}
    index = {(type(e).__name__, e.change_id): i for i, e in enumerate(events)}
    for change in plan:
        for required in change.requires:
            assert position[("begin", f"v{change.id}")] > position[("end", f"v{required}")]
            assert index[("Started", change.id)] > index[("Done", required)]


# --- one runtime call per action -------------------------------------------------------------

SPEC = {"image": "nginx:1.27"}
LABELS = {"com.docker.compose.project": "p"}
WEB = Address(Kind.SERVICE, "web", 1)

CASES: list[tuple[Action, dict[str, Any], tuple[Any, ...]]] = [
    (Action.ENSURE_NETWORK, {"name": "p_default", "spec": {"driver": "bridge"}, "labels": LABELS},
     ("ensure_network", "p_default", {"driver": "bridge"}, LABELS)),
    (Action.ENSURE_VOLUME, {"name": "p_data", "spec": {}, "labels": LABELS},
     ("ensure_volume", "p_data", {}, LABELS)),
    (Action.PULL_IMAGE, {"ref": "nginx:1.27", "platform": "linux/arm64"},
     ("pull", "nginx:1.27", "linux/arm64")),
    (Action.PULL_IMAGE, {"ref": "nginx:1.27"}, ("pull", "nginx:1.27", None)),
    (Action.BUILD_IMAGE, {"service": "api", "build": {"context": "."}, "tag": "p-api"},
     ("build", "api", {"context": "."}, "p-api")),
    (Action.CREATE, {"name": "p-web-1", "spec": SPEC, "labels": LABELS},
     ("create", "p-web-1", SPEC, LABELS)),
    (Action.START, {"name": "old"}, ("start", "old")),
    (Action.WAIT_HEALTHY, {"name": "old", "timeout": 30}, ("wait_healthy", "old", 30)),
    (Action.WAIT_HEALTHY, {"name": "old"}, ("wait_healthy", "old", None)),
    (Action.WAIT_COMPLETED, {"name": "old", "timeout": 5.5}, ("wait_completed", "old", 5.5)),
    (Action.STOP, {"name": "old", "timeout": 10}, ("stop", "old", 10)),
    (Action.STOP, {"name": "old"}, ("stop", "old", None)),
    (Action.REMOVE, {"name": "old", "volumes": True}, ("remove", "old", True)),
    (Action.REMOVE, {"name": "old"}, ("remove", "old", False)),
    (Action.RENAME, {"from": "old", "to": "p-web-1"}, ("rename", "old", "p-web-1")),
    (Action.REMOVE_ORPHAN, {"name": "old"}, ("remove", "old", False)),
    (Action.REMOVE_NETWORK, {"name": "p_default"}, ("remove_network", "p_default")),
    (Action.REMOVE_VOLUME, {"name": "p_data"}, ("remove_volume", "p_data")),
    (Action.REMOVE_IMAGE, {"ref": "nginx:1.27"}, ("remove_image", "nginx:1.27")),
]


def test_every_action_has_a_step_and_a_case() -> None:
    assert set(STEPS) == set(Action)
    assert {action for action, _, _ in CASES} == set(Action)


@pytest.mark.parametrize(("action", "params", "call"), CASES,
                         ids=[f"{a.name}-{i}" for i, (a, _, _) in enumerate(CASES)])
def test_each_action_makes_exactly_its_runtime_call(
        action: Action, params: dict[str, Any], call: tuple[Any, ...]) -> None:
    runtime = MemoryRuntime()
    runtime.containers.create("old", {}, {})  # something for the container actions to act on
    runtime.calls.clear()
    result, events = run(plan_of(Change(1, action, WEB, "why", params=params)), runtime)
    assert result == Result(done=(1,))
    assert runtime.calls == [call]
    assert isinstance(events[-1], Done)


def test_results_of_runtime_calls_are_reported_as_progress() -> None:
    runtime = MemoryRuntime()
    plan = plan_of(
        Change(1, Action.PULL_IMAGE, Address(Kind.IMAGE, "nginx"), "missing",
               params={"ref": "nginx:1.27"}),
        Change(2, Action.CREATE, WEB, "missing", (1,),
               params={"name": "p-web-1", "spec": SPEC, "labels": LABELS}))
    _, events = run(plan, runtime)
    progress = [e.message for e in events if isinstance(e, Progress)]
    assert progress == [f"pulled nginx:1.27: {runtime.images.by_ref['nginx:1.27']}",
                        f"created p-web-1: {runtime.containers.by_name['p-web-1'].id}"]


def test_a_recreate_plan_leaves_the_state_it_describes() -> None:
    runtime = MemoryRuntime()
    runtime.containers.create("p-web-1", {"image": "nginx:1.26"}, LABELS)
    runtime.containers.start("p-web-1")
    runtime.volumes.ensure("p_old", {}, {})
    runtime.calls.clear()
    new = "1a2b_p-web-1"
    plan = plan_of(
        Change(1, Action.ENSURE_NETWORK, Address(Kind.NETWORK, "default"), "missing",
               params={"name": "p_default", "spec": {}, "labels": LABELS}),
        Change(2, Action.PULL_IMAGE, Address(Kind.IMAGE, "nginx:1.27"), "missing",
               params={"ref": "nginx:1.27"}),
        Change(3, Action.CREATE, WEB, "image changed", (1, 2),
               params={"name": new, "spec": SPEC, "labels": LABELS}),
        Change(4, Action.STOP, WEB, "image changed", (3,), params={"name": "p-web-1"}),
        Change(5, Action.REMOVE, WEB, "image changed", (4,), params={"name": "p-web-1"}),
        Change(6, Action.RENAME, WEB, "image changed", (5,),
               params={"from": new, "to": "p-web-1"}),
        Change(7, Action.START, WEB, "image changed", (6,), params={"name": "p-web-1"}),
        Change(8, Action.WAIT_HEALTHY, WEB, "depended on", (7,), params={"name": "p-web-1"}),
        Change(9, Action.REMOVE_VOLUME, Address(Kind.VOLUME, "old"), "not in the project",
               params={"name": "p_old"}))
    result, _ = run(plan, runtime, parallel=4)
    assert result.ok and result.done == tuple(range(1, 10))
    (web,) = runtime.containers.by_name.values()
    assert (web.name, web.state, web.spec) == ("p-web-1", "running", SPEC)
    assert list(runtime.networks.by_name) == ["p_default"]
    assert runtime.volumes.by_name == {}
    assert list(runtime.images.by_ref) == ["nginx:1.27"]
    methods = [m for m, _ in runtime.methods()]
    assert methods[-5:] == ["stop", "remove", "rename", "start", "wait_healthy"]


def test_missing_params_fail_the_change_as_a_planner_bug() -> None:
    runtime = MemoryRuntime()
    plan = plan_of(Change(1, Action.CREATE, WEB, "missing", params={"name": "p-web-1"}))
    result, _ = run(plan, runtime)
    assert result.failed == {1: "planner bug: create needs params 'spec', 'labels'"}
    assert runtime.calls == []


# --- order -----------------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_diamond_and_a_chain_run_in_dependency_order(parallel: int) -> None:
    runtime = MemoryRuntime(delay=0.001)
    plan = plan_of(vol(1), vol(2, 1), vol(3, 1), vol(4, 2, 3),  # diamond
                   vol(5), vol(6, 5), vol(7, 6), vol(8, 7),  # chain
                   vol(9, 4, 8))
    result, events = run(plan, runtime, parallel=parallel)
    assert result.done == tuple(range(1, 10))
    assert_dependency_order(plan, runtime, events)


def test_ready_changes_are_submitted_lowest_id_first_whatever_the_plan_order() -> None:
    runtime = MemoryRuntime()
    plan = plan_of(vol(5), vol(3), vol(9, 3), vol(1), vol(4, 1), vol(2))
    run(plan, runtime, parallel=1)
    # 1, 2, 3, 5 are ready at once; 4 becomes ready when 1 is done and is then the lowest.
    assert volume_order(runtime, "begin") == [1, 2, 3, 4, 5, 9]


# --- the bound on parallelism ----------------------------------------------------------------


@pytest.mark.parametrize("bound", [1, 2, 4])
def test_no_more_than_the_bound_run_at_once_and_the_bound_is_reached(bound: int) -> None:
    runtime = MemoryRuntime(delay=0.01)
    result, _ = run(plan_of(*(vol(i) for i in range(1, 21))), runtime, parallel=bound)
    assert len(result.done) == 20
    assert runtime.max_active == bound


def test_compose_parallel_limit_applies_when_parallel_is_not_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", "3")
    runtime = MemoryRuntime(delay=0.01)
    run(plan_of(*(vol(i) for i in range(1, 13))), runtime)
    assert runtime.max_active == 3


def test_parallel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COMPOSE_PARALLEL_LIMIT", raising=False)
    assert parallel_limit(0) == DEFAULT_PARALLEL_LIMIT == 8
    monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", " 2 ")
    assert (parallel_limit(0), parallel_limit(-1), parallel_limit(5)) == (2, 2, 5)
    monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", "")
    assert parallel_limit(0) == 8
    for bad in ("many", "0", "-1"):
        monkeypatch.setenv("COMPOSE_PARALLEL_LIMIT", bad)
        with pytest.raises(UsageError, match="COMPOSE_PARALLEL_LIMIT must be a positive"):
            parallel_limit(0)


def test_a_bound_of_one_never_deadlocks_on_a_deep_chain_with_fan_out() -> None:
    chain = [vol(1), *(vol(i, i - 1) for i in range(2, 41))]
    fan = [vol(i, 40) for i in range(41, 81)]
    join = vol(81, *range(41, 81))
    plan = plan_of(join, *reversed(fan), *chain)
    runtime = MemoryRuntime()
    result = run_in_thread(lambda: execute(plan, runtime, sink=lambda _: None, parallel=1))
    assert result.done == tuple(range(1, 82))
    assert runtime.max_active == 1
    assert volume_order(runtime, "begin") == list(range(1, 82))


# --- failure -------------------------------------------------------------------------------


def test_a_failure_skips_its_dependents_and_independent_work_goes_on() -> None:
    runtime = MemoryRuntime(fail_on={("ensure_volume", "v2")})
    plan = plan_of(vol(1), vol(2), vol(3, 2), vol(4, 3), vol(5, 1, 4), vol(6), vol(7, 1))
    result, events = run(plan, runtime, parallel=2)
    assert not result.ok and not result.cancelled
    assert result.done == (1, 6, 7)
    assert result.failed == {2: "ensure_volume v2: injected failure"}
    assert result.skipped == (3, 4, 5)
    assert {e.change_id: e.because for e in events if isinstance(e, Skipped)} == {3: 2, 4: 2, 5: 2}
    assert sorted(volume_order(runtime, "begin")) == [1, 2, 6, 7]


def test_a_change_after_two_failures_is_skipped_once() -> None:
    runtime = MemoryRuntime(fail_on={("ensure_volume", "v1"), ("ensure_volume", "v2")})
    result, events = run(plan_of(vol(1), vol(2), vol(3, 1, 2)), runtime, parallel=1)
    assert set(result.failed) == {1, 2} and result.skipped == (3,)
    assert [e.because for e in events if isinstance(e, Skipped)] == [1]


def test_an_unexpected_exception_is_reported_with_its_type() -> None:
    runtime = MemoryRuntime(fail_on={("ensure_volume", "v1"): KeyError("spec"),
                                     ("ensure_volume", "v2"): RuntimeFailure("disk full"),
                                     ("ensure_volume", "v3"): AssertionError()})
    result, events = run(plan_of(vol(1), vol(2), vol(3)), runtime)
    assert result.failed == {1: "KeyError: 'spec'", 2: "disk full", 3: "AssertionError"}
    assert [e.error for e in events if isinstance(e, Failed)] == list(result.failed.values())


def test_wait_completed_fails_on_a_nonzero_exit_code_unless_allowed() -> None:
    runtime = MemoryRuntime()
    for name in ("init", "migrate"):
        runtime.containers.create(name, {}, {})
        runtime.containers.exit_codes[name] = 3
    plan = plan_of(
        Change(1, Action.WAIT_COMPLETED, WEB, "x", params={"name": "init"}),
        Change(2, Action.WAIT_COMPLETED, WEB, "x", params={"name": "migrate",
                                                           "allow_failure": True}),
        Change(3, Action.START, WEB, "x", (1,), params={"name": "init"}))
    result, events = run(plan, runtime)
    assert result.failed == {1: "init exited with code 3"}
    assert result.done == (2,) and result.skipped == (3,)
    assert Progress(2, WEB, "migrate exited with code 3") in events


def test_an_unhealthy_container_fails_its_wait() -> None:
    runtime = MemoryRuntime()
    runtime.containers.create("db", {}, {})
    runtime.containers.health["db"] = "unhealthy"
    plan = plan_of(Change(1, Action.WAIT_HEALTHY, WEB, "x", params={"name": "db"}),
                   Change(2, Action.START, WEB, "x", (1,), params={"name": "db"}))
    result, _ = run(plan, runtime)
    assert result.failed == {1: "container db is unhealthy"} and result.skipped == (2,)


# --- cancellation ----------------------------------------------------------------------------


def test_cancel_mid_run_lets_changes_in_flight_finish_and_skips_the_rest() -> None:
    gates = {("ensure_volume", "v1"): threading.Event(), ("ensure_volume", "v2"): threading.Event()}
    runtime = MemoryRuntime(block=gates)
    cancel = threading.Event()
    events: list[Event] = []
    plan = plan_of(vol(1), vol(2), vol(3), vol(4, 1), vol(5, 4), vol(6))

    def release_when_both_are_in_flight() -> None:
        assert runtime.entered("ensure_volume", "v1").wait(TIMEOUT)
        assert runtime.entered("ensure_volume", "v2").wait(TIMEOUT)
        cancel.set()
        for gate in gates.values():
            gate.set()

    helper = threading.Thread(target=release_when_both_are_in_flight, daemon=True)
    helper.start()
    result = run_in_thread(
        lambda: execute(plan, runtime, sink=events.append, parallel=2, cancel=cancel))
    helper.join(TIMEOUT)
    assert result.cancelled and not result.ok
    assert result.done == (1, 2) and result.skipped == (3, 4, 5, 6) and not result.failed
    assert sorted(volume_order(runtime, "end")) == [1, 2]
    assert [(e.change_id, e.because) for e in events if isinstance(e, Skipped)] == [
        (3, CANCELLED), (4, CANCELLED), (5, CANCELLED), (6, CANCELLED)]


def test_a_cancel_from_the_sink_stops_submission_at_once() -> None:
    runtime = MemoryRuntime()
    cancel = threading.Event()
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, Started):
            cancel.set()

    result = execute(plan_of(vol(1), vol(2), vol(3, 1)), runtime, sink=sink, parallel=4,
                     cancel=cancel)
    assert result == Result(done=(1,), skipped=(2, 3), cancelled=True)
    assert runtime.methods() == [("ensure_volume", "v1")]


def test_cancelled_before_the_start_nothing_runs() -> None:
    runtime = MemoryRuntime()
    cancel = threading.Event()
    cancel.set()
    result, _ = run(plan_of(vol(1), vol(2, 1)), runtime, cancel=cancel)
    assert result == Result(skipped=(1, 2), cancelled=True)
    assert runtime.calls == []


# --- events ----------------------------------------------------------------------------------


def test_each_change_gets_a_sane_sequence_of_events_from_the_calling_thread() -> None:
    runtime = MemoryRuntime(delay=0.002, fail_on={("ensure_volume", "v3")})
    runtime.containers.create("job", {}, {})
    plan = plan_of(vol(1), vol(2, 1), vol(3, 1), vol(4, 3), vol(5), vol(6, 5), vol(7, 2, 6),
                   Change(8, Action.WAIT_COMPLETED, WEB, "x", (5,), params={"name": "job"}))
    threads: set[int] = set()
    per_change: dict[int, list[str]] = {}

    def sink(event: Event) -> None:
        threads.add(threading.get_ident())
        per_change.setdefault(event.change_id, []).append(type(event).__name__)

    result = execute(plan, runtime, sink=sink, parallel=3)
    assert threads == {threading.get_ident()}
    assert per_change == {
        1: ["Started", "Done"], 2: ["Started", "Done"], 3: ["Started", "Failed"],
        4: ["Skipped"], 5: ["Started", "Done"], 6: ["Started", "Done"],
        7: ["Started", "Done"], 8: ["Started", "Progress", "Done"]}
    assert result.done == (1, 2, 5, 6, 7, 8)


def test_elapsed_comes_from_the_injected_clock() -> None:
    ticks = iter(range(100))
    runtime = MemoryRuntime()
    _, events = run(plan_of(vol(1), vol(2, 1)), runtime, parallel=1,
                    clock=lambda: float(next(ticks)))
    assert [(e.change_id, e.elapsed) for e in events if isinstance(e, Done)] == [(1, 1.0),
                                                                                 (2, 1.0)]
    assert events[0] == Started(1, Address(Kind.VOLUME, "v1"), Action.ENSURE_VOLUME)


# --- plans the executor refuses --------------------------------------------------------------

INVALID: Mapping[str, tuple[tuple[Change, ...], str]] = {
    "unknown id": ((vol(1), vol(2, 1, 7)), r"change 2 requires unknown change 7"),
    "duplicate id": ((vol(1), vol(1)), r"two changes with id 1"),
    "self cycle": ((vol(1), vol(2, 2)), r"cycle: 2 -> 2"),
    "cycle": ((vol(1), vol(2, 1, 4), vol(3, 2), vol(4, 3), vol(5, 4)),
              r"cycle: 2 -> 4 -> 3 -> 2 \(each requires the next\)"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_plans_raise_before_anything_runs(name: str) -> None:
    changes, message = INVALID[name]
    runtime = MemoryRuntime()
    events: list[Event] = []
    with pytest.raises(ValueError, match=message):
        execute(plan_of(*changes), runtime, sink=events.append)
    assert runtime.calls == [] and events == []


def test_an_empty_plan_is_a_successful_run() -> None:
    result, events = run(Plan("p"), MemoryRuntime())
    assert result == Result() and result.ok and events == []
