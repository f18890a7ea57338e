"""Health checks, as Docker runs them: a pure state machine fed with probe results.

The engine asks :meth:`HealthState.next_due` when to run the next probe, runs
:func:`command` in the container (``runc exec``), and hands the result to
:meth:`HealthState.record`. Times are seconds since the epoch (``time.time()``) and come only
from the probes and the container's start, so tests drive a clock of their own and never sleep.

The rules are moby's (``daemon/health.go``):

- defaults: interval 30 s, timeout 30 s, 3 retries, no start period, start interval 5 s; a zero
  duration or retry count means the default;
- the first probe runs one interval after the start, each next one an interval after the
  previous one *ended*; while the container is still ``starting`` inside its start period, the
  start interval is used instead, capped so that a probe runs when the start period ends
  (moby PR #52317; before it, a long start interval could overshoot the start period);
- a success makes the container ``healthy`` and clears the failing streak; a failure adds to the
  streak, and the container is ``unhealthy`` once the streak reaches the retries; a failure of
  a probe that *started* inside the start period while the container was ``starting`` is not
  counted;
- a probe's output is cut to 4096 bytes, with ``...`` appended when cut; a probe that ran for
  the timeout or longer failed, with the output "Health check exceeded timeout (30s)";
- the log keeps the last 5 probes; it survives a restart of the container, whose health starts
  again from ``starting`` with a zero streak.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from composer.errors import ComposerError
from composer.runtime.spec import Healthcheck

Status = Literal["starting", "healthy", "unhealthy"]
STATUSES: tuple[Status, ...] = ("starting", "healthy", "unhealthy")

DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
MAX_OUTPUT = 4096  # bytes of output kept per probe
MAX_LOG = 5  # probes kept in the log
SHELL = ("/bin/sh", "-c")  # for CMD-SHELL when the image sets no SHELL


class HealthcheckError(ComposerError):
    """A health check that cannot be run (unknown test type, negative duration, bad state)."""


@dataclass(frozen=True)
class Probe:
    """One run of the check. ``exit_code`` is -1 when it timed out or could not run."""

    start: float
    end: float
    exit_code: int
    output: str


@dataclass(frozen=True)
class Settings:
    """A health check with Docker's defaults filled in. ``test`` keeps Docker's form
    (``("CMD", ...)`` or ``("CMD-SHELL", "...")``); durations in seconds."""

    test: tuple[str, ...]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float


def settings(check: Healthcheck) -> Settings | None:
    """The check to run, or None when there is none (``["NONE"]`` or an empty test)."""
    test = tuple(check.test)
    if not test or test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL"):
        raise HealthcheckError(
            f"health check test {list(test)!r}: the first element must be 'CMD', 'CMD-SHELL' "
            f"or 'NONE'")
    if len(test) < 2:
        raise HealthcheckError(f"health check test {list(test)!r} names no command")
    if check.retries is not None and check.retries < 0:
        raise HealthcheckError(f"health check retries cannot be negative ({check.retries})")
    return Settings(
        test=test,
        interval=_duration("interval", check.interval, DEFAULT_INTERVAL),
        timeout=_duration("timeout", check.timeout, DEFAULT_TIMEOUT),
        retries=check.retries or DEFAULT_RETRIES,
        start_period=_duration("start_period", check.start_period, DEFAULT_START_PERIOD),
        start_interval=_duration("start_interval", check.start_interval,
                                 DEFAULT_START_INTERVAL),
    )


def command(settings: Settings, *, shell: Sequence[str] | None = None) -> list[str]:
    """The argv to run in the container: ``CMD`` arguments as they are, ``CMD-SHELL`` ones
    after the image's ``SHELL`` (``shell``), by default ``/bin/sh -c``."""
    args = list(settings.test[1:])
    if settings.test[0] == "CMD-SHELL":
        return [*(shell or SHELL), *args]
    return args


def timeout_message(timeout: float, output: str = "") -> str:
    """Docker's output for a probe that ran out of time (Go's duration format)."""
    text = f"Health check exceeded timeout ({_go_duration(timeout)})"
    return f"{text}: {output}" if output else text


