"""A compose service (canonical form) into the ContainerSpec of one of its containers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from composer.engine.service_spec import ServiceContext, container_spec
from composer.runtime.spec import (
    Attachment,
    ContainerSpec,
    Device,
    File,
    Healthcheck,
    Logging,
    Mount,
    PortBinding,
    Resources,
)

TREE: dict[str, Any] = {
    "name": "myapp",
    "networks": {"default": {"name": "myapp_default"}, "front": {"name": "myapp_front"},
                 "back": {"name": "custom-back"},
                 "outside": {"name": "corp-net", "external": True}},
    "volumes": {"db": {"name": "myapp_db"}, "shared": {"name": "team-shared",
                                                       "external": True}},
    "secrets": {"pw": {"name": "myapp_pw", "file": "/proj/pw.txt"},
                "token": {"name": "myapp_token", "environment": "TOKEN"},
                "ext": {"name": "vault", "external": True}},
    "configs": {"conf": {"name": "myapp_conf", "file": "/proj/app.conf"},
                "inline": {"name": "myapp_inline", "content": "hello $x"}},
}
PEERS = {"web": "myapp-web-1", "db": "myapp-db-1", "cache": "myapp-cache-1"}


def translate(config: Mapping[str, Any], *, service: str = "web",
              tree: Mapping[str, Any] = TREE, environment: Mapping[str, str] | None = None,
              peers: Mapping[str, str] = PEERS) -> tuple[ContainerSpec, list[str]]:
    ctx = ServiceContext(project="myapp", project_dir="/proj", tree=tree,
                         environment=environment or {}, peers=peers)
    data, warnings = container_spec(ctx, service, config, name=f"myapp-{service}-1",
                                    image="nginx:1", labels={"com.docker.compose.service":
                                                             service})
    json.dumps(data)  # plain JSON, as the engine stores it
    return ContainerSpec.from_json(data), warnings


def test_a_plain_service_joins_the_default_network_under_its_name() -> None:
    spec, warnings = translate({"image": "nginx", "command": None, "entrypoint": None})
    assert warnings == []
    assert (spec.image, spec.name) == ("nginx:1", "myapp-web-1")
    assert spec.labels == {"com.docker.compose.service": "web"}
    assert spec.network == "bridge"
    assert spec.networks == (Attachment("myapp_default", aliases=("web",)),)
    assert (spec.entrypoint, spec.command, spec.restart) == (None, None, "no")
    assert spec.resources == Resources() and spec.logging == Logging()


def test_the_plain_attributes_are_carried_as_they_are() -> None:
    spec, warnings = translate({
        "command": ["echo", "hi"], "entrypoint": [], "environment": {"A": "1", "B": None},
        "user": "1000:1000", "working_dir": "/app", "hostname": "box",
        "domainname": "example.com", "tty": True, "stdin_open": True, "read_only": True,
        "privileged": True, "cap_add": ["NET_ADMIN"], "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"], "group_add": ["mail", 42],
        "dns": ["8.8.8.8"], "dns_search": "example.com", "dns_opt": ["use-vc"],
        "init": True, "stop_signal": "SIGINT", "stop_grace_period": "1m30s",
        "runtime": "runc", "shm_size": "1073741824", "sysctls": {"net.core.somaxconn": "1024"},
        "ipc": "shareable", "pid": "host"})
    assert warnings == []
    assert spec.command == ("echo", "hi") and spec.entrypoint == ()  # [] resets the image's
    assert spec.env == {"A": "1"}  # a variable without a value is unset
    assert (spec.user, spec.working_dir, spec.hostname, spec.domainname) == (
        "1000:1000", "/app", "box", "example.com")
    assert spec.tty and spec.stdin_open and spec.read_only and spec.privileged and spec.init
    assert (spec.cap_add, spec.cap_drop) == (("NET_ADMIN",), ("ALL",))
    assert spec.security_opt == ("no-new-privileges:true",)
    assert spec.group_add == ("mail", "42")
    assert (spec.dns, spec.dns_search, spec.dns_opt) == (("8.8.8.8",), ("example.com",),
                                                         ("use-vc",))
    assert (spec.stop_signal, spec.stop_grace_period, spec.runtime) == ("SIGINT", 90.0, "runc")
    assert spec.shm_size == 1 << 30 and spec.sysctls == {"net.core.somaxconn": "1024"}
    assert (spec.ipc, spec.pid) == ("shareable", "host")


def test_sysctls_as_a_list() -> None:
    spec, _ = translate({"sysctls": ["net.ipv4.ip_forward=1", "kernel.msgmax=65536"]})
    assert spec.sysctls == {"net.ipv4.ip_forward": "1", "kernel.msgmax": "65536"}


# -- ports ---------------------------------------------------------------------------------------


def test_ports_become_bindings() -> None:
    spec, warnings = translate({"ports": [
        {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
        {"mode": "ingress", "host_ip": "127.0.0.1", "target": 9000, "published": "8000-8010",
         "protocol": "udp"},
        {"mode": "ingress", "target": 443, "protocol": "tcp"},
        {"mode": "ingress", "target": 81, "published": "0", "protocol": "tcp"},
        {"mode": "host", "host_ip": "::1", "target": 53, "published": "53", "protocol": "udp",
         "name": "dns", "app_protocol": "dns"},
        {"target": 132, "published": "1320", "protocol": "sctp"}]})
    assert warnings == []
    assert spec.ports == (
        PortBinding(80, "tcp", "", 8080),
        PortBinding(9000, "udp", "127.0.0.1", 8000, 8010),
        PortBinding(443, "tcp", ""),
        PortBinding(81, "tcp", ""),
        PortBinding(53, "udp", "::1", 53),
        PortBinding(132, "sctp", "", 1320))


def test_a_port_that_cannot_be_published_is_reported() -> None:
    spec, warnings = translate({"ports": [
        {"target": 80, "published": "x", "protocol": "tcp"},
        {"target": 81, "protocol": "icmp"}, {"target": 82}]})
    assert spec.ports == (PortBinding(82),)
    assert [w.split(":")[0] for w in warnings] == ["services.web.ports[0]",
                                                   "services.web.ports[1]"]


def test_expose_is_kept_as_written() -> None:
    spec, warnings = translate({"expose": ["3000", "4000-4002/udp", "bad/proto"]})
    assert spec.expose == ("3000", "4000-4002/udp") and not spec.publish_all
    assert len(warnings) == 1 and warnings[0].startswith("services.web.expose: ")


# -- volumes -------------------------------------------------------------------------------------


def test_binds() -> None:
    spec, warnings = translate({"volumes": [
        # the short syntax ./data:/data:ro,z as the loader normalizes it
        {"type": "bind", "source": "/proj/data", "target": "/data", "read_only": True,
         "bind": {"selinux": "z", "create_host_path": True}},
        # long syntax without bind options: Docker's Binds API, which makes the host path
        {"type": "bind", "source": "/srv/x", "target": "/x"},
        {"type": "bind", "source": "/srv", "target": "/srv",
         "bind": {"propagation": "rshared", "recursive": "disabled"}},
        {"type": "bind", "source": "relative", "target": "/r", "bind": {}}]})
    assert warnings == []
    assert spec.mounts == (
        Mount("bind", "/data", "/proj/data", read_only=True, options=("z",),
              create_host_path=True),
        Mount("bind", "/x", "/srv/x", create_host_path=True),
        Mount("bind", "/srv", "/srv", options=("rshared", "bind")),
        Mount("bind", "/r", "/proj/relative"))


def test_named_anonymous_and_subpath_volumes() -> None:
    spec, warnings = translate({"volumes": [
        {"type": "volume", "source": "db", "target": "/var/lib/db", "volume": {"nocopy": True}},
        {"type": "volume", "target": "/anon", "volume": {}},
        {"type": "volume", "source": "db", "target": "/sub", "read_only": True,
         "volume": {"subpath": "a/b"}},
        {"type": "volume", "source": "shared", "target": "/shared"},
        {"type": "volume", "source": "undeclared", "target": "/u", "consistency": "cached"}]})
    assert warnings == []
    assert spec.mounts == (
        Mount("volume", "/var/lib/db", "myapp_db", options=("nocopy",)),
        Mount("volume", "/anon"),  # what `container run -v /anon` asks for
        Mount("volume", "/sub", "myapp_db", read_only=True, subpath="a/b"),
        Mount("volume", "/shared", "team-shared"),
        Mount("volume", "/u", "myapp_undeclared"))


def test_tmpfs_mounts_and_the_tmpfs_attribute() -> None:
    spec, warnings = translate({
        "volumes": [
            {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "67108864", "mode": 1023}},
            {"type": "tmpfs", "target": "/t2", "tmpfs": {"size": "64m", "mode": "1777"}},
            {"type": "tmpfs", "target": "/t3", "read_only": True}],
        "tmpfs": ["/run:size=10m,mode=755", "/var/run"]})
    assert warnings == []
    assert spec.mounts == (
        Mount("tmpfs", "/tmp", options=("size=67108864", "mode=1777")),
        Mount("tmpfs", "/t2", options=("size=67108864", "mode=1777")),
        Mount("tmpfs", "/t3", read_only=True),
        Mount("tmpfs", "/run", options=("size=10m", "mode=755")),
        Mount("tmpfs", "/var/run"))
    spec, _ = translate({"tmpfs": "/single"})
    assert spec.mounts == (Mount("tmpfs", "/single"),)


def test_mounts_composer_cannot_make_are_reported() -> None:
    spec, warnings = translate({"volumes": [
        {"type": "image", "source": "alpine", "target": "/img"},
        {"type": "npipe", "source": r"\\.\pipe\x", "target": "/p"},
        {"type": "bind", "source": "/a", "target": "/a", "bind": {"recursive": "readonly",
                                                                  "create_host_path": True}},
        {"type": "tmpfs", "target": "/t", "tmpfs": {"mode": "9z"}}]})
    assert spec.mounts == (Mount("bind", "/a", "/a", create_host_path=True),
                           Mount("tmpfs", "/t"))
    assert [w.split(": ")[0] for w in warnings] == [
        "services.web.volumes[0].type", "services.web.volumes[1].type",
        "services.web.volumes[2].bind.recursive", "services.web.volumes[3].tmpfs.mode"]


# -- secrets and configs -------------------------------------------------------------------------


def test_secrets_and_configs_become_files() -> None:
    spec, warnings = translate({
        "secrets": [{"source": "pw", "target": "/run/secrets/pw"},
                    {"source": "token", "target": "custom", "uid": "100", "gid": "101",
                     "mode": "0400"},
                    {"source": "pw", "target": "/etc/pw", "mode": 288}, "pw"],
        "configs": [{"source": "conf"}, {"source": "inline", "target": "/etc/inline.conf"},
                    {"source": "conf", "target": "etc/relative.conf"}]},
        environment={"TOKEN": "s3cret"})
    assert warnings == []
    assert spec.files == (
        File("/run/secrets/pw", source="/proj/pw.txt"),
        File("/run/secrets/custom", content="s3cret", uid="100", gid="101", mode=0o400),
        File("/etc/pw", source="/proj/pw.txt", mode=0o440),
        File("/run/secrets/pw", source="/proj/pw.txt"),
        File("/conf", source="/proj/app.conf"),
        File("/etc/inline.conf", content="hello $x"),
        File("/etc/relative.conf", source="/proj/app.conf"))


def test_secrets_that_cannot_be_placed_are_reported() -> None:
    spec, warnings = translate({"secrets": [{"source": "ext"}, {"source": "token"},
                                            {"source": "nowhere"}]})
    assert spec.files == ()
    assert len(warnings) == 3
    assert "vault is external" in warnings[0]
    assert "$TOKEN, which is not set" in warnings[1]
    assert "not defined" in warnings[2]
    assert all(w.startswith("services.web.secrets[") for w in warnings)


# -- health checks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("1.5s", 1.5),
    ("2us", 2e-6), ("2µs", 2e-6), ("1h2m3s", 3723.0), ("0s", 0.0), (10, 10.0)])
def test_durations(text: str, seconds: float) -> None:
    spec, warnings = translate({"stop_grace_period": text,
                                "healthcheck": {"test": ["CMD", "true"], "interval": text}})
    assert warnings == []
    assert spec.stop_grace_period == pytest.approx(seconds)
    assert spec.healthcheck is not None
    assert spec.healthcheck.interval == pytest.approx(seconds)


def test_healthcheck_forms() -> None:
    spec, _ = translate({"healthcheck": {
        "test": "curl -f localhost", "interval": "1m30s", "timeout": "500ms", "retries": 5,
        "start_period": "2µs", "start_interval": "1.5s"}})
    assert spec.healthcheck == Healthcheck(("CMD-SHELL", "curl -f localhost"), 90.0, 0.5, 5,
                                           2e-6, 1.5)
    spec, _ = translate({"healthcheck": {"test": ["CMD", "pg_isready"]}})
    assert spec.healthcheck == Healthcheck(("CMD", "pg_isready"))
    for disabled in ({"disable": True}, {"test": ["NONE"]}):
        spec, _ = translate({"healthcheck": disabled})
        assert spec.healthcheck == Healthcheck(("NONE",))
    spec, _ = translate({"healthcheck": None})
    assert spec.healthcheck is None


def test_a_healthcheck_without_test_tunes_the_image_one() -> None:
    from composer.runtime.bundle import effective_healthcheck

    spec, warnings = translate({"healthcheck": {"interval": "10s", "retries": 2}})
    assert warnings == []
    assert spec.healthcheck == Healthcheck((), interval=10.0, retries=2)
    image = {"Healthcheck": {"Test": ["CMD", "probe"], "Timeout": 7_000_000_000}}
    assert effective_healthcheck(spec, image) == Healthcheck(("CMD", "probe"), 10.0, 7.0, 2,
                                                             0.0, 5.0)


def test_a_bad_duration_is_reported() -> None:
    spec, warnings = translate({"healthcheck": {"test": ["CMD", "x"], "timeout": "soon"}})
    assert spec.healthcheck == Healthcheck(("CMD", "x"))
    assert warnings == ["services.web.healthcheck.timeout: 'soon' is not a duration "
                        "(as 30s, 1m30s, 500ms): not set"]


# -- resources -----------------------------------------------------------------------------------


def test_flat_resources() -> None:
    spec, warnings = translate({
        "mem_limit": "1073741824", "memswap_limit": "-1", "mem_reservation": "512m",
        "cpus": 1.5, "cpu_shares": 512, "cpuset": "0-1", "pids_limit": -1})
    assert warnings == []
    assert spec.resources == Resources(memory=1 << 30, memory_swap=-1,
                                       memory_reservation=512 << 20, cpus=1.5,
                                       cpu_shares=512, cpuset_cpus="0-1", pids_limit=-1)


def test_deploy_resources() -> None:
    spec, warnings = translate({"deploy": {"resources": {
        "limits": {"cpus": "0.5", "memory": "64m", "pids": 100},
        "reservations": {"memory": 33554432}}}})
    assert warnings == []
    assert spec.resources == Resources(memory=64 << 20, memory_reservation=32 << 20,
                                       cpus=0.5, pids_limit=100)


def test_flat_resources_win_and_a_disagreement_is_reported() -> None:
    spec, warnings = translate({"mem_limit": "1g", "cpus": 0, "deploy": {"resources": {
        "limits": {"memory": "2g", "cpus": 0.25},
        "reservations": {"cpus": 0.1, "memory": "1k"}}}})
    assert (spec.resources.memory, spec.resources.cpus) == (1 << 30, 0.25)  # 0 is unset
    assert spec.resources.memory_reservation == 1024
    assert [w.split(":")[0] for w in warnings] == [
        "services.web.mem_limit", "services.web.deploy.resources.reservations.cpus"]


# -- restart -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("config", "restart"), [
    ({}, "no"),
    ({"restart": "always"}, "always"),
    ({"restart": "on-failure:5"}, "on-failure:5"),
    ({"restart": "unless-stopped"}, "unless-stopped"),
    ({"deploy": {"restart_policy": {"condition": "any"}}}, "always"),
    ({"deploy": {"restart_policy": {"condition": "none"}}}, "no"),
    ({"deploy": {"restart_policy": {"condition": "on-failure", "max_attempts": 3}}},
     "on-failure:3"),
    ({"deploy": {"restart_policy": {"condition": "on-failure"}}}, "on-failure"),
    ({"deploy": {"restart_policy": {}}}, "always"),  # the specification's default: any
])
def test_restart(config: dict[str, Any], restart: str) -> None:
    spec, warnings = translate(config)
    assert (spec.restart, warnings) == (restart, [])


def test_deploy_restart_policy_overrides_restart_as_compose_does() -> None:
    spec, warnings = translate({"restart": "unless-stopped", "deploy": {"restart_policy": {
        "condition": "on-failure", "max_attempts": 2, "delay": "5s", "window": "1m"}}})
    assert spec.restart == "on-failure:2"
    assert [w.split(":")[0] for w in warnings] == [
        "services.web.deploy.restart_policy.delay", "services.web.deploy.restart_policy.window",
        "services.web.restart"]


# -- networks ------------------------------------------------------------------------------------


def test_networks_by_priority_with_real_names_and_aliases() -> None:
    spec, warnings = translate({"networks": {
        "front": {"aliases": ["www", "web"], "ipv4_address": "172.28.0.5", "priority": 10},
        "back": {"priority": 100, "mac_address": "02:42:ac:11:00:02"},
        "default": None,
        "outside": {"aliases": ["corp"]},
        "undeclared": {}}})
    assert warnings == []
    assert spec.network == "bridge"
    assert spec.networks == (
        Attachment("custom-back", ("web",), mac_address="02:42:ac:11:00:02"),
        Attachment("myapp_front", ("web", "www"), ipv4_address="172.28.0.5"),
        Attachment("myapp_default", ("web",)),
        Attachment("corp-net", ("web", "corp")),
        Attachment("myapp_undeclared", ("web",)))


def test_the_service_mac_address_is_the_primary_network_one() -> None:
    spec, _ = translate({"mac_address": "02:00:00:00:00:01",
                         "networks": {"front": None, "back": {"priority": 1}}})
    assert [a.mac_address for a in spec.networks] == ["02:00:00:00:00:01", None]


def test_network_settings_composer_lacks_are_reported() -> None:
    _, warnings = translate({"networks": {"front": {
        "ipv6_address": "fd00::5", "driver_opts": {"a": "b"}, "interface_name": "eth5",
        "link_local_ips": ["169.254.1.1"]}}})
    # link_local_ips is the loader's to warn about (composer.manifest.support)
    assert [w.split(":")[0] for w in warnings] == [
        "services.web.networks.front.driver_opts", "services.web.networks.front.interface_name",
        "services.web.networks.front.ipv6_address"]


@pytest.mark.parametrize(("mode", "network"), [
    ("host", "host"), ("none", "none"), ("bridge", "bridge"),
    ("service:db", "container:myapp-db-1"), ("container:other", "container:other")])
def test_network_modes(mode: str, network: str) -> None:
    spec, warnings = translate({"network_mode": mode})
    assert (spec.network, spec.networks, warnings) == (network, (), [])


def test_a_network_mode_without_its_own_ports_or_links_drops_them() -> None:
    spec, warnings = translate({"network_mode": "host", "links": ["db"],
                                "ports": [{"target": 80, "published": "80"}]})
    assert (spec.network, spec.ports, spec.links) == ("host", (), ())
    assert [w.split(":")[0] for w in warnings] == ["services.web.ports", "services.web.links"]


def test_namespaces_of_another_service() -> None:
    spec, warnings = translate({"ipc": "service:db", "pid": "service:cache",
                                "network_mode": "service:gone"})
    assert (spec.ipc, spec.pid) == ("container:myapp-db-1", "container:myapp-cache-1")
    assert spec.network == "service:gone"
    assert warnings == ["services.web.network_mode: service:gone: that service has no "
                        "container to share with"]


def test_volumes_from() -> None:
    spec, warnings = translate({"volumes_from": ["db", "cache:ro", "container:foo",
                                                 "container:bar:rw", "gone"]})
    assert spec.volumes_from == ("myapp-db-1", "myapp-cache-1:ro", "foo", "bar:rw")
    assert warnings == ["services.web.volumes_from: gone: service gone has no container: "
                        "not shared"]


def test_links() -> None:
    spec, warnings = translate({"links": ["db", "cache:kv", "gone:x"]})
    assert spec.links == ("myapp-db-1:db", "myapp-cache-1:kv")
    assert warnings == ["services.web.links: gone:x: service gone has no container: "
                        "not linked"]


def test_extra_hosts() -> None:
    spec, _ = translate({"extra_hosts": ["other=1.2.3.4", "somehost:162.242.195.82",
                                         "v6=::1", "gw=host-gateway", "b=[::2]"]})
    assert spec.extra_hosts == ("other:1.2.3.4", "somehost:162.242.195.82", "v6:::1",
                                "gw:host-gateway", "b:::2")


# -- logging, ulimits, devices -------------------------------------------------------------------


def test_logging() -> None:
    spec, warnings = translate({"logging": {"driver": "json-file",
                                            "options": {"max-size": "10m", "max-file": "3"}}})
    assert (spec.logging, warnings) == (Logging("json-file", 10 << 20, 3), [])
    spec, _ = translate({"logging": {"driver": "none"}})
    assert spec.logging == Logging("none")
    # the loader warns about other drivers; their options go with them
    spec, warnings = translate({"logging": {"driver": "syslog",
                                            "options": {"syslog-address": "udp://x"}}})
    assert (spec.logging, warnings) == (Logging(), [])
    spec, warnings = translate({"logging": {"driver": "local", "options": {"compress": "1"}}})
    assert spec.logging == Logging("local")
    assert warnings[0].startswith("services.web.logging.options.compress: ")


def test_ulimits() -> None:
    spec, warnings = translate({"ulimits": {"nofile": {"soft": 1024, "hard": 2048},
                                            "nproc": 65535, "core": "zero"}})
    assert spec.ulimits == {"nofile": (1024, 2048), "nproc": (65535, 65535)}
    assert len(warnings) == 1 and warnings[0].startswith("services.web.ulimits.core: ")


def test_devices() -> None:
    spec, warnings = translate({"devices": [
        "/dev/fuse:/dev/fuse:rwm", "/dev/sda", "/dev/sdb:/dev/xvdb", "/dev/sdc:r",
        {"source": "/dev/dri", "target": "/dev/dri", "permissions": "r"},
        {"source": "vendor.com/gpu=all", "target": "vendor.com/gpu=all"}]})
    assert spec.devices == (Device("/dev/fuse", "/dev/fuse"), Device("/dev/sda", "/dev/sda"),
                            Device("/dev/sdb", "/dev/xvdb"), Device("/dev/sdc", "/dev/sdc", "r"),
                            Device("/dev/dri", "/dev/dri", "r"))
    assert len(warnings) == 1 and "CDI" in warnings[0]


# -- what cannot be carried ----------------------------------------------------------------------


def test_attributes_that_cannot_be_carried_are_reported_once() -> None:
    spec, warnings = translate({
        "annotations": {"k": "v"}, "oom_score_adj": 100, "uts": "host", "cpu_period": 100000,
        "deploy": {"labels": {"a": "b"}, "replicas": 2, "placement": {}, "resources": {}},
        # the loader's to warn about, or the engine's to use: not a word here
        "blkio_config": {"weight": 10}, "userns_mode": "host", "build": {"context": "."},
        "depends_on": {"db": {}}, "container_name": "x", "x-custom": 1, "profiles": ["a"],
        # unset or off: nothing to carry
        "oom_kill_disable": False, "mem_swappiness": None})
    assert spec.network == "bridge"
    assert [w.split(":")[0] for w in warnings] == [
        "services.web.deploy.labels", "services.web.annotations", "services.web.cpu_period",
        "services.web.oom_score_adj", "services.web.uts"]
    assert warnings[-1] == ("services.web.uts: not carried over: the UTS namespace cannot "
                            "be shared")


# -- real compose files --------------------------------------------------------------------------


COMPOSE = """
name: myapp
services:
  web:
    image: nginx
    command: echo hi $$HOME
    ports: ["8080:80", "127.0.0.1:8000-8010:9000/udp"]
    volumes: [./data:/data:ro, db:/var/lib/db:nocopy, /anon]
    secrets: [pw, {source: token, target: tok, mode: 0400}]
    configs: [{source: inline, target: /etc/inline}]
    environment: {A: "1", B: null}
    healthcheck: {test: curl -f localhost, interval: 1m30s, timeout: 500ms}
    deploy:
      resources: {limits: {cpus: "0.5", memory: 64m}}
      restart_policy: {condition: on-failure, max_attempts: 3}
    extra_hosts: ["somehost:162.242.195.82"]
    logging: {options: {max-size: 10m, max-file: "3"}}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 65535}
    networks:
      front: {aliases: [www], priority: 10}
      back: {priority: 100}
  db:
    image: postgres
    network_mode: service:web
    volumes_from: [web:ro]
    mem_limit: 1g
    restart: on-failure:5
