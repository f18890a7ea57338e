"""Phase 8: relative paths made absolute where Docker Compose v2.40.3 makes them absolute.

Expected values were checked with ``docker-compose config --format json`` run in /tmp/o2,
/tmp/o3 and /tmp/o6 with HOME=/root (shown here with the project directory /proj).
"""

from __future__ import annotations

from typing import Any

import pytest

from composer.manifest.paths import absolute, is_remote, resolve_paths, resolve_service_paths
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/root")


def tree(text: str) -> YMap:
    return parse_documents(text, "compose.yaml")[0]


def test_build_context_and_additional_contexts() -> None:
    root = tree("""
services:
  a:
    build:
      context: ~/ctx
      dockerfile: ../Dockerfile.x
      additional_contexts:
        a: ../up
        b: service:b
        c: https://x/y.git
        d: ~/home
        e: docker-image://alpine
  b:
    build: {context: .}
  c:
    build: {dockerfile: x.Dockerfile}
""")
    resolve_paths(root, "/proj")
    services = plain(root)["services"]
    assert services["a"]["build"] == {
        "context": "/root/ctx", "dockerfile": "../Dockerfile.x",
        "additional_contexts": {"a": "/up", "b": "service:b", "c": "https://x/y.git",
                                "d": "/root/home", "e": "docker-image://alpine"}}
    assert services["b"]["build"] == {"context": "/proj"}
    assert services["c"]["build"] == {"context": "/proj", "dockerfile": "x.Dockerfile"}


@pytest.mark.parametrize("context", [
    "https://github.com/docker/compose.git", "git@github.com:docker/x.git",
    "github.com/docker/x", "git://host/repo"])
def test_remote_build_contexts_stay(context: str) -> None:
    assert is_remote(context)
    service: dict[str, Any] = {"build": {"context": context}}
    resolve_service_paths(service, "/proj")
    assert service["build"]["context"] == context


def test_bind_sources_only() -> None:
    root = tree("""
services:
  a:
    volumes:
      - {type: bind, source: ./data, target: /data}
      - {type: bind, source: /etc/pihole/, target: /etc/pihole}
      - {type: bind, source: "~", target: /home}
      - {type: bind, source: 'c:\\x', target: /win}
      - {type: volume, source: data, target: /v}
    working_dir: ./rel
""")
    resolve_paths(root, "/proj")
    service = plain(root)["services"]["a"]
    # Absolute sources are kept as written (trailing slash and all), as Compose does.
    assert [v["source"] for v in service["volumes"]] == [
        "/proj/data", "/etc/pihole/", "/root", "c:\\x", "data"]
    assert service["working_dir"] == "./rel"


def test_files_of_services_and_resources() -> None:
    root = tree("""
services:
  a:
    env_file: [{path: ./e.env, required: true}, {path: ~/f.env, required: false}]
    label_file: [labels.txt]
    extends: {file: ../base.yaml, service: x}
    develop:
      watch: [{path: ./src, action: sync, target: /app}]
secrets:
  s: {file: ./s.txt}
  e: {environment: HOME}
configs:
  c: {file: /abs/c.txt}
""")
    resolve_paths(root, "/proj")
    data = plain(root)
    service = data["services"]["a"]
    assert [e["path"] for e in service["env_file"]] == ["/proj/e.env", "/root/f.env"]
    assert service["label_file"] == ["/proj/labels.txt"]
    assert service["extends"] == {"file": "/base.yaml", "service": "x"}
    assert service["develop"]["watch"][0]["path"] == "/proj/src"
    assert data["secrets"] == {"s": {"file": "/proj/s.txt"}, "e": {"environment": "HOME"}}
    assert data["configs"] == {"c": {"file": "/abs/c.txt"}}


def test_volume_device_only_for_local_bind() -> None:
    root = tree("""
services: {}
volumes:
  ee: {driver_opts: {device: ./rel, type: none}}
  ff: {driver: local, driver_opts: {device: ./rel2, o: bind}}
  gg: {driver: other, driver_opts: {device: ./rel2, o: bind}}
  hh: {driver: local, driver_opts: {device: ./rel3, o: "ro,bind"}}
  ii: {driver_opts: {device: ./rel4, o: bind}}
""")
    resolve_paths(root, "/proj")
    devices = {k: v["driver_opts"]["device"] for k, v in plain(root)["volumes"].items()}
    assert devices == {"ee": "./rel", "ff": "/proj/rel2", "gg": "./rel2", "hh": "./rel3",
                       "ii": "./rel4"}


@pytest.mark.parametrize(("path", "expected"), [
    (".", "/proj"), ("./a/../b", "/proj/b"), ("~", "/root"), ("~/x", "/root/x"),
    ("/abs/", "/abs/"), ("C:\\data", "C:\\data"), ("a:b", "/proj/a:b"), ("~user/x", "/root/user/x"),
])
def test_absolute(path: str, expected: str) -> None:
    assert absolute(path, "/proj") == expected


def test_one_service_keeps_a_missing_context_for_the_project() -> None:
    # extends resolves a base service against its own file's folder; a build without a
    # context still builds the project directory (checked with Compose v2.40.3).
    service: dict[str, Any] = {"build": {"dockerfile": "x.Dockerfile"},
                               "volumes": [{"type": "bind", "source": "./v", "target": "/v"}]}
    resolve_service_paths(service, "/proj/sub")
    assert service["build"] == {"dockerfile": "x.Dockerfile"}
    assert service["volumes"][0]["source"] == "/proj/sub/v"
    root = tree("services: {}\n")
    root["services"]["a"] = service
    resolve_paths(root, "/proj")
    assert service["build"]["context"] == "/proj"
