"""The OCI runtime adapter, conmon supervision and conmon's logs, with real runc and conmon.

Each test gets its own runtime root, monitor directories and bundles under tmp_path, container
ids with a random prefix, and cgroups under ``/composer-test-<random>``. The ``lab`` fixture
removes everything in the end (``runc delete --force``, conmon killed by its recorded pid, the
cgroup directories) and asserts that no process naming one of its ids and no cgroup is left.
"""

from __future__ import annotations

import fcntl
import functools
import io
import json
import os
import queue
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from composer.runtime import logs, monitor
from composer.runtime.oci import OCIRuntime, OCIRuntimeError, find_runtime, probe_runtime, which
from tests.images import busybox_layer

RUNC = "/usr/sbin/runc"
CGROUPS = Path("/sys/fs/cgroup")
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.root, pytest.mark.runc,
    pytest.mark.skipif(os.geteuid() != 0, reason="starts containers: needs root"),
    pytest.mark.skipif(not os.access(RUNC, os.X_OK), reason="needs runc (apt install runc)"),
    pytest.mark.skipif(which("conmon") is None, reason="needs conmon (apt install conmon)"),
]
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID"]


def oci_config(args: list[str], cgroups_path: str, *, terminal: bool = False,
               memory: int | None = None) -> dict[str, Any]:
    """A minimal config.json, as `runc spec` writes it (not rootless), with a new netns."""
    resources = {"memory": {"limit": memory, "swap": memory}} if memory else {}
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
                    "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/", "noNewPrivileges": True,
                    "capabilities": {k: CAPS for k in ("bounding", "effective", "permitted")}},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
                  "cgroupsPath": cgroups_path, "resources": resources,
                  "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                  "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]},
    }


def processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tag = secrets.token_hex(4)
        self.prefix = f"ctest{tag}"
        self.cgroup_parent = f"composer-test-{tag}"
        self.runtime = OCIRuntime("runc", RUNC, str(tmp / "runc"))
        self.cids: list[str] = []
        self.conmons: list[tuple[int, str]] = []

    def cid(self, name: str) -> str:
        cid = f"{self.prefix}-{name}"
        self.cids.append(cid)
        return cid

    def bundle(self, cid: str, args: list[str], *, terminal: bool = False,
               memory: int | None = None) -> Path:
        bundle = self.tmp / "bundles" / cid
        (bundle / "rootfs").mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as tar:
            tar.extractall(bundle / "rootfs", filter="fully_trusted")
        config = oci_config(args, f"/{self.cgroup_parent}/{cid}", terminal=terminal,
                            memory=memory)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def files(self, cid: str) -> monitor.MonitorFiles:
        return monitor.MonitorFiles(self.tmp / "run" / cid, log_file=self.tmp / "logs" / cid)

    def launch(self, name: str, args: list[str], *, terminal: bool = False,
               memory: int | None = None, **options: Any
               ) -> tuple[str, monitor.MonitorFiles, monitor.Launched]:
        cid = self.cid(name)
        bundle = self.bundle(cid, args, terminal=terminal, memory=memory)
        files = self.files(cid)
        launched = monitor.launch(self.runtime, cid, bundle, files, terminal=terminal,
                                  **options)
        self.conmons.append((launched.conmon_pid, cid))
        return cid, files, launched

    def wait_exit(self, files: monitor.MonitorFiles, timeout: float = 30) -> monitor.ExitStatus:
        """The exit status, once conmon has exited (waited on through a pidfd of the pid
        recorded at launch: conmon_pid() already says None while an exiting conmon still
        holds its files)."""
        for pid, cid in self.conmons:
            pidfd = monitor.open_pidfd(pid) if cid == files.cid else None
            if pidfd is not None:
                try:
                    assert select.select([pidfd], [], [], timeout)[0], "conmon did not exit"
                finally:
                    os.close(pidfd)
        status = monitor.exit_status(files)
        assert status is not None, "conmon exited without an exit file"
        return status

    def cleanup(self) -> None:
        for cid in self.cids:
            subprocess.run([RUNC, "--root", self.runtime.root, "delete", "--force", cid],
                           capture_output=True, check=False)
        for pid, cid in self.conmons:
            if pid in processes_naming(cid):  # by the pid we recorded, if still that conmon
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not processes_naming(self.prefix), "our processes to end")
        left = []
        for controller in CGROUPS.iterdir():
            parent = controller / self.cgroup_parent
            if not parent.is_dir():
                continue
            for child in parent.iterdir():
                if child.is_dir():
                    left.append(child)
                    wait_until(functools.partial(_rmdir, child), f"{child} to be removable")
            parent.rmdir()
        assert not left, f"cgroups left behind: {left}"
        assert not processes_naming(self.prefix)
        assert not list(CGROUPS.glob(f"*/{self.cgroup_parent}"))


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except OSError:
        return False
    return True


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.cleanup()


