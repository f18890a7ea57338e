"""composer's default seccomp profile, and Docker-format profiles read into OCI form.

The default profile is an allow list (unknown syscalls get EPERM) holding what ordinary
programs use, grouped below by purpose. It leaves out what Docker's default profile leaves out:
kernel modules, kexec, reboot, the clock, keyrings, accounting, swap, quotas, mounting and
namespaces, bpf, perf, io_uring, obsolete or unimplemented calls (``_sysctl``, ``uselib``,
``ustat``, ``sysfs``, ``vm86``...), ``userfaultfd``, NUMA page moves, ``name_to_handle_at`` and
``open_by_handle_at``. Some of those come back when the container holds the capability that
makes the kernel allow them anyway (``CAP_SYS_ADMIN`` gives mount, setns, unshare, clone with
namespace flags; ``CAP_SYS_PTRACE`` kcmp; ``CAP_SYS_TIME`` the clock; ...), as Docker does.

Filters on arguments: ``clone`` is allowed only without namespace flags (a masked compare of
its first argument), ``clone3`` fails with ENOSYS so that libc falls back to ``clone`` (whose
flags a filter can see; clone3 passes them in memory), ``personality`` only with the common
personas, ``socket`` for every family but AF_VSOCK.

``ptrace`` and ``process_vm_readv``/``writev`` are allowed, as Docker allows them on kernels
since 4.8, where ptrace can no longer be used to get around seccomp: composer needs newer
kernels than that anyway.

runc (since 1.0) makes syscalls newer than the newest one a profile names fail with ENOSYS
rather than the default action, so names libseccomp does not know yet are harmless here.
"""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterable, Mapping
from typing import Any

from composer.errors import ComposerError

EPERM, ENOSYS = 1, 38


class SeccompError(ComposerError):
    """A profile cannot be made or read."""


# libseccomp's names for the architectures of each machine: the native one first, then those
# whose binaries it also runs (32-bit x86 and x32 on x86_64, 32-bit ARM on aarch64).
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
}
_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

