"""composer's default seccomp profile and Docker-format profiles."""

from __future__ import annotations

import json

import pytest

from composer.runtime.bundle_linux import DEFAULT_CAPABILITIES
from composer.runtime.seccomp import (
    CLONE_NAMESPACE_FLAGS,
    SeccompError,
    allowed_names,
    architectures,
    default_profile,
    from_docker_json,
)

DEFAULT = sorted(DEFAULT_CAPABILITIES)

# What Docker's default profile denies a container with the default capabilities.


def words(text: str) -> list[str]:
    return text.split()


DENIED = words("""
    acct add_key bpf clock_adjtime clock_settime create_module delete_module finit_module
    init_module get_kernel_syms ioperm iopl kcmp kexec_load kexec_file_load keyctl
    lookup_dcookie mount umount umount2 move_pages name_to_handle_at open_by_handle_at
    nfsservctl perf_event_open pivot_root query_module quotactl reboot request_key setns
    settimeofday stime swapon swapoff sysfs _sysctl unshare uselib userfaultfd ustat vm86
    vm86old clone clone3 personality socket get_mempolicy set_mempolicy mbind vhangup syslog
    fanotify_init fsopen fsmount fsconfig fspick open_tree move_mount mount_setattr
    io_uring_setup io_uring_enter io_uring_register sethostname setdomainname pidfd_getfd
    process_madvise memfd_secret quotactl_fd migrate_pages
""")


def test_default_profile_shape() -> None:
    profile = default_profile(DEFAULT, "x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["defaultErrnoRet"] == 1
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    allowed = profile["syscalls"][0]
    assert allowed["action"] == "SCMP_ACT_ALLOW"
    assert allowed["names"] == sorted(allowed["names"])
    assert json.loads(json.dumps(profile)) == profile


def test_default_blocks_what_docker_blocks() -> None:
    allowed = allowed_names(default_profile(DEFAULT, "x86_64"))
    assert sorted(set(DENIED) & allowed) == []


def test_everyday_calls_are_allowed() -> None:
    allowed = allowed_names(default_profile(DEFAULT, "x86_64"))
    everyday = words("""read write openat close mmap mprotect brk rt_sigaction execve wait4 futex
        epoll_wait socketpair connect accept4 sendmsg recvmsg setresuid setgroups capset prctl
        statx getdents64 rseq clock_gettime nanosleep pipe2 dup3 fchownat chroot mknodat
        ptrace process_vm_readv landlock_create_ruleset close_range faccessat2 openat2
        pidfd_open memfd_create arch_prctl set_tid_address socketcall ipc mmap2""")
    assert [n for n in everyday if n not in allowed] == []


def test_clone_without_namespace_flags_and_clone3_falls_back() -> None:
    rules = default_profile(DEFAULT, "x86_64")["syscalls"]
    assert CLONE_NAMESPACE_FLAGS == 0x7E020000
    assert {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
        {"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]} in rules
    assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in rules


def test_personality_and_socket_filters() -> None:
    rules = default_profile(DEFAULT, "x86_64")["syscalls"]
    personas = [r["args"][0]["value"] for r in rules if r["names"] == ["personality"]]
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert all(r["args"][0]["op"] == "SCMP_CMP_EQ" for r in rules
               if r["names"] == ["personality"])
    assert {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]} in rules


@pytest.mark.parametrize(("cap", "granted"), [
    ("CAP_SYS_ADMIN", "mount umount2 setns unshare clone clone3 pivot_root sethostname "
                      "bpf perf_event_open fsopen open_tree quotactl syslog name_to_handle_at"),
    ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise"),
    ("CAP_SYS_TIME", "clock_settime settimeofday stime clock_adjtime"),
    ("CAP_SYS_MODULE", "init_module finit_module delete_module"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_RAWIO", "ioperm iopl"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYS_NICE", "mbind set_mempolicy get_mempolicy move_pages"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
])
def test_capabilities_give_back_their_calls(cap: str, granted: str) -> None:
    without = allowed_names(default_profile(DEFAULT, "x86_64"))
    with_cap = allowed_names(default_profile([*DEFAULT, cap], "x86_64"))
    for name in granted.split():
        assert name not in without and name in with_cap, name


def test_sys_admin_drops_the_clone_filters() -> None:
    rules = default_profile([*DEFAULT, "CAP_SYS_ADMIN"], "x86_64")["syscalls"]
    assert not [r for r in rules if r["names"] in (["clone"], ["clone3"])]


def test_chroot_follows_its_capability() -> None:
    assert "chroot" not in allowed_names(default_profile([], "x86_64"))


def test_architectures() -> None:
    assert architectures("aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert architectures("arm64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert architectures("amd64")[0] == "SCMP_ARCH_X86_64"
    arm = allowed_names(default_profile(DEFAULT, "aarch64"))
    x86 = allowed_names(default_profile(DEFAULT, "x86_64"))
    assert {"arm_fadvise64_64", "set_tls", "cacheflush"} <= arm - x86
    assert {"arch_prctl", "modify_ldt"} <= x86 - arm
    with pytest.raises(SeccompError, match="no default seccomp profile for the mips"):
        default_profile(DEFAULT, "mips")


DOCKER_FORMAT = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
        {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
        {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
         "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
         "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}],
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ],
}


def test_docker_format_profiles_follow_caps_arch_and_kernel() -> None:
    text = json.dumps(DOCKER_FORMAT)
    plain = from_docker_json(text, DEFAULT, machine="x86_64", kernel="6.1.0-18-amd64")
    assert plain == {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        ]}
    admin = from_docker_json(text, [*DEFAULT, "CAP_SYS_ADMIN"], machine="aarch64",
                             kernel="4.4.0")
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [r["names"] for r in admin["syscalls"]] == [["read", "write"], ["getpid"],
                                                       ["mount"]]


def test_bad_profiles() -> None:
    with pytest.raises(SeccompError, match="not valid JSON"):
        from_docker_json("{nope", DEFAULT)
    with pytest.raises(SeccompError, match="no defaultAction"):
        from_docker_json('{"syscalls": []}', DEFAULT)
