"""A container spec and its image's config become an OCI runtime ``config.json``: pure.

Docker's rules throughout, so that a compose file behaves as it does under Docker: the
entrypoint/command merge, the environment, the user from the container's own /etc/passwd, the
default mounts, capabilities, masked paths, seccomp profile, device cgroup and sysctls
(see :mod:`composer.runtime.bundle_linux`, :mod:`composer.runtime.bundle_mounts`,
:mod:`composer.runtime.seccomp`, :mod:`composer.runtime.users`).

What the host decides comes in a :class:`BundleContext` (paths, namespaces to join, the
caller's own limits); the only reads of the host are a ``seccomp=<file>`` profile, device
nodes (through ``BundleContext.device_lookup``) and, for ``network_mode: host`` without a
``hostname``, the host's name, which such a container gets under Docker too.

What the caller must know: runc creates a missing working directory (owned by root); a
``tty`` process needs ``--console-socket``; the systemd cgroup driver needs runc's
``--systemd-cgroup``; ``ipc: container:X`` shares System V IPC, and POSIX shared memory only
when the caller passes X's /dev/shm as an extra mount on /dev/shm.
"""

from __future__ import annotations

import posixpath
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from composer.runtime import seccomp as _seccomp
from composer.runtime.bundle_linux import (
    ALL_CAPABILITIES,
    DEFAULT_CAPABILITIES,
    BundleError,
    DeviceLookup,
    DeviceNode,
    capabilities,
    devices,
    host_device_nodes,
    resources,
    rlimits,
    sysctls,
)
from composer.runtime.bundle_mounts import (
    INIT_TARGET,
    MASKED_PATHS,
    READONLY_PATHS,
    default_mounts,
    init_mount,
    rootfs_propagation,
    user_mounts,
    without_overridden,
)
from composer.runtime.cgroups import CgroupSettings
from composer.runtime.spec import ContainerSpec, Healthcheck, Mount
from composer.runtime.users import User, UserError, resolve_user

__all__ = [
    "ALL_CAPABILITIES", "DEFAULT_CAPABILITIES", "BundleContext", "BundleError", "DeviceNode",
    "SecurityOptions", "bundle_warnings", "container_env",
    "effective_healthcheck", "effective_stop_signal", "exec_process", "hostname_of",
    "oci_config", "process_args", "security_options", "signal_name", "signal_number",
]

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACE_KINDS = ("network", "ipc", "pid", "uts")


@dataclass(frozen=True)
class BundleContext:
    """What the host decided for one container (see the module docstring).

    ``capabilities``: the caller's own bounding set (None: this process's); ``machine``:
    ``uname -m`` for the seccomp architectures (None: this host's); ``swap_limit``: False
    where the kernel has no swap accounting (memory_swap is then left alone);
    ``device_lookup``: how device paths become nodes (``os.lstat`` by default)."""

    container_id: str
    rootfs: str
    cgroup: CgroupSettings
    passwd: str | None = None
    group: str | None = None
    init_path: str | None = None
    extra_mounts: tuple[Mount, ...] = ()
    namespace_paths: Mapping[str, str] = field(default_factory=dict)
    rlimits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    seccomp: bool = True
    annotations: Mapping[str, str] = field(default_factory=dict)
    capabilities: frozenset[str] | None = None
    machine: str | None = None
    swap_limit: bool = True
    device_lookup: DeviceLookup = host_device_nodes


@dataclass(frozen=True)
class SecurityOptions:
    """``security_opt`` read: ``seccomp`` is None (default profile), ``unconfined``, or a
    profile (its JSON text or an absolute path)."""

    no_new_privileges: bool = False
    seccomp: str | None = None
    unconfined_paths: bool = False
    writable_cgroups: bool = False
    warnings: tuple[str, ...] = ()


_TRUE = ("1", "t", "true")
_FALSE = ("0", "f", "false")


