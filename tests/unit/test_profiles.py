"""Profiles; expected results checked against Docker Compose v2.40.3."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from composer.errors import ManifestError
from composer.manifest.profiles import list_profiles, select_services
from composer.manifest.tree import plain
from composer.manifest.yamlload import parse_documents

PROJECT = """\
services:
  web:
    image: w
  db:
    image: d
    profiles: [dbp]
  tool:
    image: t
    profiles: [tools, debug]
    depends_on: {helper: {condition: service_started, required: true}}
  helper:
    image: h
    profiles: [helpers]
  opt:
    image: o
    depends_on: {db: {condition: service_started, required: false}}
    links: [db]
"""


def select(text: str, profiles: Iterable[str] = (), requested: Iterable[str] = ()
           ) -> dict[str, Any]:
    root = parse_documents(text, "compose.yaml")[0]
    select_services(root, profiles=profiles, requested=requested)
    services: dict[str, Any] = plain(root)["services"]
    return services


def test_services_without_profiles_are_always_on() -> None:
    assert sorted(select(PROJECT)) == ["opt", "web"]


def test_optional_dependency_on_an_off_service_is_kept() -> None:
    assert select(PROJECT)["opt"]["depends_on"] == {
        "db": {"condition": "service_started", "required": False}}


def test_active_profile_and_star() -> None:
    assert sorted(select(PROJECT, profiles=["dbp"])) == ["db", "opt", "web"]
    assert sorted(select(PROJECT, profiles=["*"])) == ["db", "helper", "opt", "tool", "web"]


def test_naming_a_service_keeps_it_and_its_dependencies_only() -> None:
    assert sorted(select(PROJECT, profiles=["helpers"], requested=["tool"])) == [
        "helper", "tool"]


def test_naming_a_service_does_not_enable_its_dependencies_profiles() -> None:
    with pytest.raises(ManifestError) as info:
        select(PROJECT, requested=["tool"])
    error = info.value
    assert error.path == "services.tool.depends_on.helper"
    assert error.loc is not None and error.loc.line == 10
    assert error.hint == "enable profile helpers with --profile helpers"


def test_naming_a_service_drops_optional_dependencies_that_are_off() -> None:
    assert select(PROJECT, requested=["opt"]) == {"opt": {"image": "o", "links": ["db"]}}


def test_required_dependency_on_an_off_service_is_an_error() -> None:
    with pytest.raises(ManifestError, match="not enabled") as info:
        select("services:\n  web:\n    image: w\n    depends_on:\n"
               "      db: {condition: service_started, required: true}\n"
               "  db:\n    image: d\n    profiles: [x]\n")
    assert info.value.loc is not None and info.value.loc.line == 5


@pytest.mark.parametrize("line", ["links: [db]", "volumes_from: ['db:ro']",
                                  "network_mode: service:db"])
def test_links_volumes_from_and_network_mode_count_as_dependencies(line: str) -> None:
    with pytest.raises(ManifestError, match="'db', which is not enabled"):
        select(f"services:\n  web:\n    image: w\n    {line}\n"
               "  db:\n    image: d\n    profiles: [x]\n")


def test_unknown_service_name_suggests_a_close_one() -> None:
    with pytest.raises(ManifestError, match="no such service: wbe") as info:
        select(PROJECT, requested=["wbe"])
    assert info.value.hint == "did you mean 'web'?"


def test_list_profiles_is_sorted_and_unique() -> None:
    root = parse_documents(PROJECT, "compose.yaml")[0]
    assert list_profiles(root) == ["dbp", "debug", "helpers", "tools"]