def _hybrid() -> bool:
    unified = CGROUPS / "unified" / "cgroup.controllers"
    return unified.exists() and bool(unified.read_text().split())


# -- the runtime -----------------------------------------------------------------------------


def test_find_runtime_picks_a_working_runtime(tmp_path: Path) -> None:
    chosen = find_runtime(None, tmp_path / "state")
    assert chosen.root == str(tmp_path / "state")
    assert probe_runtime(RUNC) is None  # it really ran a container
    crun = which("crun")
    if crun is None:
        assert chosen.name == "runc"
        return
    said = probe_runtime(crun)
    assert chosen.name == ("crun" if said is None else "runc")
    if _hybrid():  # crun 1.8 refuses hybrid hosts with controllers on the v2 hierarchy
        assert chosen.name == "runc"
        assert said is not None and "hybrid" in said
    assert not list(CGROUPS.glob("*/composer-probe-*"))


def test_find_runtime_by_name_and_unknown_names(tmp_path: Path) -> None:
    assert find_runtime("runc", tmp_path).path == RUNC
    assert find_runtime(RUNC, tmp_path) == OCIRuntime("runc", RUNC, str(tmp_path))
    with pytest.raises(OCIRuntimeError, match=r"'no-such-runtime' not found on PATH.*install"):
        find_runtime("no-such-runtime", tmp_path)
    with pytest.raises(OCIRuntimeError, match="not found at that path"):
        find_runtime("/nonexistent/runc", tmp_path)
    if which("runsc") is None:
        with pytest.raises(OCIRuntimeError, match="gvisor"):
            find_runtime("runsc", tmp_path)


def test_conmon_command(tmp_path: Path) -> None:
    runtime = OCIRuntime("runc", RUNC, "/run/x/runc")
    files = monitor.MonitorFiles(tmp_path / "c1")
    argv = monitor.conmon_command("/usr/bin/conmon", runtime, "c1", tmp_path / "b", files,
                                  log_path=tmp_path / "log", name="web-1", stdin=True,
                                  log_size_max=1000)
    assert argv[:3] == ["/usr/bin/conmon", "--api-version", "1"]
    assert argv[argv.index("-c") + 1] == argv[argv.index("-u") + 1] == "c1"
    assert argv[argv.index("-n") + 1] == "web-1"
    assert f"k8s-file:{tmp_path / 'log'}" in argv
    assert "--runtime-arg" in argv and "--root=/run/x/runc" in argv
    assert argv[-4:] == ["-i", "--leave-stdin-open", "--log-size-max", "1000"]
    with pytest.raises(ValueError, match="':'"):
        monitor.conmon_command("conmon", runtime, "c1", tmp_path, files,
                               log_path=Path("/a:b/log"))


