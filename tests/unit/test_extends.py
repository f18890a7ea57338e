"""``extends``; expected results checked against Docker Compose v2.40.3."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from composer.errors import CycleError, ManifestError
from composer.manifest.extends import resolve_extends
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents


def load_file(path: str) -> YMap:
    return parse_documents(pathlib.Path(path).read_text(), path)[0]


def resolved(text: str, directory: pathlib.Path, name: str = "compose.yaml") -> dict[str, Any]:
    path = directory / name
    path.write_text(text)
    root = load_file(str(path))
    resolve_extends(root, filename=str(path), load_file=load_file, base_dir=str(directory))
    services: dict[str, Any] = plain(root)["services"]
    return services


def test_same_file_extends_merges_child_over_base(tmp_path: pathlib.Path) -> None:
    services = resolved(
        "services:\n  base:\n    image: b\n    environment: {A: '1'}\n    command: [x]\n"
        "  web:\n    extends: base\n    environment: {B: '2'}\n    command: [y]\n", tmp_path)
    assert services["web"] == {"image": "b", "environment": {"A": "1", "B": "2"},
                               "command": ["y"]}
    assert services["base"] == {"image": "b", "environment": {"A": "1"}, "command": ["x"]}


def test_everything_is_inherited(tmp_path: pathlib.Path) -> None:
    services = resolved(
        "services:\n  base:\n    image: b\n    depends_on: {db: {condition: service_started}}\n"
        "    links: [db]\n    volumes_from: [db]\n  db:\n    image: d\n"
        "  web:\n    extends: {service: base}\n", tmp_path)
    assert services["web"]["depends_on"] == {"db": {"condition": "service_started"}}
    assert services["web"]["links"] == ["db"]
    assert services["web"]["volumes_from"] == ["db"]


def test_chains_resolve_and_share_no_nodes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a:\n    image: i\n    labels: {a: '1'}\n"
                    "  b:\n    extends: a\n    labels: {b: '2'}\n"
                    "  c:\n    extends: b\n    labels: {c: '3'}\n")
    root = load_file(str(path))
    resolve_extends(root, filename=str(path), load_file=load_file)
    assert plain(root)["services"]["c"]["labels"] == {"a": "1", "b": "2", "c": "3"}
    root["services"]["c"]["labels"]["z"] = "x"
    assert "z" not in root["services"]["b"]["labels"]
    assert "extends" not in root["services"]["c"]


def test_child_reset_tag_removes_inherited_value(tmp_path: pathlib.Path) -> None:
    services = resolved("services:\n  base:\n    image: b\n    ports: ['80:80']\n"
                        "  web:\n    extends: base\n    ports: !reset []\n", tmp_path)
    assert services["web"] == {"image": "b"}


def test_base_in_another_directory_has_its_paths_rebased(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("composer.manifest.paths")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text(
        "services:\n  base:\n    image: b\n    build: {context: ./ctx}\n"
        "    volumes: [{type: bind, source: ./data, target: /data}]\n")
    services = resolved("services:\n  web:\n    extends: {service: base, file: sub/base.yaml}\n",
                        tmp_path)
    assert services["web"]["build"]["context"] == str(tmp_path / "sub" / "ctx")
    assert services["web"]["volumes"][0]["source"] == str(tmp_path / "sub" / "data")


def test_nested_extends_file_is_relative_to_the_extended_file(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("composer.manifest.paths")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.yaml").write_text(
        "services:\n  in:\n    image: inner\n    build: {context: ./ictx}\n")
    (tmp_path / "sub" / "base2.yaml").write_text(
        "services:\n  b2:\n    extends: {service: in, file: inner.yaml}\n")
    services = resolved("services:\n  top:\n    extends: {service: b2, file: sub/base2.yaml}\n",
                        tmp_path)
    assert services["top"] == {"image": "inner",
                               "build": {"context": str(tmp_path / "sub" / "ictx")}}


def test_same_directory_base_file_keeps_relative_paths(tmp_path: pathlib.Path) -> None:
    (tmp_path / "common.yaml").write_text("services:\n  base:\n    build: {context: ./ctx}\n")
    services = resolved("services:\n  web:\n    extends: {service: base, file: common.yaml}\n",
                        tmp_path)
    assert services["web"]["build"] == {"context": "./ctx"}


def test_cycle_names_the_whole_trail(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CycleError) as info:
        resolved("services:\n  web:\n    extends: base\n  base:\n    extends: web\n", tmp_path)
    assert info.value.trail == ["web", "base", "web"]
    assert info.value.loc is not None and info.value.loc.line in (3, 5)


def test_cycle_across_files_names_the_files(tmp_path: pathlib.Path) -> None:
    (tmp_path / "cyc2.yaml").write_text(
        "services:\n  x:\n    extends: {service: a, file: compose.yaml}\n")
    with pytest.raises(CycleError) as info:
        resolved("services:\n  a:\n    image: i\n    extends: {service: x, file: cyc2.yaml}\n",
                 tmp_path)
    assert info.value.trail == ["a", "x (cyc2.yaml)", "a"]


def test_missing_base_service_lists_the_services(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ManifestError) as info:
        resolved("services:\n  web:\n    extends: {service: bsae}\n  base:\n    image: x\n",
                 tmp_path)
    assert "service 'bsae' not found" in info.value.message
    assert info.value.hint is not None and "base" in info.value.hint
    assert info.value.loc is not None and info.value.loc.line == 3


def test_missing_base_file_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        resolved("services:\n  web:\n    extends: {service: b, file: nofile.yaml}\n", tmp_path)
