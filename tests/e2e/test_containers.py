"""Real containers under runc, through the engine and the CLI (``composer container ...``)."""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import IMAGE, Engine


def test_the_process_is_pid_1_and_sees_no_host_process(engine: Engine) -> None:
    done = engine.cli("container", "run", "--rm", IMAGE, "sh", "-c", "echo $$; ps -o pid,comm")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "1"
    pids = [int(line.split()[0]) for line in lines[2:]]
    # Only the shell and ps itself: no host process is visible.
    assert pids and max(pids) < 10 and len(pids) <= 3, done.stdout


def test_hostname_env_user_and_working_dir(engine: Engine) -> None:
    done = engine.cli("container", "run", "--rm", "-h", "box", "-e", "GREETING=hi", "-u", "app",
                      "-w", "/tmp", IMAGE, "sh", "-c",
                      "hostname; echo $GREETING; id -u; id -G; pwd; echo $HOME")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["box", "hi", "1000", "1000 1001", "/tmp", "/home/app"]


def test_read_only_blocks_writes_but_tmpfs_takes_them(engine: Engine) -> None:
    done = engine.cli("container", "run", "--rm", "--read-only", "--tmpfs", "/scratch", IMAGE,
                      "sh", "-c", "touch /x 2>&1; echo rc=$?; touch /scratch/y && echo ok")
    assert done.returncode == 0, done.stderr
    assert "Read-only file system" in done.stdout and "rc=1" in done.stdout
    assert done.stdout.strip().endswith("ok")


def test_a_memory_limit_kills_an_allocating_process_and_says_oom(engine: Engine) -> None:
    name = "oom"
    engine.run_detached("--name", name, "--memory", "16m", "--memory-swap", "16m", IMAGE,
                        "sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo $x")
    state = engine.wait_for(name, lambda s: s["State"]["Status"] == "exited", what="exit")
    assert state["State"]["OOMKilled"] is True
    assert state["State"]["ExitCode"] == 137


def test_pids_limit_stops_a_fork_bomb(engine: Engine) -> None:
    done = engine.cli("container", "run", "--rm", "--pids-limit", "10", IMAGE, "sh", "-c",
                      "for i in $(seq 40); do sleep 2 & done 2>&1 | head -n 3; wait")
    assert "can't fork" in done.stdout + done.stderr


def test_dropping_cap_chown_makes_chown_fail(engine: Engine) -> None:
    allowed = engine.cli("container", "run", "--rm", IMAGE, "sh", "-c",
                         "touch /f && chown 1000 /f && echo changed")
    assert allowed.stdout.strip() == "changed", allowed.stderr
    dropped = engine.cli("container", "run", "--rm", "--cap-drop", "CHOWN", IMAGE, "sh", "-c",
                         "touch /f && chown 1000 /f 2>&1; echo rc=$?")
    assert "Operation not permitted" in dropped.stdout and "rc=1" in dropped.stdout


def test_proc_kcore_is_masked(engine: Engine) -> None:
    from pathlib import Path

    # Some kernels (this project's CI VMs) have no /proc/kcore; /proc/timer_list is masked by
    # the same rule and has content on every host.
    path = "/proc/kcore" if Path("/proc/kcore").exists() else "/proc/timer_list"
    assert Path("/proc/timer_list").read_bytes() or path == "/proc/kcore"
    done = engine.cli("container", "run", "--rm", IMAGE, "sh", "-c",
                      f"wc -c < {path}; ls /sys/firmware | wc -l")
    assert done.stdout.split() == ["0", "0"], (done.stdout, done.stderr)


def test_logs_have_timestamps_and_both_streams(engine: Engine) -> None:
    name = "talker"
    engine.run_detached("--name", name, IMAGE, "sh", "-c", "echo out; echo err >&2; echo end")
    engine.wait_for(name, lambda s: s["State"]["Status"] == "exited", what="exit")
    plain = engine.cli("container", "logs", name)
    assert plain.stdout.splitlines() == ["out", "end"] and plain.stderr.strip() == "err"
    stamped = engine.cli("container", "logs", "-t", name).stdout.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (out|end)$", line)
               for line in stamped), stamped
    # conmon reads stdout and stderr separately: "err" may be stamped after "end".
    last = engine.cli("container", "logs", "--tail", "1", name)
    assert (last.stdout + last.stderr).strip() in ("end", "err")
    assert engine.cli("container", "logs", "--tail", "0", name).stdout == ""