def test_runtime_verbs_and_kill(lab: Lab) -> None:
    runtime = lab.runtime
    cid, files, launched = lab.launch("verbs", ["sleep", "1000"])
    state = runtime.state(cid)
    assert state is not None and state["status"] == "created" and state["pid"] == launched.pid
    assert int(files.pidfile.read_text()) == launched.pid
    runtime.start(cid)
    assert runtime.state(cid)["status"] == "running"  # type: ignore[index]
    assert [c["id"] for c in runtime.list()] == [cid]
    assert launched.pid in runtime.ps(cid)
    runtime.pause(cid)
    assert runtime.state(cid)["status"] == "paused"  # type: ignore[index]
    runtime.resume(cid)
    process = lab.tmp / "process.json"
    process.write_text(json.dumps({"terminal": False, "user": {"uid": 0, "gid": 0},
                                   "args": ["echo", "from-exec"], "env": ["PATH=/bin"],
                                   "cwd": "/"}))
    done = subprocess.run(runtime.exec_command(cid, str(process)), capture_output=True,
                          check=True, timeout=30)
    assert done.stdout == b"from-exec\n"
    assert monitor.exit_status(files) is None

    pidfd = monitor.conmon_pidfd(files)
    assert pidfd is not None
    try:
        assert not select.select([pidfd], [], [], 0)[0]  # running: not readable
        runtime.kill(cid, signal.SIGKILL)
        assert select.select([pidfd], [], [], 30)[0]  # conmon exits after the container
    finally:
        os.close(pidfd)
    status = monitor.exit_status(files)
    assert status is not None and status.code == 128 + 9 and not status.oom_killed
    assert status.finished_at <= time.time()
    assert monitor.conmon_pid(files) is None
    assert monitor.conmon_pidfd(files) is None
    assert runtime.state(cid)["status"] == "stopped"  # type: ignore[index]
    runtime.kill(cid, "KILL")  # stopped: not an error
    runtime.kill(cid, 15, all=True)
    runtime.delete(cid)
    runtime.delete(cid)  # gone: not an error
    runtime.kill(cid, "KILL")
    assert runtime.state(cid) is None
    assert runtime.list() == []
    with pytest.raises(OCIRuntimeError, match=r"runc start .* failed: container does not exist"):
        runtime.start(cid)


@pytest.mark.parametrize(("args", "code"), [(["true"], 0), (["sh", "-c", "exit 7"], 7)])
def test_exit_codes(lab: Lab, args: list[str], code: int) -> None:
    cid, files, _ = lab.launch(f"exit{code}", args)
    lab.runtime.start(cid)
    status = lab.wait_exit(files)
    assert (status.code, status.oom_killed) == (code, False)
    assert (files.exit_dir / cid).read_text() == str(code)


def test_failed_create_leaves_nothing(lab: Lab) -> None:
    cid = lab.cid("fail")
    bundle = lab.bundle(cid, ["/nonexistent-program"])
    files = lab.files(cid)
    with pytest.raises(OCIRuntimeError, match=r"runc create .* failed: .*nonexistent-program"):
        monitor.launch(lab.runtime, cid, bundle, files)
    assert lab.runtime.state(cid) is None
    assert not processes_naming(lab.prefix)
    assert not files.directory.exists() and not files.log_path.exists()
    assert sorted(p.name for p in bundle.iterdir()) == ["config.json", "rootfs"]
    assert not list(CGROUPS.glob(f"*/{lab.cgroup_parent}/{cid}"))


def test_launch_refuses_an_existing_container(lab: Lab) -> None:
    cid, files, _ = lab.launch("twice", ["sleep", "1000"])
    with pytest.raises(OCIRuntimeError, match="already exists"):
        monitor.launch(lab.runtime, cid, lab.tmp / "bundles" / cid, files)
    assert monitor.conmon_pid(files) is not None  # the first one is untouched
    with pytest.raises(ValueError, match="not named after"):
        monitor.launch(lab.runtime, "other", lab.tmp, files)


def test_oom_kill(lab: Lab) -> None:
    cid, files, _ = lab.launch("oom", ["tail", "/dev/zero"], memory=8 << 20)
    lab.runtime.start(cid)
    status = lab.wait_exit(files)
    assert status.code == 137 and status.oom_killed
    assert files.oom_file.exists()
    # conmon's v1 OOM event can lose the race with the exit: the cgroup's counter still says
    files.oom_file.unlink()
    (files.directory / "oom").unlink()
    assert monitor.exit_status(files) == status
    assert files.oom_file.exists()  # recorded as conmon would have


# -- logs --------------------------------------------------------------------------------------

SCRIPT = ("echo out1; echo err1 >&2; printf abc; sleep 0.1; echo def; "
          "head -c 20000 /dev/zero | tr '\\0' x; echo; echo last; printf tail")


