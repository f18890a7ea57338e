"""runc accepts what the bundle code writes, and the container behaves as the spec says.

Each test extracts the busybox layer (tests/images.py) as a root filesystem, writes
``oci_config``'s config.json beside it and runs it with ``runc --root <tmp>/runc run``. Every
container has a unique id and a cgroup under /composer-test-<random>/; afterwards the test checks
that runc knows no container and that no cgroup directory of that prefix is left under
/sys/fs/cgroup (the empty parents runc leaves are removed here).
"""

from __future__ import annotations

import io
import json
import os
import resource
import secrets
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from composer.runtime.bundle import (
    BundleContext,
    exec_process,
    hostname_of,
    oci_config,
)
from composer.runtime.bundle_linux import ALL_CAPABILITIES, own_capabilities
from composer.runtime.bundle_mounts import MASKED_PATHS
from composer.runtime.cgroups import CgroupSettings
from composer.runtime.spec import ContainerSpec, Device, Mount, Resources
from tests.images import busybox_layer

pytestmark = [pytest.mark.root, pytest.mark.runc]

RUNC = "/usr/sbin/runc"
TINI = "/usr/bin/tini-static"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_V2 = (CGROUP_ROOT / "cgroup.controllers").exists()
IMAGE: dict[str, Any] = {"Cmd": ["sh"]}
LIMITS = {name: resource.getrlimit(getattr(resource, f"RLIMIT_{name.upper()}"))
          for name in ("nofile", "nproc", "memlock", "core")}


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Runner:
    """Runs specs as containers under one temporary directory and one cgroup prefix."""

    base: Path
    prefix: str = field(default_factory=lambda: f"composer-test-{secrets.token_hex(4)}")
    ids: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.base / "runc"

    def prepare(self, spec: ContainerSpec, **changes: Any
                ) -> tuple[str, Path, BundleContext, dict[str, Any]]:
        cid = f"{self.prefix}-{len(self.ids)}"
        self.ids.append(cid)
        bundle = self.base / cid
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(busybox_layer())) as tar:
            tar.extractall(rootfs, filter="tar")
        ctx = BundleContext(
            container_id=cid, rootfs=str(rootfs),
            cgroup=CgroupSettings("cgroupfs", 2 if CGROUP_V2 else 1, f"/{self.prefix}/{cid}"),
            passwd=(rootfs / "etc/passwd").read_text(), group=(rootfs / "etc/group").read_text(),
            rlimits=LIMITS)
        ctx = replace(ctx, **changes)
        config = oci_config(spec, IMAGE, ctx)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return cid, bundle, ctx, config

    def runc(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        # The timeout only keeps a broken run from hanging the suite; nothing asserts on time.
        return subprocess.run([RUNC, "--root", str(self.state), *args], text=True,
                              stdin=subprocess.DEVNULL, timeout=120, check=False, **kwargs)

    def run(self, spec: ContainerSpec, **changes: Any) -> Result:
        cid, bundle, _, _ = self.prepare(spec, **changes)
        try:
            done = self.runc("run", "--bundle", str(bundle), cid, capture_output=True)
            return Result(done.returncode, done.stdout, done.stderr)
        finally:
            self.remove(cid)

    def remove(self, cid: str) -> None:
        self.runc("delete", "--force", cid, capture_output=True)
        listed = self.runc("list", "--quiet", capture_output=True).stdout.split()
        assert cid not in listed, f"container {cid} is still known to runc"

    def leftovers(self) -> list[str]:
        return sorted(str(p) for p in [*CGROUP_ROOT.glob(f"{self.prefix}*"),
                                       *CGROUP_ROOT.glob(f"*/{self.prefix}*")])

    def cleanup(self) -> None:
        for cid in self.ids:
            self.remove(cid)
        # runc removes a container's own cgroup, not the parents it made for it.
        for top in self.leftovers():
            for leaf in sorted(Path(top).glob("*"), reverse=True):
                if leaf.is_dir():
                    leaf.rmdir()
            Path(top).rmdir()


@pytest.fixture
def runner() -> Iterator[Runner]:
    if os.geteuid() != 0:
        pytest.skip("runs containers: needs root")
    if not os.access(RUNC, os.X_OK):
        pytest.skip(f"{RUNC} is absent (Debian package runc)")
    base = Path(tempfile.mkdtemp(prefix="composer-bundle-test-"))
    r = Runner(base)
    try:
        yield r
    finally:
        try:
            r.cleanup()
        finally:
            shutil.rmtree(base)
    assert r.leftovers() == [], "cgroups left behind"


def sh(script: str, **changes: Any) -> ContainerSpec:
    return ContainerSpec(image="busybox", command=("sh", "-c", script), **changes)


def ok(result: Result) -> str:
    assert result.rc == 0, f"exit {result.rc}: {result.err}"
    return result.out


def test_default_container_runs_with_its_hostname_env_and_id(runner: Runner) -> None:
    spec = sh("hostname; id; env | sort; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
    out = ok(runner.run(spec)).splitlines()
    cid = runner.ids[0]
    assert out[0] == hostname_of(spec, cid) == cid[:12]
    assert out[1] == "uid=0(root) gid=0(root) groups=0(root)"
    env = set(out[2:-2])
    assert {f"HOSTNAME={cid[:12]}", "HOME=/root",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} <= env
    assert out[-2:] == ["NoNewPrivs:\t0", "Seccomp:\t2"]


def test_exit_code_and_no_new_privileges(runner: Runner) -> None:
    result = runner.run(sh("grep NoNewPrivs /proc/self/status; exit 7",
                           security_opt=("no-new-privileges:true",)))
    assert (result.rc, result.out) == (7, "NoNewPrivs:\t1\n")


def test_read_only_root_blocks_writes_but_not_to_dev_shm(runner: Runner) -> None:
    result = runner.run(sh("touch /dev/shm/ok && echo shm-ok; touch /made", read_only=True))
    assert result.rc == 1
    assert result.out == "shm-ok\n"
    assert "Read-only file system" in result.err


def test_cap_drop_chown_makes_chown_fail(runner: Runner) -> None:
    assert ok(runner.run(sh("chown 1000 /tmp && echo chowned"))) == "chowned\n"
    result = runner.run(sh("chown 1000 /tmp", cap_drop=("CHOWN",)))
    assert result.rc != 0
    assert "Operation not permitted" in result.err


def test_pids_limit_stops_forks(runner: Runner) -> None:
    # busybox sh gives up at the first fork that fails; the sleepers die with PID 1.
    script = "for i in 1 2 3 4 5 6; do echo $i; sleep 1000 & done; echo all"
    assert ok(runner.run(sh(script))) == "1\n2\n3\n4\n5\n6\nall\n"
    result = runner.run(sh(script, resources=Resources(pids_limit=4)))
    # The shell and three sleepers make four: the fourth sleeper cannot be forked.
    assert result.out == "1\n2\n3\n4\n"
    assert result.rc != 0 and "can't fork: Resource temporarily unavailable" in result.err


def test_masked_and_read_only_proc_paths(runner: Runner) -> None:
    # /proc/kcore reads nothing (masked), or is absent where the kernel has none. The other
    # masked paths this host has: files read empty, directories list nothing.
    script = "wc -c 2>/dev/null < /proc/kcore || echo absent; "
    present = [p for p in MASKED_PATHS if os.path.exists(p)]
    for path in present:
        count = f"ls -A {path} | wc -l" if os.path.isdir(path) else f"wc -c < {path}"
        script += f"echo {path} $({count}); "
    script += "echo example > /proc/sys/kernel/domainname"
    result = runner.run(sh(script))
    lines = result.out.splitlines()
    assert lines[0] in ("0", "absent")
    assert lines[1:] == [f"{p} 0" for p in present]
    assert result.rc != 0 and "Read-only file system" in result.err


def test_user_app_runs_as_1000_with_its_groups(runner: Runner) -> None:
    out = ok(runner.run(sh("id -u; id -g; id -G; echo $HOME", user="app",
                           group_add=("nogroup",))))
    assert out == "1000\n1000\n1000 1001 65534\n/home/app\n"


def test_seccomp_default_blocks_unshare_unless_unconfined_or_sys_admin(runner: Runner) -> None:
    # Creating a user namespace needs no capability: only seccomp stands in the way.
    blocked = runner.run(sh("echo normal; unshare -U true"))
    assert blocked.out == "normal\n"
    assert blocked.rc != 0 and "Operation not permitted" in blocked.err
    assert ok(runner.run(sh("unshare -U true && echo unshared",
                            security_opt=("seccomp=unconfined",)))) == "unshared\n"
    assert ok(runner.run(sh("unshare -n true && echo unshared",
                            cap_add=("SYS_ADMIN",)))) == "unshared\n"


def test_init_is_tini_as_pid_1(runner: Runner) -> None:
    if not os.access(TINI, os.X_OK):
        pytest.skip(f"{TINI} is absent (Debian package tini)")
    result = runner.run(sh("tr '\\0' ' ' < /proc/1/cmdline; echo; exit 3", init=True),
                        init_path=TINI)
    assert result.rc == 3
    assert result.out == "/sbin/docker-init -- sh -c tr '\\0' ' ' < /proc/1/cmdline; " \
                         "echo; exit 3 \n"


def test_runc_creates_a_missing_working_directory(runner: Runner) -> None:
    script = "pwd; ls -ld . | cut -c1-10"
    assert ok(runner.run(sh(script, working_dir="/srv/app"))) == "/srv/app\ndrwxr-xr-x\n"
    # Even on a read-only root: runc makes it before the root is made read-only.
    assert ok(runner.run(sh(script, working_dir="/srv/app", read_only=True))) == \
        "/srv/app\ndrwxr-xr-x\n"


def test_network_none_has_only_loopback_up(runner: Runner) -> None:
    out = ok(runner.run(sh("ls /sys/class/net; ip -o -4 addr show lo | cut -d' ' -f2,7")))
    assert out == "lo\nlo 127.0.0.1/8\n"


def test_tmpfs_and_binds(runner: Runner) -> None:
    host = runner.base / "data"
    host.mkdir()
    (host / "file").write_text("from the host\n")
    spec = sh("echo hi > /scratch/f && cat /scratch/f; grep ' /scratch ' /proc/mounts; "
              "cat /data/file; touch /data/new",
              read_only=True, mounts=(Mount("tmpfs", "/scratch", options=("size=1m",)),
                                      Mount("bind", "/data", str(host), read_only=True)))
    result = runner.run(spec)
    lines = result.out.splitlines()
    assert lines[0] == "hi"
    assert lines[1].startswith("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec,")
    assert "size=1024k" in lines[1]
    assert lines[2] == "from the host"
    assert result.rc == 1 and "Read-only file system" in result.err
    assert not (host / "new").exists()


def test_ulimits_sysctls_and_domainname(runner: Runner) -> None:
    spec = sh("ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/ip_unprivileged_port_start "
              "/proc/sys/kernel/domainname /proc/sys/kernel/shmmax",
              ulimits={"nofile": (512, 1024)}, domainname="example.test",
              sysctls={"kernel.shmmax": "1048576"})
    assert ok(runner.run(spec)) == "512\n1024\n0\nexample.test\n1048576\n"
    # Without ulimits: Docker's 1048576, cut down to what this process may give.
    expected = min(1048576, LIMITS["nofile"][1]) if LIMITS["nofile"][1] >= 0 else 1048576
    assert ok(runner.run(sh("ulimit -n"))) == f"{expected}\n"


def test_memory_and_cpu_limits_reach_the_cgroup(runner: Runner) -> None:
    res = Resources(memory=64 << 20, cpus=0.5, cpu_shares=512)
    if CGROUP_V2:
        script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max"
        expected = f"{64 << 20}\n50000 100000\n"
    else:
        script = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                  "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes "
                  "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.shares")
        expected = f"{64 << 20}\n{128 << 20}\n50000\n512\n"
    assert ok(runner.run(sh(script, resources=res))) == expected


def test_devices_and_the_device_cgroup(runner: Runner) -> None:
    spec = sh("echo x > /dev/nothing && echo wrote; mknod /dev/disk b 8 0; cat /dev/disk",
              devices=(Device("/dev/null", "/dev/nothing", "rw"),))
    result = runner.run(spec)
    assert result.out == "wrote\n"
    assert result.rc != 0 and "Operation not permitted" in result.err


def test_exec_process_in_a_running_container(runner: Runner) -> None:
    spec = sh("sleep 1000", env={"FROM": "container"})
    cid, bundle, ctx, _ = runner.prepare(spec)
    try:
        # The container keeps runc's stdio: files, not pipes nobody would close.
        with (runner.base / "run.log").open("w+") as log:
            started = runner.runc("run", "--detach", "--bundle", str(bundle), cid,
                                  stdout=log, stderr=log)
            log.seek(0)
            assert started.returncode == 0, log.read()
        process = exec_process(spec, IMAGE, ctx, ["sh", "-c", "id -u; echo $HOME $FROM $X"],
                               user="app", env={"X": "extra"})
        path = runner.base / "exec.json"
        path.write_text(json.dumps(process))
        done = runner.runc("exec", "--process", str(path), cid, capture_output=True)
        assert (done.returncode, done.stdout) == (0, "1000\n/home/app container extra\n"), \
            done.stderr
    finally:
        runner.remove(cid)


def test_privileged_gets_every_capability_this_process_has(runner: Runner) -> None:
    out = ok(runner.run(sh("grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                           "test -c /dev/kmsg && echo has-kmsg", privileged=True)))
    bits = sum(1 << i for i, cap in enumerate(ALL_CAPABILITIES) if cap in own_capabilities())
    assert out == f"CapEff:\t{bits:016x}\nSeccomp:\t0\nhas-kmsg\n"


def test_leftover_check_sees_cgroups(runner: Runner) -> None:
    """The fixture's leak check itself works: a directory under the prefix is seen."""
    probe = CGROUP_ROOT / ("pids" if not CGROUP_V2 else "") / runner.prefix
    probe.mkdir()
    try:
        assert str(probe) in runner.leftovers()
    finally:
        probe.rmdir()
    assert runner.leftovers() == []