_FILES = """
    read write readv writev pread64 pwrite64 preadv pwritev preadv2 pwritev2
    open openat openat2 creat close close_range lseek _llseek dup dup2 dup3 pipe pipe2
    fcntl fcntl64 ioctl flock fsync fdatasync sync syncfs sync_file_range fallocate
    fadvise64 fadvise64_64 readahead sendfile sendfile64 splice tee vmsplice copy_file_range
    truncate truncate64 ftruncate ftruncate64 stat stat64 lstat lstat64 fstat fstat64
    newfstatat fstatat64 statx statfs statfs64 fstatfs fstatfs64 access faccessat faccessat2
    getdents getdents64 getcwd chdir fchdir mkdir mkdirat rmdir rename renameat renameat2
    link linkat unlink unlinkat symlink symlinkat readlink readlinkat chmod fchmod fchmodat
    fchmodat2 chown chown32 fchown fchown32 fchownat lchown lchown32 umask utime utimes
    futimesat utimensat utimensat_time64 mknod mknodat cachestat
    setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr
    flistxattr removexattr lremovexattr fremovexattr setxattrat getxattrat listxattrat
    removexattrat file_getattr file_setattr
    inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
    io_setup io_destroy io_getevents io_pgetevents io_pgetevents_time64 io_submit io_cancel
    select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64
    epoll_create epoll_create1 epoll_ctl epoll_wait epoll_pwait epoll_pwait2
    eventfd eventfd2 signalfd signalfd4 timerfd_create timerfd_settime timerfd_settime64
    timerfd_gettime timerfd_gettime64 memfd_create listmount statmount
"""
_MEMORY = """
    brk mmap mmap2 munmap mremap mprotect pkey_mprotect pkey_alloc pkey_free madvise
    mincore msync mlock mlock2 munlock mlockall munlockall remap_file_pages membarrier
    mseal map_shadow_stack
"""
_PROCESSES = """
    fork vfork execve execveat exit exit_group wait4 waitid waitpid kill tkill tgkill
    getpid getppid gettid getpgid setpgid getpgrp getsid setsid getpriority setpriority nice
    sched_yield sched_setparam sched_getparam sched_setscheduler sched_getscheduler
    sched_get_priority_max sched_get_priority_min sched_rr_get_interval
    sched_rr_get_interval_time64 sched_setaffinity sched_getaffinity sched_setattr
    sched_getattr getcpu prctl set_tid_address set_robust_list get_robust_list rseq
    restart_syscall seccomp ptrace process_vm_readv process_vm_writev pidfd_open
    pidfd_send_signal process_mrelease uname sysinfo times getrusage getrlimit ugetrlimit
    setrlimit prlimit64 capget capset ioprio_get ioprio_set futex futex_time64 futex_waitv
    futex_wake futex_wait futex_requeue getrandom landlock_create_ruleset landlock_add_rule
    landlock_restrict_self lsm_get_self_attr lsm_set_self_attr lsm_list_modules uretprobe
"""
_CREDENTIALS = """
    getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 setuid setuid32
    setgid setgid32 setreuid setreuid32 setregid setregid32 setresuid setresuid32 getresuid
    getresuid32 setresgid setresgid32 getresgid getresgid32 getgroups getgroups32 setgroups
    setgroups32 setfsuid setfsuid32 setfsgid setfsgid32
"""
_SIGNALS = """
    rt_sigaction rt_sigprocmask rt_sigreturn rt_sigpending rt_sigtimedwait
    rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo rt_sigsuspend sigaltstack
    sigaction sigprocmask sigreturn sigpending sigsuspend signal pause
"""
_TIME = """
    time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
    clock_nanosleep clock_nanosleep_time64 nanosleep alarm getitimer setitimer timer_create
    timer_settime timer_settime64 timer_gettime timer_gettime64 timer_getoverrun timer_delete
    adjtimex
"""
_NETWORK = """
    socketpair bind listen accept accept4 connect getsockname getpeername sendto recvfrom
    sendmsg recvmsg sendmmsg recvmmsg recvmmsg_time64 shutdown setsockopt getsockopt
    socketcall recv send
"""
_IPC = """
    shmget shmat shmdt shmctl semget semop semtimedop semtimedop_time64 semctl msgget msgsnd
    msgrcv msgctl ipc mq_open mq_unlink mq_timedsend mq_timedsend_time64 mq_timedreceive
    mq_timedreceive_time64 mq_notify mq_getsetattr
"""
# Calls that exist only in one family of architectures.
_FAMILY = {
    "x86_64": "arch_prctl modify_ldt get_thread_area set_thread_area",
    "aarch64": "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush "
               "set_tls",
}
# What a capability gives back; the kernel checks the capability again on every call.
_BY_CAPABILITY = {
    "CAP_SYS_ADMIN": """bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick
                        lookup_dcookie mount mount_setattr move_mount name_to_handle_at
                        open_tree open_tree_attr perf_event_open pivot_root quotactl
                        quotactl_fd setdomainname sethostname setns syslog umount umount2
                        unshare""",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "init_module finit_module delete_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise userfaultfd",
    "CAP_SYS_RAWIO": "iopl ioperm",
    "CAP_SYS_TIME": "settimeofday stime clock_settime clock_settime64 clock_adjtime "
                    "clock_adjtime64",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node migrate_pages "
                    "move_pages",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
    "CAP_DAC_READ_SEARCH": "open_by_handle_at",
}
ALLOWED: frozenset[str] = frozenset(
    " ".join((_FILES, _MEMORY, _PROCESSES, _CREDENTIALS, _SIGNALS, _TIME, _NETWORK, _IPC))
    .split())

# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000
# PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query the persona)
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
AF_VSOCK = 40


def native_machine(machine: str | None = None) -> str:
    """``uname -m`` in the spelling ARCHITECTURES uses (``amd64`` and ``arm64`` accepted)."""
    name = machine or platform.machine()
    return _MACHINE_ALIASES.get(name, name)


def architectures(machine: str | None = None) -> list[str]:
    name = native_machine(machine)
    if name not in ARCHITECTURES:
        raise SeccompError(
            f"composer has no default seccomp profile for the {name} architecture "
            f"(it has one for {', '.join(sorted(ARCHITECTURES))}); "
            "use security_opt: [seccomp=unconfined] or seccomp=<profile.json>")
    return list(ARCHITECTURES[name])