def test_exit_codes_are_dockers(engine: Engine) -> None:
    assert engine.cli("container", "run", "--rm", IMAGE, "sh", "-c", "exit 3").returncode == 3
    missing = engine.cli("container", "run", "--rm", IMAGE, "no-such-command")
    assert missing.returncode == 127, (missing.stdout, missing.stderr)
    not_executable = engine.cli("container", "run", "--rm", IMAGE, "/etc/passwd")
    assert not_executable.returncode == 126, not_executable.stderr
    assert engine.cli("container", "run", "--rm", "local/nothing:1", "true").returncode == 125
    assert engine.cli("container", "ls", "-aq").stdout == ""  # --rm removed them all


def test_restart_policies(engine: Engine) -> None:
    engine.run_detached("--name", "never", IMAGE, "sh", "-c", "exit 1")
    engine.run_detached("--name", "twice", "--restart", "on-failure:2", IMAGE, "sh", "-c",
                        "exit 1")
    engine.run_detached("--name", "always", "--restart", "always", IMAGE, "sh", "-c",
                        "sleep 0.2")
    engine.run_detached("--name", "unless", "--restart", "unless-stopped", IMAGE, "sleep", "100")
    twice = engine.wait_for("twice", lambda s: s["RestartCount"] == 2
                            and s["State"]["Status"] == "exited", what="two restarts")
    assert twice["State"]["ExitCode"] == 1
    never = engine.inspect("never")
    assert (never["RestartCount"], never["State"]["Status"]) == (0, "exited")
    engine.wait_for("always", lambda s: s["RestartCount"] >= 2, what="restarts")
    engine.cli("container", "stop", "-t", "1", "unless", check=True)
    engine.cli("container", "stop", "-t", "1", "always", check=True)
    for name in ("unless", "always"):
        state = engine.inspect(name)
        assert state["State"]["Status"] == "exited", (name, state["State"])
    count = engine.inspect("always")["RestartCount"]
    assert engine.inspect("always")["RestartCount"] == count  # a user stop is final


def test_health_goes_starting_healthy_unhealthy(engine: Engine) -> None:
    name = "checked"
    engine.run_detached("--name", name, "--health-cmd", "test -f /tmp/ok",
                        "--health-interval", "200ms", "--health-retries", "2",
                        "--health-start-period", "60s", "--health-start-interval", "200ms",
                        IMAGE, "sleep", "100")
    # Failures in the start period do not count: it stays "starting" until a probe passes.
    engine.wait_for(name, lambda s: len(s["State"]["Health"]["Log"]) >= 3, what="probes")
    first = engine.inspect(name)["State"]["Health"]
    assert (first["Status"], first["FailingStreak"]) == ("starting", 0)
    engine.cli("container", "exec", name, "touch", "/tmp/ok", check=True)
    engine.wait_for(name, lambda s: s["State"]["Health"]["Status"] == "healthy",
                    what="healthy")
    engine.cli("container", "exec", name, "rm", "/tmp/ok", check=True)
    gone = engine.wait_for(name, lambda s: s["State"]["Health"]["Status"] == "unhealthy",
                           what="unhealthy")
    assert gone["State"]["Health"]["FailingStreak"] >= 2
    assert gone["State"]["Health"]["Log"][-1]["ExitCode"] == 1
    listed = engine.cli("container", "ls").stdout
    assert "(unhealthy)" in listed


def test_stop_uses_the_stop_signal_then_sigkill_after_the_grace_period(engine: Engine) -> None:
    engine.run_detached("--name", "polite", "--stop-signal", "SIGUSR1", IMAGE, "sh", "-c",
                        "trap 'echo got usr1; exit 0' USR1; while true; do sleep 0.1; done")
    engine.run_detached("--name", "stubborn", IMAGE, "sh", "-c",
                        "trap '' TERM; while true; do sleep 0.1; done")
    engine.cli("container", "stop", "polite", check=True)
    polite = engine.inspect("polite")
    assert polite["State"]["ExitCode"] == 0
    assert "got usr1" in engine.cli("container", "logs", "polite").stdout
    engine.cli("container", "stop", "-t", "1", "stubborn", check=True)
    assert engine.inspect("stubborn")["State"]["ExitCode"] == 137