def test_logs_from_conmon(lab: Lab) -> None:
    cid, files, _ = lab.launch("logs", ["sh", "-c", SCRIPT])
    lab.runtime.start(cid)
    assert lab.wait_exit(files).code == 0
    raw = files.log_path.read_bytes().split(b"\n")
    assert raw[-1] == b""
    records = [logs.parse(r) for r in raw[:-1]]
    assert all(r is not None for r in records)
    # a line over conmon's 8 KiB buffer comes in pieces
    assert sum(1 for r in records if r and r.partial and r.data.startswith(b"x")) >= 2
    lines = logs.read(files.log_path)
    assert [(x.stream, x.data, x.partial) for x in lines] == [
        ("stdout", b"out1", False), ("stderr", b"err1", False), ("stdout", b"abcdef", False),
        ("stdout", b"x" * 20000, False), ("stdout", b"last", False),
        ("stdout", b"tail", True)]
    times = [x.time_ns for x in lines]
    assert times == sorted(times)
    assert abs(times[0] / 1e9 - time.time()) < 600  # stamped now, in the host's own zone
    t = times[2]
    assert logs.read(files.log_path, since_ns=t) == [x for x in lines if x.time_ns >= t]
    assert logs.read(files.log_path, until_ns=t) == [x for x in lines if x.time_ns <= t]
    assert logs.read(files.log_path, tail=2) == lines[-2:]
    assert logs.read(files.log_path, since_ns=t, tail=1) == lines[-1:]
    assert logs.read(files.log_path, tail=0) == []
    assert logs.format_time(times[0]).endswith("Z")


