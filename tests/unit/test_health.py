"""Health checks: Docker's rules, driven by an injected clock (probe times), never sleeping."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from composer.engine.health import (
    MAX_LOG,
    MAX_OUTPUT,
    HealthcheckError,
    HealthState,
    Probe,
    Settings,
    command,
    settings,
    timeout_message,
)
from composer.runtime.spec import Healthcheck

T0 = 1_700_000_000.0  # the container's start, in epoch seconds


def _settings(**overrides: float) -> Settings:
    values: dict[str, object] = {"interval": 10.0, "timeout": 3.0, "retries": 3,
                                 "start_period": 0.0, "start_interval": 5.0, **overrides}
    return Settings(test=("CMD", "true"), **values)  # type: ignore[arg-type]


def _drive(state: HealthState, codes: Iterable[int], *, took: float = 0.25,
           output: str = "") -> list[tuple[float, str, int]]:
    """Run one probe per exit code, each when the state says it is due; returns
    (start relative to T0, status after it, failing streak after it)."""
    seen = []
    for code in codes:
        start = state.next_due()
        state.record(Probe(start=start, end=start + took, exit_code=code, output=output))
        seen.append((round(start - T0, 6), state.status, state.failing_streak))
    return seen


# -- settings and command ------------------------------------------------------------------------


def test_dockers_defaults() -> None:
    got = settings(Healthcheck(test=("CMD", "true")))
    assert got == Settings(test=("CMD", "true"), interval=30.0, timeout=30.0, retries=3,
                           start_period=0.0, start_interval=5.0)


def test_zero_means_the_default_as_in_docker() -> None:
    got = settings(Healthcheck(test=("CMD", "true"), interval=0, timeout=0, retries=0,
                               start_period=0, start_interval=0))
    assert got is not None
    assert (got.interval, got.timeout, got.retries, got.start_period, got.start_interval) == (
        30.0, 30.0, 3, 0.0, 5.0)


def test_given_values_are_kept() -> None:
    got = settings(Healthcheck(test=("CMD-SHELL", "curl -f localhost"), interval=2,
                               timeout=1.5, retries=7, start_period=60, start_interval=0.5))
    assert got == Settings(test=("CMD-SHELL", "curl -f localhost"), interval=2.0, timeout=1.5,
                           retries=7, start_period=60.0, start_interval=0.5)


@pytest.mark.parametrize("test", [(), ("NONE",), ("NONE", "ignored")])
def test_no_check(test: tuple[str, ...]) -> None:
    assert settings(Healthcheck(test=test)) is None


@pytest.mark.parametrize(("check", "words"), [
    (Healthcheck(test=("SHELL", "true")), "'CMD', 'CMD-SHELL' or 'NONE'"),
    (Healthcheck(test=("cmd", "true")), "'CMD', 'CMD-SHELL' or 'NONE'"),
    (Healthcheck(test=("CMD",)), "names no command"),
    (Healthcheck(test=("CMD-SHELL",)), "names no command"),
    (Healthcheck(test=("CMD", "true"), interval=-1), "interval cannot be negative"),
    (Healthcheck(test=("CMD", "true"), start_interval=-2), "start_interval cannot be negative"),
    (Healthcheck(test=("CMD", "true"), retries=-1), "retries cannot be negative"),
])
def test_bad_checks_are_errors(check: Healthcheck, words: str) -> None:
    with pytest.raises(HealthcheckError, match=words.replace("(", r"\(")):
        settings(check)


def test_command_forms() -> None:
    cmd = settings(Healthcheck(test=("CMD", "pg_isready", "-U", "postgres")))
    shell = settings(Healthcheck(test=("CMD-SHELL", "curl -f http://localhost/ || exit 1")))
    assert cmd is not None and shell is not None
    assert command(cmd) == ["pg_isready", "-U", "postgres"]
    assert command(shell) == ["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"]
    assert command(shell, shell=["/bin/bash", "-o", "pipefail", "-c"]) == [
        "/bin/bash", "-o", "pipefail", "-c", "curl -f http://localhost/ || exit 1"]
    assert command(cmd, shell=["/bin/bash", "-c"]) == ["pg_isready", "-U", "postgres"]


# -- when probes run -----------------------------------------------------------------------------


def test_first_probe_one_interval_after_start_then_interval_after_each_end() -> None:
    state = HealthState(_settings(), T0)
    assert state.next_due() == T0 + 10
    assert [s for s, _, _ in _drive(state, [0, 0, 0])] == [10.0, 20.25, 30.5]


def test_start_interval_during_the_start_period_then_interval() -> None:
    state = HealthState(_settings(start_period=12, start_interval=2, interval=30), T0)
    assert state.next_due() == T0 + 2
    starts = [s for s, _, _ in _drive(state, [1] * 8, took=0.0)]
    # every 2 s while starting inside the 12 s; the one at 12 s is the first outside
    assert starts == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 42.0, 72.0]


def test_start_interval_is_capped_by_the_end_of_the_start_period() -> None:
    # moby #46747 / #52317: a start interval longer than what is left of the start period
    # must not overshoot it.
    state = HealthState(_settings(start_period=2, start_interval=30, interval=2, retries=1), T0)
    seen = _drive(state, [1, 1], took=0.0)
    assert seen == [(2.0, "unhealthy", 1), (4.0, "unhealthy", 2)]


def test_start_interval_unused_without_a_start_period() -> None:
    state = HealthState(_settings(start_period=0, start_interval=1, interval=10), T0)
    assert state.next_due() == T0 + 10


def test_healthy_inside_the_start_period_goes_to_the_regular_interval() -> None:
    state = HealthState(_settings(start_period=60, start_interval=1, interval=20), T0)
    assert _drive(state, [1, 0, 0], took=0.0) == [
        (1.0, "starting", 0), (2.0, "healthy", 0), (22.0, "healthy", 0)]


# -- statuses ------------------------------------------------------------------------------------


def test_success_makes_healthy() -> None:
    state = HealthState(_settings(), T0)
    assert state.status == "starting" and state.failing_streak == 0 and state.log == []
    assert _drive(state, [0]) == [(10.0, "healthy", 0)]


def test_failures_reach_unhealthy_at_retries() -> None:
    state = HealthState(_settings(retries=3), T0)
    assert _drive(state, [1, 2, 1, 1]) == [
        (10.0, "starting", 1), (20.25, "starting", 2), (30.5, "unhealthy", 3),
        (40.75, "unhealthy", 4)]


def test_failures_inside_the_start_period_are_not_counted() -> None:
    state = HealthState(_settings(start_period=10, start_interval=4, retries=2), T0)
    seen = _drive(state, [1, 1, 1, 1, 1], took=0.0)
    assert seen == [(4.0, "starting", 0), (8.0, "starting", 0), (10.0, "starting", 1),
                    (20.0, "unhealthy", 2), (30.0, "unhealthy", 3)]
    assert len(state.log) == 5  # uncounted failures are still logged


def test_start_period_counts_from_the_probes_start_not_its_end() -> None:
    state = HealthState(_settings(start_period=10, retries=1), T0)
    state.record(Probe(start=T0 + 9.9, end=T0 + 11, exit_code=1, output=""))
    assert (state.status, state.failing_streak) == ("starting", 0)
    state.record(Probe(start=T0 + 10, end=T0 + 10.5, exit_code=1, output=""))
    assert (state.status, state.failing_streak) == ("unhealthy", 1)


def test_failures_in_the_start_period_count_once_healthy() -> None:
    # Docker: the grace is only for a container that never succeeded yet ("starting").
    state = HealthState(_settings(start_period=100, start_interval=1, interval=5, retries=2),
                        T0)
    assert _drive(state, [0, 1, 1], took=0.0) == [
        (1.0, "healthy", 0), (6.0, "healthy", 1), (11.0, "unhealthy", 2)]


def test_recovery_from_unhealthy() -> None:
    state = HealthState(_settings(retries=1), T0)
    assert [st for _, st, _ in _drive(state, [1, 1, 0, 1, 0])] == [
        "unhealthy", "unhealthy", "healthy", "unhealthy", "healthy"]
    assert state.failing_streak == 0


@pytest.mark.parametrize("code", [1, 2, 126, 127, 255, -1])
def test_any_non_zero_code_is_a_failure(code: int) -> None:
    state = HealthState(_settings(retries=1), T0)
    assert state.record(Probe(T0 + 10, T0 + 11, code, "")) == "unhealthy"


def test_record_returns_the_status() -> None:
    state = HealthState(_settings(), T0)
    assert state.record(Probe(T0 + 10, T0 + 10.1, 0, "ok")) == "healthy"


# -- timeouts and output -------------------------------------------------------------------------


def test_a_probe_longer_than_the_timeout_failed_with_dockers_message() -> None:
    state = HealthState(_settings(timeout=30), T0)
    state.record(Probe(start=T0 + 10, end=T0 + 41, exit_code=0, output=""))
    assert state.log[-1].exit_code == -1
    assert state.log[-1].output == "Health check exceeded timeout (30s)"
    assert state.status == "starting" and state.failing_streak == 1


def test_a_probe_of_exactly_the_timeout_failed_and_keeps_its_output() -> None:
    state = HealthState(_settings(timeout=1.5), T0)
    state.record(Probe(start=T0 + 10, end=T0 + 11.5, exit_code=0, output="half done"))
    assert state.log[-1] == Probe(T0 + 10, T0 + 11.5, -1,
                                  "Health check exceeded timeout (1.5s): half done")


def test_a_failure_the_engine_reported_is_kept_as_it_is() -> None:
    state = HealthState(_settings(timeout=2), T0)
    message = "Health check exceeded timeout (2s)"
    state.record(Probe(start=T0 + 10, end=T0 + 12, exit_code=-1, output=message))
    state.record(Probe(start=T0 + 22, end=T0 + 22.1, exit_code=-1, output="exec failed"))
    assert [p.output for p in state.log] == [message, "exec failed"]


def test_a_probe_just_under_the_timeout_counts_by_its_exit_code() -> None:
    state = HealthState(_settings(timeout=3), T0)
    state.record(Probe(start=T0 + 10, end=T0 + 12.99, exit_code=0, output="fine"))
    assert state.status == "healthy" and state.log[-1].output == "fine"


@pytest.mark.parametrize(("seconds", "text"), [
    (30, "30s"), (1.5, "1.5s"), (90, "1m30s"), (3600, "1h0m0s"), (0.5, "500ms"),
    (0.0015, "1.5ms"), (120, "2m0s"), (3661.25, "1h1m1.25s"), (2e-6, "2µs"), (5e-9, "5ns"),
])
def test_timeout_message_uses_gos_duration_format(seconds: float, text: str) -> None:
    assert timeout_message(seconds) == f"Health check exceeded timeout ({text})"


def test_output_is_cut_at_4096_bytes_with_dots() -> None:
    state = HealthState(_settings(), T0)
    state.record(Probe(T0 + 10, T0 + 10.1, 0, "x" * MAX_OUTPUT))
    state.record(Probe(T0 + 20, T0 + 20.1, 0, "y" * (MAX_OUTPUT + 1)))
    assert state.log[0].output == "x" * 4096
    assert state.log[1].output == "y" * 4096 + "..."


def test_output_cut_inside_a_character_becomes_a_replacement_char() -> None:
    state = HealthState(_settings(), T0)
    state.record(Probe(T0 + 10, T0 + 10.1, 0, "a" + "é" * 3000))  # 1 + 6000 bytes
    out = state.log[0].output
    assert out.endswith("\ufffd...") and out.startswith("aé")
    assert len(out[:-4].encode()) == 4095  # 1 + 2047 whole "é", then the cut one


def test_long_output_of_a_timed_out_probe_is_cut_before_the_message() -> None:
    state = HealthState(_settings(timeout=1), T0)
    state.record(Probe(T0 + 10, T0 + 12, 0, "z" * 5000))
    assert state.log[0].output == "Health check exceeded timeout (1s): " + "z" * 4096 + "..."


def test_the_log_keeps_the_last_five() -> None:
    state = HealthState(_settings(), T0)
    for i in range(8):
        state.record(Probe(T0 + 10 * (i + 1), T0 + 10 * (i + 1) + 1, i % 2, f"probe {i}"))
    assert MAX_LOG == 5
    assert [p.output for p in state.log] == [f"probe {i}" for i in range(3, 8)]


# -- saving and resuming -------------------------------------------------------------------------


def test_to_json_is_dockers_inspect_shape() -> None:
    state = HealthState(_settings(), 0.0)
    state.record(Probe(start=10.5, end=10.75, exit_code=1, output="nope\n"))
    state.record(Probe(start=1_700_000_020.123456, end=1_700_000_021.0, exit_code=0,
                       output="ok"))
    data = state.to_json()
    assert data == {
        "Status": "healthy",
        "FailingStreak": 0,
        "Log": [
            {"Start": "1970-01-01T00:00:10.5Z", "End": "1970-01-01T00:00:10.75Z",
             "ExitCode": 1, "Output": "nope\n"},
            {"Start": "2023-11-14T22:13:40.123456Z", "End": "2023-11-14T22:13:41Z",
             "ExitCode": 0, "Output": "ok"},
        ],
    }
    assert json.loads(json.dumps(data)) == data


def test_round_trip_resumes_the_same_run() -> None:
    s = _settings(retries=3)
    state = HealthState(s, T0)
    _drive(state, [0, 1, 1], took=0.123457)
    saved = json.loads(json.dumps(state.to_json()))
    again = HealthState.from_json(s, T0, saved)
    assert again.to_json() == saved
    assert (again.status, again.failing_streak) == ("healthy", 2)
    assert len(again.log) == 3
    for a, b in zip(again.log, state.log, strict=True):
        assert (a.exit_code, a.output) == (b.exit_code, b.output)
        assert a.start == pytest.approx(b.start, abs=1e-6)
        assert a.end == pytest.approx(b.end, abs=1e-6)
    assert again.next_due() == pytest.approx(state.next_due(), abs=1e-6)
    # and it carries on where it was: one more failure makes it unhealthy
    assert _drive(again, [1])[0][1:] == ("unhealthy", 3)


def test_from_json_of_an_earlier_run_starts_over_but_keeps_the_log() -> None:
    s = _settings(retries=1)
    state = HealthState(s, T0)
    _drive(state, [1, 1])
    assert state.status == "unhealthy"
    restarted_at = T0 + 100
    again = HealthState.from_json(s, restarted_at, state.to_json())
    assert (again.status, again.failing_streak) == ("starting", 0)
    assert len(again.log) == 2
    assert again.next_due() == restarted_at + s.interval


def test_from_json_with_nothing_yet() -> None:
    s = _settings()
    again = HealthState.from_json(s, T0, HealthState(s, T0).to_json())
    assert (again.status, again.failing_streak, again.log) == ("starting", 0, [])
    assert again.next_due() == T0 + 10


def test_from_json_reads_dockers_own_times() -> None:
    data = {"Status": "unhealthy", "FailingStreak": 4, "Log": [
        {"Start": "2024-05-01T10:00:00.123456789+02:00", "End": "2024-05-01T08:00:01Z",
         "ExitCode": 1, "Output": "down"}]}
    eight = 1714550400.0  # 2024-05-01T08:00:00Z
    state = HealthState.from_json(_settings(), eight - 60, data)
    assert state.log[0].start == pytest.approx(eight + 0.123456789, abs=1e-6)
    assert state.log[0].end == eight + 1
    assert (state.status, state.failing_streak) == ("unhealthy", 4)


@pytest.mark.parametrize("data", [
    {"Status": "sick", "FailingStreak": 0, "Log": []},
    {"Status": "healthy", "FailingStreak": "many", "Log": []},
    {"Status": "healthy", "FailingStreak": 0, "Log": [{"Start": "yesterday", "End": "now",
                                                       "ExitCode": 0, "Output": ""}]},
    {"Status": "healthy", "FailingStreak": 0, "Log": [{"ExitCode": 0}]},
])
def test_from_json_refuses_broken_state(data: dict[str, object]) -> None:
    with pytest.raises(HealthcheckError):
        HealthState.from_json(_settings(), T0, data)
