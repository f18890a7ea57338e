"""Supervising containers with conmon: one small C monitor per container, no Python process.

conmon (the monitor podman and CRI-O use) runs ``runtime create``, then double-forks and stays,
detached from whoever launched it, as the container's parent (a subreaper): it holds the
container's stdio, writes it to a k8s-file log with timestamps (``logs.py`` reads it), serves
attach and resize, and writes the exit code when the container ends. So the engine can be
killed and restarted without stopping or wedging a container: a new engine adopts it from these
files (:func:`conmon_pid`, :func:`exit_status`) and waits on a pidfd of the conmon process.

What conmon 2.1.6 does, verified here (runc 1.1, cgroup v1 hybrid host) or read in its source:

- Sync pipe (``_OCI_SYNCPIPE``: an fd number in its environment; ``--api-version 1``): one
  JSON line, ``{"data": PID}`` once created, or ``{"data": -1, "message": "<runtime
  stderr>"}``. A runtime failing silently gets no line, just EOF (source). ``_OCI_STARTPIPE``
  (unused) would make conmon wait for one write before forking, for a parent to set its cgroup.
- The first process writes the ``-P`` pidfile (the daemon's pid) and exits 0 at once; the
  daemon reports, and runs ``runtime create`` with pdeathsig KILL (source).
- Exit: ``PERSIST/exit`` and ``EXITDIR/<cid>`` get the code as text (atomically, by rename;
  128+N after signal N), then conmon exits.
- OOM (v1, hybrid included): conmon listens on ``memory.oom_control`` (``cgroup.event_control``)
  and creates ``PERSIST/oom`` and ``./oom`` (so it runs in ``directory``) before the exit file
  (v2: ``memory.events``). Docker's meaning: an OOM kill in the container's cgroup, even if
  the main process survived. On v1 the event can lose the race with the exit (seen once in
  ~100 runs under CPU load), so :func:`launch` records the memory cgroup and
  :func:`exit_status` also reads its ``oom_kill`` counter while it exists.
- Attach: a SOCK_SEQPACKET socket ``attach`` in the bundle directory, reached through conmon's
  link ``SOCKET_DIR/<cid>`` to the bundle. Each packet from conmon is one stream byte
  (:data:`ATTACH_STDOUT` 2, :data:`ATTACH_STDERR` 3; a terminal's output is all 2), then up to
  8192 bytes; what a client sends goes to the container's stdin (``-i``) or pty (``-t``). A
  client's ``shutdown(SHUT_WR)`` or close closes that stdin unless ``--leave-stdin-open``.
- ``ctl`` fifo in the bundle directory, lines ``TYPE A B``: ``1 ROWS COLS`` resizes the pty;
  ``2 0 0`` reopens the log, truncating it (source).
- ``--log-size-max``: before a record would take the file past it, conmon opens an empty
  ``LOG.tmp``, renames it over the log and writes on there: a new inode, the old one unlinked
  (``logs.LogRotation`` keeps it). A record alone bigger than the limit still gets a file.
- It leaves the ``SOCKET_DIR/<cid>`` link and the ``ctl``/``winsz`` fifos behind when the
  container ends (the ``attach`` socket goes); launching again replaces them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from composer.runtime.oci import OCIRuntime, OCIRuntimeError, runtime_env, runtime_message, which

ATTACH_STDOUT = 2
ATTACH_STDERR = 3
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path) on Linux
_MEMORY_CGROUP = "memory.cgroup"  # in ``directory``: the container's memory cgroup directory
_BUNDLE_FILES = ("attach", "ctl", "winsz")  # what conmon makes in the bundle directory


@dataclass(frozen=True)
class MonitorFiles:
    """Where one container's conmon keeps its files: ``directory`` (for example
    ``/run/composer/containers/<id>``), whose name is the container id. The log may live
    elsewhere (under the state root, not /run): give ``log_file``, else it is
    ``directory/ctr.log``."""

    directory: Path
    log_file: Path | None = None

    @property
    def cid(self) -> str:
        return self.directory.name

    @property
    def pidfile(self) -> Path:
        """The container's init pid on the host (written by the runtime)."""
        return self.directory / "pidfile"

    @property
    def conmon_pidfile(self) -> Path:
        return self.directory / "conmon.pid"

    @property
    def exit_dir(self) -> Path:
        return self.directory / "exits"

    @property
    def persist_dir(self) -> Path:
        return self.directory / "persist"

    @property
    def log_path(self) -> Path:
        return self.log_file if self.log_file is not None else self.directory / "ctr.log"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sockets"

    @property
    def socket_link(self) -> Path:
        """conmon's link ``socket_dir/<cid>`` to the bundle directory (conmon shortens a link
        path of exactly 107 characters by one, so that the socket path can be bound)."""
        link = str(self.socket_dir / self.cid)
        return Path(link[:_SUN_PATH_MAX - 2] if len(link) == _SUN_PATH_MAX - 1 else link)

    @property
    def attach_socket(self) -> Path:
        return self.socket_link / "attach"

    @property
    def ctl_file(self) -> Path:
        return self.socket_link / "ctl"

    @property
    def oom_file(self) -> Path:
        return self.persist_dir / "oom"

    @property
    def exit_file(self) -> Path:
        return self.persist_dir / "exit"


