"""Change detection: config hashes over an allowlist, field diffs for people, Compose's labels."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest

from composer import __version__, load_project
from composer.manifest.model import Project, Service
from composer.state import labels
from composer.state.labels import FieldChange, diff_configs, service_config, service_hash

ROOT = Path(__file__).resolve().parents[2]
_dirs = itertools.count()

BASE = """\
name: demo
services:
  web:
    image: nginx:1.25
    environment:
      DEBUG: "0"
    ports: ["8080:80"]
    volumes: [data:/data]
{extra}
  db:
    image: postgres:16
volumes:
  data:
networks:
  front:
"""


def composer(*args: str, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent",
               "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "composer", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, env=environ, timeout=60)


def load(tmp_path: Path, text: str, profiles: tuple[str, ...] = ()) -> Project:
    """The project of ``text``, each in a directory of its own (name: pins the project)."""
    where = tmp_path / f"p{next(_dirs)}"
    where.mkdir()
    (where / "compose.yaml").write_text(text)
    return load_project([str(where / "compose.yaml")], environ={"PATH": "/bin"},
                        profiles=profiles)


def web(tmp_path: Path, extra: str = "", profiles: tuple[str, ...] = ()) -> Project:
    """BASE with ``extra`` (YAML lines at the indentation of web's keys) added to web."""
    return load(tmp_path, BASE.format(extra=extra), profiles)


def web_hash(tmp_path: Path, extra: str = "", profiles: tuple[str, ...] = ()) -> str:
    return service_hash(web(tmp_path, extra, profiles).services["web"])


# --- the hash -------------------------------------------------------------------------------


def test_the_hash_is_sha256_of_the_canonical_json_of_the_allowed_fields(tmp_path: Path) -> None:
    project = load(tmp_path, "name: demo\nservices:\n  web:\n    image: nginx:1.25\n"
                             "    command: [nginx, -g, daemon off;]\n"
                             "    environment: {B: 'é', A: '1'}\n")
    service = project.services["web"]
    config = service_config(service)
    assert config == {"command": ["nginx", "-g", "daemon off;"],
                      "environment": {"A": "1", "B": "é"}, "image": "nginx:1.25",
                      "networks": {"default": None}}
    # Written by hand: keys sorted at every depth, no spaces, UTF-8 as is.
    canonical = ('{"command":["nginx","-g","daemon off;"],"environment":{"A":"1","B":"é"},'
                 '"image":"nginx:1.25","networks":{"default":null}}')
    assert service_hash(service) == hashlib.sha256(canonical.encode()).hexdigest()
    # A change here recreates every container after an upgrade: bump HASH_VERSION with it.
    assert service_hash(service) == \
        "f436700953523e8670e3ba79e6d57a6607eb00aa2f03357d5037ea2e87835ad9"
    assert labels.HASH_VERSION == "1"


def test_the_hash_does_not_depend_on_key_order_in_the_file(tmp_path: Path) -> None:
    one = load(tmp_path, "name: demo\nservices:\n  web:\n    image: nginx\n"
                         "    environment: {A: '1', B: '2'}\n    labels: {x: '1', y: '2'}\n"
                         "    healthcheck: {test: [CMD, 'true'], interval: 5s, retries: 3}\n")
    two = load(tmp_path, "name: demo\nservices:\n  web:\n"
                         "    healthcheck: {retries: 3, interval: 5s, test: [CMD, 'true']}\n"
                         "    labels: {y: '2', x: '1'}\n    environment: {B: '2', A: '1'}\n"
                         "    image: nginx\n")
    assert service_hash(one.services["web"]) == service_hash(two.services["web"])


def test_the_hash_does_not_depend_on_insertion_order_of_the_model(tmp_path: Path) -> None:
    service = web(tmp_path, "    labels: {a: '1', b: '2'}").services["web"]

    def reverse(value: object) -> object:
        if isinstance(value, MappingProxyType):
            return MappingProxyType({k: reverse(value[k]) for k in reversed(list(value))})
        return value

    reversed_spec = reverse(service.spec)
    assert isinstance(reversed_spec, MappingProxyType)
    assert list(reversed_spec) == list(reversed(list(service.spec)))
    other = dataclasses.replace(service, spec=reversed_spec)
    assert service_hash(other) == service_hash(service)


def test_the_hash_is_the_same_in_other_processes(tmp_path: Path) -> None:
    # Another PYTHONHASHSEED orders sets (the allowlist) differently: the hash must not care.
    project = web(tmp_path)
    compose_file = Path(project.files[0])
    wanted = "".join(f"{name} {service_hash(project.services[name])}\n"
                     for name in sorted(project.services))
    for seed in ("1", "2"):
        result = composer("-f", str(compose_file), "config", "--hash", "*",
                          env={"PYTHONHASHSEED": seed})
        assert (result.returncode, result.stdout) == (0, wanted), result.stderr


@pytest.mark.parametrize("extra", [
    pytest.param("    build: .", id="build"),
    pytest.param("    pull_policy: always", id="pull_policy"),
    pytest.param("    scale: 3", id="scale"),
    pytest.param("    deploy: {replicas: 3}", id="deploy.replicas"),
    pytest.param("    depends_on: [db]", id="depends_on"),
    pytest.param("    depends_on: {db: {condition: service_healthy, restart: true}}",
                 id="depends_on-long"),
    pytest.param("    develop: {watch: [{path: ., action: rebuild}]}", id="develop"),
    pytest.param("    attach: false", id="attach"),
    pytest.param("    x-notes: whatever", id="x-key"),
])
def test_what_does_not_change_the_container_does_not_change_the_hash(
        tmp_path: Path, extra: str) -> None:
    changed = web(tmp_path, extra).services["web"]
    assert extra.split(":")[0].strip() in changed.spec  # the key did reach the model
    assert service_hash(changed) == web_hash(tmp_path)


def test_profiles_do_not_change_the_hash(tmp_path: Path) -> None:
    assert web_hash(tmp_path, "    profiles: [debug]", profiles=("debug",)) == web_hash(tmp_path)


def test_scaling_keeps_the_rest_of_deploy_in_the_hash(tmp_path: Path) -> None:
    limits = "    deploy:\n      resources: {limits: {cpus: '0.5'}}"
    with_replicas = "    deploy:\n      replicas: 4\n      resources: {limits: {cpus: '0.5'}}"
    assert web_hash(tmp_path, limits) == web_hash(tmp_path, with_replicas)
    assert web_hash(tmp_path, limits) != web_hash(tmp_path)
    deploy = service_config(web(tmp_path, with_replicas).services["web"])["deploy"]
    assert deploy == {"resources": {"limits": {"cpus": 0.5}}}


def test_unknown_model_keys_are_ignored(tmp_path: Path) -> None:
    # What a later composer might add to the model: not in the allowlist, so not hashed.
    service = web(tmp_path).services["web"]
    grown = dataclasses.replace(service, spec=MappingProxyType(
        {**service.spec, "future_field": "on", "build": MappingProxyType({"context": "/x"})}))
    assert service_hash(grown) == service_hash(service)
    assert "future_field" not in service_config(grown)


SMALL = """\
name: demo
services:
  web:
{lines}
volumes:
  data:
networks:
  front:
"""


@pytest.mark.parametrize(("old", "new", "paths"), [
    ("    image: nginx:1.25", "    image: nginx:1.26", ["image"]),
    ("    environment: {DEBUG: '0'}", "    environment: {DEBUG: '1'}", ["environment.DEBUG"]),
    ("    environment: {}", "    environment: {DEBUG: '1'}", ["environment"]),
    ("    ports: ['8080:80']", "    ports: ['8081:80']", ["ports"]),
    ("    volumes: [data:/data]", "    volumes: [data:/var/data]", ["volumes"]),
    ("    volumes: [data:/data]", "    volumes: ['data:/data:ro']", ["volumes"]),
    ("    healthcheck: {test: [CMD, 'true'], interval: 5s}",
     "    healthcheck: {test: [CMD, 'true'], interval: 10s}", ["healthcheck.interval"]),
    ("    labels: {team: web}", "    labels: {team: api}", ["labels.team"]),
    ("    deploy: {resources: {limits: {memory: 256m}}}",
     "    deploy: {resources: {limits: {memory: 512m}}}", ["deploy.resources.limits.memory"]),
    ("", "    deploy: {resources: {limits: {memory: 512m}}}", ["deploy"]),
    ("", "    networks: [front]", ["networks"]),
    ("", "    restart: always", ["restart"]),
    ("", "    command: []", ["command"]),
])
def test_what_changes_the_container_changes_the_hash(
        tmp_path: Path, old: str, new: str, paths: list[str]) -> None:
    def service(lines: str) -> Service:
        image = "" if lines.startswith("    image:") else "    image: nginx:1.25\n"
        return load(tmp_path, SMALL.format(lines=image + lines)).services["web"]

    before, after = service(old), service(new)
    assert service_hash(before) != service_hash(after)
    assert [c.path for c in diff_configs(service_config(before), service_config(after))] \
        == paths


def test_empty_and_absent_hash_alike(tmp_path: Path) -> None:
    def hashed(lines: str) -> str:
        return service_hash(load(tmp_path, SMALL.format(
            lines="    image: nginx\n" + lines)).services["web"])

    bare = hashed("")
    assert hashed("    environment: {}\n    labels: {}\n    cap_add: []\n    user: ''") == bare
    # An attachment with no options is the same attachment as a bare one.
    assert hashed("    networks:\n      front: {}") == hashed("    networks:\n      front:")
    # But an empty command is something: it overrides the image's with nothing.
    assert hashed("    command: []") != bare
    assert hashed("    entrypoint: ''") != bare


def test_the_allowlist_and_the_exclusions_cover_the_schema_exactly() -> None:
    # A new attribute in the schema has to be decided on: hashed (a new HASH_VERSION) or not.
    schema = json.loads((ROOT / "schemas" / "compose.schema.json").read_text())
    attributes = set(schema["$defs"]["service"]["properties"])
    assert not labels.SERVICE_HASH_FIELDS & labels.SERVICE_HASH_EXCLUDED
    assert attributes == labels.SERVICE_HASH_FIELDS | labels.SERVICE_HASH_EXCLUDED
    assert {"build", "pull_policy", "scale", "depends_on", "profiles", "develop", "extends",
            "attach"} <= labels.SERVICE_HASH_EXCLUDED
    assert {"image", "deploy", "networks", "volumes", "post_start", "pre_stop", "gpus",
            "cgroup", "mac_address", "storage_opt"} <= labels.SERVICE_HASH_FIELDS


def test_a_thousand_services_hash_apart_by_name_only_where_names_differ(tmp_path: Path) -> None:
    # The speed of hashing is measured in bench/ (bench/plan_bench.py), never in a test.
    service = web(tmp_path, "    labels: {a: '1', b: '2'}\n"
                            "    healthcheck: {test: [CMD, 'true'], interval: 5s}\n"
                            "    deploy: {resources: {limits: {cpus: '0.5', memory: 1g}}}\n"
                            "    cap_add: [NET_ADMIN]\n    networks: [front]"
                  ).services["web"]
    services = [dataclasses.replace(service, name=f"s{i}") for i in range(1000)]
    # The name is not configuration: every copy hashes like the original.
    assert {service_hash(s) for s in services} == {service_hash(service)}


# --- networks and volumes -------------------------------------------------------------------


RESOURCES = """\
name: demo
services:
  web:
    image: nginx
    networks: [front]
    volumes: [data:/data]
networks:
  front:
{network}
volumes:
  data:
{volume}
"""


def resources(tmp_path: Path, network: str = "", volume: str = "") -> Project:
    return load(tmp_path, RESOURCES.format(network=network, volume=volume))


def test_network_hash_follows_what_the_network_is_created_with(tmp_path: Path) -> None:
    base = labels.network_hash(resources(tmp_path).networks["front"])
    assert labels.network_hash(resources(tmp_path).networks["front"]) == base
    assert labels.network_hash(
        resources(tmp_path, network="    x-notes: n").networks["front"]) == base
    for change in ("    internal: true", "    driver_opts: {mtu: '1400'}",
                   "    labels: {a: b}", "    name: other", "    enable_ipv6: true",
                   "    ipam: {config: [{subnet: 10.9.0.0/24}]}"):
        assert labels.network_hash(
            resources(tmp_path, network=change).networks["front"]) != base, change


def test_volume_hash_follows_what_the_volume_is_created_with(tmp_path: Path) -> None:
    base = labels.volume_hash(resources(tmp_path).volumes["data"])
    assert labels.volume_hash(resources(tmp_path, volume="    x-notes: n").volumes["data"]) \
        == base
    for change in ("    driver_opts: {type: tmpfs, device: tmpfs}", "    labels: {a: b}",
                   "    name: other", "    driver: local"):
        assert labels.volume_hash(resources(tmp_path, volume=change).volumes["data"]) != base, \
            change
    assert len(base) == 64 and set(base) <= set("0123456789abcdef")


# --- diffs ----------------------------------------------------------------------------------


def test_diff_reasons_read_as_changed_added_removed() -> None:
    old = {"image": "nginx:1.25", "environment": {"DEBUG": "0", "GONE": "x"},
           "labels": {"a": "b"}, "ports": [{"target": 80}],
           "healthcheck": {"test": ["CMD", "true"], "interval": "5s"}}
    new = {"image": "nginx:1.26", "environment": {"DEBUG": "1", "NEW": "x"},
           "labels": {}, "ports": [{"target": 80}, {"target": 443}],
           "healthcheck": {"test": ["CMD", "true"], "interval": "10s"}, "init": True}
    assert [c.reason() for c in diff_configs(old, new)] == [
        'environment.DEBUG changed: "0" -> "1"',
        'environment.GONE removed (was "x")',
        'environment.NEW added: "x"',
        'healthcheck.interval changed: "5s" -> "10s"',
        'image changed: "nginx:1.25" -> "nginx:1.26"',
        "init added: true",
        'labels.a removed (was "b")',
        'ports changed: [{"target": 80}] -> [{"target": 80}, {"target": 443}]',
    ]
    assert diff_configs(old, old) == []
    # A key set to None on one side only: the mapping reads as one change, not as nothing.
    assert [c.reason() for c in diff_configs({"networks": {"default": None}},
                                             {"networks": {"front": None}})] == [
        'networks changed: {"default": null} -> {"front": null}']
    assert diff_configs(old, new)[0] == FieldChange("environment.DEBUG", "0", "1")


def test_diff_of_a_whole_mapping_and_long_values_are_cut() -> None:
    long = "x" * 100
    changes = diff_configs({"command": ["sh", "-c", long]},
                           {"command": ["sh", "-c", "true"],
                            "healthcheck": {"test": ["CMD", "true"]}})
    assert [c.reason() for c in changes] == [
        'command changed: ["sh", "-c", "' + "x" * 45 + '… -> ["sh", "-c", "true"]',
        'healthcheck added: {"test": ["CMD", "true"]}',
    ]
    cut = changes[0].reason().split(" changed: ")[1].split(" -> ")[0]
    assert len(cut) == 60 and cut.endswith("…")
    assert FieldChange("user", None, "ü").reason() == 'user added: "ü"'


def test_diff_of_two_loaded_services(tmp_path: Path) -> None:
    base = service_config(web(tmp_path).services["web"])
    changed = service_config(load(tmp_path, BASE.format(extra="").replace(
        'DEBUG: "0"', 'DEBUG: "1"\n      EXTRA: "y"')).services["web"])
    assert [c.reason() for c in diff_configs(base, changed)] == [
        'environment.DEBUG changed: "0" -> "1"', 'environment.EXTRA added: "y"']


# --- labels ---------------------------------------------------------------------------------


def test_container_labels_are_compose_s(tmp_path: Path) -> None:
    loaded = load(tmp_path, BASE.format(
        extra="    labels: {team: web, com.docker.compose.project: spoofed}\n"
              "    depends_on:\n      db: {condition: service_healthy, restart: true}\n"
              "      cache: {condition: service_started}"
    ).replace("\nvolumes:\n", "\n  cache:\n    image: redis\nvolumes:\n"))
    service = loaded.services["web"]
    result = labels.container_labels(loaded, service, 2)
    assert result == {
        "team": "web",
        "com.docker.compose.project": "demo",
        "com.docker.compose.service": "web",
        "com.docker.compose.container-number": "2",
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.config-hash": service_hash(service),
        "io.composer.hash-version": "1",
        "com.docker.compose.version": __version__,
        "com.docker.compose.project.working_dir": loaded.working_dir,
        "com.docker.compose.project.config_files": ",".join(loaded.files),
        "com.docker.compose.depends_on": "cache:service_started:false,"
                                         "db:service_healthy:true",
    }
    oneoff = labels.container_labels(loaded, service, 1, oneoff=True, image_id="sha256:ab")
    assert oneoff[labels.LABEL_ONEOFF] == "True"
    assert oneoff[labels.LABEL_IMAGE] == "sha256:ab"
    assert labels.container_labels(loaded, loaded.services["db"], 1)[
        labels.LABEL_DEPENDS_ON] == ""


def test_config_files_label_joins_every_file(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("name: demo\nservices:\n  web:\n    image: nginx\n")
    (tmp_path / "compose.override.yaml").write_text("services:\n  web:\n    init: true\n")
    project = load_project([str(tmp_path / "compose.yaml"),
                            str(tmp_path / "compose.override.yaml")], environ={"PATH": "/bin"})
    got = labels.container_labels(project, project.services["web"], 1)
    assert got[labels.LABEL_CONFIG_FILES] == \
        f"{tmp_path / 'compose.yaml'},{tmp_path / 'compose.override.yaml'}"
    assert got[labels.LABEL_WORKING_DIR] == str(tmp_path)


# --- composer config --hash -----------------------------------------------------------------


def test_config_hash_prints_each_service_by_name(tmp_path: Path) -> None:
    project = web(tmp_path)
    compose_file = project.files[0]
    result = composer("-f", compose_file, "config", "--hash", "*")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"db {service_hash(project.services['db'])}\n"
                             f"web {service_hash(project.services['web'])}\n")
    for line in result.stdout.splitlines():
        _, digest = line.split(" ")
        assert len(digest) == 64 and set(digest) <= set("0123456789abcdef")
    one = composer("-f", compose_file, "config", "--hash", "web, db,web")
    assert one.stdout == result.stdout
    only = composer("-f", compose_file, "config", "--hash", "web")
    assert only.stdout == result.stdout.splitlines(keepends=True)[1]


def test_config_hash_of_an_unknown_service_fails(tmp_path: Path) -> None:
    compose_file = web(tmp_path).files[0]
    result = composer("-f", compose_file, "config", "--hash", "web,nope")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no such service: nope" in result.stderr