class HealthState:
    """The health of one run of a container (see the module's docstring)."""

    def __init__(self, settings: Settings, started_at: float) -> None:
        self.settings = settings
        self.started_at = started_at
        self.status: Status = "starting"
        self.failing_streak = 0
        self.log: list[Probe] = []
        self._last_end: float | None = None  # end of the last probe of this run

    def next_due(self) -> float:
        """When the next probe should start."""
        s = self.settings
        base = self.started_at if self._last_end is None else self._last_end
        elapsed = base - self.started_at
        if self.status == "starting" and elapsed < s.start_period:
            return base + min(s.start_interval, s.start_period - elapsed)
        return base + s.interval

    def record(self, probe: Probe) -> Status:
        """Take one probe's result; returns the new status."""
        probe = self._normalise(probe)
        self.log = [*self.log, probe][-MAX_LOG:]
        self._last_end = probe.end
        if probe.exit_code == 0:
            self.failing_streak = 0
            self.status = "healthy"
            return self.status
        starting = (self.status == "starting"
                    and probe.start - self.started_at < self.settings.start_period)
        if not starting:
            self.failing_streak += 1
            if self.failing_streak >= self.settings.retries:
                self.status = "unhealthy"
        return self.status

    def _normalise(self, probe: Probe) -> Probe:
        output = _truncate(probe.output)
        timeout = self.settings.timeout
        if probe.exit_code != -1 and probe.end - probe.start >= timeout:
            # Docker kills a probe at its timeout; one the engine let run longer failed too.
            return replace(probe, exit_code=-1, output=timeout_message(timeout, output))
        return replace(probe, output=output)

    def to_json(self) -> dict[str, Any]:
        """Docker's ``State.Health`` shape, as ``docker inspect`` shows it."""
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [{"Start": _rfc3339(p.start), "End": _rfc3339(p.end),
                     "ExitCode": p.exit_code, "Output": p.output} for p in self.log],
        }

    @classmethod
    def from_json(cls, settings: Settings, started_at: float,
                  data: Mapping[str, Any]) -> HealthState:
        """The state :meth:`to_json` saved. When the log holds probes of this run (started at
        or after ``started_at``), it resumes where it was; otherwise the container was started
        again since, and health starts over from ``starting`` with the old log kept (Docker)."""
        state = cls(settings, started_at)
        try:
            log = [Probe(start=_parse_rfc3339(str(e["Start"])), end=_parse_rfc3339(str(e["End"])),
                         exit_code=int(e["ExitCode"]), output=str(e.get("Output") or ""))
                   for e in data.get("Log") or ()]
            status = str(data.get("Status") or "starting")
            streak = int(data.get("FailingStreak") or 0)
        except (KeyError, TypeError, ValueError) as e:
            raise HealthcheckError(f"saved health state is not valid: {e}") from e
        if status not in STATUSES:
            raise HealthcheckError(f"saved health state has an unknown status {status!r}")
        state.log = log[-MAX_LOG:]
        current = [p for p in state.log if p.start >= started_at]
        if current:
            state.status = status
            state.failing_streak = streak
            state._last_end = current[-1].end
        return state


def _duration(name: str, value: float | None, default: float) -> float:
    if value is None or value == 0:
        return default
    if value < 0:
        raise HealthcheckError(f"health check {name} cannot be negative ({value}s)")
    return float(value)


def _truncate(output: str) -> str:
    """Docker's limitedBuffer: the first 4096 bytes, and ``...`` if there were more. A cut
    character becomes U+FFFD, as Go's JSON encoder turns invalid UTF-8."""
    data = output.encode("utf-8", errors="surrogateescape")
    if len(data) <= MAX_OUTPUT:
        return output
    return data[:MAX_OUTPUT].decode("utf-8", errors="replace") + "..."


def _go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String``: ``30s``, ``1m30s``, ``1h0m0s``, ``500ms``, ``1.5s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = f"{_decimal(rest, 1_000_000_000)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, part = divmod(value, unit)
    if not part:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(part).zfill(digits).rstrip('0')}"


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?"
                      r"(?:([Zz])|([+-])(\d\d):(\d\d))")


def _rfc3339(t: float) -> str:
    """Go's RFC3339Nano in UTC, to the microsecond (what a float of epoch seconds holds), with
    trailing zeros of the fraction dropped as Go does."""
    micros = round(t * 1_000_000)
    secs, frac = divmod(micros, 1_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        text += f".{frac:06d}".rstrip("0")
    return text + "Z"


def healthy_since(data: Mapping[str, Any]) -> float | None:
    """From a saved ``State.Health``: when the last unbroken run of passing probes began (the
    end of its first probe), or None when the last probe failed. The log keeps the last
    ``MAX_LOG`` probes, so a long run of passes is dated by the oldest one kept."""
    since = None
    for entry in reversed(data.get("Log") or ()):
        if entry.get("ExitCode") != 0:
            break
        since = _parse_rfc3339(str(entry["End"]))
    return since


def _parse_rfc3339(text: str) -> float:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    year, month, day, hour, minute, sec = (int(g) for g in match.groups()[:6])
    secs = calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        secs -= offset if match.group(9) == "+" else -offset
    fraction = match.group(7) or ""
    return secs + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)