@dataclass(frozen=True)
class Launched:
    """A created container: its conmon (not our child) and its init process on the host."""

    conmon_pid: int
    pid: int


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended: ``code`` is 128+N when killed by signal N (as Docker);
    ``finished_at`` is when conmon wrote it (seconds since the epoch)."""

    code: int
    oom_killed: bool
    finished_at: float


def find_conmon() -> str:
    path = which("conmon") or which("/usr/libexec/podman/conmon")
    if path is None:
        raise OCIRuntimeError("conmon, the container monitor, is not installed: "
                              "install it with `apt install conmon`")
    return path


def conmon_command(conmon: str, runtime: OCIRuntime, cid: str, bundle: Path,
                   files: MonitorFiles, *, log_path: Path, name: str | None = None,
                   terminal: bool = False, stdin: bool = False, stdin_once: bool = False,
                   log_size_max: int | None = None) -> list[str]:
    """conmon's argv for one container (pure: what :func:`launch` runs)."""
    if ":" in str(log_path):  # conmon splits --log-path DRIVER:PATH at every colon
        raise ValueError(f"a log path cannot contain ':': {log_path}")
    argv = [conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", name or cid,
            "-r", runtime.path, "-b", str(bundle),
            "-p", str(files.pidfile), "-P", str(files.conmon_pidfile),
            "--exit-dir", str(files.exit_dir), "-0", str(files.persist_dir),
            "-l", f"k8s-file:{log_path}", "--socket-dir-path", str(files.socket_dir),
            "--runtime-arg", f"--root={runtime.root}"]
    if terminal:
        argv.append("-t")
    if stdin:
        argv.append("-i")
        if not stdin_once:
            argv.append("--leave-stdin-open")
    if log_size_max is not None and log_size_max > 0:
        argv += ["--log-size-max", str(log_size_max)]
    return argv


def launch(runtime: OCIRuntime, cid: str, bundle: Path, files: MonitorFiles, *,
           log_path: Path | None = None, name: str | None = None, terminal: bool = False,
           stdin: bool = False, stdin_once: bool = False, log_size_max: int | None = None,
           timeout: float = 60.0) -> Launched:
    """Start conmon for ``cid``, which creates the container from ``bundle``; return once it
    is created (``runtime.start`` runs it). ``log_path`` defaults to ``files.log_path``.

    ``terminal``: conmon gives runc a console socket, receives the pty and serves it on the
    attach socket (the bundle's ``process.terminal`` must be true). ``stdin``: the container
    gets a stdin pipe fed from attach clients; ``stdin_once`` closes it when the first client
    detaches (Docker's StdinOnce, ``run -i``), else it stays open (``stdin_open: true``).

    A failed create raises :class:`OCIRuntimeError` with the runtime's message and leaves
    nothing behind: conmon is gone and the runtime's state deleted. A container the runtime
    already knows, or one with a live conmon, is refused untouched.
    """
    if cid != files.cid:
        raise ValueError(f"monitor directory {files.directory} is not named after {cid}")
    if conmon_pid(files) is not None or runtime.knows(cid):
        raise OCIRuntimeError(f"container {cid} already exists: delete it first")
    log = log_path if log_path is not None else files.log_path
    argv = conmon_command(find_conmon(), runtime, cid, bundle, files, log_path=log, name=name,
                          terminal=terminal, stdin=stdin, stdin_once=stdin_once,
                          log_size_max=log_size_max)
    _prepare(files, log)
    deadline = time.monotonic() + timeout
    read_fd, write_fd = os.pipe()
    try:
        try:
            process = subprocess.Popen(argv, cwd=files.directory, pass_fds=(write_fd,),
                                       env=runtime_env(_OCI_SYNCPIPE=str(write_fd)),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE)
        finally:
            os.close(write_fd)  # conmon holds the only writer: EOF when it is gone
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise OCIRuntimeError(f"conmon for {cid} did not detach in {timeout:.0f}s") from None
        if process.returncode != 0:
            said = " ".join((err + out).decode(errors="replace").split())
            raise OCIRuntimeError(f"conmon for {cid} failed (exit status "
                                  f"{process.returncode}): {said}", stderr=said)
        report = _read_sync(read_fd, deadline, cid)
        pid = int(report.get("data", -1))
        if pid <= 0:
            message = str(report.get("message", ""))
            raise OCIRuntimeError(f"{runtime.name} create {cid} failed: "
                                  f"{runtime_message(message) or 'no message'}", stderr=message)
        _record_memory_cgroup(files, pid)
        return Launched(conmon_pid=int(files.conmon_pidfile.read_text()), pid=pid)
    except BaseException:
        _undo(runtime, cid, bundle, files, log)
        raise
    finally:
        os.close(read_fd)


