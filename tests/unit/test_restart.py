"""Restart policies: Docker's parsing, decisions and back-off, as exhaustive tables."""

from __future__ import annotations

import itertools

import pytest

from composer.engine.restart import (
    FIRST_DELAY,
    MAX_DELAY,
    RESET_AFTER,
    RestartPolicy,
    RestartPolicyError,
    restart_at_boot,
    restart_delay,
    should_restart,
)
from composer.errors import ComposerError

# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "name", "retries"), [
    ("no", "no", 0),
    ("", "no", 0),
    ("always", "always", 0),
    ("unless-stopped", "unless-stopped", 0),
    ("on-failure", "on-failure", 0),
    ("on-failure:3", "on-failure", 3),
    ("on-failure:0", "on-failure", 0),
    ("on-failure:", "on-failure", 0),
    ("on-failure:+2", "on-failure", 2),
    ("always:0", "always", 0),  # Docker: a zero count is no count
])
def test_parse_accepts_dockers_forms(text: str, name: str, retries: int) -> None:
    policy = RestartPolicy.parse(text)
    assert (policy.name, policy.max_retries) == (name, retries)


@pytest.mark.parametrize(("text", "words"), [
    ("any", "unknown policy 'any'"),
    ("On-Failure", "unknown policy"),
    ("never", "unknown policy"),
    (":3", "no policy before the colon"),
    ("on-failure:x", "must be an integer"),
    ("on-failure:1.5", "must be an integer"),
    ("on-failure: 3", "must be an integer"),
    ("on-failure:-1", "cannot be negative"),
    ("always:3", "only be used with 'on-failure'"),
    ("no:1", "only be used with 'on-failure'"),
    ("unless-stopped:2", "only be used with 'on-failure'"),
])
def test_parse_refuses_with_the_valid_forms(text: str, words: str) -> None:
    with pytest.raises(RestartPolicyError) as info:
        RestartPolicy.parse(text)
    message = str(info.value)
    assert words in message and repr(text) in message
    if "unknown" in words:
        assert "'on-failure[:max-retries]'" in message and "'unless-stopped'" in message
    assert isinstance(info.value, ComposerError)


def test_policy_text_round_trips() -> None:
    for text in ("no", "always", "unless-stopped", "on-failure", "on-failure:5"):
        assert str(RestartPolicy.parse(text)) == text


def test_policy_built_by_hand_is_checked() -> None:
    with pytest.raises(RestartPolicyError):
        RestartPolicy("always", 2)
    with pytest.raises(RestartPolicyError):
        RestartPolicy("sometimes")  # type: ignore[arg-type]
    with pytest.raises(RestartPolicyError):
        RestartPolicy("on-failure", -1)


# -- should_restart: every policy x exit code x count x user stop --------------------------------

POLICIES = ["no", "always", "unless-stopped", "on-failure", "on-failure:1", "on-failure:3"]
CODES = [0, 1, 2, 125, 137, 143, 255, -1]
COUNTS = [0, 1, 2, 3, 10]


def _expected(text: str, code: int, count: int, stopped: bool) -> bool:
    """Docker's rule written out once more, independently, as a table would say it."""
    if stopped:
        return False
    return {
        "no": False,
        "always": True,
        "unless-stopped": True,
        "on-failure": code != 0,
        "on-failure:1": code != 0 and count < 1,
        "on-failure:3": code != 0 and count < 3,
    }[text]


@pytest.mark.parametrize(("text", "code", "count", "stopped"),
                         list(itertools.product(POLICIES, CODES, COUNTS, [False, True])))
def test_should_restart_table(text: str, code: int, count: int, stopped: bool) -> None:
    policy = RestartPolicy.parse(text)
    got = should_restart(policy, exit_code=code, restart_count=count, stopped_by_user=stopped)
    assert got is _expected(text, code, count, stopped)


def test_on_failure_with_a_limit_allows_exactly_that_many_restarts() -> None:
    policy = RestartPolicy.parse("on-failure:3")
    restarts = 0
    while should_restart(policy, exit_code=1, restart_count=restarts, stopped_by_user=False):
        restarts += 1
        assert restarts < 100
    assert restarts == 3


def test_unlimited_on_failure_keeps_going_but_stops_on_success() -> None:
    policy = RestartPolicy.parse("on-failure")
    assert should_restart(policy, exit_code=1, restart_count=10_000, stopped_by_user=False)
    assert not should_restart(policy, exit_code=0, restart_count=0, stopped_by_user=False)


# -- back-off ------------------------------------------------------------------------------------


def test_constants_are_mobys() -> None:
    assert (FIRST_DELAY, MAX_DELAY, RESET_AFTER) == (0.1, 60.0, 10.0)


def test_backoff_doubles_from_100ms_and_caps_at_one_minute() -> None:
    delays: list[float] = []
    previous: float | None = None
    for _ in range(14):
        previous = restart_delay(previous, ran_for=0.5)
        delays.append(previous)
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2,
                                    60.0, 60.0, 60.0, 60.0])


@pytest.mark.parametrize(("previous", "ran_for", "expected"), [
    (None, 0.0, 0.1),
    (None, 100.0, 0.1),
    (0.1, 9.999, 0.2),
    (0.1, 10.0, 0.1),  # ran for 10 s: back to the start
    (51.2, 0.0, 60.0),
    (51.2, 10.0, 0.1),
    (60.0, 0.0, 60.0),
    (60.0, 9.0, 60.0),
    (60.0, 11.0, 0.1),
    (40.0, 1.0, 60.0),  # doubling never goes past the cap
    (0.0, 1.0, 0.1),
])
def test_backoff_table(previous: float | None, ran_for: float, expected: float) -> None:
    assert restart_delay(previous, ran_for) == pytest.approx(expected)


def test_backoff_resets_after_a_long_run_and_climbs_again() -> None:
    previous: float | None = None
    for _ in range(8):
        previous = restart_delay(previous, ran_for=1.0)
    assert previous == pytest.approx(12.8)
    previous = restart_delay(previous, ran_for=RESET_AFTER)
    assert previous == pytest.approx(0.1)
    assert restart_delay(previous, ran_for=2.0) == pytest.approx(0.2)


# -- at boot -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "stopped", "expected"), [
    ("always", False, True),
    ("always", True, True),  # Docker restarts even a stopped "always" container with the daemon
    ("unless-stopped", False, True),
    ("unless-stopped", True, False),
    ("no", False, False),
    ("no", True, False),
    ("on-failure", False, False),
    ("on-failure", True, False),
    ("on-failure:3", False, False),
])
def test_restart_at_boot_table(text: str, stopped: bool, expected: bool) -> None:
    assert restart_at_boot(RestartPolicy.parse(text), stopped_by_user=stopped) is expected


@pytest.mark.parametrize(("text", "code", "count", "stopped", "expected"), [
    ("on-failure", 255, 0, False, True),  # died with the host
    ("on-failure", 0, 0, False, False),
    ("on-failure", 1, 0, True, False),
    ("on-failure:2", 1, 1, False, True),
    ("on-failure:2", 1, 2, False, False),
    ("always", 0, 50, True, True),
    ("no", 1, 0, False, False),
])
def test_restart_at_boot_with_the_recorded_exit(text: str, code: int, count: int, stopped: bool,
                                                expected: bool) -> None:
    policy = RestartPolicy.parse(text)
    assert restart_at_boot(policy, stopped_by_user=stopped, exit_code=code,
                           restart_count=count) is expected
