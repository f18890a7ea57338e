"""Running processes inside containers: health probes and ``exec``.

A process run inside a running container takes the container's own process settings (user,
env, capabilities, working dir: what Docker's exec does) from its bundle, with the arguments
and any overrides replaced, and is started by ``runc exec --process FILE``. Health probes run
that way on the supervisor's timers; their state (``health.HealthState``) is kept in the store
after every probe, so a new engine resumes it where the old one was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.runtime import bundle
from composer.runtime.spec import ContainerSpec
from composer.state import containers as rows

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager
    from composer.engine.health import HealthState
    from composer.engine.supervisor import Timer

log = logging.getLogger("composer.engine")


def process_file(manager: ContainerManager, container_id: str, args: Sequence[str], *,
                 env: Mapping[str, str] | None = None, user: str | None = None,
                 working_dir: str | None = None, tty: bool = False,
                 privileged: bool = False) -> Path:
    """Write the OCI process of ``args`` for ``runc exec --process`` (Docker's exec rules:
    ``bundle.exec_process``); returns its path (the caller removes it)."""
    row = manager.find(container_id)
    cdir = manager.layout.container_dir(container_id)
    process = bundle.exec_process(
        manager.spec(row), manager.image_config(row),
        manager.bundle_context(row, cdir / "merged"), args, env=env, user=user,
        working_dir=working_dir, tty=tty, privileged=privileged)
    path = cdir / f"exec-{secrets.token_hex(6)}.json"
    path.write_text(json.dumps(process))
    return path


class HealthChecks:
    """Health probes of every container that has one."""

    def __init__(self, manager: ContainerManager) -> None:
        self.manager = manager
        self._lock = threading.Lock()
        self._states: dict[str, HealthState] = {}
        self._timers: dict[str, Timer] = {}

    def begin(self, container_id: str, spec: ContainerSpec, image_config: Mapping[str, Any],
              *, saved: Mapping[str, Any] | None = None,
              started_at: float | None = None) -> None:
        from composer.engine import health

        check = bundle.effective_healthcheck(spec, image_config)
        settings = None if check is None else health.settings(check)
        if settings is None:
            return
        started = started_at if started_at is not None else time.time()
        state = (health.HealthState.from_json(settings, started, saved) if saved
                 else health.HealthState(settings, started))
        with self._lock:
            self._states[container_id] = state
        rows.update(self.manager.db, container_id, health=state.to_json())
        self._schedule(container_id)

    def end(self, container_id: str) -> None:
        with self._lock:
            self._states.pop(container_id, None)
            timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()

    def _schedule(self, container_id: str) -> None:
        with self._lock:
            state = self._states.get(container_id)
            if state is None:
                return
            delay = state.next_due() - time.time()
            self._timers[container_id] = self.manager.supervisor.call_later(
                delay, lambda: self._probe(container_id))

    def _probe(self, container_id: str) -> None:
        from composer.engine import health

        with self._lock:
            state = self._states.get(container_id)
        if state is None:
            return
        row = rows.get(self.manager.db, container_id)
        if row is None or row.status != "running":
            return
        start = time.time()
        code, output = run_probe(self.manager, container_id, health.command(state.settings),
                                 timeout=state.settings.timeout)
        probe = health.Probe(start=start, end=time.time(), exit_code=code, output=output)
        with self._lock:
            if container_id not in self._states or self._states[container_id] is not state:
                return  # the container stopped meanwhile
            before = state.status
            state.record(probe)
        rows.update(self.manager.db, container_id, health=state.to_json())
        if state.status != before:
            log.info("container %s is %s", row.name, state.status)
            self.manager._notify()
        self._schedule(container_id)


def run_probe(manager: ContainerManager, container_id: str, args: Sequence[str], *,
              timeout: float) -> tuple[int, str]:
    """Run ``args`` in the container; (exit code, output) with -1 for a timeout. The output
    is as the process wrote it: ``HealthState.record`` truncates it as Docker does."""
    row = manager.find(container_id)
    path = process_file(manager, container_id, args)
    runtime = manager.runtime(row)
    try:
        done = subprocess.run(runtime.exec_command(container_id, str(path)),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        from composer.engine.health import timeout_message

        said = ((e.stdout or b"") + (e.stderr or b"")).decode(errors="replace")
        return -1, timeout_message(timeout, said)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
