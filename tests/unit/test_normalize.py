"""Phase 10: normalization, against what Docker Compose v2.40.3's ``config --format json`` prints.

Each expectation below was seen in the oracle's output for the same input (run in a folder
named like the project, HOME=/root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from composer.errors import ManifestWarning
from composer.manifest.canonical import canonicalize
from composer.manifest.normalize import normalize
from composer.manifest.paths import resolve_paths
from composer.manifest.tree import plain
from composer.manifest.yamlload import parse_documents

pytest.importorskip("composer.manifest.dotenv")


def run(text: str, project_dir: str = "/proj", env: dict[str, str] | None = None,
        name: str = "proj") -> tuple[dict[str, Any], list[ManifestWarning]]:
    warnings: list[ManifestWarning] = []
    root = parse_documents(text, "compose.yaml")[0]
    canonicalize(root, warn=warnings.append)
    resolve_paths(root, project_dir)
    root["name"] = name
    normalize(root, project_name=name, project_dir=project_dir, env=env or {},
              warn=warnings.append)
    result: dict[str, Any] = plain(root)
    return result, warnings


def test_minimal_service_gets_compose_defaults() -> None:
    data, warnings = run("version: '3'\nservices:\n  a:\n    image: alpine\n")
    assert data == {
        "name": "proj",
        "services": {"a": {"image": "alpine", "command": None, "entrypoint": None,
                           "networks": {"default": None}}},
        "networks": {"default": {"name": "proj_default", "ipam": {}}},
    }
    assert [w.message for w in warnings] == [
        "the attribute `version` is obsolete, it will be ignored, please remove it to avoid "
        "potential confusion"]


def test_resource_names_and_unused_resources() -> None:
    data, _ = run("""
services:
  a:
    image: x
    network_mode: host
    volumes: [vv:/v, v3:/v3, ext2:/e]
    secrets: [s]
  b:
    image: x
    networks: [n1, n2]
networks:
  n1: {external: true}
  n2: {name: custom}
  unused: {}
volumes:
  vv: {external: true}
  v3: {name: named3}
  ext2: {external: true, name: ""}
  unused: {}
secrets:
  s: {environment: HOME}
  s2: {external: true}
""")
    assert data["networks"] == {"n1": {"name": "n1", "ipam": {}, "external": True},
                                "n2": {"name": "custom", "ipam": {}}}
    assert data["volumes"] == {"vv": {"name": "vv", "external": True},
                               "v3": {"name": "named3"}, "ext2": {"external": True}}
    assert data["secrets"] == {"s": {"name": "proj_s", "environment": "HOME"}}
    assert "networks" not in data["services"]["a"]
    assert data["services"]["b"]["networks"] == {"n1": None, "n2": None}


def test_env_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "e1.env").write_text("E=1\nX=from-file\nE2\n")
    data, _ = run("""
services:
  a:
    image: x
    env_file:
      - path: ./missing.env
        required: false
      - e1.env
    environment:
      - A=1
      - B
      - HOME
      - X
""", project_dir=str(tmp_path), env={"HOME": "/root"})
    service = data["services"]["a"]
    assert "env_file" not in service
    # X has no value and is unset: Compose prints null even though the env_file set it.
    assert service["environment"] == {"E": "1", "X": None, "A": "1", "B": None,
                                      "HOME": "/root"}


def test_label_file(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("lab=1\nother=2\n")
    data, _ = run("services:\n  a:\n    image: x\n    label_file: ./labels.txt\n"
                  "    labels: {other: mine}\n", project_dir=str(tmp_path))
    service = data["services"]["a"]
    assert service["labels"] == {"lab": "1", "other": "mine"}
    assert "label_file" not in service


def test_build_defaults_and_args() -> None:
    data, _ = run("""
services:
  a:
    build:
      context: .
      args: [X=1, "Y", "SET"]
  b:
    build:
      dockerfile_inline: FROM x
  c:
    image: x
    build: {context: ., dockerfile: ""}
