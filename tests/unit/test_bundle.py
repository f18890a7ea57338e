"""The OCI bundle: each of Docker's rules, as exact values (no root, no runc)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from composer.runtime.bundle import (
    ALL_CAPABILITIES,
    BundleContext,
    BundleError,
    DeviceNode,
    bundle_warnings,
    container_env,
    effective_healthcheck,
    effective_stop_signal,
    exec_process,
    hostname_of,
    oci_config,
    process_args,
    security_options,
    signal_name,
    signal_number,
)
from composer.runtime.bundle_mounts import merge_options
from composer.runtime.cgroups import CgroupSettings
from composer.runtime.seccomp import default_profile
from composer.runtime.spec import ContainerSpec, Device, Healthcheck, Mount, Resources

ID = "0123456789abcdef" * 4
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n")
GROUP = "root:x:0:\napp:x:1000:\nextra:x:1001:app\n"
V1 = CgroupSettings("cgroupfs", 1, "/composer/proj/" + ID)
V2 = CgroupSettings("systemd", 2, "composer-proj.slice:composer:" + ID)

DEVICES = {
    "/dev/fuse": [DeviceNode("/dev/fuse", "c", 10, 229, 0o666, 0, 0)],
    "/dev/snd": [DeviceNode("/dev/snd/pcm0", "c", 116, 2, 0o660, 0, 29),
                 DeviceNode("/dev/snd/timer", "c", 116, 33, 0o660, 0, 29)],
    "/dev": [DeviceNode("/dev/null", "c", 1, 3), DeviceNode("/dev/sda", "b", 8, 0, 0o660, 0, 6)],
}


def lookup(path: str) -> list[DeviceNode]:
    return DEVICES[path]


def ctx(**changes: Any) -> BundleContext:
    base = BundleContext(container_id=ID, rootfs="/var/lib/composer/c/rootfs", cgroup=V1,
                         passwd=PASSWD, group=GROUP, capabilities=frozenset(ALL_CAPABILITIES),
                         machine="x86_64", device_lookup=lookup)
    return replace(base, **changes)


def spec(**changes: Any) -> ContainerSpec:
    return ContainerSpec(image="busybox", **changes)


IMAGE = {"Cmd": ["sh"], "Env": ["PATH=/usr/bin:/bin"]}
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]
DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
]
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
]


def test_the_default_container_as_a_whole() -> None:
    config = oci_config(spec(), IMAGE, ctx())
    seccomp = config["linux"].pop("seccomp")
    assert seccomp == default_profile(DEFAULT_CAPS, "x86_64")
    assert config == {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
            "args": ["sh"],
            "env": ["PATH=/usr/bin:/bin", "HOSTNAME=0123456789ab", "HOME=/root"],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS,
                             "permitted": DEFAULT_CAPS},
            "rlimits": [],
            "noNewPrivileges": False,
        },
        "root": {"path": "/var/lib/composer/c/rootfs", "readonly": False},
        "hostname": "0123456789ab",
        "mounts": DEFAULT_MOUNTS,
        "annotations": {},
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "network"}, {"type": "uts"},
                           {"type": "pid"}, {"type": "ipc"}],
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
                            "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                              "/proc/sys", "/proc/sysrq-trigger"],
            "resources": {"devices": DEFAULT_DEVICE_RULES},
            "cgroupsPath": "/composer/proj/" + ID,
            "devices": [],
            "sysctl": {"net.ipv4.ping_group_range": "0 2147483647",
                       "net.ipv4.ip_unprivileged_port_start": "0"},
        },
    }


# -- entrypoint and command --------------------------------------------------------------------

IMAGE_EP = {"Entrypoint": ["/entry.sh"], "Cmd": ["serve", "--port", "80"]}


@pytest.mark.parametrize(("entrypoint", "command", "expected"), [
    (None, None, ["/entry.sh", "serve", "--port", "80"]),
    (None, ("migrate",), ["/entry.sh", "migrate"]),
    (("/bin/other",), None, ["/bin/other"]),  # the image's CMD is dropped
    (("/bin/other",), ("x", "y"), ["/bin/other", "x", "y"]),
    ((), None, ["serve", "--port", "80"]),  # entrypoint: [] resets only the entrypoint
    ((), ("echo", "hi"), ["echo", "hi"]),
    (None, (), ["/entry.sh", "serve", "--port", "80"]),  # an empty command is no command
])
def test_entrypoint_and_command_merge_as_docker(entrypoint: tuple[str, ...] | None,
                                                command: tuple[str, ...] | None,
                                                expected: list[str]) -> None:
    assert process_args(spec(entrypoint=entrypoint, command=command), IMAGE_EP) == expected


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(BundleError, match="no command specified"):
        process_args(spec(), {})
    with pytest.raises(BundleError, match="no command specified"):
        process_args(spec(entrypoint=()), {"Entrypoint": ["/x"]})


# -- environment -------------------------------------------------------------------------------

def test_environment_order_and_overrides() -> None:
    image = {"Env": ["PATH=/opt/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/image-home", "X=1"]}
    env = container_env(spec(env={"X": "2", "NEW": "a=b"}), image, hostname="h", home="/root")
    assert env == ["PATH=/opt/bin:/usr/bin", "HOSTNAME=h", "LANG=C.UTF-8",
                   "HOME=/image-home", "X=2", "NEW=a=b"]


def test_environment_defaults_path_home_and_term_with_a_tty() -> None:
    assert container_env(spec(tty=True), {}, hostname="web", home="/home/app") == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=web",
        "TERM=xterm", "HOME=/home/app"]
    # The image's or the service's own TERM and HOSTNAME win.
    assert container_env(spec(tty=True, env={"TERM": "dumb", "HOSTNAME": "x"}), {},
                         hostname="web", home="/") == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=x",
        "TERM=dumb", "HOME=/"]


def test_environment_bare_image_name_unsets_and_bad_names_fail() -> None:
    assert container_env(spec(), {"Env": ["A=1", "A"]}, hostname="h", home="/")[2:] == [
        "HOME=/"]
    with pytest.raises(BundleError, match="invalid variable name 'A=B'"):
        container_env(spec(env={"A=B": "1"}), {}, hostname="h", home="/")


def test_home_follows_the_resolved_user() -> None:
    process = oci_config(spec(user="app"), IMAGE, ctx())["process"]
    assert process["env"][-1] == "HOME=/home/app"
    process = oci_config(spec(user="4242"), IMAGE, ctx())["process"]
    assert process["env"][-1] == "HOME=/"


# -- user, working directory, hostname ---------------------------------------------------------

def test_user_from_spec_or_image_with_groups() -> None:
    process = oci_config(spec(user="app", group_add=("root", "4000")), IMAGE, ctx())["process"]
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [1000, 1001, 0, 4000]}
    process = oci_config(spec(), {**IMAGE, "User": "1000:1001"}, ctx())["process"]
    assert process["user"] == {"uid": 1000, "gid": 1001, "additionalGids": [1001]}
    process = oci_config(spec(user="root"), {**IMAGE, "User": "app"}, ctx())["process"]
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}


def test_unknown_user_names_the_user_and_the_file() -> None:
    with pytest.raises(BundleError, match="user: unable to find user bob: no matching entries "
                                          "in /etc/passwd"):
        oci_config(spec(user="bob"), IMAGE, ctx())


@pytest.mark.parametrize(("spec_dir", "image_dir", "expected"), [
    (None, None, "/"), (None, "/app", "/app"), ("/srv/x/", "/app", "/srv/x"),
])
def test_working_dir(spec_dir: str | None, image_dir: str | None, expected: str) -> None:
    image = {**IMAGE, **({"WorkingDir": image_dir} if image_dir else {})}
    assert oci_config(spec(working_dir=spec_dir), image, ctx())["process"]["cwd"] == expected


def test_relative_working_dir_is_an_error() -> None:
    with pytest.raises(BundleError, match="working_dir 'src' must be an absolute path"):
        oci_config(spec(working_dir="src"), IMAGE, ctx())


def test_hostname_and_domainname() -> None:
    assert hostname_of(spec(), ID) == "0123456789ab"
    assert hostname_of(spec(hostname="db"), ID) == "db"
    assert hostname_of(spec(network="host"), ID) == socket.gethostname()
    config = oci_config(spec(hostname="db", domainname="example.com"), IMAGE, ctx())
    assert config["hostname"] == "db"
    assert config["linux"]["sysctl"]["kernel.domainname"] == "example.com"
    assert "HOSTNAME=db" in config["process"]["env"]


def test_joining_a_uts_namespace_sets_no_names_in_it() -> None:
    config = oci_config(spec(hostname="db", domainname="example.com"), IMAGE,
                        ctx(namespace_paths={"uts": "/proc/42/ns/uts"}))
    assert "hostname" not in config
    assert "kernel.domainname" not in config["linux"]["sysctl"]
    assert {"type": "uts", "path": "/proc/42/ns/uts"} in config["linux"]["namespaces"]


# -- capabilities ------------------------------------------------------------------------------

def caps_of(**changes: Any) -> list[str]:
    result: list[str] = oci_config(spec(**changes), IMAGE, ctx())["process"]["capabilities"][
        "bounding"]
    return result


def test_cap_add_and_drop_in_any_spelling() -> None:
    caps = caps_of(cap_add=("net_admin", "CAP_SYS_PTRACE"), cap_drop=("chown", "CAP_MKNOD"))
    assert caps == ["CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
                    "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN",
                    "CAP_NET_RAW", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_AUDIT_WRITE",
                    "CAP_SETFCAP"]
    # cap_add wins over cap_drop, as in Docker.
    assert "CAP_KILL" in caps_of(cap_add=("KILL",), cap_drop=("KILL",))


def test_cap_all() -> None:
    assert caps_of(cap_add=("ALL",)) == list(ALL_CAPABILITIES)
    assert caps_of(cap_add=("all",), cap_drop=("NET_RAW",)) == [
        c for c in ALL_CAPABILITIES if c != "CAP_NET_RAW"]
    assert caps_of(cap_drop=("ALL",), cap_add=("kill", "chown")) == ["CAP_CHOWN", "CAP_KILL"]
    assert caps_of(cap_drop=("ALL",)) == []


def test_unknown_capability_is_an_error() -> None:
    with pytest.raises(BundleError, match="cap_add: unknown capability 'SYS_MAGIC'"):
        caps_of(cap_add=("SYS_MAGIC",))
    with pytest.raises(BundleError, match="cap_drop: unknown capability 'CAP_NOPE'"):
        caps_of(cap_drop=("CAP_NOPE",))


def test_capabilities_never_exceed_the_callers_own() -> None:
    own = frozenset(ALL_CAPABILITIES) - {"CAP_SYS_RESOURCE", "CAP_NET_RAW"}
    config = oci_config(spec(privileged=True), IMAGE, ctx(capabilities=own))
    assert config["process"]["capabilities"]["bounding"] == [
        c for c in ALL_CAPABILITIES if c in own]
    assert "CAP_NET_RAW" not in oci_config(spec(), IMAGE, ctx(capabilities=own))[
        "process"]["capabilities"]["bounding"]
    with pytest.raises(BundleError, match="composer itself lacks CAP_SYS_RESOURCE"):
        oci_config(spec(cap_add=("SYS_RESOURCE",)), IMAGE, ctx(capabilities=own))


# -- privileged, read-only, security options ---------------------------------------------------

def test_privileged() -> None:
    config = oci_config(spec(privileged=True, cap_drop=("ALL",)), IMAGE, ctx())
    linux = config["linux"]
    assert config["process"]["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    assert linux["maskedPaths"] == [] and linux["readonlyPaths"] == []
    assert "seccomp" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert linux["devices"] == [
        {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0, "fileMode": 0o660,
         "uid": 0, "gid": 6}]
    by_target = {m["destination"]: m for m in config["mounts"]}
    assert by_target["/sys"]["options"] == ["nosuid", "noexec", "nodev"]
    assert by_target["/sys/fs/cgroup"]["options"] == ["nosuid", "noexec", "nodev"]


def test_read_only_root() -> None:
    config = oci_config(spec(read_only=True), IMAGE, ctx())
    assert config["root"] == {"path": "/var/lib/composer/c/rootfs", "readonly": True}
    assert config["mounts"] == DEFAULT_MOUNTS


def test_no_new_privileges_spellings() -> None:
    for option in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=TRUE",
                   "no-new-privileges=1"):
        assert oci_config(spec(security_opt=(option,)), IMAGE, ctx())["process"][
            "noNewPrivileges"] is True
    assert oci_config(spec(security_opt=("no-new-privileges=false",)), IMAGE, ctx())[
        "process"]["noNewPrivileges"] is False
    with pytest.raises(BundleError, match="'maybe' is not true or false"):
        oci_config(spec(security_opt=("no-new-privileges=maybe",)), IMAGE, ctx())


def test_seccomp_options() -> None:
    assert "seccomp" not in oci_config(spec(security_opt=("seccomp=unconfined",)), IMAGE,
                                       ctx())["linux"]
    assert "seccomp" not in oci_config(spec(security_opt=("seccomp:unconfined",)), IMAGE,
                                       ctx())["linux"]
    assert "seccomp" not in oci_config(spec(), IMAGE, ctx(seccomp=False))["linux"]
    # The profile follows the container's capabilities.
    admin = oci_config(spec(cap_add=("SYS_ADMIN",)), IMAGE, ctx())["linux"]["seccomp"]
    assert admin == default_profile(sorted({*DEFAULT_CAPS, "CAP_SYS_ADMIN"}), "x86_64")
    aarch64 = oci_config(spec(), IMAGE, ctx(machine="aarch64"))["linux"]["seccomp"]
    assert aarch64["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]


def test_seccomp_profile_from_a_file_or_inline(tmp_path: Path) -> None:
    profile = ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], '
               '"action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}')
    expected = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    path = tmp_path / "profile.json"
    path.write_text(profile)
    for option in (f"seccomp={path}", f"seccomp={profile}"):
        assert oci_config(spec(security_opt=(option,)), IMAGE, ctx())["linux"][
            "seccomp"] == expected
    with pytest.raises(BundleError, match="No such file or directory"):
        oci_config(spec(security_opt=(f"seccomp={tmp_path}/nope.json",)), IMAGE, ctx())
    with pytest.raises(BundleError, match="the profile's path must be absolute"):
        oci_config(spec(security_opt=("seccomp=profile.json",)), IMAGE, ctx())
    with pytest.raises(BundleError, match="this kernel has no seccomp"):
        oci_config(spec(security_opt=(f"seccomp={path}",)), IMAGE, ctx(seccomp=False))


def test_unsupported_security_options_are_warnings_and_unknown_ones_errors() -> None:
    s = spec(security_opt=("apparmor=docker-default", "apparmor=unconfined",
                           "label=type:svirt_apache_t", "label:disable"))
    assert bundle_warnings(s) == [
        "security_opt apparmor=docker-default: composer does not apply AppArmor profiles; "
        "the container runs without one",
        "security_opt label=type:svirt_apache_t: composer does not apply SELinux labels; "
        "ignored"]
    oci_config(s, IMAGE, ctx())
    with pytest.raises(BundleError, match="security_opt 'mac=on': unknown option"):
        security_options(spec(security_opt=("mac=on",)))
    with pytest.raises(BundleError, match="expected key=value"):
        security_options(spec(security_opt=("whatever",)))


def test_systempaths_and_writable_cgroups() -> None:
    config = oci_config(spec(security_opt=("systempaths=unconfined",
                                           "writable-cgroups=true")), IMAGE, ctx())
    assert config["linux"]["maskedPaths"] == [] and config["linux"]["readonlyPaths"] == []
    assert config["mounts"][4] == {"destination": "/sys/fs/cgroup", "type": "cgroup",
                                   "source": "cgroup", "options": ["nosuid", "noexec", "nodev"]}


# -- mounts ------------------------------------------------------------------------------------

def test_binds_and_tmpfs_sorted_by_depth_after_the_defaults() -> None:
    mounts = (
        Mount("bind", "/data/cache", "/srv/cache"),
        Mount("tmpfs", "/run", options=("size=65536k",)),
        Mount("bind", "/data", "/srv/data", read_only=True, options=("rshared", "z")),
        Mount("tmpfs", "/scratch", read_only=True, options=("exec", "mode=0700")),
        Mount("volume", "/var/lib/db", "/var/lib/composer/volumes/db/_data",
              options=("nocopy", "bind")),
    )
    config = oci_config(spec(mounts=mounts), IMAGE, ctx())
    assert config["mounts"][:7] == DEFAULT_MOUNTS
    assert config["mounts"][7:] == [
        {"destination": "/run", "type": "tmpfs", "source": "tmpfs",
         "options": ["noexec", "nosuid", "nodev", "rprivate", "mode=1777", "size=65536k"]},
        {"destination": "/data", "type": "bind", "source": "/srv/data",
         "options": ["rbind", "ro", "rshared"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
         "options": ["exec", "nosuid", "nodev", "rprivate", "mode=0700", "ro"]},
        {"destination": "/data/cache", "type": "bind", "source": "/srv/cache",
         "options": ["rbind", "rprivate"]},
        {"destination": "/var/lib/db", "type": "bind",
         "source": "/var/lib/composer/volumes/db/_data", "options": ["bind", "rprivate"]},
    ]
    assert config["linux"]["rootfsPropagation"] == "rshared"


def test_caller_mounts_yield_to_the_specs_and_replace_defaults() -> None:
    extra = (Mount("bind", "/etc/hosts", "/c/hosts"), Mount("bind", "/etc/resolv.conf",
                                                            "/c/resolv.conf"))
    mounts = (Mount("bind", "/etc/hosts", "/mine/hosts", read_only=True),
              Mount("tmpfs", "/dev/shm", options=("size=1g",)))
    config = oci_config(spec(mounts=mounts), IMAGE, ctx(extra_mounts=extra))
    assert [m["destination"] for m in config["mounts"]] == [
        "/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue",
        "/etc/hosts", "/etc/resolv.conf", "/dev/shm"]
    assert config["mounts"][6]["source"] == "/mine/hosts"
    assert config["mounts"][8]["options"] == [
        "noexec", "nosuid", "nodev", "rprivate", "mode=1777", "size=1g"]
    # A user /dev replaces every default mount under /dev, as Docker does.
    config = oci_config(spec(mounts=(Mount("bind", "/dev", "/dev"),)), IMAGE, ctx())
    assert [m["destination"] for m in config["mounts"]] == [
        "/proc", "/sys", "/sys/fs/cgroup", "/dev"]


@pytest.mark.parametrize(("mount", "message"), [
    (Mount("bind", "data", "/srv"), "mount target 'data' must be an absolute path"),
    (Mount("bind", "/", "/srv"), "cannot replace the root filesystem"),
    (Mount("bind", "/data", "srv"), "source 'srv' must be an absolute host path"),
    (Mount("volume", "/data", "dbdata"), "must resolve volume dbdata to a host directory"),
])
def test_bad_mounts(mount: Mount, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        oci_config(spec(mounts=(mount,)), IMAGE, ctx())


def test_duplicate_mount_point_is_an_error() -> None:
    with pytest.raises(BundleError, match="duplicate mount point: /data"):
        oci_config(spec(mounts=(Mount("bind", "/data", "/a"), Mount("tmpfs", "/data/"))),
                   IMAGE, ctx())


def test_shm_size_and_ipc_modes() -> None:
    shm = oci_config(spec(shm_size=1 << 30), IMAGE, ctx())["mounts"][6]
    assert shm["options"][-1] == "size=1073741824"
    host = oci_config(spec(ipc="host"), IMAGE, ctx())
    assert host["mounts"][6] == {"destination": "/dev/shm", "type": "bind",
                                 "source": "/dev/shm", "options": ["rbind", "rprivate"]}
    assert {"type": "ipc"} not in host["linux"]["namespaces"]
    none = oci_config(spec(ipc="none"), IMAGE, ctx())
    assert "/dev/shm" not in [m["destination"] for m in none["mounts"]]
    assert {"type": "ipc"} in none["linux"]["namespaces"]
    with pytest.raises(BundleError, match="shm_size: 0 must be above 0"):
        oci_config(spec(shm_size=0), IMAGE, ctx())


def test_merge_options() -> None:
    assert merge_options(["noexec", "nosuid", "size=1m", "exec", "size=2m", "ro", "rw"]) == [
        "exec", "nosuid", "size=2m", "rw"]


# -- namespaces --------------------------------------------------------------------------------

def namespaces(s: ContainerSpec, **paths: str) -> list[dict[str, str]]:
    result: list[dict[str, str]] = oci_config(s, IMAGE, ctx(namespace_paths=paths))["linux"][
        "namespaces"]
    return result


def test_namespaces_host_shared_and_private() -> None:
    assert namespaces(spec(network="host", pid="host", ipc="host")) == [
        {"type": "mount"}, {"type": "uts"}]
    assert namespaces(spec(network="bridge", pid="container:db", ipc="service:db"),
                      network="/run/composer/netns/x", pid="/proc/7/ns/pid",
                      ipc="/proc/7/ns/ipc") == [
        {"type": "mount"}, {"type": "network", "path": "/run/composer/netns/x"},
        {"type": "uts"}, {"type": "pid", "path": "/proc/7/ns/pid"},
        {"type": "ipc", "path": "/proc/7/ns/ipc"}]
    assert namespaces(spec(ipc="shareable")) == namespaces(spec())


def test_cgroup_v2_gets_a_cgroup_namespace_and_the_path_as_is() -> None:
    linux = oci_config(spec(), IMAGE, ctx(cgroup=V2))["linux"]
    assert linux["namespaces"][-1] == {"type": "cgroup"}
    assert linux["cgroupsPath"] == "composer-proj.slice:composer:" + ID


@pytest.mark.parametrize(("changes", "paths", "message"), [
    ({"network": "bridge"}, {}, "network_mode bridge: needs the network namespace"),
    ({"network": "service:db"}, {}, "network_mode service:db: needs the path of that"),
    ({"network": "host"}, {"network": "/x"}, "host cannot join a network namespace"),
    ({"ipc": "container:db"}, {}, "ipc: container:db needs the path"),
    ({"pid": "service:db"}, {}, "pid: service:db needs the path"),
    ({"pid": "sideways"}, {}, "pid: invalid mode 'sideways'"),
    ({}, {"ipc": "/proc/1/ns/ipc"}, "ipc: private cannot join a namespace"),
    ({}, {"user": "/proc/1/ns/user"}, "unknown namespace kind user"),
])
def test_namespace_errors(changes: dict[str, Any], paths: dict[str, str], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        oci_config(spec(**changes), IMAGE, ctx(namespace_paths=paths))


def test_network_none_may_use_a_prepared_namespace() -> None:
    assert namespaces(spec(), network="/run/netns/a")[1] == {"type": "network",
                                                             "path": "/run/netns/a"}


# -- resources ---------------------------------------------------------------------------------

def test_resources_the_same_on_v1_and_v2() -> None:
    res = Resources(memory=256 << 20, memory_reservation=128 << 20, cpus=1.5, cpu_shares=512,
                    cpuset_cpus="0-1", cpuset_mems="0", pids_limit=100)
    expected = {
        "devices": DEFAULT_DEVICE_RULES,
        "memory": {"limit": 256 << 20, "swap": 512 << 20, "reservation": 128 << 20},
        "cpu": {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
    }
    for cgroup in (V1, V2):
        assert oci_config(spec(resources=res), IMAGE, ctx(cgroup=cgroup))["linux"][
            "resources"] == expected


@pytest.mark.parametrize(("res", "expected"), [
    (Resources(memory=64 << 20, memory_swap=-1), {"memory": {"limit": 64 << 20, "swap": -1}}),
    (Resources(memory=64 << 20, memory_swap=100 << 20),
     {"memory": {"limit": 64 << 20, "swap": 100 << 20}}),
    (Resources(memory_swap=-1), {"memory": {"swap": -1}}),
    (Resources(cpus=0.25), {"cpu": {"quota": 25000, "period": 100000}}),
    (Resources(pids_limit=0), {"pids": {"limit": -1}}),
    (Resources(pids_limit=-1), {"pids": {"limit": -1}}),
])
def test_resource_details(res: Resources, expected: dict[str, Any]) -> None:
    got = oci_config(spec(resources=res), IMAGE, ctx())["linux"]["resources"]
    del got["devices"]
    assert got == expected


def test_no_swap_accounting_leaves_swap_alone() -> None:
    got = oci_config(spec(resources=Resources(memory=64 << 20, memory_swap=128 << 20)), IMAGE,
                     ctx(swap_limit=False))["linux"]["resources"]
    assert got["memory"] == {"limit": 64 << 20}


@pytest.mark.parametrize(("res", "message"), [
    (Resources(memory=1 << 20), "below the minimum, 6 MiB"),
    (Resources(memory_swap=1 << 30), "memswap_limit needs mem_limit"),
    (Resources(memory=64 << 20, memory_swap=32 << 20), "must be at least mem_limit"),
    (Resources(memory=64 << 20, memory_reservation=128 << 20), "mem_reservation must not"),
    (Resources(cpus=0), "cpus: 0 must be above 0"),
])
def test_resource_errors(res: Resources, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        oci_config(spec(resources=res), IMAGE, ctx())


# -- ulimits, sysctls, devices -----------------------------------------------------------------

def test_ulimits_capped_at_the_callers_hard_limits() -> None:
    ulimits = {"nofile": (4096, 65536), "nproc": (-1, -1), "core": (0, 0),
               "memlock": (-1, -1)}
    own = {"nofile": (1024, 20000), "nproc": (96363, 96363), "memlock": (-1, -1)}
    assert oci_config(spec(ulimits=ulimits), IMAGE, ctx(rlimits=own))["process"][
        "rlimits"] == [
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
        {"type": "RLIMIT_MEMLOCK", "hard": 2**64 - 1, "soft": 2**64 - 1},
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 4096},
        {"type": "RLIMIT_NPROC", "hard": 96363, "soft": 96363},
    ]


def test_default_nofile_is_dockers_capped_by_the_caller() -> None:
    def nofile(own: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = oci_config(spec(), IMAGE, ctx(rlimits=own))[
            "process"]["rlimits"]
        return result

    assert nofile({}) == []
    assert nofile({"nofile": (1024, 20000)}) == [
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    assert nofile({"nofile": (1024, -1)}) == [
        {"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576}]


def test_ulimit_errors() -> None:
    with pytest.raises(BundleError, match="ulimits: unknown limit 'files'"):
        oci_config(spec(ulimits={"files": (1, 1)}), IMAGE, ctx())
    with pytest.raises(BundleError, match="soft limit 10 is above hard limit 5"):
        oci_config(spec(ulimits={"nofile": (10, 5)}), IMAGE, ctx())


def test_sysctls() -> None:
    values = {"net.core.somaxconn": "1024", "kernel.shmmax": "68719476736",
              "fs.mqueue.msg_max": "100", "net.ipv4.ip_unprivileged_port_start": "1024"}
    assert oci_config(spec(sysctls=values), IMAGE, ctx())["linux"]["sysctl"] == {
        "net.ipv4.ping_group_range": "0 2147483647",
        "net.ipv4.ip_unprivileged_port_start": "1024",
        "fs.mqueue.msg_max": "100", "kernel.shmmax": "68719476736",
        "net.core.somaxconn": "1024"}
    # No defaults in a network namespace that is not the container's own.
    assert oci_config(spec(network="host"), IMAGE, ctx())["linux"]["sysctl"] == {}
    assert oci_config(spec(network="service:db"), IMAGE,
                      ctx(namespace_paths={"network": "/proc/9/ns/net"}))["linux"][
        "sysctl"] == {}


@pytest.mark.parametrize(("changes", "message"), [
    ({"sysctls": {"kernel.pid_max": "10"}}, "sysctls.kernel.pid_max: not a namespaced sysctl"),
    ({"sysctls": {"vm.swappiness": "1"}}, "vm.swappiness: not a namespaced sysctl"),
    ({"sysctls": {"net.core.somaxconn": "1"}, "network": "host"}, "network_mode: host"),
    ({"sysctls": {"kernel.sem": "1 2 3 4"}, "ipc": "host"}, "with ipc: host"),
])
def test_sysctl_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        oci_config(spec(**changes), IMAGE, ctx())


def test_devices_with_their_permissions() -> None:
    devices = (Device("/dev/fuse", "/dev/fuse"), Device("/dev/snd", "/dev/sound", "rw"))
    linux = oci_config(spec(devices=devices), IMAGE, ctx())["linux"]
    assert linux["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666,
         "uid": 0, "gid": 0},
        {"path": "/dev/sound/pcm0", "type": "c", "major": 116, "minor": 2, "fileMode": 0o660,
         "uid": 0, "gid": 29},
        {"path": "/dev/sound/timer", "type": "c", "major": 116, "minor": 33,
         "fileMode": 0o660, "uid": 0, "gid": 29}]
    assert linux["resources"]["devices"] == [
        *DEFAULT_DEVICE_RULES,
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "c", "major": 116, "minor": 2, "access": "rw"},
        {"allow": True, "type": "c", "major": 116, "minor": 33, "access": "rw"}]


def test_device_errors() -> None:
    with pytest.raises(BundleError, match="permissions 'rx' must be made of r, w and m"):
        oci_config(spec(devices=(Device("/dev/fuse", "/dev/fuse", "rx"),)), IMAGE, ctx())
    with pytest.raises(BundleError, match="both paths must be absolute"):
        oci_config(spec(devices=(Device("/dev/fuse", "fuse"),)), IMAGE, ctx())


def test_real_device_lookup_reads_the_host() -> None:
    config = oci_config(spec(devices=(Device("/dev/null", "/dev/nothing", "rw"),)), IMAGE,
                        replace(ctx(), device_lookup=BundleContext.device_lookup))
    assert config["linux"]["devices"][0]["path"] == "/dev/nothing"
    assert config["linux"]["resources"]["devices"][-1] == {
        "allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    with pytest.raises(BundleError, match="/etc/hostname is not a device"):
        oci_config(spec(devices=(Device("/etc/hostname", "/dev/x"),)), IMAGE,
                   replace(ctx(), device_lookup=BundleContext.device_lookup))


# -- init, annotations, exec -------------------------------------------------------------------

def test_init_runs_tini_bound_read_only() -> None:
    config = oci_config(spec(init=True, command=("sleep", "1")), IMAGE,
                        ctx(init_path="/usr/bin/tini-static"))
    assert config["process"]["args"] == ["/sbin/docker-init", "--", "sleep", "1"]
    assert config["mounts"][7] == {"destination": "/sbin/docker-init", "type": "bind",
                                   "source": "/usr/bin/tini-static", "options": ["bind", "ro"]}
    with pytest.raises(BundleError, match="init: true needs a static init"):
        oci_config(spec(init=True), IMAGE, ctx())


def test_init_is_skipped_with_a_shared_pid_namespace_and_says_so() -> None:
    s = spec(init=True, pid="host")
    config = oci_config(s, IMAGE, ctx(init_path="/usr/bin/tini-static"))
    assert config["process"]["args"] == ["sh"]
    assert bundle_warnings(s) == [
        "init: true is ignored with pid: host: that namespace has its own PID 1 "
        "(Docker ignores it too)"]


def test_annotations_are_labels_then_the_callers() -> None:
    config = oci_config(spec(labels={"b": "1", "com.docker.compose.project": "fake"}), IMAGE,
                        ctx(annotations={"com.docker.compose.project": "real", "a": "2"}))
    assert config["annotations"] == {"a": "2", "b": "1", "com.docker.compose.project": "real"}


def test_exec_process_follows_the_container() -> None:
    s = spec(user="app", env={"A": "1"}, working_dir="/srv", ulimits={"nofile": (10, 10)},
             security_opt=("no-new-privileges",))
    process = exec_process(s, IMAGE, ctx(), ["id"], env={"B": "2"})
    assert process == {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 1001]},
        "args": ["id"],
        "env": ["PATH=/usr/bin:/bin", "HOSTNAME=0123456789ab", "A=1", "B=2",
                "HOME=/home/app"],
        "cwd": "/srv",
        "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS,
                         "permitted": DEFAULT_CAPS},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 10, "soft": 10}],
        "noNewPrivileges": True,
    }


def test_exec_process_overrides() -> None:
    process = exec_process(spec(user="app"), IMAGE, ctx(), ["sh"], user="root",
                           working_dir="/tmp", tty=True, privileged=True)
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    assert process["env"][-2:] == ["TERM=xterm", "HOME=/root"]
    assert (process["cwd"], process["terminal"]) == ("/tmp", True)
    assert process["capabilities"]["bounding"] == list(ALL_CAPABILITIES)
    with pytest.raises(BundleError, match="exec: no command given"):
        exec_process(spec(), IMAGE, ctx(), [])


# -- health checks and signals -----------------------------------------------------------------

S = 1_000_000_000


def test_healthcheck_from_the_image_with_defaults() -> None:
    image = {"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 10 * S,
                             "Retries": 5}}
    assert effective_healthcheck(spec(), image) == Healthcheck(
        ("CMD-SHELL", "curl -f localhost"), interval=10.0, timeout=30.0, retries=5,
        start_period=0.0, start_interval=5.0)
    assert effective_healthcheck(spec(), {}) is None


def test_healthcheck_merged_field_by_field() -> None:
    image = {"Healthcheck": {"Test": ["CMD", "check"], "Interval": 10 * S, "Timeout": 2 * S,
                             "StartPeriod": 60 * S, "StartInterval": 1 * S}}
    mine = Healthcheck((), timeout=5.0, retries=2)
    assert effective_healthcheck(spec(healthcheck=mine), image) == Healthcheck(
        ("CMD", "check"), interval=10.0, timeout=5.0, retries=2, start_period=60.0,
        start_interval=1.0)
    other = Healthcheck(("CMD", "other"), interval=0)
    assert effective_healthcheck(spec(healthcheck=other), image) == Healthcheck(
        ("CMD", "other"), interval=10.0, timeout=2.0, retries=3, start_period=60.0,
        start_interval=1.0)


def test_healthcheck_disabled_or_invalid() -> None:
    image = {"Healthcheck": {"Test": ["CMD", "check"]}}
    assert effective_healthcheck(spec(healthcheck=Healthcheck(("NONE",))), image) is None
    assert effective_healthcheck(spec(), {"Healthcheck": {"Test": ["NONE"]}}) is None
    with pytest.raises(BundleError, match="must start with CMD, CMD-SHELL or NONE"):
        effective_healthcheck(spec(healthcheck=Healthcheck(("curl", "x"))), {})


@pytest.mark.parametrize(("mine", "image", "expected"), [
    (None, None, "SIGTERM"), (None, "SIGQUIT", "SIGQUIT"), ("int", "SIGQUIT", "SIGINT"),
    ("9", None, "SIGKILL"), ("SIGRTMIN+3", None, "SIGRTMIN+3"), ("RTMAX", None, "SIGRTMAX"),
    ("SIGIOT", None, "SIGABRT"), ("SIGCLD", None, "SIGCHLD"), ("SIGPOLL", None, "SIGIO"),
])
def test_stop_signal(mine: str | None, image: str | None, expected: str) -> None:
    image_config = {"StopSignal": image} if image else {}
    assert effective_stop_signal(spec(stop_signal=mine), image_config) == expected


@pytest.mark.parametrize(("name", "number"), [
    ("SIGTERM", 15), ("TERM", 15), ("term", 15), ("15", 15), ("SIGHUP", 1), ("SIGUSR1", 10),
    ("SIGWINCH", 28), ("SIGRTMIN", 34), ("SIGRTMIN+3", 37), ("RTMAX-1", 63), ("SIGRTMAX", 64),
    ("64", 64), ("SIG32", 32),
])
def test_signal_number(name: str, number: int) -> None:
    assert signal_number(name) == number


@pytest.mark.parametrize("name", ["SIGNOPE", "0", "65", "SIGRTMIN+40", "RTMAX-31", "", "+"])
def test_unknown_signal(name: str) -> None:
    with pytest.raises(BundleError, match="unknown signal"):
        signal_number(name)


def test_signal_names_round_trip() -> None:
    for number in range(1, 65):
        assert signal_number(signal_name(number)) == number
    assert signal_name(63) == "SIGRTMIN+29"


def test_rootfs_must_be_absolute() -> None:
    with pytest.raises(BundleError, match="rootfs 'rootfs' must be an absolute path"):
        oci_config(spec(), IMAGE, ctx(rootfs="rootfs"))