def _flag(option: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise BundleError(f"security_opt {option!r}: {value!r} is not true or false")


def security_options(spec: ContainerSpec) -> SecurityOptions:
    """Docker's ``--security-opt`` syntax (``key=value``, or the older ``key:value``)."""
    nnp = unconfined_paths = writable_cgroups = False
    profile: str | None = None
    warnings = []
    for option in spec.security_opt:
        if option == "no-new-privileges":
            nnp = True
            continue
        sep = "=" if "=" in option else ":"
        key, found, value = option.partition(sep)
        if not found:
            raise BundleError(f"security_opt {option!r}: expected key=value")
        if key == "no-new-privileges":
            nnp = _flag(option, value)
        elif key == "seccomp":
            profile = value
        elif key == "systempaths":
            if value != "unconfined":
                raise BundleError(f"security_opt {option!r}: only systempaths=unconfined")
            unconfined_paths = True
        elif key == "writable-cgroups":
            writable_cgroups = _flag(option, value)
        elif key == "apparmor":
            if value != "unconfined":
                warnings.append(f"security_opt {option}: composer does not apply AppArmor "
                                "profiles; the container runs without one")
        elif key == "label":
            if value != "disable":
                warnings.append(f"security_opt {option}: composer does not apply SELinux "
                                "labels; ignored")
        else:
            raise BundleError(f"security_opt {option!r}: unknown option (known: "
                              "no-new-privileges, seccomp, apparmor, label, systempaths, "
                              "writable-cgroups)")
    if profile is not None and profile not in ("unconfined", "builtin") \
            and not profile.lstrip().startswith("{") and not profile.startswith("/"):
        raise BundleError(f"security_opt seccomp={profile}: the profile's path must be "
                          "absolute")
    return SecurityOptions(nnp, None if profile == "builtin" else profile, unconfined_paths,
                           writable_cgroups, tuple(warnings))


def _joins(mode: str | None) -> bool:
    return mode is not None and mode.startswith(("container:", "service:"))


def bundle_warnings(spec: ContainerSpec) -> list[str]:
    """What the bundle leaves out of the spec, in words for the user (never silently)."""
    warnings = list(security_options(spec).warnings)
    if spec.init and (spec.pid == "host" or _joins(spec.pid)):
        warnings.append(f"init: true is ignored with pid: {spec.pid}: that namespace has its "
                        "own PID 1 (Docker ignores it too)")
    return warnings


def process_args(spec: ContainerSpec, image_config: Mapping[str, Any]) -> list[str]:
    """Docker's merge: a non-empty ``entrypoint`` replaces the image's and drops its CMD
    (``command`` then is the whole argument list); an empty one only drops the image's
    entrypoint; ``command`` replaces CMD."""
    if spec.entrypoint:
        args = [*spec.entrypoint, *(spec.command or ())]
    else:
        entry = [] if spec.entrypoint is not None else list(image_config.get("Entrypoint") or [])
        cmd = list(spec.command) if spec.command else list(image_config.get("Cmd") or [])
        args = entry + cmd
    if not args:
        raise BundleError("no command specified: neither the service nor the image "
                          "gives an entrypoint or a command")
    return args


def _env(spec: ContainerSpec, image_config: Mapping[str, Any], *, hostname: str, home: str,
         tty: bool, extra: Mapping[str, str] | None = None) -> list[str]:
    merged = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname}
    if tty:
        merged["TERM"] = "xterm"
    for entry in image_config.get("Env") or []:
        key, found, value = str(entry).partition("=")
        if found:
            merged[key] = value
        else:
            merged.pop(key, None)  # Docker: a bare name unsets
    for source in (spec.env, extra or {}):
        for key, value in source.items():
            if not key or "=" in key:
                raise BundleError(f"environment: invalid variable name {key!r}")
            merged[key] = value
    merged.setdefault("HOME", home)
    return [f"{key}={value}" for key, value in merged.items()]