""", env={"SET": "v"})
    services = data["services"]
    assert services["a"]["build"] == {"context": "/proj", "dockerfile": "Dockerfile",
                                      "args": {"X": "1", "SET": "v"}}
    assert services["b"]["build"] == {"context": "/proj", "dockerfile_inline": "FROM x"}
    assert services["c"]["build"] == {"context": "/proj"}


def test_secret_and_config_references() -> None:
    data, _ = run("""
services:
  a:
    image: x
    secrets:
      - s
      - {source: s, target: custom, mode: 440}
      - {source: s, target: t3, mode: "0440", uid: "1005"}
      - {source: s, target: t4, mode: 0o440}
    configs:
      - c
      - {source: c, target: /c}
secrets:
  s: {file: ./s.txt}
configs:
  c: {content: hello}
""")
    service = data["services"]["a"]
    assert service["secrets"] == [
        {"source": "s", "target": "/run/secrets/s"},
        {"source": "s", "target": "custom", "mode": "0670"},
        {"source": "s", "target": "t3", "mode": "0440", "uid": "1005"},
        {"source": "s", "target": "t4", "mode": "0440"}]
    assert service["configs"] == [{"source": "c"}, {"source": "c", "target": "/c"}]
    assert data["secrets"]["s"] == {"name": "proj_s", "file": "/proj/s.txt"}
    assert data["configs"]["c"] == {"name": "proj_c", "content": "hello"}


def test_implicit_dependencies() -> None:
    data, _ = run("""
services:
  a: {image: x}
  b: {image: x, links: ["a:alias"]}
  c: {image: x, network_mode: "service:a"}
  d: {image: x, ipc: "service:a", pid: "service:a"}
  e: {image: x, volumes_from: ["container:xyz", "a:ro"]}
  f:
    image: x
    volumes_from: [a]
    depends_on:
      a: {condition: service_healthy}
""")
    deps = {k: v.get("depends_on") for k, v in data["services"].items()}
    started = {"condition": "service_started", "restart": True, "required": True}
    assert deps == {
        "a": None, "b": {"a": started}, "c": {"a": started}, "d": {"a": started},
        "e": {"a": {"condition": "service_started", "required": True}},
        "f": {"a": {"condition": "service_healthy", "required": True}},
    }


def test_deploy_scale_and_watch() -> None:
    data, _ = run("""
services:
  a:
    image: x
    scale: 2
    deploy:
      restart_policy: {delay: 5s}
    develop:
      watch:
        - {path: ./src, action: sync, target: /app, x-initialSync: true}
    x-custom: 1
  b:
    image: x
    scale: 3
x-top: {a: 1}
""")
    a = data["services"]["a"]
    assert a["deploy"] == {"replicas": 2, "restart_policy": {"delay": "5s"},
                           "resources": {}, "placement": {}}
    # Extensions stay in the tree (YAML prints them; JSON and the model leave them out).
    assert a["develop"]["watch"] == [{"path": "/proj/src", "action": "sync", "target": "/app",
                                      "x-initialSync": True, "exec": {"command": None}}]
    assert a["x-custom"] == 1
    assert "deploy" not in data["services"]["b"]
    assert data["x-top"] == {"a": 1}


def test_ports_hosts_and_empty_strings() -> None:
    data, _ = run("""
services:
  a:
    image: ""
    platform: ""
    build: .
    extra_hosts: ["somehost:162.242.195.82", "other=1.2.3.4"]
    ports:
      - {target: 80, published: 8080}
    environment: {}
    depends_on:
      b: {restart: true}
  b:
    image: x
    provider: {type: p}