def default_profile(capabilities: Iterable[str], machine: str | None = None) -> dict[str, Any]:
    """The OCI ``linux.seccomp`` object for a container holding ``capabilities``
    (``CAP_`` names) on ``machine`` (default: this host's)."""
    arches = architectures(machine)
    caps = set(capabilities)
    names = set(ALLOWED) | set(_FAMILY[native_machine(machine)].split())
    for cap, granted in _BY_CAPABILITY.items():
        if cap in caps:
            names |= set(granted.split())
    admin = "CAP_SYS_ADMIN" in caps
    rules: list[dict[str, Any]] = [{"names": sorted(names), "action": "SCMP_ACT_ALLOW"}]
    if not admin:
        rules.append({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0,
             "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    # One rule per persona: the conditions of one rule must all hold at once.
    rules.extend({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}
                 for persona in PERSONAS)
    rules.append({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "architectures": arches, "syscalls": rules}


def allowed_names(profile: Mapping[str, Any]) -> set[str]:
    """The syscalls a profile allows without conditions on their arguments."""
    return {name for rule in profile.get("syscalls", [])
            if rule.get("action") == "SCMP_ACT_ALLOW" and not rule.get("args")
            for name in rule.get("names", [])}


# Docker's profile format names architectures in Go's words in "includes"/"excludes".
_GO_ARCHES = {"x86_64": {"amd64", "x86_64"}, "aarch64": {"arm64", "aarch64"}}


def from_docker_json(text: str, capabilities: Iterable[str], *, machine: str | None = None,
                     kernel: str | None = None) -> dict[str, Any]:
    """Read a profile in Docker's format (or already in OCI form) as ``security_opt:
    seccomp=<file>`` gives it, into the OCI ``linux.seccomp`` object: ``archMap`` picks this
    machine's architectures, ``includes``/``excludes`` keep a rule or drop it by capability,
    architecture and minimum kernel."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SeccompError(f"the seccomp profile is not valid JSON: {e}") from None
    if not isinstance(data, dict) or "defaultAction" not in data:
        raise SeccompError("the seccomp profile has no defaultAction")
    caps = set(capabilities)
    name = native_machine(machine)
    release = _kernel_version(kernel or platform.release())
    out: dict[str, Any] = {"defaultAction": data["defaultAction"]}
    if "defaultErrnoRet" in data:
        out["defaultErrnoRet"] = data["defaultErrnoRet"]
    arches = list(data.get("architectures") or [])
    for entry in data.get("archMap") or []:
        if native_machine(_ARCH_TO_MACHINE.get(entry.get("architecture", ""), "")) == name:
            arches = [entry["architecture"], *entry.get("subArchitectures", [])]
    if arches:
        out["architectures"] = arches
    for key in ("flags", "listenerPath", "listenerMetadata"):
        if key in data:
            out[key] = data[key]
    rules = []
    for rule in data.get("syscalls") or []:
        if not _applies(rule.get("includes") or {}, caps, name, release, include=True):
            continue
        if _applies(rule.get("excludes") or {}, caps, name, release, include=False):
            continue
        names = list(rule.get("names") or []) + ([rule["name"]] if rule.get("name") else [])
        kept = {"names": names, "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                kept[key] = rule[key]
        rules.append(kept)
    out["syscalls"] = rules
    return out


_ARCH_TO_MACHINE = {"SCMP_ARCH_X86_64": "x86_64", "SCMP_ARCH_AARCH64": "aarch64"}


def _applies(filt: Mapping[str, Any], caps: set[str], machine: str,
             release: tuple[int, int], *, include: bool) -> bool:
    """An ``includes`` filter holds when all its parts hold (empty: always); an ``excludes``
    filter holds when any part does (empty: never)."""
    tests = []
    if filt.get("caps"):
        tests.append(any(c in caps for c in filt["caps"]))
    if filt.get("arches"):
        tests.append(bool(set(filt["arches"]) & _GO_ARCHES.get(machine, {machine})))
    if filt.get("minKernel"):
        tests.append(release >= _kernel_version(str(filt["minKernel"])))
    if not tests:
        return include
    return all(tests) if include else any(tests)


def _kernel_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if not match:
        raise SeccompError(f"not a kernel version: {text!r}")
    return int(match[1]), int(match[2])