def container_env(spec: ContainerSpec, image_config: Mapping[str, Any], *, hostname: str,
                  home: str) -> list[str]:
    """PATH (Docker's default), HOSTNAME and TERM=xterm with a tty first, then the image's
    Env and the spec's env, each replacing earlier values in place; HOME last unless set."""
    return _env(spec, image_config, hostname=hostname, home=home, tty=spec.tty)


def hostname_of(spec: ContainerSpec, container_id: str) -> str:
    """``hostname``, else the host's name with ``network_mode: host``, else the first 12
    characters of the id, as Docker does."""
    if spec.hostname:
        return spec.hostname
    if spec.network == "host":
        return socket.gethostname()
    return container_id[:12]


def _user(name: str | None, spec: ContainerSpec, ctx: BundleContext) -> User:
    try:
        return resolve_user(name, ctx.passwd, ctx.group, spec.group_add)
    except UserError as e:
        raise BundleError(f"user: {e}") from None


def _cwd(path: str | None) -> str:
    cwd = path or "/"
    if not cwd.startswith("/"):
        raise BundleError(f"working_dir {cwd!r} must be an absolute path")
    return posixpath.normpath(cwd)


def _process(spec: ContainerSpec, image_config: Mapping[str, Any], ctx: BundleContext, *,
             args: list[str], user: str | None, env: Mapping[str, str] | None,
             cwd: str | None, tty: bool, privileged: bool) -> dict[str, Any]:
    who = _user(user or image_config.get("User") or None, spec, ctx)
    caps = capabilities(spec, ctx.capabilities, privileged=privileged)
    return {
        "terminal": tty,
        "user": {"uid": who.uid, "gid": who.gid, "additionalGids": list(who.additional_gids)},
        "args": args,
        "env": _env(spec, image_config, hostname=hostname_of(spec, ctx.container_id),
                    home=who.home, tty=tty, extra=env),
        "cwd": _cwd(cwd or image_config.get("WorkingDir")),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits(spec.ulimits, ctx.rlimits),
        "noNewPrivileges": security_options(spec).no_new_privileges,
    }


def exec_process(spec: ContainerSpec, image_config: Mapping[str, Any], ctx: BundleContext,
                 args: Sequence[str], *, env: Mapping[str, str] | None = None,
                 user: str | None = None, working_dir: str | None = None, tty: bool = False,
                 privileged: bool = False) -> dict[str, Any]:
    """The OCI ``process`` for ``runc exec --process FILE``: the container's process with
    these arguments, as Docker's exec: its environment plus ``env``, its user unless ``user``
    (HOME then follows that user), its working directory unless ``working_dir``, every
    capability when ``privileged``."""
    if not args:
        raise BundleError("exec: no command given")
    return _process(spec, image_config, ctx, args=list(args), user=user or spec.user,
                    env=env, cwd=working_dir or spec.working_dir, tty=tty,
                    privileged=spec.privileged or privileged)


def _namespaces(spec: ContainerSpec, ctx: BundleContext) -> list[dict[str, str]]:
    paths = dict(ctx.namespace_paths)
    unknown = sorted(set(paths) - set(NAMESPACE_KINDS))
    if unknown:
        raise BundleError(f"namespace_paths: unknown namespace kind {', '.join(unknown)} "
                          f"(known: {', '.join(NAMESPACE_KINDS)})")
    out = [{"type": "mount"}]
    if spec.network == "host":
        if "network" in paths:
            raise BundleError("network_mode: host cannot join a network namespace")
    elif "network" in paths:
        out.append({"type": "network", "path": paths["network"]})
    elif spec.network == "none":
        out.append({"type": "network"})  # runc brings its loopback up
    elif _joins(spec.network):
        raise BundleError(f"network_mode {spec.network}: needs the path of that container's "
                          "network namespace")
    else:
        raise BundleError(f"network_mode {spec.network}: needs the network namespace the "
                          "network layer made for the container")
    out.append({"type": "uts", "path": paths["uts"]} if "uts" in paths else {"type": "uts"})
    for kind, mode, private in (("pid", spec.pid, (None, "private")),
                                ("ipc", spec.ipc, (None, "private", "shareable", "none"))):
        if mode == "host" or mode in private:
            if kind in paths:
                raise BundleError(f"{kind}: {mode or 'private'} cannot join a namespace")
            if mode != "host":
                out.append({"type": kind})
        elif _joins(mode):
            if kind not in paths:
                raise BundleError(f"{kind}: {mode} needs the path of that container's "
                                  f"{kind} namespace")
            out.append({"type": kind, "path": paths[kind]})
        else:
            raise BundleError(f"{kind}: invalid mode {mode!r}")
    if ctx.cgroup.version == 2:
        out.append({"type": "cgroup"})  # Docker's default on cgroup v2: a private view
    return out


