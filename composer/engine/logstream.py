"""A container's log as the engine serves it (``logs``, ``logs -f``, ``run``), and its rotation.

conmon writes the log; the engine reads it (``runtime/logs.py`` parses conmon's format) and
keeps ``max-file`` generations of it when conmon starts a new file past ``max-size``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from composer.runtime.spec import ContainerSpec
from composer.state import containers as rows

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager

ENDED = ("exited", "created", "dead")
LIVE = ("running", "paused", "restarting")


def log_lines(m: ContainerManager, container_id: str, *, follow: bool = False,
              since_ns: int | None = None, until_ns: int | None = None,
              tail: int | None = None) -> Iterator[Any]:
    """The lines of a container's log (by id: it may be removed meanwhile, see
    ``ContainerManager.hold_files``); with ``follow``, new ones until it stops."""
    from composer.runtime import logs

    path = m.log_path(container_id)
    if not follow:
        yield from logs.read(path, since_ns=since_ns, until_ns=until_ns, tail=tail)
        return

    def ended() -> bool:
        current = rows.get(m.db, container_id)
        return current is None or current.status in ENDED

    def stopped() -> bool:
        # Waiting here (on the change notice, checked under its lock so none is missed)
        # instead of polling makes the end of a follow as prompt as the exit itself.
        with m.changed:
            if ended():
                return True
            m.changed.wait(0.05)
        return ended()

    for line in logs.follow(path, since_ns=since_ns, tail=tail, stop=stopped, poll=0):
        if until_ns is not None and line.time_ns > until_ns:
            return
        yield line


def keep_rotating(m: ContainerManager, container_id: str, spec: ContainerSpec) -> None:
    """conmon starts a new file past max-size; keep max-file of them (logs.LogRotation),
    checking often enough that a rotation is never missed while the engine runs."""
    if spec.logging.max_size is None or spec.logging.max_file <= 1:
        return
    from composer.runtime.logs import LogRotation

    with m._locks_guard:
        if container_id in m._rotating:
            return  # a restart: the ticks of the first start go on
        m._rotating.add(container_id)
    rotation = LogRotation(m.log_path(container_id), spec.logging.max_file)

    def tick() -> None:
        rotation.check()
        row = rows.get(m.db, container_id)
        if row is not None and row.status in LIVE:
            m.supervisor.call_later(0.1, tick)
        else:
            with m._locks_guard:
                m._rotating.discard(container_id)

    tick()
