"""The OCI runtime (runc, crun, runsc, ...), invoked as a program.

:class:`OCIRuntime` is a thin adapter: one method per runtime verb, each running
``RUNTIME --root ROOT VERB ...`` and turning a failure into :class:`OCIRuntimeError` carrying the
runtime's own message. ``create`` is not here: conmon runs it (see ``monitor.py``), so that the
container's stdio belongs to conmon from the first instant.

Rules every verb keeps, because callers (the engine, a crashed engine's successor) do not check
first: killing a container that is already stopped or gone is success, and so is deleting one
that is gone.

:func:`find_runtime` picks the runtime. With no name, crun when it really works on this host
(probed once per process by running a trivial container: crun 1.8 refuses hybrid cgroup hosts
with "cgroups in hybrid mode not supported"), else runc, which works everywhere.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.errors import ComposerError

#: Directories searched after PATH: root's sbin directories are often missing from PATH in
#: services and CI sandboxes, and Debian puts runc in /usr/sbin.
_EXTRA_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_HOW_TO_INSTALL = {
    "runc": "install it with `apt install runc`",
    "crun": "install it with `apt install crun`",
    "runsc": "install gVisor (https://gvisor.dev/docs/user_guide/install/)",
}
#: Variables that make an OCI runtime or conmon act for a service manager; never passed on.
_SERVICE_VARIABLES = frozenset({"NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})
_TIMEOUT = 120.0  # seconds; a runtime verb taking longer is wedged (a D-state process, a dead fs)
_LOGRUS_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


class OCIRuntimeError(ComposerError):
    """The OCI runtime (or conmon) failed; the message includes what it said on stderr."""

    def __init__(self, message: str, *, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


def runtime_message(stderr: str) -> str:
    """What a runtime said, readable: runc logs logrus lines (``time=... level=error
    msg="..."``), of which the ``msg`` parts are the message; other runtimes print plain text."""
    found = [m.group(1).replace('\\"', '"').replace("\\\\", "\\")
             for m in _LOGRUS_MSG.finditer(stderr)]
    return "; ".join(found) if found else " ".join(stderr.split())


def runtime_env(**extra: str) -> dict[str, str]:
    """The environment for a runtime or conmon: ours, without service-manager variables (with
    NOTIFY_SOCKET set, runc would proxy sd_notify for the container), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARIABLES}
    path = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join([p for p in path if p] +
                                  [d for d in _EXTRA_DIRS if d not in path])
    env.update(extra)
    return env