def _collect(stream: Iterator[logs.LogLine], into: queue.Queue[Any]) -> threading.Thread:
    def run() -> None:
        try:
            for line in stream:
                into.put(line)
        except BaseException as e:  # reported by the test, not lost in the thread
            into.put(e)
        into.put(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _next(lines: queue.Queue[Any]) -> logs.LogLine | None:
    item = lines.get(timeout=20)
    if isinstance(item, BaseException):
        raise item
    return item  # type: ignore[no-any-return]


def test_follow_sees_lines_as_written(lab: Lab) -> None:
    cid, files, _ = lab.launch("follow", ["sh", "-c", "while read x; do echo got-$x; done"],
                               stdin=True, stdin_once=True)
    deadline = time.monotonic() + 60
    following = logs.follow(files.log_path, poll=0.01, stop=lambda: (
        monitor.exit_status(files) is not None or time.monotonic() > deadline))
    sock = monitor.attach(files)
    lines: queue.Queue[Any] = queue.Queue()
    with sock:
        lab.runtime.start(cid)
        thread = _collect(following, lines)
        for word in ("a", "b", "c"):
            sock.send(word.encode() + b"\n")
            line = _next(lines)  # arrives before the next word is even sent
            assert line is not None and line.data == f"got-{word}".encode()
        sock.shutdown(socket.SHUT_WR)  # closes the container's stdin: its loop ends
        assert _next(lines) is None  # follow ended once the container had exited
    thread.join(10)
    assert lab.wait_exit(files).code == 0


def test_rotation_keeps_generations(lab: Lab) -> None:
    cid, files, _ = lab.launch("rotate", ["sh", "-c", "while read x; do echo $x; done"],
                               stdin=True, stdin_once=True, log_size_max=300)
    path = files.log_path
    rotation = logs.LogRotation(path, max_files=3)
    deadline = time.monotonic() + 60
    following = logs.follow(path, poll=0.01, stop=lambda: (
        monitor.exit_status(files) is not None or time.monotonic() > deadline))
    sent = [f"line-{i:02d}" for i in range(30)]
    inodes = set()
    lines: queue.Queue[Any] = queue.Queue()
    with monitor.attach(files) as sock:
        lab.runtime.start(cid)
        rotation.check()
        thread = _collect(following, lines)
        for text in sent:
            sock.send(text.encode() + b"\n")
            line = _next(lines)
            assert line is not None and line.data == text.encode()
            inodes.add(path.stat().st_ino)
            rotation.check()
        sock.shutdown(socket.SHUT_WR)
        assert _next(lines) is None
    thread.join(10)
    lab.wait_exit(files)
    rotation.check()
    assert len(inodes) > 3  # conmon rotated more often than generations are kept
    kept = logs.generations(path)
    assert kept == [rotation.generation(2), rotation.generation(1), path]
    assert not rotation.generation(3).exists()
    assert all(p.stat().st_size <= 300 for p in kept)
    got = [x.data.decode() for x in logs.read(path)]
    assert got == sent[-len(got):] and len(got) >= 8  # the newest, in order; older dropped
    assert got[0] != sent[0]


# -- supervision -------------------------------------------------------------------------------

LAUNCHER = """
import json, sys
from pathlib import Path
from composer.runtime import monitor
from composer.runtime.oci import OCIRuntime
runtime = OCIRuntime("runc", sys.argv[1], sys.argv[2])
cid, bundle, directory, log = sys.argv[3:7]
files = monitor.MonitorFiles(Path(directory), log_file=Path(log))
launched = monitor.launch(runtime, cid, Path(bundle), files)
runtime.start(cid)
print(json.dumps({"conmon": launched.conmon_pid, "pid": launched.pid}))
"""


def test_conmon_survives_its_parent(lab: Lab) -> None:
    cid = lab.cid("orphan")
    bundle = lab.bundle(cid, ["sh", "-c", "i=0; while true; do echo tick-$i; "
                                          "i=$((i+1)); sleep 0.05; done"])
    files = lab.files(cid)
    child = subprocess.Popen([sys.executable, "-c", LAUNCHER, RUNC, lab.runtime.root, cid,
                              str(bundle), str(files.directory), str(files.log_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    launched = json.loads(out)
    lab.conmons.append((launched["conmon"], cid))
    assert monitor.conmon_pid(files) == launched["conmon"]
    stat = Path(f"/proc/{launched['conmon']}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) != child.pid  # reparented, detached
    before = len(logs.read(files.log_path))
    wait_until(lambda: len(logs.read(files.log_path)) >= before + 3, "more ticks")
    lab.runtime.kill(cid, "KILL")
    assert lab.wait_exit(files).code == 137


def test_attach_stdin(lab: Lab) -> None:
    cid, files, _ = lab.launch("attach", ["sh"], stdin=True)
    with monitor.attach(files) as sock:
        lab.runtime.start(cid)
        sock.settimeout(20)
        sock.send(b"echo hi\n")
        assert monitor.split_packet(sock.recv(65536)) == ("stdout", b"hi\n")
        sock.send(b"echo oops >&2\n")
        assert monitor.split_packet(sock.recv(65536)) == ("stderr", b"oops\n")
    # stdin stays open after a client leaves (--leave-stdin-open): the next one is heard
    assert monitor.exit_status(files) is None
    with monitor.attach(files) as again:
        again.settimeout(20)
        again.send(b"exit 3\n")
        assert again.recv(65536) == b""  # conmon closes it when the container ends
    assert lab.wait_exit(files).code == 3
    assert [(x.stream, x.data) for x in logs.read(files.log_path)] == [
        ("stdout", b"hi"), ("stderr", b"oops")]
    with pytest.raises(OCIRuntimeError, match="cannot attach"):
        monitor.attach(files)


def _window(pid: int) -> tuple[int, int]:
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    finally:
        os.close(fd)
    return rows, cols


def test_terminal_attach_and_resize(lab: Lab) -> None:
    cid, files, launched = lab.launch("tty", ["sh"], terminal=True, stdin=True)
    with monitor.attach(files) as sock:
        monitor.resize(files, 30, 100)
        wait_until(lambda: _window(launched.pid) == (30, 100), "the pty to be resized")
        lab.runtime.start(cid)
        sock.settimeout(20)
        sock.send(b"stty size; exit 5\n")
        output = b""
        while packet := sock.recv(65536):
            stream, data = monitor.split_packet(packet)
            assert stream == "stdout"  # a terminal has one stream
            output += data
    assert b"30 100\r\n" in output
    assert lab.wait_exit(files).code == 5
    assert any(x.data == b"30 100\r" for x in logs.read(files.log_path))
    with pytest.raises(OCIRuntimeError, match="not running"):
        monitor.resize(files, 10, 10)
