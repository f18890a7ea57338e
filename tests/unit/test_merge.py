"""Merging compose files; expected results checked against Docker Compose v2.40.3."""

from __future__ import annotations

from typing import Any

from composer.manifest.merge import RULES, merge, strip_reset_tags
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents


def doc(text: str, name: str = "f.yaml") -> YMap:
    return parse_documents(text, name)[0]


def merged(*texts: str) -> dict[str, Any]:
    result = doc(texts[0], "f0.yaml")
    for i, text in enumerate(texts[1:], start=1):
        result = merge(result, doc(text, f"f{i}.yaml"))
    strip_reset_tags(result)
    out: dict[str, Any] = plain(result)
    return out


def web(*texts: str) -> dict[str, Any]:
    service: dict[str, Any] = merged(*texts)["services"]["web"]
    return service


def test_rules_are_a_table_of_path_patterns() -> None:
    assert ("services", "*", "ports") in RULES
    assert all(isinstance(pattern, tuple) for pattern in RULES)


def test_scalars_replace_and_mappings_merge_recursively() -> None:
    out = web("services:\n  web:\n    image: a\n    deploy: {resources: {limits: {cpus: '1'}}}\n",
              "services:\n  web:\n    image: b\n    deploy: {resources: {limits: {memory: 1G}}}\n")
    assert out["image"] == "b"
    assert out["deploy"] == {"resources": {"limits": {"cpus": "1", "memory": "1G"}}}


def test_null_keeps_the_base_value_in_ordinary_mappings() -> None:
    out = web("services:\n  web:\n    image: a\n    user: root\n",
              "services:\n  web:\n    user: null\n")
    assert out["user"] == "root"


def test_null_replaces_an_environment_entry() -> None:
    out = web("services:\n  web:\n    environment: {A: '1', B: '2'}\n    labels: {a: '1'}\n",
              "services:\n  web:\n    environment: {A: null, C: '3'}\n    labels: {a: null}\n")
    assert out["environment"] == {"A": None, "B": "2", "C": "3"}
    assert out["labels"] == {"a": None}


def test_command_entrypoint_and_healthcheck_test_are_replaced() -> None:
    out = web("services:\n  web:\n    command: [a, b]\n    entrypoint: [x]\n"
              "    healthcheck: {test: [CMD, a], interval: 10s}\n",
              "services:\n  web:\n    command: [c]\n    entrypoint: [y]\n"
              "    healthcheck: {test: [CMD, b]}\n")
    assert out["command"] == ["c"]
    assert out["entrypoint"] == ["y"]
    assert out["healthcheck"] == {"test": ["CMD", "b"], "interval": "10s"}


def test_command_null_replaces() -> None:
    out = web("services:\n  web:\n    command: [a]\n", "services:\n  web:\n    command: null\n")
    assert out["command"] is None


def test_unique_sequences_drop_repeats_and_plain_ones_append() -> None:
    out = web("services:\n  web:\n    dns: [1.1.1.1, 8.8.8.8]\n    cap_add: [NET_ADMIN]\n"
              "    group_add: [g1]\n    build: {context: ., tags: [t1], cache_from: [c1]}\n",
              "services:\n  web:\n    dns: [8.8.8.8, 9.9.9.9]\n    cap_add: [NET_ADMIN, X]\n"
              "    group_add: [g1]\n    build: {tags: [t1, t2], cache_from: [c1, c2]}\n")
    assert out["dns"] == ["1.1.1.1", "8.8.8.8", "9.9.9.9"]
    assert out["cap_add"] == ["NET_ADMIN", "X"]
    assert out["group_add"] == ["g1", "g1"]  # Compose appends (then its schema complains)
    assert out["build"]["tags"] == ["t1", "t2"]
    assert out["build"]["cache_from"] == ["c1", "c1", "c2"]


def test_ports_merge_by_ip_target_published_protocol() -> None:
    base = ("services:\n  web:\n    ports:\n"
            "      - {target: 80, published: '8080', protocol: tcp, app_protocol: http}\n"
            "      - {target: 90, published: '9090', protocol: tcp}\n")
    over = ("services:\n  web:\n    ports:\n"
            "      - {target: 80, published: '8080', protocol: tcp, name: web}\n"
            "      - {target: 90, published: '9091', protocol: tcp}\n")
    assert web(base, over)["ports"] == [
        {"target": 80, "published": "8080", "protocol": "tcp", "name": "web"},
        {"target": 90, "published": "9090", "protocol": "tcp"},
        {"target": 90, "published": "9091", "protocol": "tcp"},
    ]


def test_volumes_merge_by_target_keeping_the_base_order() -> None:
    base = ("services:\n  web:\n    volumes:\n"
            "      - {type: bind, source: /a, target: /data, read_only: true}\n"
            "      - {type: bind, source: /b, target: /b}\n")
    over = "services:\n  web:\n    volumes:\n      - {type: bind, source: /c, target: /data}\n"
    assert web(base, over)["volumes"] == [
        {"type": "bind", "source": "/c", "target": "/data"},
        {"type": "bind", "source": "/b", "target": "/b"},
    ]


