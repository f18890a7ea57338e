"""Phase 2: YAML read as Compose reads it, with places."""

from __future__ import annotations

import pytest

from composer.errors import Loc, ManifestError
from composer.manifest.tree import OVERRIDE, RESET, YMap, YSeq, dotted, locate, plain
from composer.manifest.yamlload import parse_documents


def one(text: str) -> YMap:
    docs = parse_documents(text, "compose.yaml")
    assert len(docs) == 1
    return docs[0]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"),
        ("true", True), ("False", False), ("TRUE", True),
        ("~", None), ("null", None), ("", None),
        ("42", 42), ("-7", -7), ("0o17", 15), ("0x1F", 31),
        # Integers as Compose's YAML library reads them (checked with docker compose 2.40.3):
        # a leading zero is octal, Go's 0b prefix and digit separators work.
        ("017", 15), ("0440", 288), ("089", 89), ("1_000", 1000), ("0b101", 5),
        ("1.5", 1.5), ("1e3", 1000.0), (".inf", float("inf")),
        ("'yes'", "yes"), ('"42"', "42"), ("_1", "_1"),
        ("2001:db8::1", "2001:db8::1"), ("80:80", "80:80"), ("1:30", "1:30"),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    assert one(f"v: {text}\n")["v"] == value


def test_nan_is_a_float() -> None:
    value = one("v: .nan\n")["v"]
    assert isinstance(value, float) and value != value


def test_every_entry_knows_its_place() -> None:
    tree = one("services:\n  web:\n    image: nginx\n    ports:\n      - 80:80\n      - 443\n")
    assert locate(tree, ("services", "web", "image")) == Loc("compose.yaml", 3, 5)
    assert locate(tree, ("services", "web", "ports", 1)) == Loc("compose.yaml", 6, 9)
    # A path that goes further than the tree points at the deepest entry that exists.
    assert locate(tree, ("services", "web", "build", "context")) == Loc("compose.yaml", 2, 3)
    assert isinstance(tree["services"]["web"]["ports"], YSeq)


def test_duplicate_keys_are_errors_naming_both_lines() -> None:
    with pytest.raises(ManifestError) as caught:
        one("services:\n  web:\n    image: a\n    image: b\n")
    assert str(caught.value) == (
        "compose.yaml:4:5: duplicate key 'image' (first defined at line 3)\n"
        "  hint: a mapping may name each key once: remove or merge one of them")


def test_anchors_aliases_and_merge_keys() -> None:
    tree = one("x-base: &base\n  image: busybox\n  restart: always\n"
               "services:\n  a:\n    <<: *base\n    restart: 'no'\n  b: *base\n")
    assert plain(tree["services"]) == {
        "a": {"restart": "no", "image": "busybox"},
        "b": {"image": "busybox", "restart": "always"},
    }
    # Keys brought in by '<<' point at the anchor's lines.
    assert locate(tree, ("services", "a", "image")) == Loc("compose.yaml", 2, 3)


def test_merge_key_with_a_list_of_mappings_earliest_wins() -> None:
    tree = one("x-a: &a {k: a, only_a: 1}\nx-b: &b {k: b, only_b: 2}\nv:\n  <<: [*a, *b]\n")
    assert plain(tree["v"]) == {"k": "a", "only_a": 1, "only_b": 2}


def test_reset_and_override_tags_are_kept_per_key() -> None:
    tree = one("services:\n  web:\n    ports: !reset []\n    environment: !override\n"
               "      A: '1'\n    command: !reset null\n")
    web = tree["services"]["web"]
    assert web.tags == {"ports": RESET, "environment": OVERRIDE, "command": RESET}
    assert plain(web) == {"ports": [], "environment": {"A": "1"}, "command": None}


def test_several_documents() -> None:
    docs = parse_documents("services: {a: {image: x}}\n---\nservices: {b: {image: y}}\n", "f")
    assert [list(d["services"]) for d in docs] == [["a"], ["b"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("services:\n\tweb: {}\n",
         "compose.yaml:2:1: invalid YAML: a tab character is used for indentation\n"
         "  hint: YAML indents with spaces only: replace the tabs at the start of this line"),
        ("services:\n  web:\n    image: a: b\n",
         "compose.yaml:3:13: invalid YAML: mapping values are not allowed in this context\n"
         "  hint: a value that contains ': ' must be quoted, or the line above is mis-indented"),
        ("- a\n- b\n",
         "compose.yaml:1:1: a compose file must be a mapping at the top level\n"
         "  hint: start the file with keys such as 'services:'"),
        ("v: *nothing\n",
         "compose.yaml:1:4: invalid YAML: found undefined alias 'nothing'\n"
         "  hint: define the anchor (&name) before using it as *name"),
        ("a: !!binary aGVsbG8=\n",
         "compose.yaml:1:4: unsupported YAML tag tag:yaml.org,2002:binary\n"
         "  hint: Compose files use plain YAML values; remove the tag"),
        ("? [a]\n: 1\n", "compose.yaml:1:3: a mapping key must be a plain value, not a sequence"),
        ("x: &a\n  <<: *a\n", "compose.yaml:1:4: an alias refers to itself (recursive anchor)"),
    ],
)
def test_yaml_errors_are_located_with_a_hint(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_documents(text, "compose.yaml")
    assert str(caught.value) == expected


def test_dotted_paths_read_as_yaml() -> None:
    assert dotted(("services", "web", "ports", 0)) == "services.web.ports[0]"
    assert dotted(("services", "my.app", "labels", "a b")) == 'services."my.app".labels."a b"'


@pytest.mark.parametrize(("key", "word"), [
    ("1", "an integer"), ("true", "a boolean"), ("1.5", "a number"), ("null", "null")])
def test_keys_that_are_not_strings_are_refused_as_compose_does(key: str, word: str) -> None:
    with pytest.raises(ManifestError) as caught:
        one(f"environment:\n  {key}: a\n")
    assert str(caught.value) == (f"compose.yaml:2:3: a mapping key must be a string, but {key} "
                                 f'is {word}\n  hint: quote the key: "{key}":')


def test_quoted_and_yaml_1_1_keys_are_strings() -> None:
    tree = one("environment:\n  '1': a\n  on: c\n  yes: d\n")
    assert list(tree["environment"]) == ["1", "on", "yes"]
