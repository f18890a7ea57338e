"""Phase 1: files, project directory, environment and project name, as Compose decides them."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ManifestError, UsageError
from composer.manifest.source import discover, normalize_project_name

SERVICE = "services:\n  a:\n    image: busybox\n"


def write(path: Path, text: str = SERVICE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_prefers_compose_yaml_and_warns_when_several_exist(tmp_path: Path) -> None:
    write(tmp_path / "docker-compose.yml")
    write(tmp_path / "compose.yaml")
    found = discover(cwd=str(tmp_path), environ={})
    assert [f.path for f in found.files] == [str(tmp_path / "compose.yaml")]
    assert len(found.warnings) == 1 and "using compose.yaml" in str(found.warnings[0])


@pytest.mark.parametrize("name", ["compose.yml", "docker-compose.yaml", "docker-compose.yml"])
def test_each_candidate_name_is_found(tmp_path: Path, name: str) -> None:
    write(tmp_path / name)
    assert [f.path for f in discover(cwd=str(tmp_path), environ={}).files] == [
        str(tmp_path / name)]


def test_searches_upwards_and_takes_the_override(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    write(tmp_path / "compose.override.yaml")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    found = discover(cwd=str(deep), environ={})
    assert [f.path for f in found.files] == [str(tmp_path / "compose.yaml"),
                                             str(tmp_path / "compose.override.yaml")]
    assert found.project_dir == str(tmp_path)


def test_explicit_files_turn_off_the_override(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    write(tmp_path / "compose.override.yaml")
    found = discover(files=["compose.yaml"], cwd=str(tmp_path), environ={})
    assert [f.path for f in found.files] == [str(tmp_path / "compose.yaml")]


def test_compose_file_variable_with_separator(tmp_path: Path) -> None:
    write(tmp_path / "one.yaml")
    write(tmp_path / "two.yaml")
    found = discover(cwd=str(tmp_path), environ={"COMPOSE_FILE": "one.yaml;two.yaml",
                                                 "COMPOSE_PATH_SEPARATOR": ";"})
    assert [Path(f.path).name for f in found.files] == ["one.yaml", "two.yaml"]


def test_compose_file_may_come_from_dotenv(tmp_path: Path) -> None:
    write(tmp_path / "other.yaml")
    write(tmp_path / ".env", "COMPOSE_FILE=other.yaml\n")
    found = discover(cwd=str(tmp_path), environ={})
    assert [Path(f.path).name for f in found.files] == ["other.yaml"]


def test_stdin(tmp_path: Path) -> None:
    found = discover(files=["-"], cwd=str(tmp_path), environ={}, stdin=lambda: SERVICE)
    assert found.files[0].text == SERVICE and found.files[0].display == "<stdin>"
    assert found.project_dir == str(tmp_path)


def test_project_directory_comes_from_the_first_file(tmp_path: Path) -> None:
    write(tmp_path / "app" / "compose.yaml")
    found = discover(files=["app/compose.yaml"], cwd=str(tmp_path), environ={})
    assert found.project_dir == str(tmp_path / "app")


def test_process_environment_wins_over_dotenv(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    write(tmp_path / ".env", "TAG=from-dotenv\nONLY_DOTENV=yes\n")
    found = discover(cwd=str(tmp_path), environ={"TAG": "from-shell"})
    assert found.env["TAG"] == "from-shell"
    assert found.env["ONLY_DOTENV"] == "yes"


def test_env_file_flag_replaces_dotenv(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    write(tmp_path / ".env", "A=dotenv\n")
    write(tmp_path / "a.env", "A=first\nB=first\n")
    write(tmp_path / "b.env", "B=second\n")
    found = discover(cwd=str(tmp_path), environ={}, env_files=["a.env", "b.env"])
    assert (found.env["A"], found.env["B"]) == ("first", "second")


def test_missing_env_file_flag_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    with pytest.raises(ManifestError, match="not found"):
        discover(cwd=str(tmp_path), environ={}, env_files=["missing.env"])


def test_profiles_from_the_environment(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    found = discover(cwd=str(tmp_path), environ={"COMPOSE_PROFILES": "debug, test"})
    assert found.profiles == ("debug", "test")
    assert discover(cwd=str(tmp_path), environ={"COMPOSE_PROFILES": "x"},
                    profiles=["y"]).profiles == ("y",)


def test_no_compose_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        discover(cwd=str(tmp_path), environ={})
    assert "no compose file found" in str(caught.value)
    assert "hint: create compose.yaml, or name a file with -f FILE" in str(caught.value)


def test_missing_named_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"compose file .*nope\.yaml not found"):
        discover(files=["nope.yaml"], cwd=str(tmp_path), environ={})


@pytest.mark.parametrize(("raw", "name"), [
    ("My_Proj.X", "my_projx"), ("Web App", "webapp"), ("-_lead", "lead"), ("ok-1", "ok-1"),
])
def test_directory_names_are_normalized(raw: str, name: str) -> None:
    assert normalize_project_name(raw) == name


def test_invalid_explicit_project_name_is_a_usage_error(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    with pytest.raises(UsageError, match=r'invalid project name "Bad\.Name"'):
        discover(cwd=str(tmp_path), environ={}, project_name="Bad.Name")


def test_project_name_from_environment(tmp_path: Path) -> None:
    write(tmp_path / "compose.yaml")
    found = discover(cwd=str(tmp_path), environ={"COMPOSE_PROJECT_NAME": "fromenv"})
    assert found.explicit_name == "fromenv"