volumes: {db: {}}
networks: {front: {}, back: {name: custom-back}}
secrets:
  pw: {file: ./pw.txt}
  token: {environment: TOKEN}
configs:
  inline: {content: "hello $$x"}
"""


def test_a_loaded_project(tmp_path: Path) -> None:
    from composer.manifest.loader import load_project

    (tmp_path / "compose.yaml").write_text(COMPOSE)
    (tmp_path / "pw.txt").write_text("pw")
    project = load_project([str(tmp_path / "compose.yaml")], environ={"TOKEN": "t0k"})
    tree = project.to_dict()
    ctx = ServiceContext(project.name, project.working_dir, tree, project.environment,
                         {"web": "myapp-web-1", "db": "myapp-db-1"})
    web_json, warnings = container_spec(ctx, "web", tree["services"]["web"],
                                        name="myapp-web-1", image="nginx", labels={})
    assert warnings == []
    web = ContainerSpec.from_json(web_json)
    assert web.command == ("echo", "hi", "$HOME") and web.env == {"A": "1"}
    assert web.ports == (PortBinding(80, "tcp", "", 8080),
                         PortBinding(9000, "udp", "127.0.0.1", 8000, 8010))
    assert web.mounts == (
        Mount("bind", "/data", str(tmp_path / "data"), read_only=True, create_host_path=True),
        Mount("volume", "/var/lib/db", "myapp_db", options=("nocopy",)),
        Mount("volume", "/anon"))
    assert web.files == (File("/run/secrets/pw", source=str(tmp_path / "pw.txt")),
                         File("/run/secrets/tok", content="t0k", mode=0o400),
                         File("/etc/inline", content="hello $x"))
    assert web.healthcheck == Healthcheck(("CMD-SHELL", "curl -f localhost"), 90.0, 0.5)
    assert (web.resources.cpus, web.resources.memory) == (0.5, 64 << 20)
    assert web.restart == "on-failure:3"
    assert web.extra_hosts == ("somehost:162.242.195.82",)
    assert web.logging == Logging("json-file", 10 << 20, 3)
    assert web.ulimits == {"nofile": (1024, 2048), "nproc": (65535, 65535)}
    assert web.networks == (Attachment("custom-back", ("web",)),
                            Attachment("myapp_front", ("web", "www")))
    # the model's read-only copy of the service does as well as the plain tree
    db_json, warnings = container_spec(ctx, "db", project.services["db"].spec,
                                       name="myapp-db-1", image="postgres", labels={})
    json.dumps(db_json)
    db = ContainerSpec.from_json(db_json)
    assert (db.network, db.volumes_from, db.restart) == ("container:myapp-web-1",
                                                         ("myapp-web-1:ro",), "on-failure:5")
    assert db.resources.memory == 1 << 30 and warnings == []


CORPUS = Path("/work/shared/corpus/expected")


def _corpus_files() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{CORPUS} is absent"))]
    found = sorted(p for p in CORPUS.rglob("*")
                   if p.is_file() and p.suffix in (".json", ".yaml", ".yml"))
    return [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in found]


def _read(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.mark.parametrize("path", _corpus_files())
def test_every_corpus_service_translates(path: Path) -> None:
    """Docker Compose's own normalized output of real files: every service translates into a
    spec the engine accepts (warnings allowed)."""
    tree = _read(path)
    project = str(tree.get("name") or "corpus")
    services: dict[str, Any] = tree.get("services") or {}
    peers = {name: f"{project}-{name}-1" for name in services}
    ctx = ServiceContext(project, "/corpus", tree, {}, peers)
    for name, config in services.items():
        data, warnings = container_spec(ctx, name, config, name=peers[name],
                                        image=str(config.get("image") or f"{project}-{name}"),
                                        labels={"com.docker.compose.project": project})
        spec = ContainerSpec.from_json(json.loads(json.dumps(data)))
        assert spec.name == peers[name]
        assert all(w.startswith(f"services.{name}.") for w in warnings), warnings