def _run_files(files: MonitorFiles) -> tuple[Path, ...]:
    """The files one run of conmon writes in ``directory``."""
    return (files.exit_file, files.oom_file, files.exit_dir / files.cid, files.directory / "oom",
            files.pidfile, files.conmon_pidfile, files.directory / _MEMORY_CGROUP)


def _prepare(files: MonitorFiles, log: Path) -> None:
    for d in (files.directory, files.exit_dir, files.persist_dir, files.socket_dir, log.parent):
        d.mkdir(parents=True, exist_ok=True)
    for stale in _run_files(files):  # a previous run's files would read as this run's exit
        stale.unlink(missing_ok=True)


def _read_sync(fd: int, deadline: float, cid: str) -> dict[str, Any]:
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise OCIRuntimeError(f"conmon did not report whether {cid} was created")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    if not data.strip():
        raise OCIRuntimeError(f"conmon exited before {cid} was created (the runtime failed "
                              "without a message)")
    try:
        report: dict[str, Any] = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        raise OCIRuntimeError(f"conmon's report on {cid} is not JSON: {data!r}") from None
    return report


def _undo(runtime: OCIRuntime, cid: str, bundle: Path, files: MonitorFiles, log: Path) -> None:
    """Remove what a failed launch left: conmon (it kills `runtime create` by pdeathsig),
    the runtime's state, conmon's files."""
    pid = conmon_pid(files)
    if pid is not None:
        pidfd = open_pidfd(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if pidfd is not None:
            select.select([pidfd], [], [], 10)
            os.close(pidfd)
    with contextlib.suppress(OCIRuntimeError):
        runtime.delete(cid, force=True)
    for path in (*_run_files(files), files.socket_link, *(bundle / n for n in _BUNDLE_FILES)):
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        if log.stat().st_size == 0:
            log.unlink()
    for d in (files.exit_dir, files.persist_dir, files.socket_dir, files.directory):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty: the caller's own files stay


def _record_memory_cgroup(files: MonitorFiles, pid: int) -> None:
    unified = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return
    for entry in lines:
        _, controllers, path = entry.split(":", 2)
        if unified and controllers == "":
            found = Path("/sys/fs/cgroup", path.lstrip("/"))
        elif not unified and "memory" in controllers.split(","):
            found = Path("/sys/fs/cgroup/memory", path.lstrip("/"))
        else:
            continue
        (files.directory / _MEMORY_CGROUP).write_text(str(found))
        return


def _oom_counted(files: MonitorFiles) -> bool:
    """Whether the container's memory cgroup counted an OOM kill (v1 ``memory.oom_control``,
    v2 ``memory.events``); False once the cgroup is gone."""
    try:
        cgroup = Path((files.directory / _MEMORY_CGROUP).read_text())
        for name in ("memory.oom_control", "memory.events"):
            with contextlib.suppress(FileNotFoundError):
                for entry in (cgroup / name).read_text().splitlines():
                    key, _, value = entry.partition(" ")
                    if key == "oom_kill" and int(value) > 0:
                        return True
    except (OSError, ValueError):
        pass
    return False


def exit_status(files: MonitorFiles) -> ExitStatus | None:
    """How the container ended, from conmon's exit files; None while it runs (and when conmon
    died before writing them: then :func:`conmon_pid` is None too). An OOM kill conmon missed
    but the cgroup counted is recorded in ``oom_file`` as conmon would have."""
    for path in (files.exit_file, files.exit_dir / files.cid):
        try:
            text = path.read_text().strip()
            written = path.stat().st_mtime
        except FileNotFoundError:
            continue
        try:
            code = int(text)
        except ValueError:
            continue
        oom = files.oom_file.exists() or (files.directory / "oom").exists()
        if not oom and _oom_counted(files):
            oom = True
            with contextlib.suppress(OSError):
                files.oom_file.touch()
        return ExitStatus(code=code, oom_killed=oom, finished_at=written)
    return None


def _is_conmon_for(pid: int, cid: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not argv or os.path.basename(argv[0]) != b"conmon":
        return False
    return any(a == b"-c" and b == cid.encode() for a, b in itertools.pairwise(argv))


def conmon_pid(files: MonitorFiles) -> int | None:
    """The pid of this container's conmon, only if that process is alive and is conmon for
    this container (a pidfile can outlive its process, and pids are reused). An exiting conmon
    reads as gone slightly before it has closed its files (its cmdline goes first)."""
    try:
        pid = int(files.conmon_pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_conmon_for(pid, files.cid) else None


def open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once the process has exited: at once for a zombie), or
    None when it is gone. conmon is not the engine's child (it double-forks), so the engine
    waits on these instead of polling or waitpid."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


def conmon_pidfd(files: MonitorFiles) -> int | None:
    """A pidfd of this container's conmon, checked again after opening (the pidfd pins the
    process, so a pid reused between the check and the open is caught); None when gone."""
    pid = conmon_pid(files)
    fd = open_pidfd(pid) if pid is not None else None
    if fd is not None and conmon_pid(files) != pid:
        os.close(fd)
        return None
    return fd


def attach(files: MonitorFiles) -> socket.socket:
    """A SOCK_SEQPACKET connection to the container's conmon. Each packet received is one
    stream byte (:data:`ATTACH_STDOUT`, :data:`ATTACH_STDERR`) then output (see
    :func:`split_packet`); an empty read means conmon closed it (the container ended). What is
    sent goes to the container's stdin; ``shutdown(SHUT_WR)`` closes that stdin (unless it
    was launched to stay open). Output from before the connection is only in the log."""
    try:
        directory = os.open(files.socket_link, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise OCIRuntimeError(f"cannot attach to {files.cid}: no conmon socket ({e})") from e
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        # Through the directory's fd: the socket's real path may exceed sun_path's 108 bytes.
        sock.connect(f"/proc/self/fd/{directory}/attach")
    except OSError as e:
        sock.close()
        raise OCIRuntimeError(f"cannot attach to {files.cid}: {e} (is it running?)") from e
    finally:
        os.close(directory)
    return sock


def split_packet(packet: bytes) -> tuple[Literal["stdout", "stderr"], bytes]:
    """One packet from the attach socket as (stream, data)."""
    if not packet or packet[0] not in (ATTACH_STDOUT, ATTACH_STDERR):
        raise ValueError(f"not an attach packet from conmon: {packet[:8]!r}")
    return ("stdout" if packet[0] == ATTACH_STDOUT else "stderr"), packet[1:]


def resize(files: MonitorFiles, rows: int, cols: int) -> None:
    """Set the size of the container's pty (``terminal=True``) through conmon's ctl fifo."""
    if rows <= 0 or cols <= 0:
        raise ValueError(f"a terminal size is positive: {rows}x{cols}")
    try:
        fd = os.open(files.ctl_file, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:  # ENOENT: never launched; ENXIO: no reader, conmon is gone
        raise OCIRuntimeError(f"cannot resize {files.cid}: it is not running ({e})") from e
    try:
        os.write(fd, f"1 {rows} {cols}\n".encode())
    finally:
        os.close(fd)
