"""What a starting engine does before it serves: adopt, learn, clean up.

A new engine takes over every container its predecessor left running (a pidfd on each one's
conmon; health checks and log rotation resume where they were), learns the exit code of any
that ended meanwhile from conmon's files (then applies its restart policy), removes the files
of containers whose rows are gone, and, when the boot id changed, treats the run root as the
leftovers of another boot: its runtime state is removed, running containers are marked exited
(255), and those whose restart policy says so start again.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from composer.errors import ComposerError
from composer.runtime import cgroups, monitor, rootfs
from composer.state import containers as rows
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager

log = logging.getLogger("composer.engine")
RUNNING = ("running", "paused")


def adopt(m: ContainerManager) -> None:
    collect_garbage(m)
    previous = _read(m.layout.boot_id_file)
    rebooted = previous != m.boot_id
    if rebooted:
        log.info("new boot (was %s, now %s): cleaning stale runtime state", previous, m.boot_id)
        for stale in (m.layout.run / "runtimes", m.layout.run / "containers"):
            shutil.rmtree(stale, ignore_errors=True)
    for row in rows.all_rows(m.db):
        if rebooted and row.status in (*RUNNING, "restarting"):
            _after_reboot(m, row)
        elif row.status in RUNNING:
            _take_over(m, row)
        elif row.status == "restarting":
            m._restarts[row.id] = m.supervisor.call_later(
                0, lambda cid=row.id: m._restart(cid))  # type: ignore[misc]
    m.layout.run.mkdir(parents=True, exist_ok=True)
    m.layout.boot_id_file.write_text(m.boot_id + "\n")


def _take_over(m: ContainerManager, row: ContainerRow) -> None:
    pid = monitor.conmon_pid(m.files(row.id))
    if pid is not None and m.supervisor.watch(row.id, pid, lambda: m.on_exit(row.id)):
        spec = m.spec(row)
        m._keep_rotating(row.id, spec)
        if m.health is not None:
            m.health.begin(row.id, spec, m.image_config(row), saved=row.health,
                           started_at=row.started_at)
        return
    m.supervisor.submit(lambda: m.on_exit(row.id))  # it ended while no engine watched


def _after_reboot(m: ContainerManager, row: ContainerRow) -> None:
    from composer.engine.restart import RestartPolicy, restart_at_boot

    with contextlib.suppress(ComposerError):
        rootfs.unmount(m.layout.container_dir(row.id))
    with contextlib.suppress(ComposerError):
        cgroups.remove(m.cgroup(row), m.cgroup_host)
    m._set(row.id, status="exited", exit_code=255 if row.exit_code is None else row.exit_code,
           pid=None, conmon_pid=None, finished_at=row.finished_at or time.time())
    policy = RestartPolicy.parse(m.spec(row).restart)
    if restart_at_boot(policy, stopped_by_user=row.stopped_by_user):
        try:
            m._launch(m.find(row.id))
        except ComposerError as e:
            log.error("starting %s after the reboot failed: %s", row.name, e)


def collect_garbage(m: ContainerManager) -> None:
    """Files of containers that have no row (removed while an engine died)."""
    known = {r.id for r in rows.all_rows(m.db)}
    for parent in (m.layout.root / "containers", m.layout.run / "containers"):
        with contextlib.suppress(FileNotFoundError):
            for entry in parent.iterdir():
                if entry.name not in known and len(entry.name) == 64:
                    m._remove_files(entry.name)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None