def test_exec_with_and_without_a_tty(engine: Engine) -> None:
    engine.run_detached("--name", "host", IMAGE, "sleep", "100")
    plain = engine.cli("container", "exec", "host", "sh", "-c", "echo $$ inside; exit 4")
    assert plain.returncode == 4 and plain.stdout.strip().endswith("inside")
    with_tty = engine.cli("container", "exec", "-t", "host", "sh", "-c", "tty; stty size")
    assert with_tty.returncode == 0, with_tty.stderr
    lines = with_tty.stdout.split("\r\n")
    assert lines[0].startswith("/dev/pts/")
    # No terminal here: the CLI falls back to 24x80 and the process starts with that size.
    assert lines[1] == "24 80", lines
    as_app = engine.cli("container", "exec", "-u", "app", "-e", "X=1", "-w", "/home", "host",
                        "sh", "-c", "id -u; echo $X; pwd")
    assert as_app.stdout.split() == ["1000", "1", "/home"]
    missing = engine.cli("container", "exec", "host", "nope")
    assert missing.returncode in (126, 127)


def test_commit_then_run_the_new_image(engine: Engine) -> None:
    engine.run_detached("--name", "maker", IMAGE, "sh", "-c",
                        "echo made > /etc/marker && rm /bin/vi && sleep 100")
    engine.wait_for("maker", lambda s: s["State"]["Status"] == "running")
    deadline_ok = engine.cli("container", "exec", "maker", "sh", "-c",
                             "while [ ! -f /etc/marker ]; do sleep 0.05; done")
    assert deadline_ok.returncode == 0
    made = engine.cli("container", "commit", "-m", "a marker", "maker", "local/marked:1")
    assert made.returncode == 0, made.stderr
    done = engine.cli("container", "run", "--rm", "local/marked:1", "sh", "-c",
                      "cat /etc/marker; test -e /bin/vi || echo no-vi")
    assert done.stdout.split() == ["made", "no-vi"], done.stderr
    history = engine.cli("image", "history", "--format", "json", "local/marked:1")
    assert json.loads(history.stdout)[0]["Comment"] == "a marker"


def test_top_pause_and_cp(engine: Engine, tmp_path: object) -> None:
    from pathlib import Path

    work = Path(str(tmp_path))
    engine.run_detached("--name", "box", IMAGE, "sleep", "100")
    top = engine.cli("container", "top", "box").stdout.splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"] and "sleep 100" in top[1]
    engine.cli("container", "pause", "box", check=True)
    assert engine.inspect("box")["State"]["Status"] == "paused"
    engine.cli("container", "unpause", "box", check=True)
    (work / "in.txt").write_text("from the host\n")
    engine.cli("container", "cp", str(work / "in.txt"), "box:/tmp/", check=True)
    inside = engine.cli("container", "exec", "box", "cat", "/tmp/in.txt")
    assert inside.stdout == "from the host\n"
    engine.cli("container", "exec", "box", "sh", "-c", "ln -s /etc/passwd /tmp/link", check=True)
    engine.cli("container", "cp", "box:/etc/passwd", str(work / "passwd"), check=True)
    assert (work / "passwd").read_text().startswith("root:x:0:0")


def test_an_image_a_container_uses_is_kept_by_rm_and_prune(engine: Engine) -> None:
    engine.cli("container", "create", "--name", "user", IMAGE, "true", check=True)
    refused = engine.cli("image", "rm", IMAGE)
    assert refused.returncode != 0
    assert "container is using its referenced image" in refused.stderr
    engine.cli("image", "prune", "-a", check=True)
    assert engine.cli("image", "inspect", IMAGE).returncode == 0
    engine.cli("container", "rm", "user", check=True)
    assert engine.cli("image", "rm", IMAGE).returncode == 0