""")
    a = data["services"]["a"]
    assert "image" not in a and "platform" not in a and "environment" not in a
    assert a["extra_hosts"] == ["other=1.2.3.4", "somehost=162.242.195.82"]
    assert a["ports"] == [{"target": 80, "published": "8080", "mode": "ingress",
                           "protocol": "tcp"}]
    assert a["depends_on"] == {"b": {"restart": True, "condition": "service_started",
                                     "required": True}}
    assert "networks" not in data["services"]["b"]


def test_missing_files_are_placed_errors(tmp_path: Path) -> None:
    from composer.errors import ManifestError

    for key, message in (("env_file", "env file"), ("label_file", "label file")):
        with pytest.raises(ManifestError) as info:
            run(f"services:\n  a:\n    image: x\n    {key}: ./nope\n", project_dir=str(tmp_path))
        error = info.value
        assert error.message == f"{message} {tmp_path}/nope not found"
        assert error.path == f"services.a.{key}[0]"
        assert error.loc is not None and (error.loc.line, error.loc.column) == (4, 5)


def test_optional_env_file_may_be_missing(tmp_path: Path) -> None:
    data, _ = run("services:\n  a:\n    image: x\n    env_file:\n"
                  "      - {path: ./nope, required: false}\n", project_dir=str(tmp_path))
    assert "environment" not in data["services"]["a"]


def test_zero_values_compose_leaves_out() -> None:
    data, _ = run("""
services:
  a:
    image: x
    init: false
    attach: false
    privileged: false
    read_only: false
    cpus: 0
    shm_size: 0
    mem_swappiness: 10
    scale: 0
    healthcheck: {retries: 0, disable: false}
    volumes:
      - {type: bind, source: /x, target: /x, read_only: false}
    build: {context: ., no_cache: false}
    logging: {driver: ""}
""")
    a = data["services"]["a"]
    for key in ("privileged", "read_only", "cpus", "shm_size"):
        assert key not in a
    assert (a["init"], a["attach"], a["scale"], a["mem_swappiness"]) == (False, False, 0, "10")
    assert a["healthcheck"] == {"retries": 0}
    assert a["volumes"] == [{"type": "bind", "source": "/x", "target": "/x"}]
    assert a["build"] == {"context": "/proj", "dockerfile": "Dockerfile"}
    assert a["logging"] == {}


def test_resource_details_compose_drops() -> None:
    data, _ = run("""
services:
  a: {image: x, networks: [n]}
networks:
  n:
    external: false
    x-mine: 1
    labels: {x-kept: "1"}
    ipam:
      config: [{subnet: 10.0.0.0/24}]
      options: {a: "1"}
""")
    assert data["networks"] == {"n": {"name": "proj_n", "labels": {"x-kept": "1"},
                                      "x-mine": 1,
                                      "ipam": {"config": [{"subnet": "10.0.0.0/24"}]}}}


def test_gpus_and_extra_host_brackets() -> None:
    data, _ = run("""
services:
  a:
    image: x
    gpus: all
    group_add: [1000, wheel]
    extra_hosts: ["h7:[::2]", "a=1.2.3.4"]
    deploy:
      resources:
        reservations:
          devices: [{capabilities: [gpu], count: all}]
""")
    a = data["services"]["a"]
    assert a["gpus"] == [{"count": -1}]
    assert a["group_add"] == ["1000", "wheel"]
    assert a["extra_hosts"] == ["a=1.2.3.4", "h7=::2"]
    assert a["deploy"]["resources"]["reservations"]["devices"] == [
        {"capabilities": ["gpu"], "count": -1}]


def test_service_and_deploy_resources_must_agree() -> None:
    from composer.errors import ManifestError

    same, _ = run("services:\n  a:\n    image: x\n    mem_limit: 1g\n    deploy:\n"
                  "      resources: {limits: {memory: 1024m}}\n")
    assert same["services"]["a"]["mem_limit"] == "1073741824"
    with pytest.raises(ManifestError) as info:
        run("services:\n  a:\n    image: x\n    pids_limit: 5\n    deploy:\n"
            "      resources: {limits: {pids: 6}}\n")
    assert info.value.message == (
        "can't set distinct values on 'pids_limit' and 'deploy.resources.limits.pids'")
    assert info.value.path == "services.a.pids_limit"
