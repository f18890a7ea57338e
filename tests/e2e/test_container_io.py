"""Container stdio: a real pseudo-terminal for run -it, log rotation, binds, env files, init."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.e2e.conftest import IMAGE, Engine


def _read_until(fd: int, needle: bytes, timeout: float = 30) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {needle!r} in {seen!r}")
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_run_it_gives_a_terminal_that_follows_the_size(engine: Engine) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    env = engine.env()
    child = subprocess.Popen([sys.executable, "-m", "composer", "--root", str(engine.root),
                              "container", "run", "-it", "--rm", IMAGE, "sh", "-c",
                              "stty size; tty; read line; stty size; echo got $line; exit 5"],
                             stdin=slave, stdout=slave, stderr=slave, env=env,
                             # The pty becomes its controlling terminal, as a user's is: the
                             # kernel then sends it SIGWINCH on a resize.
                             start_new_session=True,
                             preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    try:
        seen = _read_until(master, b"/dev/pts/")
        assert b"33 101" in seen, seen
        # The terminal grows: the CLI gets SIGWINCH and resizes the container's.
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        time.sleep(0.5)  # let SIGWINCH reach the CLI before the shell asks again
        os.write(master, b"typed\r")
        seen = _read_until(master, b"got typed")
        assert b"40 120" in seen, seen
        assert child.wait(timeout=30) == 5
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)


def test_run_i_pipes_stdin_through(engine: Engine) -> None:
    done = engine.cli("container", "run", "-i", "--rm", IMAGE, "sh", "-c", "tr a-z A-Z",
                      stdin=b"hello stdin\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "HELLO STDIN\n"


def test_logs_rotate_at_max_size_and_keep_max_file(engine: Engine) -> None:
    name = "chatty"
    engine.run_detached("--name", name, "--log-opt", "max-size=2k", "--log-opt", "max-file=3",
                        IMAGE, "sh", "-c",
                        "for i in $(seq 1 400); do echo line-$i; sleep 0.002; done")
    state = engine.wait_for(name, lambda s: s["State"]["Status"] == "exited", what="exit")
    log = Path(state["LogPath"])
    files = sorted(p.name for p in log.parent.iterdir() if p.name.startswith(log.name)
                   and not p.name.endswith(".live"))
    assert len(files) <= 3, files
    lines = engine.cli("container", "logs", name).stdout.split()
    numbers = [int(line.removeprefix("line-")) for line in lines]
    assert numbers[-1] == 400
    assert numbers == list(range(numbers[0], 401)), "a gap inside the kept generations"
    assert numbers[0] > 1, "nothing was rotated away"


def test_binds_env_files_and_init(engine: Engine, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in.txt").write_text("from the host\n")
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_FILE=yes\n# a comment\nQUOTED=\"a b\"\n")
    done = engine.cli("container", "run", "--rm", "-v", f"{shared}:/data", "-v",
                      f"{shared}:/ro:ro", "--env-file", str(env_file), "--init", IMAGE, "sh",
                      "-c", "cat /data/in.txt; echo out > /data/out.txt; "
                      "touch /ro/x 2>&1 | grep -c Read-only; echo $FROM_FILE $QUOTED; "
                      "tr '\\0' ' ' < /proc/1/cmdline")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:3] == ["from the host", "1", "yes a b"]
    assert "tini" in lines[3] or "init" in lines[3], lines[3]
    assert (shared / "out.txt").read_text() == "out\n"


def test_network_none_has_loopback_up_and_host_shares_the_hosts(engine: Engine) -> None:
    import socket

    none = engine.cli("container", "run", "--rm", "--network", "none", IMAGE, "sh", "-c",
                      "ip -o link | cut -d: -f2; ip -o addr show lo | grep -c 127.0.0.1; "
                      "nc -l -p 8080 -e echo up & sleep 0.2; nc 127.0.0.1 8080")
    assert none.returncode == 0, none.stderr
    lines = none.stdout.split()
    assert lines[:2] == ["lo", "1"] and lines[-1] == "up", none.stdout
    host = engine.cli("container", "run", "--rm", "--network", "host", IMAGE, "hostname")
    assert host.stdout.strip() == socket.gethostname()


def test_an_image_of_120_layers_runs(engine: Engine) -> None:
    import io
    import tarfile

    from composer.runtime.images.archives import import_layers
    from composer.state.layout import open_images
    from tests.images import busybox_layer

    def layer(i: int) -> io.BytesIO:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(f"layers/{i}")
            data = f"{i}\n".encode()
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        buffer.seek(0)
        return buffer

    with open_images(engine.root) as store:
        import_layers(store, [io.BytesIO(busybox_layer()), *(layer(i) for i in range(119))],
                      ref="local/tall:1", config={"Cmd": ["sh"]})
    done = engine.cli("container", "run", "--rm", "local/tall:1", "sh", "-c",
                      "ls /layers | wc -l; cat /layers/118")
    assert done.stdout.split() == ["119", "118"], (done.stdout, done.stderr)


def test_stats_and_wait(engine: Engine) -> None:
    engine.run_detached("--name", "busy", "--memory", "64m", IMAGE, "sleep", "100")
    stats = engine.cli("container", "stats", "--no-stream", "busy")
    assert stats.returncode == 0, stats.stderr
    row = stats.stdout.splitlines()[1].split()
    assert row[1] == "busy" and row[-1] == "1" and "64.00MiB" in stats.stdout
    engine.run_detached("--name", "quick", IMAGE, "sh", "-c", "sleep 0.3; exit 9")
    waited = engine.cli("container", "wait", "quick")
    assert waited.stdout.strip() == "9"


def test_pid_and_ipc_namespaces_of_another_container_or_the_host(engine: Engine) -> None:
    engine.run_detached("--name", "first", "--ipc", "shareable", IMAGE, "sleep", "100")
    engine.wait_for("first", lambda s: s["State"]["Status"] == "running")
    probe = ("readlink /proc/self/ns/ipc; readlink /proc/self/ns/pid; "
             "ps -o comm | grep -c '^sleep'")
    theirs = engine.cli("container", "exec", "first", "sh", "-c", probe).stdout.split()
    joined = engine.cli("container", "run", "--rm", "--pid", "container:first", "--ipc",
                        "container:first", IMAGE, "sh", "-c", probe).stdout.split()
    alone = engine.cli("container", "run", "--rm", IMAGE, "sh", "-c", probe).stdout.split()
    assert joined[:2] == theirs[:2] and joined[2] == "1"  # first's sleep is visible
    assert alone[0] != theirs[0] and alone[1] != theirs[1] and alone[2] == "0"
    host = engine.cli("container", "run", "--rm", "--pid", "host", IMAGE, "sh", "-c",
                      "readlink /proc/self/ns/pid")
    assert host.stdout.strip() == os.readlink("/proc/self/ns/pid")
