"""The engine's containers: create, start, stop, remove, and what happens when one exits.

Each container has a row in the store (what was asked, what was last seen), a directory under
the state root (overlay upper/work/merged, the bundle, the log) and, while it runs, a conmon
process holding its stdio and waiting to write its exit code (files under the run root). The
engine is never needed for a container to keep running: it learns of an exit from a pidfd on
conmon, and a new engine learns the same from conmon's exit files (see :meth:`adopt`).

Every change to one container happens under that container's lock; the store is updated
after the host changed, so a crash in between leaves a row that describes less than what
exists, which :meth:`adopt` and ``rm`` converge from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal as signals
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from composer.engine import names
from composer.engine.etcfiles import Addressing, etc_files
from composer.engine.networks import Joined, attachments
from composer.engine.supervisor import Supervisor, Timer
from composer.errors import ComposerError
from composer.runtime import bundle, cgroups, monitor, rootfs
from composer.runtime.images.store import Image, ImageStore
from composer.runtime.inroot import read_text
from composer.runtime.oci import OCIRuntime, find_runtime
from composer.runtime.spec import ContainerSpec, Mount
from composer.state import containers as rows
from composer.state.containers import ContainerRow
from composer.state.layout import Layout
from composer.state.store import Store

log = logging.getLogger("composer.engine")

TINI = "/usr/bin/tini-static"
DEFAULT_GRACE = 10.0
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
RUNNING = ("running", "paused")


class ContainerError(ComposerError):
    """A container operation cannot be done as asked."""


class NoSuchContainer(ContainerError):
    pass


class Conflict(ContainerError):
    pass


def boot_id() -> str:
    # Tests simulate a reboot by pointing this elsewhere.
    path = os.environ.get("COMPOSER_BOOT_ID_FILE") or str(BOOT_ID)
    return Path(path).read_text().strip()


class ContainerManager:
    """All container operations of one engine (one state root)."""

    def __init__(self, layout: Layout, db: Store, images: ImageStore,
                 supervisor: Supervisor, *,
                 pull: Callable[[str], Image] | None = None) -> None:
        self.layout = layout
        self.db = db
        self.images = images
        self.supervisor = supervisor
        self._pull = pull
        self._locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self.changed = threading.Condition()  # notified whenever a container's status changes
        self._restarts: dict[str, Timer] = {}
        self._delays: dict[str, float] = {}
        self._rotating: set[str] = set()
        self._runtimes: dict[str | None, OCIRuntime] = {}
        # Exit codes of containers removed on exit (--rm): `run` and `wait` still answer them.
        self._removed_exits: dict[str, int] = {}
        # Containers whose files must outlive their removal until a reader is done (`run`
        # streams a --rm container's log, which may end and go before the stream catches up).
        self._holds: dict[str, bool] = {}
        self.health: Any = None  # set by the engine app (probes.HealthChecks)
        from composer.runtime.volumes import Volumes

        self.volumes = Volumes(layout.root, db)
        from composer.engine.networks import NetworkManager

        self.networks = NetworkManager(layout, db)
        self.cgroup_host = cgroups.detect()
        # COMPOSER_CGROUP_ROOT: tests give each engine a cgroup tree of its own to check.
        self.cgroup_root = os.environ.get("COMPOSER_CGROUP_ROOT") or cgroups.ROOT
        self.boot_id = boot_id()

    # -- helpers --------------------------------------------------------------------------------

    def lock(self, container_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._locks.setdefault(container_id, threading.RLock())

    def find(self, ref: str) -> ContainerRow:
        row = rows.find(self.db, ref)
        if row is None:
            raise NoSuchContainer(f"No such container: {ref}")
        return row

    def spec(self, row: ContainerRow) -> ContainerSpec:
        return ContainerSpec.from_json(row.spec)

    def image_config(self, row: ContainerRow) -> dict[str, Any]:
        image = self.images.get(row.image_id)
        if image is None:
            raise ContainerError(f"container {row.name}: its image {row.image_id} is gone")
        config = image.config.get("config") or {}
        return dict(config)

    def runtime(self, row: ContainerRow | ContainerSpec) -> OCIRuntime:
        """The OCI runtime of a container, with its own state root (one per runtime); looked
        up once per name (every operation on a container asks)."""
        found = self._runtimes.get(row.runtime)
        if found is None:
            chosen = find_runtime(row.runtime, self.layout.runtime_root("probe"))
            found = replace(chosen, root=str(self.layout.runtime_root(chosen.name)))
            self._runtimes[row.runtime] = found
        return found

    def files(self, container_id: str) -> monitor.MonitorFiles:
        return monitor.MonitorFiles(self.layout.monitor_dir(container_id))

    def log_path(self, container_id: str) -> Path:
        return self.layout.container_dir(container_id) / "container.log"

    def cgroup(self, row: ContainerRow) -> cgroups.CgroupSettings:
        group = str(row.spec.get("labels", {}).get("com.docker.compose.project") or "default")
        return cgroups.settings_for(self.cgroup_host, group, row.id, root=self.cgroup_root)

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _set(self, container_id: str, **fields: Any) -> None:
        rows.update(self.db, container_id, **fields)
        self._notify()

    def pull_image(self, ref: str) -> Image:
        if self._pull is None:
            raise ContainerError(f"cannot pull {ref}: this engine has no registry client")
        return self._pull(ref)

    # -- create ---------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> ContainerRow:
        image = self.images.get(spec.image)
        if image is None:
            if self._pull is None:
                raise ContainerError(f"No such image: {spec.image}")
            image = self._pull(spec.image)
        if spec.auto_remove and spec.restart not in ("no", ""):
            raise ContainerError("conflicting options: a restart policy and --rm (auto "
                                 "remove) cannot go together")
        if spec.name is not None and not names.valid(spec.name):
            raise ContainerError(f'Invalid container name "{spec.name}": only '
                                 "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        container_id = secrets.token_hex(32)
        name = spec.name or names.generated(rows.names(self.db))
        spec = replace(spec, name=name)
        # Runtime and networks found now, so that a missing one fails the create, not a
        # later start.
        runtime = self.runtime(spec)
        self.networks.resolve(spec)
        row = ContainerRow(id=container_id, name=name, image_id=image.id,
                           image_ref=spec.image, spec=spec.to_json(), created=time.time(),
                           status="created", runtime=spec.runtime or runtime.name)
        self.layout.container_dir(container_id).mkdir(parents=True, mode=0o700)
        try:
            rows.insert(self.db, row)
        except BaseException:
            shutil.rmtree(self.layout.container_dir(container_id), ignore_errors=True)
            raise
        self._notify()
        return row

    def rename(self, ref: str, new_name: str) -> ContainerRow:
        """Give it another name (the last step of a compose recreate). Its DNS records follow
        at once when it runs."""
        if not names.valid(new_name):
            raise ContainerError(f'Invalid container name "{new_name}": only '
                                 "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        row = self.find(ref)
        with self.lock(row.id):
            other = rows.find(self.db, new_name)
            if other is not None and other.id != row.id:
                raise Conflict(f'Conflict. The container name "/{new_name}" is already in use '
                               f"by container {other.id}")
            self._set(row.id, name=new_name, spec={**row.spec, "name": new_name})
            if row.status in RUNNING:
                self.networks.refresh()
        return self.find(row.id)

    # -- start ----------------------------------------------------------------------------------

    def start(self, ref: str, *,
              attach: Callable[[monitor.MonitorFiles], None] | None = None) -> ContainerRow:
        """Start it (a running one is left alone). ``attach`` is called once conmon holds
        the container's stdio and before the process runs, so an attached client misses
        nothing of its output."""
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            if row.status in RUNNING:
                return row
            self._cancel_restart(row.id)
            self._launch(row, attach=attach, user_start=True)
            return self.find(row.id)

    def _launch(self, row: ContainerRow, *,
                attach: Callable[[monitor.MonitorFiles], None] | None = None,
                user_start: bool = False) -> None:
        """Mount, join the networks, write the bundle, start conmon and the container; record
        it running."""
        spec = self.spec(row)
        image = self.images.get(row.image_id)
        if image is None:
            raise ContainerError(f"container {row.name}: its image {row.image_id} is gone")
        image_config = dict(image.config.get("config") or {})
        cdir = self.layout.container_dir(row.id)
        merged = rootfs.mount(cdir, self.images.lower_dirs(image))
        # The image's VOLUME paths get anonymous volumes in _volume_mounts (engine/mounts.py).
        paths = self._namespace_paths(spec)
        joined = None
        if attachments(spec):
            joined = self.networks.join(row, spec)
            paths["network"] = str(joined.netns)
        try:
            etc = self._etc_files(row, spec, joined)
            self._run(row, spec, image_config, merged, paths, etc, joined, attach=attach,
                      user_start=user_start)
        except BaseException:
            if joined is not None:
                with contextlib.suppress(ComposerError, OSError):
                    self.networks.detach(row.id)
            raise

    def _etc_files(self, row: ContainerRow, spec: ContainerSpec,
                   joined: Joined | None) -> tuple[Mount, ...]:
        """The /etc files that describe the container's network."""
        cdir = self.layout.container_dir(row.id)
        if joined is not None:
            addressing = Addressing(
                addresses=[str(e.address) for e in joined.endpoints],
                resolver=joined.gateway, host_gateway=joined.gateway,
                links=self.networks.link_hosts(spec, joined))
            return etc_files(cdir, row.id, spec, addressing)
        if spec.network.startswith(("container:", "service:")):
            other = self.find(spec.network.split(":", 1)[1])
            return etc_files(cdir, row.id, spec,
                             shared_from=self.layout.container_dir(other.id))
        return etc_files(cdir, row.id, spec, Addressing(host_gateway="127.0.0.1"))

    def _wire(self, row: ContainerRow, spec: ContainerSpec, joined: Joined) -> None:
        """The veths, the published ports, NAT and DNS of a container that joined its
        networks (``-P`` publishes the image's exposed ports too)."""
        if spec.publish_all:
            from composer.runtime.portspec import publish_all

            image_ports = self.image_config(row).get("ExposedPorts") or {}
            spec = replace(spec, ports=tuple(publish_all(
                spec.ports, [*map(str, image_ports), *spec.expose])))
        self.networks.wire(row, spec, joined)

    def _run(self, row: ContainerRow, spec: ContainerSpec, image_config: dict[str, Any],
             merged: Path, paths: dict[str, str], etc: tuple[Mount, ...],
             joined: Joined | None, *,
             attach: Callable[[monitor.MonitorFiles], None] | None,
             user_start: bool) -> None:
        cdir = self.layout.container_dir(row.id)
        ctx = replace(
            self.bundle_context(row, merged), init_path=TINI if spec.init else None,
            extra_mounts=etc, namespace_paths=paths,
            annotations={"composer.container.name": row.name})
        config = bundle.oci_config(replace(spec, mounts=self._volume_mounts(row, spec, merged)),
                                   image_config, ctx)
        bundle_dir = cdir / "bundle"
        bundle_dir.mkdir(exist_ok=True, mode=0o700)
        _write_json(bundle_dir / "config.json", config)
        runtime = self.runtime(row)
        files = self.files(row.id)
        # A previous run's runtime state and exit files would confuse the new one.
        if runtime.knows(row.id):
            runtime.delete(row.id, force=True)
        shutil.rmtree(files.directory, ignore_errors=True)
        files.directory.mkdir(parents=True, mode=0o700)
        # The runtime creates the container in its namespace while the veths go into that
        # namespace (the CNI order: the network is wired between create and start): each
        # takes tens of milliseconds, and together they were most of a start.
        wired = (_in_background(lambda: self._wire(row, spec, joined))
                 if joined is not None else _done)
        try:
            launched = monitor.launch(runtime, row.id, bundle_dir, files,
                                      log_path=self.log_path(row.id), name=row.name,
                                      terminal=spec.tty, stdin=spec.stdin_open,
                                      # An attached client's end of input is the
                                      # container's (Docker's StdinOnce for `run -i`).
                                      stdin_once=attach is not None and spec.stdin_open,
                                      log_size_max=spec.logging.max_size)
        except BaseException:
            # The wiring finishes before the namespace goes; its error, when it failed too, is
            # the one to tell (a host port taken, say), the launch's second.
            wired()
            raise
        try:
            wired()
            if attach is not None:
                attach(files)
            runtime.start(row.id)
        except BaseException:
            with contextlib.suppress(ComposerError):
                runtime.delete(row.id, force=True)
            raise
        # One write: every commit is an fsync (the store is synchronous=FULL).
        started: dict[str, Any] = {"stopped_by_user": False} if user_start else {}
        self._set(row.id, status="running", started_at=time.time(), finished_at=None,
                  exit_code=None, oom_killed=False, pid=launched.pid,
                  conmon_pid=launched.conmon_pid, boot_id=self.boot_id, **started)
        self._watch(row.id, launched.conmon_pid)
        self._keep_rotating(row.id, spec)
        if self.health is not None:
            self.health.begin(row.id, spec, image_config)

    def _keep_rotating(self, container_id: str, spec: ContainerSpec) -> None:
        from composer.engine.logstream import keep_rotating

        keep_rotating(self, container_id, spec)

    def _watch(self, container_id: str, conmon_pid: int) -> None:
        if not self.supervisor.watch(container_id, conmon_pid,
                                     lambda: self.on_exit(container_id)):
            self.supervisor.submit(lambda: self.on_exit(container_id))

    def bundle_context(self, row: ContainerRow, merged: Path) -> bundle.BundleContext:
        """What the bundle needs of the host for this container (its root filesystem mounted
        at ``merged``): for its config.json, and for the processes ``exec`` adds to it."""
        return bundle.BundleContext(
            container_id=row.id, rootfs=str(merged), cgroup=self.cgroup(row),
            passwd=read_text(merged, "/etc/passwd"), group=read_text(merged, "/etc/group"),
            rlimits=_own_rlimits())

    def _volume_mounts(self, row: ContainerRow, spec: ContainerSpec,
                       merged: Path) -> tuple[Mount, ...]:
        from composer.engine.mounts import resolve_mounts

        return resolve_mounts(self, row, spec, merged)

    def volume_users(self, name: str) -> list[str]:
        """The containers (of any state) that use volume ``name``: by name in their spec, as
        the owner of an anonymous one, or through ``volumes_from``."""
        from composer.engine.mounts import volume_users

        return volume_users(self, name)

    def _namespace_paths(self, spec: ContainerSpec) -> dict[str, str]:
        paths: dict[str, str] = {}
        for kind, value in (("ipc", spec.ipc), ("pid", spec.pid), ("network", spec.network)):
            if value and value.startswith(("container:", "service:")):
                other = self.find(value.split(":", 1)[1])
                if other.status != "running" or other.pid is None:
                    raise ContainerError(f"cannot join the {kind} namespace of {other.name}: "
                                         "it is not running")
                netns = self.networks.netns_path(other.id)
                # The namespace file outlives the process's pid reuse; /proc for the rest.
                paths[kind] = (str(netns) if kind == "network" and netns.exists() else
                               f"/proc/{other.pid}/ns/{'net' if kind == 'network' else kind}")
        return paths

    # -- exits, restarts ------------------------------------------------------------------------

    def on_exit(self, container_id: str) -> None:
        """conmon has exited (or is found gone): record the exit, apply the restart policy."""
        row = rows.get(self.db, container_id)
        if row is None:
            return
        with self.lock(container_id):
            row = rows.get(self.db, container_id)
            if row is None or row.status not in (*RUNNING, "restarting"):
                return
            if row.status == "restarting" and container_id in self._restarts:
                return
            status = monitor.exit_status(self.files(container_id))
            runtime = self.runtime(row)
            state = runtime.state(container_id) if status is None else None
            if state is not None and state.get("status") == "running":
                # conmon is gone but the container runs: nobody will record its exit. Stop it
                # rather than leave it unsupervised.
                log.warning("container %s lost its monitor; killing it", row.name)
                runtime.kill(container_id, "SIGKILL", all=True)
            settings = self.cgroup(row)
            code = status.code if status is not None else 255
            # The OOM killer kills with SIGKILL: only an exit of 137 needs the cgroup's word.
            oom = bool(status and status.oom_killed) or (
                code == 137 and cgroups.oom_killed(settings, self.cgroup_host))
            finished = status.finished_at if status is not None else time.time()
            if self.health is not None:
                self.health.end(container_id)
            spec = self.spec(row)
            if row.ports is not None:
                try:
                    self.networks.detach(container_id)
                except ComposerError as e:
                    log.warning("container %s: network teardown: %s", row.name, e)
            if spec.auto_remove:
                # --rm: the answer waits for the row to go, not for the clean-up after it.
                self._removed_exits[container_id] = code
                while len(self._removed_exits) > 1000:
                    self._removed_exits.pop(next(iter(self._removed_exits)))
                log.info("container %s exited with %d (removed)", row.name, code)
                self._forget(row)
                self.supervisor.submit(lambda: self._clean_after(row, stopped=status is not None))
                return
            self._clean_runtime(row, stopped=status is not None)
            self._set(container_id, status="exited", exit_code=code, finished_at=finished,
                      oom_killed=oom, pid=None, conmon_pid=None)
            log.info("container %s exited with %d", row.name, code)
            if self._maybe_restart(row, code, finished):
                return
            with contextlib.suppress(ComposerError):
                rootfs.unmount(self.layout.container_dir(container_id))
            self._release_mounts(container_id)

    def _clean_runtime(self, row: ContainerRow, *, stopped: bool) -> None:
        """The runtime's state and the cgroup of a container whose process has ended."""
        with contextlib.suppress(ComposerError):
            cgroups.remove(self.cgroup(row), self.cgroup_host)
        runtime = self.runtime(row)
        if stopped:
            runtime.forget_stopped(row.id)
        elif runtime.knows(row.id):
            runtime.delete(row.id, force=True)

    def _clean_after(self, row: ContainerRow, *, stopped: bool) -> None:
        self._clean_runtime(row, stopped=stopped)
        self._remove_files(row.id)

    def _maybe_restart(self, row: ContainerRow, code: int, finished: float) -> bool:
        from composer.engine.restart import RestartPolicy, restart_delay, should_restart

        policy = RestartPolicy.parse(self.spec(row).restart)
        if not should_restart(policy, exit_code=code, restart_count=row.restart_count,
                              stopped_by_user=row.stopped_by_user):
            self._delays.pop(row.id, None)
            return False
        ran_for = finished - (row.started_at or finished)
        delay = restart_delay(self._delays.get(row.id), ran_for)
        self._delays[row.id] = delay
        self._set(row.id, status="restarting")
        self._restarts[row.id] = self.supervisor.call_later(
            delay, lambda: self._restart(row.id))
        return True

    def _restart(self, container_id: str) -> None:
        with self.lock(container_id):
            self._restarts.pop(container_id, None)
            row = rows.get(self.db, container_id)
            if row is None or row.status != "restarting":
                return
            try:
                self._launch(row)
                self._set(container_id, restart_count=row.restart_count + 1)
            except ComposerError as e:
                log.error("restarting %s failed: %s", row.name, e)
                self._set(container_id, status="exited")

    def _cancel_restart(self, container_id: str) -> None:
        timer = self._restarts.pop(container_id, None)
        if timer is not None:
            timer.cancel()

    # -- stop, kill, pause ----------------------------------------------------------------------

    def stop(self, ref: str, *, timeout: float | None = None,
             signal: str | None = None) -> ContainerRow:
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            self._set(row.id, stopped_by_user=True)
            self._cancel_restart(row.id)
            if row.status == "restarting":
                self._set(row.id, status="exited")
            if row.status not in RUNNING:
                return self.find(row.id)
            spec = self.spec(row)
            runtime = self.runtime(row)
            grace = timeout if timeout is not None else (
                spec.stop_grace_period if spec.stop_grace_period is not None else DEFAULT_GRACE)
            sig = signal or bundle.effective_stop_signal(spec, self.image_config(row))
            runtime.kill(row.id, bundle.signal_number(sig))
            if row.status == "paused":
                runtime.resume(row.id)  # a frozen process cannot act on a signal
        if not self.wait_exit(row.id, grace):
            with self.lock(row.id):
                self.runtime(row).kill(row.id, signals.SIGKILL, all=True)
            self.wait_exit(row.id, 30)
        return self.find(row.id)

    def kill(self, ref: str, signal: str = "SIGKILL") -> None:
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            if row.status not in RUNNING:
                raise Conflict(f"Cannot kill container: {ref}: container {row.id} is not "
                               "running")
            number = bundle.signal_number(signal)
            spec = self.spec(row)
            stop_sig = bundle.signal_number(bundle.effective_stop_signal(
                spec, self.image_config(row)))
            if number in (signals.SIGKILL, stop_sig):
                # As Docker: a container the user killed is not restarted by its policy.
                self._set(row.id, stopped_by_user=True)
            self.runtime(row).kill(row.id, number, all=number == signals.SIGKILL)
            if row.status == "paused" and number == signals.SIGKILL:
                self.runtime(row).resume(row.id)

    def pause(self, ref: str) -> None:
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            if row.status != "running":
                raise Conflict(f"Container {row.id} is not running")
            self.runtime(row).pause(row.id)
            self._set(row.id, status="paused")

    def unpause(self, ref: str) -> None:
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            if row.status != "paused":
                raise Conflict(f"Container {row.id} is not paused")
            self.runtime(row).resume(row.id)
            self._set(row.id, status="running")

    def restart(self, ref: str, *, timeout: float | None = None) -> ContainerRow:
        row = self.stop(ref, timeout=timeout)
        return self.start(row.id)

    def _wait_until(self, done: Callable[[ContainerRow | None], bool], container_id: str,
                    timeout: float | None) -> tuple[bool, ContainerRow | None]:
        """Wait on the change notice until ``done(row)`` (the row is None once removed):
        (True, that row), or (False, the last row) when ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while True:
                row = rows.get(self.db, container_id)
                if done(row):
                    return True, row
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False, row
                self.changed.wait(timeout=0.5 if left is None else min(left, 0.5))

    def wait_exit(self, container_id: str, timeout: float | None) -> bool:
        """Wait until the container is not running (nor paused); False on timeout."""
        reached, _ = self._wait_until(lambda r: r is None or r.status not in RUNNING,
                                      container_id, timeout)
        return reached

    def wait(self, ref: str, *, condition: str = "not-running") -> int:
        """``docker wait``: its exit code once it is not running (``not-running``), after
        its next exit (``next-exit``) or once it is removed (``removed``)."""
        if ref in self._removed_exits:
            return self._removed_exits[ref]
        row = self.find(ref)

        def done(r: ContainerRow | None) -> bool:
            if r is None or condition == "removed":
                return r is None
            if condition == "next-exit":
                return r.status == "exited" and r.finished_at != row.finished_at
            return r.status in ("exited", "created", "dead")

        _, last = self._wait_until(done, row.id, None)
        if last is not None:
            return last.exit_code or 0
        return self._removed_exits.get(row.id, row.exit_code or 0)

    # -- remove ---------------------------------------------------------------------------------

    def remove(self, ref: str, *, force: bool = False, volumes: bool = False) -> str:
        """Remove it (``force``: even running); ``volumes`` removes its anonymous volumes
        too (``rm -v``; ``--rm`` always does), never a named one."""
        row = self.find(ref)
        with self.lock(row.id):
            row = self.find(row.id)
            if row.status in RUNNING:
                if not force:
                    raise Conflict(
                        f"cannot remove container \"/{row.name}\": container is running: stop "
                        "the container before removing or force remove")
                self._set(row.id, stopped_by_user=True)
                self.runtime(row).kill(row.id, signals.SIGKILL, all=True)
                if row.status == "paused":
                    self.runtime(row).resume(row.id)
        if row.status in RUNNING:
            self.wait_exit(row.id, 30)
        with self.lock(row.id):
            self._cancel_restart(row.id)
            self._destroy(self.find(row.id), volumes=volumes)
        return row.id

    def _destroy(self, row: ContainerRow, *, volumes: bool = False) -> None:
        """Everything of a stopped container: its runtime state, its row, then its files.

        The row goes before the files so that ``rm`` (and ``run --rm``) answers without
        waiting for an unmount and a tree walk; files whose row is gone are garbage that
        :meth:`adopt` collects if the engine dies before it removed them."""
        self.supervisor.unwatch(row.id)
        if self.health is not None:
            self.health.end(row.id)
        runtime = self.runtime(row)
        if runtime.knows(row.id):
            runtime.delete(row.id, force=True)
        if row.status != "exited":  # on_exit removed the cgroup of an exited one
            with contextlib.suppress(ComposerError):
                cgroups.remove(self.cgroup(row), self.cgroup_host)
        self._forget(row, volumes=volumes)
        self.supervisor.submit(lambda: self._remove_files(row.id))

    def _forget(self, row: ContainerRow, *, volumes: bool = False) -> None:
        """Drop the row (and what the engine kept of it); the files are the caller's. Its
        anonymous volumes go too with ``volumes`` or ``--rm`` (before the change is told, so
        that ``run --rm`` answers once they are gone)."""
        self.supervisor.unwatch(row.id)
        rows.delete(self.db, row.id)
        if volumes or row.spec.get("auto_remove"):
            from composer.engine.mounts import drop_anonymous

            try:
                drop_anonymous(self, row)
            except ComposerError as e:
                log.warning("container %s: removing its anonymous volumes: %s", row.name, e)
        try:
            self.networks.release(row.id)
        except ComposerError as e:
            log.warning("container %s: releasing its addresses: %s", row.name, e)
        self._delays.pop(row.id, None)
        with self._locks_guard:
            self._locks.pop(row.id, None)
        self._notify()

    def hold_files(self, container_id: str) -> None:
        with self._locks_guard:
            self._holds[container_id] = False

    def release_files(self, container_id: str) -> None:
        with self._locks_guard:
            pending = self._holds.pop(container_id, False)
        if pending:
            self._remove_files(container_id)

    def _remove_files(self, container_id: str) -> None:
        with self._locks_guard:
            if container_id in self._holds:
                self._holds[container_id] = True  # removed on release
                return
        cdir = self.layout.container_dir(container_id)
        self._release_mounts(container_id)
        with contextlib.suppress(FileNotFoundError):
            rootfs.remove(cdir)
        shutil.rmtree(self.files(container_id).directory, ignore_errors=True)

    def _release_mounts(self, container_id: str) -> None:
        """The host mounts of a run that ended: subpath binds, the files tmpfs."""
        from composer.engine.mounts import release_mounts

        try:
            release_mounts(self.layout.container_dir(container_id))
        except ComposerError as e:
            log.warning("container %s: %s", container_id[:12], e)

    # -- adoption -------------------------------------------------------------------------------

    def adopt(self) -> None:
        """At engine start: take over what runs, learn what ended, clean up after a reboot
        (see engine/adoption.py)."""
        from composer.engine.adoption import adopt

        adopt(self)

    # -- reading --------------------------------------------------------------------------------

    def list(self, *, all: bool = False) -> list[ContainerRow]:
        found = rows.all_rows(self.db)
        return found if all else [r for r in found if r.status in (*RUNNING, "restarting")]

    def logs(self, ref: str, *, follow: bool = False, since_ns: int | None = None,
             until_ns: int | None = None, tail: int | None = None) -> Iterator[Any]:
        row = self.find(ref)
        return self.log_lines(row.id, follow=follow, since_ns=since_ns, until_ns=until_ns,
                              tail=tail)

    def log_lines(self, container_id: str, *, follow: bool = False,
                  since_ns: int | None = None, until_ns: int | None = None,
                  tail: int | None = None) -> Iterator[Any]:
        """The log of a container by id, which may be removed meanwhile (see hold_files)."""
        from composer.engine.logstream import log_lines

        return log_lines(self, container_id, follow=follow, since_ns=since_ns,
                         until_ns=until_ns, tail=tail)


def _own_rlimits() -> dict[str, tuple[int, int]]:
    import resource

    out = {}
    for name in ("nofile", "nproc", "core", "memlock", "stack"):
        number = getattr(resource, f"RLIMIT_{name.upper()}")
        soft, hard = resource.getrlimit(number)
        out[name] = (soft, hard)
    return out


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, separators=(",", ":")))
    os.replace(tmp, path)


def _in_background(work: Callable[[], None]) -> Callable[[], None]:
    """Start ``work`` in a thread of its own; the function returned waits for it to end and
    raises what it raised."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="composer-wire", daemon=True)
    thread.start()

    def wait() -> None:
        thread.join()
        if failed:
            raise failed[0]

    return wait


def _done() -> None:
    """Nothing to wait for."""
