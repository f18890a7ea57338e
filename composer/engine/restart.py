"""Restart policies, as Docker applies them: which exits restart, how long to wait, and what
comes back when the engine starts (after a reboot or finding a container dead).

Pure functions; the supervisor keeps the counters and the timers. The rules and constants are
moby's (``restartmanager/restartmanager.go``, ``container.ShouldRestart``, ``daemon.restore``):

- a container the user stopped or killed is never restarted by its policy (moby cancels the
  restart manager on ``stop``/``kill``);
- ``always`` and ``unless-stopped`` restart whatever the exit code; ``on-failure[:N]`` only for
  a non-zero code, and at most N times (N = 0: no limit);
- the delay before a restart starts at 100 ms and doubles each time, up to 1 minute; it goes
  back to 100 ms when the container ran for at least 10 seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from composer.errors import ComposerError

PolicyName = Literal["no", "always", "on-failure", "unless-stopped"]
NAMES: tuple[PolicyName, ...] = ("no", "always", "on-failure", "unless-stopped")

# moby restartmanager: defaultTimeout, backoffMultiplier, maxRestartTimeout, and the 10 s of
# running that resets the back-off.
FIRST_DELAY = 0.1
BACKOFF_MULTIPLIER = 2
MAX_DELAY = 60.0
RESET_AFTER = 10.0

_FORMS = "'no', 'always', 'on-failure[:max-retries]' or 'unless-stopped'"
_COUNT = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi takes


class RestartPolicyError(ComposerError):
    """A restart policy that Docker would refuse."""


@dataclass(frozen=True)
class RestartPolicy:
    """``name`` and, for ``on-failure``, the most restarts allowed (0: unlimited)."""

    name: PolicyName
    max_retries: int = 0

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """Docker's ``--restart`` forms: ``no``, ``always``, ``on-failure``, ``on-failure:3``,
        ``unless-stopped``. An empty text is ``no`` (Docker's default). As Docker, ``always:0``
        passes (a zero count is no count); any other count outside ``on-failure`` is refused."""
        name, colon, count_text = text.partition(":")
        if not colon and not name:
            return cls("no")
        if colon and not name:
            raise RestartPolicyError(
                f"invalid restart policy {text!r}: no policy before the colon; use {_FORMS}")
        if name not in NAMES:
            raise RestartPolicyError(
                f"invalid restart policy {text!r}: unknown policy {name!r}; use {_FORMS}")
        count = 0
        if count_text:
            if not _COUNT.fullmatch(count_text):
                raise RestartPolicyError(
                    f"invalid restart policy {text!r}: the maximum retry count must be an "
                    f"integer, as in 'on-failure:3'")
            count = int(count_text)
        if count < 0:
            raise RestartPolicyError(
                f"invalid restart policy {text!r}: the maximum retry count cannot be negative")
        if count and name != "on-failure":
            raise RestartPolicyError(
                f"invalid restart policy {text!r}: a maximum retry count can only be used "
                f"with 'on-failure'")
        return cls(name, count)

    def __post_init__(self) -> None:
        if self.name not in NAMES:
            raise RestartPolicyError(f"unknown restart policy {self.name!r}; use {_FORMS}")
        if self.max_retries < 0 or (self.max_retries and self.name != "on-failure"):
            raise RestartPolicyError(
                f"restart policy {self.name!r}: invalid maximum retry count {self.max_retries}")

    def __str__(self) -> str:
        return f"{self.name}:{self.max_retries}" if self.max_retries else self.name


def should_restart(policy: RestartPolicy, *, exit_code: int, restart_count: int,
                   stopped_by_user: bool) -> bool:
    """Whether a container that just exited with ``exit_code`` is restarted, having been
    restarted ``restart_count`` times already (by its policy, since it was last started)."""
    if stopped_by_user or policy.name == "no":
        return False
    if policy.name == "on-failure":
        under_limit = policy.max_retries == 0 or restart_count < policy.max_retries
        return exit_code != 0 and under_limit
    return True  # always, unless-stopped


def restart_delay(previous_delay: float | None, ran_for: float) -> float:
    """Seconds to wait before the next restart: ``previous_delay`` is the delay used before
    the run that just ended (None: there was none), ``ran_for`` how long that run lasted.

    0.1, 0.2, 0.4, ... 51.2, then 60 for good; back to 0.1 after a run of 10 s or more."""
    if previous_delay is None or previous_delay <= 0 or ran_for >= RESET_AFTER:
        return FIRST_DELAY
    if previous_delay < MAX_DELAY:
        return min(previous_delay * BACKOFF_MULTIPLIER, MAX_DELAY)
    return MAX_DELAY


def restart_at_boot(policy: RestartPolicy, *, stopped_by_user: bool, exit_code: int = 0,
                    restart_count: int = 0) -> bool:
    """Whether the engine starts a container again after a reboot, or when it starts and finds
    the container dead: ``always`` yes (even one the user had stopped, as Docker's daemon
    restart does), ``unless-stopped`` unless the user had stopped it, ``no`` never.

    ``on-failure``: with the defaults, no. moby's restore applies the same rule as for an exit,
    so give the recorded ``exit_code`` and ``restart_count`` to have Docker's answer: yes for a
    non-zero code under the retry limit (Docker records 255 for a container that died with its
    host). Unlike moby, which ignores a user's stop here, one the user stopped stays stopped."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not stopped_by_user
    if policy.name == "on-failure":
        return should_restart(policy, exit_code=exit_code, restart_count=restart_count,
                              stopped_by_user=stopped_by_user)
    return False