def test_secrets_merge_by_target_with_the_default_target() -> None:
    out = web("services:\n  web:\n    secrets: [{source: s1},"
              " {source: s2, target: /x, uid: '1'}]\n",
              "services:\n  web:\n    secrets: [{source: s1, target: /run/secrets/s1, mode: 1},"
              " {source: s2, target: /x}, {source: s3, target: s1}]\n")
    assert out["secrets"] == [{"source": "s1", "target": "/run/secrets/s1", "mode": 1},
                              {"source": "s2", "target": "/x"},
                              {"source": "s3", "target": "s1"}]


def test_short_forms_do_not_crash() -> None:
    out = web("services:\n  web:\n    ports: ['80:80']\n    volumes: ['/a:/data']\n"
              "    environment: [A=1, B=2]\n",
              "services:\n  web:\n    ports: ['80:80', '81:81']\n    volumes: ['/c:/data:ro']\n"
              "    environment: [B=3]\n")
    assert out["ports"] == ["80:80", "81:81"]
    assert out["volumes"] == ["/c:/data:ro"]
    assert out["environment"] == ["A=1", "B=3"]


def test_logging_with_another_driver_drops_the_base_options() -> None:
    base = "services:\n  web:\n    logging: {driver: json-file, options: {max-size: 1m}}\n"
    assert web(base, "services:\n  web:\n    logging: {driver: syslog, options: {tag: x}}\n"
               )["logging"] == {"driver": "syslog", "options": {"tag": "x"}}
    assert web(base, "services:\n  web:\n    logging: {options: {max-file: '3'}}\n"
               )["logging"] == {"driver": "json-file",
                                "options": {"max-size": "1m", "max-file": "3"}}


def test_an_ulimit_is_replaced_whole() -> None:
    out = web("services:\n  web:\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 3}\n",
              "services:\n  web:\n    ulimits: {nofile: 5}\n")
    assert out["ulimits"] == {"nofile": 5, "nproc": 3}


def test_depends_on_and_networks_merge_per_entry() -> None:
    out = web("services:\n  web:\n    depends_on: {db: {condition: service_started,"
              " required: true, restart: true}}\n    networks: {n1: {aliases: [x, y]}}\n",
              "services:\n  web:\n    depends_on: {db: {condition: service_healthy}}\n"
              "    networks: {n1: {aliases: [y, z]}, n2: null}\n")
    assert out["depends_on"] == {"db": {"condition": "service_healthy", "required": True,
                                        "restart": True}}
    assert out["networks"] == {"n1": {"aliases": ["x", "y", "z"]}, "n2": None}


def test_reset_tag_removes_and_override_tag_replaces() -> None:
    out = merged("services:\n  web:\n    image: a\n    ports: ['8080:80']\n"
                 "    environment: {A: '1', B: '2'}\n    labels: {l: '1', m: '2'}\n"
                 "  other:\n    image: o\n",
                 "services:\n  web:\n    ports: !reset []\n    environment: !override {C: '3'}\n"
                 "    labels:\n      l: !reset\n  other: !reset\n")
    assert out["services"] == {"web": {"image": "a", "environment": {"C": "3"},
                                       "labels": {"m": "2"}}}


def test_reset_in_a_single_file_is_stripped_and_a_later_file_can_set_it_again() -> None:
    first = "services:\n  web:\n    image: a\n    ports: !reset ['8080:80']\n"
    assert merged(first)["services"]["web"] == {"image": "a"}
    assert web(first, "services:\n  web:\n    ports: ['9090:90']\n")["ports"] == ["9090:90"]


def test_override_tag_only_applies_to_the_files_before_it() -> None:
    out = web("services:\n  web:\n    labels: {x: '1'}\n",
              "services:\n  web:\n    labels: !override {a: b}\n",
              "services:\n  web:\n    labels: {c: d}\n")
    assert out["labels"] == {"a": "b", "c": "d"}


def test_inputs_are_left_untouched_and_override_places_win() -> None:
    base = doc("services:\n  web:\n    image: a\n    labels: {a: '1'}\n", "base.yaml")
    over = doc("services:\n  web:\n    image: b\n", "over.yaml")
    result = merge(base, over)
    result["services"]["web"]["labels"]["z"] = "2"
    assert plain(base)["services"]["web"]["labels"] == {"a": "1"}
    web_node = result["services"]["web"]
    assert web_node.key_locs["image"].file == "over.yaml"
    assert web_node.key_locs["labels"].file == "base.yaml"


def test_extension_sequences_append() -> None:
    assert merged("x-top: {a: [1]}\nservices: {}\n", "x-top: {a: [2], b: 1}\n")["x-top"] == {
        "a": [1, 2], "b": 1}


def test_ipam_config_keeps_the_override_pools_merged_by_subnet() -> None:
    out = merged("networks:\n  n:\n    ipam:\n      config: [{subnet: 10.0.0.0/24, gateway:"
                 " 10.0.0.1}, {subnet: 10.0.2.0/24}]\n",
                 "networks:\n  n:\n    ipam:\n      config: [{subnet: 10.0.0.0/24, ip_range:"
                 " 10.0.0.0/25}, {subnet: 10.0.3.0/24}]\n")
    assert out["networks"]["n"]["ipam"]["config"] == [
        {"subnet": "10.0.0.0/24", "gateway": "10.0.0.1", "ip_range": "10.0.0.0/25"},
        {"subnet": "10.0.3.0/24"}]