def _seccomp_profile(spec: ContainerSpec, sec: SecurityOptions, caps: list[str],
                     ctx: BundleContext) -> dict[str, Any] | None:
    if spec.privileged or sec.seccomp == "unconfined":
        return None
    try:
        if sec.seccomp is None:
            return _seccomp.default_profile(caps, ctx.machine) if ctx.seccomp else None
        if not ctx.seccomp:
            raise BundleError("security_opt seccomp: this kernel has no seccomp, so the "
                              "profile cannot be applied")
        text = sec.seccomp
        if not text.lstrip().startswith("{"):
            try:
                with open(text, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise BundleError(f"security_opt seccomp={sec.seccomp}: {e.strerror}") from None
        return _seccomp.from_docker_json(text, caps, machine=ctx.machine)
    except _seccomp.SeccompError as e:
        raise BundleError(f"security_opt seccomp: {e}") from None


def oci_config(spec: ContainerSpec, image_config: Mapping[str, Any],
               ctx: BundleContext) -> dict[str, Any]:
    """The whole ``config.json`` (see the module docstring); BundleError names the field
    that cannot be honoured."""
    if not ctx.rootfs.startswith("/"):
        raise BundleError(f"rootfs {ctx.rootfs!r} must be an absolute path")
    sec = security_options(spec)
    args = process_args(spec, image_config)
    init = spec.init and spec.pid in (None, "private")
    if init:
        if ctx.init_path is None:
            raise BundleError("init: true needs a static init binary (tini-static) on the host")
        args = [INIT_TARGET, "--", *args]
    process = _process(spec, image_config, ctx, args=args, user=spec.user, env=None,
                       cwd=spec.working_dir, tty=spec.tty, privileged=spec.privileged)
    namespaces = _namespaces(spec, ctx)
    own_uts = "uts" not in ctx.namespace_paths
    private_network = spec.network != "host" and not _joins(spec.network)
    chosen = user_mounts(ctx.extra_mounts, spec.mounts)
    defaults = default_mounts(shm_size=spec.shm_size, ipc=spec.ipc, privileged=spec.privileged,
                              writable_cgroups=sec.writable_cgroups)
    mounts = without_overridden(defaults, chosen)
    if init:
        assert ctx.init_path is not None
        mounts.append(init_mount(ctx.init_path))
    mounts += chosen
    nodes, rules = devices(spec, ctx.device_lookup, privileged=spec.privileged)
    confined = not (spec.privileged or sec.unconfined_paths)
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "maskedPaths": list(MASKED_PATHS) if confined else [],
        "readonlyPaths": list(READONLY_PATHS) if confined else [],
        "resources": {"devices": rules, **resources(spec.resources,
                                                    swap_limit=ctx.swap_limit)},
        "cgroupsPath": ctx.cgroup.path,
        "devices": nodes,
        "sysctl": sysctls(spec, private_network=private_network,
                          domainname=spec.domainname if own_uts else None),
    }
    profile = _seccomp_profile(spec, sec, process["capabilities"]["bounding"], ctx)
    if profile is not None:
        linux["seccomp"] = profile
    propagation = rootfs_propagation(mounts)
    if propagation is not None:
        linux["rootfsPropagation"] = propagation
    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": ctx.rootfs, "readonly": spec.read_only},
    }
    if own_uts:
        config["hostname"] = hostname_of(spec, ctx.container_id)
    config["mounts"] = mounts
    config["annotations"] = dict(sorted({**spec.labels, **ctx.annotations}.items()))
    config["linux"] = linux
    return config


