"""Phase 4: type coercion and schema validation, one error per problem in YAML words."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from composer.errors import Loc, ManifestError, ManifestWarning
from composer.manifest import schema
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents


def load(text: str) -> YMap:
    return parse_documents(text, "compose.yaml")[0]


def checked(text: str) -> tuple[YMap, list[ManifestWarning]]:
    warnings: list[ManifestWarning] = []
    root = load(text)
    schema.validate(root, warn=warnings.append)
    return root, warnings


def failure(text: str) -> str:
    with pytest.raises(ManifestError) as info:
        checked(text)
    return str(info.value)


def service(body: str) -> str:
    """A file with one service ``web`` whose settings are ``body`` (indented by 4)."""
    lines = "".join(f"    {line}\n" for line in body.strip("\n").split("\n"))
    return "services:\n  web:\n    image: nginx\n" + lines


# --- the schema file itself ------------------------------------------------------------------

def test_schema_is_found_and_is_a_valid_2020_12_schema() -> None:
    from jsonschema import Draft202012Validator

    assert schema.schema_path().is_file()
    assert schema.schema_path().name == "compose.schema.json"
    Draft202012Validator.check_schema(schema.load_schema())


def test_every_service_attribute_of_the_spec_is_known() -> None:
    props = schema.load_schema()["$defs"]["service"]["properties"]
    assert len(props) == 93  # the 92 of the Compose Specification plus pre_start
    for key in ("image", "build", "develop", "deploy", "pre_start", "post_start", "pre_stop",
                "use_api_socket", "provider", "models", "label_file", "gpus"):
        assert key in props


def test_ref_siblings_never_clash_with_their_target() -> None:
    # The validator uses an inlined copy that merges a $ref's siblings into its target.
    defs = schema.load_schema()["$defs"]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                target = defs[node["$ref"].removeprefix("#/$defs/")]
                assert not (set(node) - {"$ref"}) & set(target), node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema.load_schema())


def test_every_description_reads_as_a_hint() -> None:
    # Descriptions are shown as hints, so they must tell the user what to do.
    texts: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                texts.append(node["description"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema.load_schema()["$defs"])
    assert texts
    for text in texts:
        assert re.match(r"(use|write|give|list|quote) ", text), text


# --- coercion ---------------------------------------------------------------------------------

def test_strings_become_the_types_the_schema_asks_for() -> None:
    root, warnings = checked(service(
        "privileged: 'true'\ninit: 'FALSE'\nscale: '3'\ncpus: '0.5'\ncpu_shares: '512'\n"
        "oom_score_adj: '-100'\nhealthcheck:\n  retries: '3'\n  disable: 'false'\n"
        "ports:\n  - target: '80'\n    published: '8080'\n"
        "ulimits:\n  nofile: '1000'\n  nproc: {soft: '10', hard: '20'}\n"
        "deploy:\n  replicas: '+2'\n  resources: {limits: {cpus: '1e-1', pids: '5'}}\n"))
    web = plain(root)["services"]["web"]
    assert web["privileged"] is True and web["init"] is False
    assert web["scale"] == 3 and web["cpus"] == 0.5 and web["cpu_shares"] == 512
    assert web["oom_score_adj"] == -100
    assert web["healthcheck"] == {"retries": 3, "disable": False}
    assert web["ports"] == [{"target": 80, "published": "8080"}]  # published may be a range
    assert web["ulimits"] == {"nofile": 1000, "nproc": {"soft": 10, "hard": 20}}
    assert web["deploy"]["replicas"] == 2
    assert web["deploy"]["resources"]["limits"] == {"cpus": 0.1, "pids": 5}
    assert warnings == []


def test_strings_stay_strings_where_the_schema_allows_them() -> None:
    root, _ = checked(service(
        "mem_limit: '1g'\nshm_size: '64m'\nenvironment:\n  A: 'true'\n  B: '1'\n"
        "labels: ['x=1']\nbuild:\n  context: .\n  provenance: 'true'\nexpose: ['80']\n"
        "x-anything: {privileged: 'maybe'}\n"))
    web = plain(root)["services"]["web"]
    assert web["mem_limit"] == "1g" and web["shm_size"] == "64m"
    assert web["environment"] == {"A": "true", "B": "1"}
    assert web["build"]["provenance"] == "true"
    assert web["x-anything"] == {"privileged": "maybe"}


@pytest.mark.parametrize(("text", "value"), [
    ("yes", True), ("Y", True), ("ON", True), ("no", False), ("n", False), ("Off", False),
])
def test_yaml_1_1_booleans_are_read_with_a_warning(text: str, value: bool) -> None:
    root, warnings = checked(service(f"tty: '{text}'"))
    assert root["services"]["web"]["tty"] is value
    assert [str(w) for w in warnings] == [
        f'compose.yaml:4:5: services.web.tty: YAML 1.2 has no boolean "{text}": '
        f"read as {str(value).lower()} (write {str(value).lower()})"]


def test_coercion_keeps_places() -> None:
    root, _ = checked(service("scale: '3'\nports:\n  - target: '80'"))
    web = root["services"]["web"]
    assert web.key_locs["scale"] == Loc("compose.yaml", 4, 5)
    assert web["ports"][0].key_locs["target"] == Loc("compose.yaml", 6, 9)


def test_external_accepts_a_boolean_string() -> None:
    root, _ = checked("services: {}\nnetworks:\n  n:\n    external: 'true'\n")
    assert root["networks"]["n"]["external"] is True


@pytest.mark.parametrize(("body", "message"), [
    ("privileged: maybe", "services.web.privileged: must be a boolean, got 'maybe'\n"
                          "  hint: use true or false"),
    ("privileged: '1'", "services.web.privileged: must be a boolean, got '1'\n"
                        "  hint: use true or false"),
    ("scale: '3.5'", "services.web.scale: must be an integer, got '3.5'\n"
                     "  hint: write a whole number"),
    ("scale: ' 3'", "services.web.scale: must be an integer, got ' 3'\n"
                    "  hint: write a whole number"),
    ("cpus: abc", "services.web.cpus: must be a number, got 'abc'\n"
                  "  hint: write a number like 2 or 0.5"),
    ("cpus: inf", "services.web.cpus: must be a number, got 'inf'\n"
                  "  hint: write a number like 2 or 0.5"),
])
def test_unreadable_strings_are_errors(body: str, message: str) -> None:
    assert failure(service(body)) == "compose.yaml:4:5: " + message


def test_an_empty_string_points_at_unset_variables() -> None:
    assert failure(service("read_only: ''")) == (
        "compose.yaml:4:5: services.web.read_only: must be a boolean, got an empty string\n"
        "  hint: an unset variable gives an empty string: set it, or give a default like"
        " ${VAR:-false}")


# --- one error per problem, with golden text ----------------------------------------------

GOLDEN = [
    # 1 unknown key, with did-you-mean
    ("services:\n  web:\n    imgae: nginx\n",
     "compose.yaml:3:5: services.web: unknown key 'imgae'\n  hint: did you mean 'image'?"),
    # 2 wrong type in a sequence item
    (service("ports:\n  - true"),
     "compose.yaml:5:9: services.web.ports[0]: must be an integer, a string or a mapping, "
     "got a boolean\n  hint: write a port number, '[ip:][published:]target[/protocol]', "
     "or a mapping with 'target:'"),
    # 3 a value no pattern accepts
    (service("restart: sometimes"),
     "compose.yaml:4:5: services.web.restart: invalid restart policy 'sometimes'\n"
     "  hint: use no, always, unless-stopped or on-failure[:max-retries]"),
    # 4 a version 1 file
    ("web:\n  image: nginx\n",
     "compose.yaml:1:1: unknown key 'web'\n"
     "  hint: services go under 'services:' (this looks like a version 1 file)"),
    # 5 misspelt top-level key
    ("servics:\n  web:\n    image: nginx\n",
     "compose.yaml:1:1: unknown key 'servics'\n  hint: did you mean 'services'?"),
    # 6 enum with did-you-mean
    (service("depends_on:\n  db:\n    condition: service_healty"),
     "compose.yaml:6:9: services.web.depends_on.db.condition: invalid condition "
     "'service_healty'\n  hint: did you mean 'service_healthy'? (use one of: service_started, "
     "service_healthy, service_completed_successfully)"),
    # 7 missing required key
    (service("depends_on:\n  db:\n    restart: true"),
     "compose.yaml:5:7: services.web.depends_on.db: missing required key 'condition'\n"
     "  hint: add 'condition:' (one of: service_started, service_healthy, "
     "service_completed_successfully)"),
    # 8 out of range
    (service("cpu_percent: 500"),
     "compose.yaml:4:5: services.web.cpu_percent: must be at most 100, got 500\n"
     "  hint: use a value from 0 to 100"),
    # 9 bad name of a user-defined entry
    ("services:\n  'a b':\n    image: nginx\n",
     "compose.yaml:2:3: services: invalid service name 'a b'\n"
     "  hint: use letters, digits, '.', '_' and '-' only"),
    # 10 null where a mapping is needed
    ("services:\n  web:\n",
     "compose.yaml:2:3: services.web: must be a mapping, got null\n"
     "  hint: write a value, or remove the key"),
    # 11 wrong type of a map value
    (service("environment:\n  A: [1]"),
     "compose.yaml:5:7: services.web.environment.A: must be a string, a number, a boolean or "
     "null, got a sequence\n  hint: write a single value here (quote it to keep it as text)"),
    # 12 bad enum in a long-form volume
    (service("volumes:\n  - type: nfs\n    target: /x"),
     "compose.yaml:5:9: services.web.volumes[0].type: invalid mount type 'nfs'\n"
     "  hint: use one of: bind, volume, tmpfs, image, npipe, cluster"),
    # 13 unknown key deep inside
    (service("volumes:\n  - type: bind\n    source: .\n    target: /x\n    bind:\n"
             "      propagaton: rshared"),
     "compose.yaml:9:11: services.web.volumes[0].bind: unknown key 'propagaton'\n"
     "  hint: did you mean 'propagation'?"),
    # 14 empty key
    (service("labels:\n  '': x"),
     "compose.yaml:5:7: services.web.labels: empty key\n  hint: give the entry a name"),
    # 15 obsolete version written as a number
    ("version: 3.8\nservices: {}\n",
     "compose.yaml:1:1: version: must be a string, got a number\n"
     "  hint: quote it (version: \"3.8\"), or better remove it: Compose ignores it"),
    # 16 a boolean where a string belongs, in a command sequence
    (service("healthcheck:\n  test: [CMD, true]"),
     "compose.yaml:5:19: services.web.healthcheck.test[1]: must be a string, got a boolean"),
    # 17 bad pull policy
    (service("pull_policy: sometimes"),
     "compose.yaml:4:5: services.web.pull_policy: invalid pull policy 'sometimes'\n"
     "  hint: use always, never, missing, build, daily, weekly or every_<duration> "
     "(like every_12h)"),
    # 18 unknown key where no name is close
    (service("logging:\n  kind: json-file"),
     "compose.yaml:5:7: services.web.logging: unknown key 'kind'\n"
     "  hint: use one of: driver, options (or a key starting with 'x-')"),
    # 19 a string for a mapping-only top-level section
    ("services: {}\nvolumes: data\n",
     "compose.yaml:2:1: volumes: must be a mapping, got a string"),
    # 20 ulimits object needs both halves
    (service("ulimits:\n  nofile: {soft: 1}"),
     "compose.yaml:5:7: services.web.ulimits.nofile: missing required key 'hard'\n"
     "  hint: add 'hard:'"),
]


@pytest.mark.parametrize(("text", "message"), GOLDEN)
def test_golden_error_messages(text: str, message: str) -> None:
    assert failure(text) == message


def test_the_first_problem_in_file_order_is_raised() -> None:
    text = service("tty: 3\nrestart: sometimes\nimgae: x")
    found = schema.problems(load(text))
    assert [e.message for e in found] == [
        "must be a boolean, got an integer", "invalid restart policy 'sometimes'",
        "unknown key 'imgae'"]
    assert failure(text).startswith("compose.yaml:4:5: services.web.tty:")


def test_each_unknown_key_is_its_own_problem() -> None:
    found = schema.problems(load("web:\n  image: a\ndb:\n  image: b\n"))
    assert [(e.message, e.loc) for e in found] == [
        ("unknown key 'web'", Loc("compose.yaml", 1, 1)),
        ("unknown key 'db'", Loc("compose.yaml", 3, 1))]


def test_extension_keys_are_free_everywhere() -> None:
    checked("x-top: 1\nservices:\n  web:\n    image: a\n    x-mine: {any: thing}\n"
            "    build:\n      context: .\n      x-b: 1\n    logging:\n      x-l: []\n")


def test_pre_start_hooks_are_accepted() -> None:
    root, _ = checked(service(
        "pre_start:\n  - image: alpine\n    command: [sh, -c, 'echo hi']\n"
        "    per_replica: 'true'\n    privileged: false\n    environment: [A=1]"))
    assert root["services"]["web"]["pre_start"][0]["per_replica"] is True
    assert "missing required key 'command'" in failure(service("pre_start:\n  - image: a"))


def test_the_deepest_alternative_explains_an_anyof_failure() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator({"anyOf": [
        {"type": "string"},
        {"type": "object", "properties": {"a": {"type": "object", "properties": {
            "b": {"type": "integer"}}}}}]})
    error = next(validator.iter_errors({"a": {"b": "x"}}))
    best = schema._most_specific(error)
    assert list(best.absolute_path) == ["a", "b"] and best.validator == "type"


def test_validating_500_services_reaches_the_last_one() -> None:
    # Its speed is a budget of bench/ (config -q on 500 services), not of a timed test.
    lines = ["services:"]
    for i in range(500):
        lines += [f"  svc{i}:", "    image: nginx:1.25", "    ports: ['8080:80']",
                  "    environment: {A: '1'}", "    restart: always", "    volumes: ['./d:/d']",
                  "    privileged: 'false'", "    healthcheck: {test: [CMD, x], retries: 3}",
                  "    depends_on: [svc0]"]
    schema.validate(load("\n".join(lines) + "\n"), warn=lambda w: None)
    lines[-1] = "    depends_on: 7"
    with pytest.raises(ManifestError) as info:
        schema.validate(load("\n".join(lines) + "\n"), warn=lambda w: None)
    assert "svc499" in str(info.value)


# --- the shared corpus ----------------------------------------------------------------------

def _rows(corpus: Path) -> list[list[str]]:
    with (corpus / "index.tsv").open(encoding="utf-8") as handle:
        return [row for row in csv.reader(handle, delimiter="\t")][1:]


@pytest.mark.corpus
def test_files_docker_compose_accepts_pass(corpus: Path) -> None:
    failures, count = [], 0
    for row in _rows(corpus):
        if not row[3].startswith("compose") or row[4] != "ok":
            continue
        text = (corpus / row[0]).read_text(encoding="utf-8-sig")
        if "$" in text:  # still holds ${VAR} strings: interpolation comes first
            continue
        count += 1
        try:
            for doc in parse_documents(text, row[0]):
                schema.validate(doc, warn=lambda w: None)
        except ManifestError as exc:
            failures.append(str(exc))
    assert count > 250
    assert failures == []


@pytest.mark.corpus
def test_files_with_unknown_keys_are_rejected(corpus: Path) -> None:
    count = 0
    for row in _rows(corpus):
        verdict = row[4] if len(row) > 4 else ""
        # pre_start is newer than the Compose release that judged the corpus: we accept it.
        if "additional properties" not in verdict or "'pre_start'" in verdict:
            continue
        count += 1
        named = set(re.findall(r"'([^']+)'", verdict.split("additional properties", 1)[1]))
        text = (corpus / row[0]).read_text(encoding="utf-8-sig")
        found = [e for doc in parse_documents(text, row[0]) for e in schema.problems(doc)]
        assert found, row[0]
        assert {e.message.removeprefix("unknown key ").strip("'") for e in found} == named
    assert count > 50