@dataclass(frozen=True)
class OCIRuntime:
    """One OCI runtime binary and its state directory (``--root``), which composer owns: under
    ``/run/composer`` normally, under a test's own directory in tests."""

    name: str
    path: str
    root: str

    def command(self, *args: str) -> list[str]:
        """The argv for a runtime verb: ``[path, "--root", root, *args]``."""
        return [self.path, "--root", self.root, *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(self.command(*args), capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, env=runtime_env(),
                                  timeout=_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as e:
            raise OCIRuntimeError(f"{self.name} {' '.join(args)}: no answer in {_TIMEOUT:.0f}s"
                                  ) from e
        except OSError as e:
            raise OCIRuntimeError(f"{self.name} ({self.path}) cannot be run: {e}") from e

    def _check(self, result: subprocess.CompletedProcess[str], *args: str) -> str:
        if result.returncode != 0:
            said = runtime_message(result.stderr) or f"exit status {result.returncode}"
            raise OCIRuntimeError(f"{self.name} {' '.join(args)} failed: {said}",
                                  stderr=result.stderr, returncode=result.returncode)
        return result.stdout

    def _gone_or_stopped(self, cid: str) -> bool:
        try:
            state = self.state(cid)
        except OCIRuntimeError:
            return False
        return state is None or state.get("status") == "stopped"

    def start(self, cid: str) -> None:
        """Start a created container (its process runs from then on)."""
        if self.name == "runc" and _open_exec_fifo(Path(self.root) / cid / "exec.fifo"):
            return
        self._check(self._run("start", cid), "start", cid)

    def forget_stopped(self, cid: str) -> None:
        """Drop the state of a container whose init has exited, as ``delete`` would.

        For runc, deleting a stopped container is removing its state directory (its cgroup is
        the caller's to remove): done here, it saves starting the runtime once per exit. Other
        runtimes are asked to ``delete``."""
        if self.name != "runc":
            self.delete(cid, force=True)
            return
        state_dir = Path(self.root) / cid
        if not state_dir.is_dir():
            return
        if any(Path(f"/proc/{pid}").exists() for pid in _state_pids(state_dir)):
            self.delete(cid, force=True)  # still running after all: the runtime decides
            return
        shutil.rmtree(state_dir, ignore_errors=True)

    def kill(self, cid: str, signal: int | str, *, all: bool = False) -> None:
        """Send ``signal`` (a number, ``KILL`` or ``SIGKILL``) to the container's init, or to
        every process in it with ``all``. A container already stopped or gone is success."""
        args = ["kill", *(["--all"] if all else []), cid, str(signal)]
        result = self._run(*args)
        if result.returncode != 0 and not self._gone_or_stopped(cid):
            self._check(result, *args)

    def delete(self, cid: str, *, force: bool = False) -> None:
        """Delete the container's runtime state (``force`` kills a running one first). A
        container the runtime does not know is success."""
        args = ["delete", *(["--force"] if force else []), cid]
        result = self._run(*args)
        if result.returncode != 0 and self.state(cid) is not None:
            self._check(result, *args)

    def knows(self, cid: str) -> bool:
        """Whether the runtime has state for ``cid``, without running it (runc and crun keep a
        directory per container under their root): a cheap check before create and delete."""
        return (Path(self.root) / cid).exists()

    def state(self, cid: str) -> dict[str, Any] | None:
        """The runtime's state of the container (``status``: created, running, paused, stopped;
        ``pid``, ``bundle``, ``annotations``...), or None when the runtime does not know it."""
        result = self._run("state", cid)
        if result.returncode != 0:
            if not (Path(self.root) / cid).exists() or "does not exist" in result.stderr:
                return None
            self._check(result, "state", cid)
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def list(self) -> list[dict[str, Any]]:
        """Every container under this root, as ``state`` gives them (``id`` in each)."""
        out = self._check(self._run("list", "--format", "json"), "list")
        found = json.loads(out) if out.strip() else None
        return list(found or [])  # runc prints null when there is none

    def pause(self, cid: str) -> None:
        """Freeze every process of the container (the freezer cgroup)."""
        self._check(self._run("pause", cid), "pause", cid)

    def resume(self, cid: str) -> None:
        """Thaw a paused container."""
        self._check(self._run("resume", cid), "resume", cid)

    def ps(self, cid: str) -> builtins.list[int]:
        """The host pids of the container's processes."""
        out = self._check(self._run("ps", "--format", "json", cid), "ps", cid)
        pids = json.loads(out) if out.strip() else None
        return [int(p) for p in pids or []]

    def exec_command(self, cid: str, process_file: str, *, tty: bool = False,
                     console_socket: str | None = None, detach: bool = False,
                     pid_file: str | None = None) -> builtins.list[str]:
        """The argv of ``runtime exec --process FILE``; the caller spawns it with the stdio it
        wants. The process file is an OCI ``process`` object; runc takes ``terminal`` from it
        (``tty`` must agree with it), and a terminal needs ``console_socket`` when detached."""
        args = ["exec", "--process", process_file]
        if tty:
            args.append("--tty")
        if console_socket is not None:
            args += ["--console-socket", console_socket]
        if detach:
            args.append("--detach")
        if pid_file is not None:
            args += ["--pid-file", pid_file]
        return self.command(*args, cid)


def _open_exec_fifo(fifo: Path) -> bool:
    """What ``runc start`` does: read runc init's exec fifo, which lets it exec the process,
    then remove the fifo (runc reads a container with a fifo as "created"). False when there
    is no fifo or init never writes to it (then ``runc start`` runs, and reports why)."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        ready, _, _ = select.select([fd], [], [], 5)
        if not ready or not os.read(fd, 16):
            return False
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    return True


def _state_pids(state_dir: Path) -> list[int]:
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return []
    pid = state.get("init_process_pid")
    return [int(pid)] if isinstance(pid, int) and pid > 0 else []


def which(program: str) -> str | None:
    """``program`` found on PATH or in the usual sbin/bin directories (a path is checked as
    given); None when absent or not executable."""
    if os.sep in program:
        return program if os.access(program, os.X_OK) and os.path.isfile(program) else None
    search = os.pathsep.join([os.environ.get("PATH", ""), *_EXTRA_DIRS])
    return shutil.which(program, path=search)


def find_runtime(name: str | None, root: str | os.PathLike[str]) -> OCIRuntime:
    """The OCI runtime to use, with ``root`` as its state directory.

    ``name`` None: crun when it works on this host, else runc. A name (``runc``, ``crun``,
    ``runsc``, any program on PATH) or a path: that runtime, used as asked, or an
    :class:`OCIRuntimeError` saying what was looked for and how to install it.
    """
    if name is None:
        crun = which("crun")
        if crun is not None and probe_runtime(crun) is None:
            return OCIRuntime("crun", crun, os.fspath(root))
        runc = which("runc")
        if runc is None:
            why = (f"crun ({crun}) does not work here: {probe_runtime(crun)}; "
                   if crun is not None else "")
            raise OCIRuntimeError(f"no usable OCI runtime: {why}runc is not installed "
                                  f"({_HOW_TO_INSTALL['runc']})")
        return OCIRuntime("runc", runc, os.fspath(root))
    path = which(name)
    if path is None:
        where = "at that path" if os.sep in name else \
            f"on PATH nor in {', '.join(_EXTRA_DIRS)}"
        how = _HOW_TO_INSTALL.get(os.path.basename(name),
                                  "install it, or give the full path of the runtime")
        raise OCIRuntimeError(f"OCI runtime {name!r} not found {where}: {how}")
    return OCIRuntime(os.path.basename(name), path, os.fspath(root))


@functools.cache
def probe_runtime(path: str) -> str | None:
    """Run a trivial container (``true`` from the host's /usr, bind-mounted read-only, in its
    own namespaces and cgroup) with the runtime at ``path``; None when it ran and exited 0,
    else what went wrong. Cached: once per runtime per process (it takes tens of ms)."""
    cid = f"composer-probe-{os.getpid()}-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="composer-probe-") as tmp:
        bundle, state = Path(tmp, "bundle"), Path(tmp, "state")
        rootfs = bundle / "rootfs"
        (rootfs / "proc").mkdir(parents=True)  # runc closes inherited fds through /proc
        mounts: list[dict[str, Any]] = [{"destination": "/proc", "type": "proc",
                                         "source": "proc"}]
        for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64"):
            host = Path("/", top)
            if host.is_symlink():  # merged /usr: /bin -> usr/bin, kept as the same link
                (rootfs / top).symlink_to(os.readlink(host))
            elif host.is_dir():
                (rootfs / top).mkdir()
                mounts.append({"destination": f"/{top}", "type": "bind", "source": str(host),
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
        config = {
            "ociVersion": "1.0.2",
            "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["true"],
                        "env": ["PATH=/usr/bin:/bin"], "cwd": "/", "noNewPrivileges": True},
            "root": {"path": "rootfs", "readonly": True},
            "mounts": mounts,
            "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts")],
                      "cgroupsPath": f"/{cid}", "resources": {}},
        }
        (bundle / "config.json").write_text(json.dumps(config))
        runtime = OCIRuntime(os.path.basename(path), path, str(state))
        try:
            result = subprocess.run(runtime.command("run", "--bundle", str(bundle), cid),
                                    capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                    env=runtime_env(), timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return str(e)
        finally:
            with contextlib.suppress(OCIRuntimeError):  # nothing created, or said already
                runtime.delete(cid, force=True)
        if result.returncode != 0:
            return runtime_message(result.stderr) or f"exit status {result.returncode}"
        return None
