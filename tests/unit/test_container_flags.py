"""``container run`` flags into the spec the engine receives, and the spec's JSON form."""

from __future__ import annotations

import pytest

from composer.cli.commands.container_flags import spec_from_options
from composer.cli.parser import build_parser
from composer.errors import UsageError
from composer.runtime.spec import (
    Attachment,
    ContainerSpec,
    Device,
    Healthcheck,
    Mount,
    PortBinding,
)


def spec(*args: str) -> ContainerSpec:
    options = build_parser().parse_args(["container", "run", *args])
    return ContainerSpec.from_json(spec_from_options(options))


def test_every_flag_lands_in_its_field(tmp_path: object) -> None:
    got = spec("--name", "web", "-e", "A=1", "-v", "/srv:/data:ro", "--tmpfs", "/run:size=1m",
               "-w", "/app", "-u", "app:extra", "--entrypoint", "/bin/sh -c", "-h", "box",
               "--read-only", "--cap-add", "NET_ADMIN", "--cap-drop", "ALL", "-m", "64m",
               "--memory-swap", "128m", "--cpus", "1.5", "--pids-limit", "50",
               "--shm-size", "1g", "--ulimit", "nofile=100:200", "--sysctl", "net.x=1",
               "--device", "/dev/fuse", "--security-opt", "no-new-privileges",
               "--network", "host", "--init", "--stop-signal", "SIGINT",
               "--stop-timeout", "3", "--restart", "on-failure:2", "-l", "a=b",
               "--log-opt", "max-size=1k", "--log-opt", "max-file=2", "--rm", "-i", "-t",
               "--health-cmd", "true", "--health-interval", "2s",
               "local/app:1", "echo", "-n", "hi")
    assert got.name == "web" and got.env == {"A": "1"}
    assert got.mounts == (Mount("bind", "/data", "/srv", read_only=True, create_host_path=True),
                          Mount("tmpfs", "/run", options=("size=1m",)))
    assert (got.working_dir, got.user, got.hostname) == ("/app", "app:extra", "box")
    assert got.entrypoint == ("/bin/sh", "-c") and got.command == ("echo", "-n", "hi")
    assert got.read_only and got.cap_add == ("NET_ADMIN",) and got.cap_drop == ("ALL",)
    assert (got.resources.memory, got.resources.memory_swap) == (64 << 20, 128 << 20)
    assert (got.resources.cpus, got.resources.pids_limit) == (1.5, 50)
    assert got.shm_size == 1 << 30 and got.ulimits == {"nofile": (100, 200)}
    assert got.sysctls == {"net.x": "1"} and got.devices == (Device("/dev/fuse", "/dev/fuse"),)
    assert got.security_opt == ("no-new-privileges",) and got.network == "host" and got.init
    assert (got.stop_signal, got.stop_grace_period, got.restart) == ("SIGINT", 3.0,
                                                                      "on-failure:2")
    assert got.labels == {"a": "b"}
    assert (got.logging.max_size, got.logging.max_file) == (1024, 2)
    assert got.auto_remove and got.stdin_open and got.tty
    assert got.healthcheck == Healthcheck(test=("CMD-SHELL", "true"), interval=2.0)
    assert ContainerSpec.from_json(got.to_json()) == got


def test_network_flags_land_in_the_first_network_named() -> None:
    got = spec("--network", "front", "--network", "back", "--network-alias", "web",
               "--ip", "10.5.0.9", "-p", "127.0.0.1:8080:80", "-p", "53/udp",
               "--add-host", "h:1.2.3.4", "--dns", "9.9.9.9", "--dns-search", "x.y",
               "--dns-option", "ndots:1", "--link", "db:database", "img")
    assert got.network == "bridge"
    assert got.networks == (Attachment("front", ("web",), "10.5.0.9"), Attachment("back"))
    assert got.ports == (PortBinding(80, "tcp", "127.0.0.1", 8080), PortBinding(53, "udp"))
    assert (got.extra_hosts, got.dns, got.dns_search, got.dns_opt, got.links) == (
        ("h:1.2.3.4",), ("9.9.9.9",), ("x.y",), ("ndots:1",), ("db:database",))


def test_the_default_network_is_bridge_and_modes_stand_alone() -> None:
    assert spec("img").networks == (Attachment("bridge"),)
    assert spec("--network", "none", "img").network == "none"
    assert spec("--network", "container:db", "img").network == "container:db"


def test_an_empty_entrypoint_resets_and_no_healthcheck_disables() -> None:
    got = spec("--entrypoint", "", "--no-healthcheck", "img")
    assert got.entrypoint == () and got.command is None
    assert got.healthcheck == Healthcheck(test=("NONE",))


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "lots"], "invalid size 'lots' for --memory"),
    (["--network", "host", "--network", "web"], "cannot be combined with other networks"),
    (["--network", "none", "-p", "80"], "need a bridge network"),
    (["--network-alias", "x"], "only for containers in user-defined networks"),
    (["-p", "80/icmp"], "invalid protocol"),
    (["--ulimit", "nofile=x"], "invalid ulimit"),
    (["--health-interval", "soon"], "invalid duration 'soon'"),
    (["--log-opt", "mode=fast"], "unknown --log-opt 'mode'"),
    (["-v", ":/data"], "invalid volume"),
])
def test_malformed_flags_are_usage_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        spec(*args, "img")


def test_the_engine_refuses_a_spec_field_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown container spec fields: colour"):
        ContainerSpec.from_json({"image": "x", "colour": "blue"})


def test_a_name_before_the_colon_is_a_named_volume() -> None:
    got = spec("-v", "data:/data:ro,nocopy", "-v", "./here:/here", "img")
    assert got.mounts[0] == Mount("volume", "/data", "data", read_only=True,
                                  options=("nocopy",))
    assert got.mounts[1].type == "bind" and got.mounts[1].source.endswith("/here")
