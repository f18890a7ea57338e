"""Phase 5: short syntax -> long syntax, checked against Docker Compose v2.40.3.

Every expected value in the tables was printed by ``docker-compose config --format json``
(v2.40.3) for a service holding the short form, run in /tmp/gen with HOME=/root. Compose
prints a literal "$" as "$$"; none of these values contain one.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from composer.errors import ManifestError, ManifestWarning
from composer.manifest.canonical import canonicalize
from composer.manifest.normalize import normalize
from composer.manifest.paths import resolve_paths
from composer.manifest.schema import validate
from composer.manifest.shortsyntax import (
    format_duration,
    parse_bytes,
    parse_duration,
    parse_port,
    shell_split,
)
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents

BASE = "/tmp/gen"


def canonical(service: dict[str, Any], *, resolve: bool = True) -> dict[str, Any]:
    """One service, written as JSON (which is YAML), through phases 4, 5 and 8."""
    text = json.dumps({"services": {"a": {"image": "x", **service}}})
    root = parse_documents(text, "compose.yaml")[0]
    warnings: list[ManifestWarning] = []
    validate(root, warn=warnings.append)
    canonicalize(root, warn=warnings.append)
    if resolve:
        resolve_paths(root, BASE)
    result: dict[str, Any] = plain(root)["services"]["a"]
    return result


def fail(service: dict[str, Any]) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        canonical(service)
    return info.value


@pytest.fixture(autouse=True)
def _home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/root")


PORTS: list[tuple[str | int, list[dict[str, Any]]]] = [
    ("80", [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
    (80, [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
    ("8080:80", [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}]),
    ("127.0.0.1:8001:8001/udp", [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 8001,
                                  "published": "8001", "protocol": "udp"}]),
    ("8000-8002:9000-9002", [
        {"mode": "ingress", "target": 9000, "published": "8000", "protocol": "tcp"},
        {"mode": "ingress", "target": 9001, "published": "8001", "protocol": "tcp"},
        {"mode": "ingress", "target": 9002, "published": "8002", "protocol": "tcp"}]),
    ("[::1]:81:81", [{"mode": "ingress", "host_ip": "::1", "target": 81, "published": "81",
                      "protocol": "tcp"}]),
    ("127.0.0.1::82", [{"mode": "ingress", "host_ip": "127.0.0.1", "target": 82,
                        "protocol": "tcp"}]),
    ("6000-6002:6000", [{"mode": "ingress", "target": 6000, "published": "6000-6002",
                         "protocol": "tcp"}]),
    ("7000-7001", [{"mode": "ingress", "target": 7000, "protocol": "tcp"},
                   {"mode": "ingress", "target": 7001, "protocol": "tcp"}]),
    ("80:80/UDP", [{"mode": "ingress", "target": 80, "published": "80", "protocol": "udp"}]),
    ("0.0.0.0:53:53/sctp", [{"mode": "ingress", "host_ip": "0.0.0.0", "target": 53,
                             "published": "53", "protocol": "sctp"}]),
    (":80", [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
    ("80/", [{"mode": "ingress", "target": 80, "protocol": "tcp"}]),
]


@pytest.mark.parametrize(("short", "expected"), PORTS)
def test_short_ports(short: str | int, expected: list[dict[str, Any]]) -> None:
    assert canonical({"ports": [short]})["ports"] == expected


PORT_ERRORS = [
    ("80:80:80:80", "invalid IP address: 80:80"),
    ("abc:80", "invalid hostPort: abc"),
    ("80:abc", "invalid containerPort: abc"),
    ("80-70:80-70", "invalid containerPort: 80-70"),
    ("8000-8002:9000-9001",
     "invalid ranges specified for container and host Ports: 9000-9001 and 8000-8002"),
    ("70000:80", "invalid hostPort: 70000"),
    ("80/xyz", "invalid proto: xyz"),
]


@pytest.mark.parametrize(("short", "message"), PORT_ERRORS)
def test_bad_ports_are_placed_errors(short: str, message: str) -> None:
    error = fail({"ports": ["8080:80", short]})
    assert error.message == message
    assert error.path == "services.a.ports[1]"
    assert error.loc is not None and error.loc.file == "compose.yaml"
    assert error.hint and "CONTAINER_PORT" in error.hint


def test_long_ports_keep_their_form_until_normalize() -> None:
    # Compose merges a long port without protocol apart from a short "8080:80"; the defaults
    # are added after merging.
    ports = canonical({"ports": [{"target": "80", "published": 8080}]})["ports"]
    assert ports == [{"target": 80, "published": "8080"}]


VOLUMES: list[tuple[str, dict[str, Any]]] = [
    ("./data:/data", {"type": "bind", "source": "/tmp/gen/data", "target": "/data",
                      "bind": {"create_host_path": True}}),
    ("~/x:/x:ro", {"type": "bind", "source": "/root/x", "target": "/x", "read_only": True,
                   "bind": {"create_host_path": True}}),
    ("named:/n:rw,nocopy", {"type": "volume", "source": "named", "target": "/n",
                            "volume": {"nocopy": True}}),
    ("/abs:/abs:z", {"type": "bind", "source": "/abs", "target": "/abs",
                     "bind": {"selinux": "z", "create_host_path": True}}),
    ("/anon", {"type": "volume", "target": "/anon", "volume": {}}),
    ("data:/x2", {"type": "volume", "source": "data", "target": "/x2", "volume": {}}),
    ("vol:/v:ro", {"type": "volume", "source": "vol", "target": "/v", "read_only": True,
                   "volume": {}}),
    ("./x:/x:ro,z", {"type": "bind", "source": "/tmp/gen/x", "target": "/x", "read_only": True,
                     "bind": {"selinux": "z", "create_host_path": True}}),
    (".:/y:cached", {"type": "bind", "source": "/tmp/gen", "target": "/y",
                     "bind": {"create_host_path": True}}),
    ("/q:/r:rprivate,ro", {"type": "bind", "source": "/q", "target": "/r", "read_only": True,
                           "bind": {"propagation": "rprivate", "create_host_path": True}}),
    ("a:b:c:d", {"type": "bind", "source": "/tmp/gen/a:b", "target": "c:d",
                 "bind": {"create_host_path": True}}),
    ("::", {"type": "volume", "target": "::"}),
    ("c:\\x:/win", {"type": "bind", "source": "c:\\x", "target": "/win",
                    "bind": {"create_host_path": True}}),
    ("../up:/up/", {"type": "bind", "source": "/tmp/up", "target": "/up",
                    "bind": {"create_host_path": True}}),
    ("./b:/b:nocopy", {"type": "bind", "source": "/tmp/gen/b", "target": "/b",
                       "bind": {"create_host_path": True}, "volume": {"nocopy": True}}),
    ("/a:/b:ro,rw", {"type": "bind", "source": "/a", "target": "/b",
                     "bind": {"create_host_path": True}}),
    ("/a:/b:Z,shared", {"type": "bind", "source": "/a", "target": "/b",
                        "bind": {"selinux": "Z", "propagation": "shared",
                                 "create_host_path": True}}),
    ("/x:/y/../z", {"type": "bind", "source": "/x", "target": "/z",
                    "bind": {"create_host_path": True}}),
    ("./a:b", {"type": "bind", "source": "/tmp/gen/a", "target": "b",
               "bind": {"create_host_path": True}}),
    ("abc", {"type": "volume", "target": "abc", "volume": {}}),
]


@pytest.mark.parametrize(("short", "expected"), VOLUMES)
def test_short_volumes(short: str, expected: dict[str, Any]) -> None:
    assert canonical({"volumes": [short]})["volumes"] == [expected]


@pytest.mark.parametrize(("short", "message"), [
    ("/a:/b:ro:x", "invalid spec: /a:/b:ro:x: too many colons"),
    (":/x", "invalid spec: :/x: empty section between colons"),
    ("/x:", "invalid spec: /x:: empty section between colons"),
])
def test_bad_volumes(short: str, message: str) -> None:
    error = fail({"volumes": [short]})
    assert (error.message, error.path) == (message, "services.a.volumes[0]")


def test_long_volume_target_is_cleaned_and_tmpfs_size_in_bytes() -> None:
    volumes = canonical({"volumes": [
        {"type": "tmpfs", "target": "/t/", "tmpfs": {"size": "10m"}},
        {"type": "bind", "source": "./rel", "target": "/rel",
         "bind": {"create_host_path": False}}]})["volumes"]
    assert volumes == [
        {"type": "tmpfs", "target": "/t", "tmpfs": {"size": "10485760"}},
        {"type": "bind", "source": "/tmp/gen/rel", "target": "/rel", "bind": {}}]


COMMANDS: list[tuple[str, list[str]]] = [
    ("echo \"hello world\" 'a b' c\\ d", ["echo", "hello world", "a b", "c d"]),
    ("echo a; echo b", ["echo", "a"]),
    ("echo a && b", ["echo", "a"]),
    ("sh -c 'it''s' \"a b\"c", ["sh", "-c", "its", "a bc"]),
    ('""', [""]),
    ("a\tb", ["a", "b"]),
    ('echo "a\\"b"', ["echo", 'a"b']),
    ("echo 'a\\b'", ["echo", "a\\b"]),
    ("x | y", ["x"]),
    ("a > b", ["a"]),
    ("", []),
    ("echo #x y", ["echo", "#x", "y"]),
    ("echo `a b` c", ["echo", "`a b`", "c"]),
    ("echo $(a;b) c", ["echo", "$(a;b)", "c"]),
    ("a$(b c)", ["a$(b c)"]),
    ("a 2>x", ["a"]),
    ("2>x", []),
    ("x \\(b", ["x", "(b"]),
    ("a\r\nb", ["a", "b"]),
    ("x&&y", ["x"]),
]


@pytest.mark.parametrize(("line", "words"), COMMANDS)
def test_command_strings_are_split_like_compose(line: str, words: list[str]) -> None:
    assert shell_split(line) == words
    result = canonical({"command": line, "entrypoint": line})
    assert result["command"] == words
    assert result["entrypoint"] == words


@pytest.mark.parametrize("line", ['echo "abc', "a\\", "a)", "(a)", "a #(b)", "a $((1+2))",
                                  "a `b", "$x(y)"])
def test_invalid_command_lines(line: str) -> None:
    error = fail({"command": line})
    assert (error.path, error.message) == ("services.a.command", "invalid command line string")
    with pytest.raises(ValueError):
        shell_split(line)


DURATIONS = [("1m30s", "1m30s"), ("90s", "1m30s"), ("1h", "1h0m0s"), ("1500ms", "1.5s"),
             ("0s", "0s"), ("1h2m3.5s", "1h2m3.5s"), ("2m", "2m0s"), ("10us", "10µs"),
             ("1.5h", "1h30m0s")]


@pytest.mark.parametrize(("text", "printed"), DURATIONS)
def test_durations_print_as_go_does(text: str, printed: str) -> None:
    assert canonical({"stop_grace_period": text})["stop_grace_period"] == printed
    nanos = parse_duration(text)
    assert nanos is not None and format_duration(nanos) == printed


def test_bad_duration() -> None:
    error = fail({"healthcheck": {"interval": "10x"}})
    assert error.path == "services.a.healthcheck.interval"
    assert error.message == 'invalid duration "10x"'


SIZES: list[tuple[str | int, str]] = [
    ("64m", "67108864"), ("1g", "1073741824"), ("1.5g", "1610612736"), ("1024", "1024"),
    ("10k", "10240"), ("2gb", "2147483648"), ("512MiB", "536870912"), ("100b", "100"),
    (1024, "1024")]


@pytest.mark.parametrize(("size", "printed"), SIZES)
def test_byte_sizes_print_in_bytes(size: str | int, printed: str) -> None:
    assert canonical({"shm_size": size})["shm_size"] == printed


def test_bad_byte_size() -> None:
    error = fail({"mem_limit": "10q"})
    assert (error.path, error.message) == ("services.a.mem_limit", "invalid size '10q'")
    assert parse_bytes("10q") is None


def test_lists_become_mappings() -> None:
    result = canonical({
        "environment": ["A=1", "B", "C=", "D=x=y"],
        "labels": ["x=1", "y"],
        "sysctls": ["net.core.somaxconn=1024"],
        "depends_on": ["b"],
        "networks": ["n1"],
    }, resolve=False)
    assert result["environment"] == {"A": "1", "B": None, "C": "", "D": "x=y"}
    assert result["labels"] == {"x": "1", "y": ""}
    assert result["sysctls"] == {"net.core.somaxconn": "1024"}
    assert result["depends_on"] == {"b": {"condition": "service_started", "required": True}}
    assert result["networks"] == {"n1": None}


def test_mapping_values_become_strings() -> None:
    result = canonical({"environment": {"F": 1.5, "G": 1e3, "H": None, "B": True, "N": 1},
                        "labels": {"a": 1, "n": None}}, resolve=False)
    assert result["environment"] == {"F": "1.5", "G": "1000", "H": None, "B": "true", "N": "1"}
    assert result["labels"] == {"a": "1", "n": ""}


def test_extra_hosts_forms() -> None:
    listed = canonical({"extra_hosts": ["somehost:162.242.195.82", "other=1.2.3.4",
                                        "v6:::1"]})
    assert listed["extra_hosts"] == ["somehost=162.242.195.82", "other=1.2.3.4", "v6=::1"]
    mapped = canonical({"extra_hosts": {"host1": "1.2.3.4", "host2": ["5.6.7.8", "::1"]}})
    assert mapped["extra_hosts"] == ["host1=1.2.3.4", "host2=5.6.7.8", "host2=::1"]


def test_extra_host_without_ip() -> None:
    error = fail({"extra_hosts": ["nohost"]})
    assert error.message == "invalid additional host, missing IP: nohost"


def test_strings_become_lists_and_references() -> None:
    result = canonical({"build": "./b", "dns": "8.8.8.8", "tmpfs": "/tmp",
                        "secrets": ["s1"], "configs": ["c1"],
                        "healthcheck": {"test": "curl -f http://x", "timeout": "90s"},
                        "devices": ["/dev/sda:/dev/xvda:rwm", "/dev/sdb"]}, resolve=False)
    assert result["build"] == {"context": "./b"}
    assert result["dns"] == ["8.8.8.8"]
    assert result["tmpfs"] == ["/tmp"]
    assert result["secrets"] == [{"source": "s1"}]
    assert result["configs"] == [{"source": "c1"}]
    assert result["healthcheck"] == {"test": ["CMD-SHELL", "curl -f http://x"],
                                     "timeout": "1m30s"}
    assert result["devices"] == [
        {"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"},
        {"source": "/dev/sdb", "target": "/dev/sdb", "permissions": "rwm"}]


def test_confusing_device() -> None:
    error = fail({"devices": ["a:b:c:d"]})
    assert error.message == "confusing device mapping, please use long syntax: a:b:c:d"


def test_ulimits_pull_policy_and_deploy() -> None:
    result = canonical({"ulimits": {"nofile": "2048", "nproc": {"soft": 1, "hard": 2}},
                        "pull_policy": "if_not_present",
                        "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "50M"}},
                                   "restart_policy": {"delay": "5s", "window": "120s"}}})
    assert result["ulimits"] == {"nofile": 2048, "nproc": {"soft": 1, "hard": 2}}
    assert result["pull_policy"] == "missing"
    assert result["deploy"]["resources"] == {"limits": {"cpus": 0.5, "memory": "52428800"}}
    assert result["deploy"]["restart_policy"] == {"delay": "5s", "window": "2m0s"}


def test_external_name_is_rewritten_with_a_warning() -> None:
    root = parse_documents("services: {}\nvolumes:\n  v2:\n    external:\n      name: old\n",
                           "compose.yaml")[0]
    warnings: list[ManifestWarning] = []
    canonicalize(root, warn=warnings.append)
    assert plain(root)["volumes"] == {"v2": {"external": True, "name": "old"}}
    assert [w.message for w in warnings] == [
        "external.name is deprecated. Please set name and external: true"]


def test_places_are_kept() -> None:
    root = parse_documents("services:\n  a:\n    image: x\n    ports:\n      - 80\n"
                           "      - '81-82'\n    environment:\n      - A=1\n", "f.yaml")[0]
    canonicalize(root, warn=lambda w: None)
    service = root["services"]["a"]
    assert [loc.line if loc else 0 for loc in service["ports"].item_locs] == [5, 6, 6]
    assert isinstance(service["environment"], YMap)
    env_loc = service["environment"].loc_of("A")
    assert env_loc is not None and env_loc.line == 8


def test_parse_port_is_pure() -> None:
    assert parse_port("1.2.3.4:80:81/udp") == [
        {"mode": "ingress", "host_ip": "1.2.3.4", "target": 81, "published": "80",
         "protocol": "udp"}]


def test_whole_pipeline_on_a_build_service(tmp_path: Any) -> None:
    root = parse_documents("services:\n  b:\n    build: ./b\n    pull_policy: if_not_present\n",
                           "compose.yaml")[0]
    canonicalize(root, warn=lambda w: None)
    resolve_paths(root, str(tmp_path))
    root["name"] = "p"
    normalize(root, project_name="p", project_dir=str(tmp_path), env={}, warn=lambda w: None)
    assert plain(root)["services"]["b"] == {
        "build": {"context": f"{tmp_path}/b", "dockerfile": "Dockerfile"},
        "command": None, "entrypoint": None, "networks": {"default": None},
        "pull_policy": "missing"}


@pytest.mark.parametrize("port", ["0", {"target": 0, "published": 80}, {"published": 80}])
def test_port_without_target(port: Any) -> None:
    error = fail({"ports": [port]})
    assert (error.path, error.message) == ("services.a.ports[0]", "is missing a target port")


@pytest.mark.parametrize(("short", "message"), [
    ("[fe80::1%eth0]:80:80", "invalid IP address: fe80::1%eth0"),
    ("localhost:80:80", "invalid IP address: localhost"),
    ("1.2.3.4:80", "invalid hostPort: 1.2.3.4"),
    ("80:80/tcp/x", "invalid proto: tcp/x"),
])
def test_more_bad_ports(short: str, message: str) -> None:
    assert fail({"ports": [short]}).message == message


def test_environment_key_with_trailing_space() -> None:
    error = fail({"environment": ["A=1", "B =x"]})
    assert error.path == "services.a.environment[1]"
    assert error.message == "environment variable B  is declared with a trailing space"
    # Labels and mappings keep such keys as written, as Compose does.
    assert canonical({"labels": ["a =b"], "environment": {"B ": "x"}})["labels"] == {"a ": "b"}


@pytest.mark.parametrize(("short", "note"), [
    ("./a:/a:cached", "option 'cached' is ignored: it only matters on Docker Desktop"),
    ("./a:/a:rox", "unknown option 'rox' is ignored (known: ro, rw, nocopy, z, Z, and the "
                   "propagation modes)"),
    ("v:/v:nocopy", "'v:/v' is read as a Windows path on drive v:, as Compose reads it: to "
                    "mount a volume with a one-letter name, use the long syntax (type: volume, "
                    "source: ..., target: ...)"),
])
def test_what_compose_reads_quietly_in_a_short_volume_is_said(short: str, note: str) -> None:
    text = json.dumps({"services": {"a": {"image": "x", "volumes": [short]}}})
    root = parse_documents(text, "compose.yaml")[0]
    warnings: list[ManifestWarning] = []
    canonicalize(root, warn=warnings.append)
    assert [w.message for w in warnings] == [note]
    assert warnings[0].path == "services.a.volumes[0]"


def test_a_plain_short_volume_says_nothing() -> None:
    text = json.dumps({"services": {"a": {"image": "x", "volumes": ["data:/data:ro,z"]}}})
    warnings: list[ManifestWarning] = []
    canonicalize(parse_documents(text, "compose.yaml")[0], warn=warnings.append)
    assert warnings == []