def _seconds(value: Any) -> float | None:
    """Image config durations are nanoseconds; 0 or absent means unset."""
    return value / 1e9 if value else None


def effective_healthcheck(spec: ContainerSpec,
                          image_config: Mapping[str, Any]) -> Healthcheck | None:
    """The spec's health check over the image's, field by field as Docker merges them (an
    unset or zero field takes the image's), with Docker's defaults filled in (30 s interval
    and timeout, 3 retries, 0 s start period, 5 s start interval); None when there is none
    or its test is ``NONE``."""
    raw = image_config.get("Healthcheck") or {}
    image = Healthcheck(tuple(raw.get("Test") or ()), _seconds(raw.get("Interval")),
                        _seconds(raw.get("Timeout")), raw.get("Retries") or None,
                        _seconds(raw.get("StartPeriod")), _seconds(raw.get("StartInterval")))
    user = spec.healthcheck or Healthcheck(())
    test = user.test or image.test
    if not test or test[0] == "NONE":
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise BundleError(f"healthcheck test {list(test)!r}: must start with CMD, CMD-SHELL "
                          "or NONE, followed by the command")
    return Healthcheck(
        test=test,
        interval=user.interval or image.interval or 30.0,
        timeout=user.timeout or image.timeout or 30.0,
        retries=user.retries or image.retries or 3,
        start_period=user.start_period or image.start_period or 0.0,
        start_interval=user.start_interval or image.start_interval or 5.0)


def effective_stop_signal(spec: ContainerSpec, image_config: Mapping[str, Any]) -> str:
    """``stop_signal``, else the image's StopSignal, else SIGTERM; as ``SIGNAME``."""
    raw = spec.stop_signal or image_config.get("StopSignal") or "SIGTERM"
    return signal_name(signal_number(str(raw)))


# Linux's numbering (x86, ARM and most others); 34..64 are glibc's real-time signals, so
# SIGRTMIN is 34 as in Docker's table.
SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20,
    "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27,
    "WINCH": 28, "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}
SIGRTMIN, SIGRTMAX = 34, 64
_NAMES = {number: name for name, number in reversed(SIGNALS.items())}


def signal_number(name: str) -> int:
    """``SIGTERM``, ``TERM``, ``term``, ``15``, ``SIGRTMIN+3``, ``RTMAX-1`` -> the number."""
    text = name.strip().upper()
    if text.isdigit():
        number = int(text)
    else:
        bare = text.removeprefix("SIG")
        base, sign, offset = bare, "", "0"
        for op in "+-":
            if op in bare:
                base, sign, offset = bare.partition(op)
        if bare in SIGNALS:
            number = SIGNALS[bare]
        elif base in ("RTMIN", "RTMAX") and offset.isdigit():
            start = SIGRTMIN if base == "RTMIN" else SIGRTMAX
            number = start + int(offset) if sign != "-" else start - int(offset)
            if not SIGRTMIN <= number <= SIGRTMAX:
                number = 0
        elif bare.isdigit():
            number = int(bare)
        else:
            number = 0
    if not 1 <= number <= SIGRTMAX:
        raise BundleError(f"unknown signal {name!r}")
    return number


def signal_name(number: int) -> str:
    """The canonical name of a signal number: ``SIGTERM``, ``SIGRTMIN+3``, ``SIGRTMAX``."""
    if number in _NAMES:
        return f"SIG{_NAMES[number]}"
    if number == SIGRTMAX:
        return "SIGRTMAX"
    if SIGRTMIN <= number < SIGRTMAX:
        return "SIGRTMIN" if number == SIGRTMIN else f"SIGRTMIN+{number - SIGRTMIN}"
    if 1 <= number <= SIGRTMAX:
        return f"SIG{number}"
    raise BundleError(f"unknown signal number {number}")
