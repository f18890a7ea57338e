"""``include``; expected results checked against Docker Compose v2.40.3."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from composer.errors import CycleError, ManifestError
from composer.manifest.include import apply_includes
from composer.manifest.tree import YMap, plain
from composer.manifest.yamlload import parse_documents


class Loader:
    """A stand-in for the loader's callback: records its calls, recurses into includes."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str, list[str], tuple[str, ...]]] = []

    def __call__(self, files: list[str], project_dir: str, env_files: list[str],
                 chain: tuple[str, ...]) -> YMap:
        self.calls.append((files, project_dir, env_files, chain))
        root = parse_documents(pathlib.Path(files[0]).read_text(), files[0])[0]
        apply_includes(root, filename=files[0], project_dir=project_dir,
                       load_subproject=self, chain=chain)
        return root


def run(tmp_path: pathlib.Path, text: str, loader: Loader | None = None) -> dict[str, Any]:
    path = tmp_path / "compose.yaml"
    path.write_text(text)
    root = parse_documents(text, str(path))[0]
    apply_includes(root, filename=str(path), project_dir=str(tmp_path),
                   load_subproject=loader or Loader())
    out: dict[str, Any] = plain(root)
    return out


def write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_short_form_copies_resources_and_drops_include(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "sub" / "compose.yaml",
          "services:\n  inc:\n    image: i\nnetworks:\n  n: {}\nvolumes:\n  v: {}\n")
    loader = Loader()
    out = run(tmp_path, "include:\n  - sub/compose.yaml\nservices:\n  web:\n    image: w\n",
              loader)
    assert "include" not in out
    assert out["services"] == {"web": {"image": "w"}, "inc": {"image": "i"}}
    assert out["networks"] == {"n": {}} and out["volumes"] == {"v": {}}
    files, project_dir, env_files, chain = loader.calls[0]
    assert files == [str(tmp_path / "sub" / "compose.yaml")]
    assert project_dir == str(tmp_path / "sub")
    assert env_files == []
    assert chain == (str(tmp_path / "compose.yaml"),)


def test_long_form_paths_are_relative_to_the_project_directory(
        tmp_path: pathlib.Path) -> None:
    write(tmp_path / "lib" / "a.yaml", "services:\n  a:\n    image: a\n")
    write(tmp_path / "lib" / "b.yaml", "services:\n  a:\n    image: b\n")
    loader = Loader()
    run(tmp_path, "include:\n  - path: [lib/a.yaml, lib/b.yaml]\n    project_directory: pd\n"
        "    env_file: [vars.env]\nservices: {}\n", loader)
    files, project_dir, env_files, _ = loader.calls[0]
    assert files == [str(tmp_path / "lib" / "a.yaml"), str(tmp_path / "lib" / "b.yaml")]
    assert project_dir == str(tmp_path / "pd")
    assert env_files == [str(tmp_path / "vars.env")]


def test_identical_definitions_are_accepted(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "sub" / "compose.yaml", "services:\n  dup:\n    image: d\n")
    out = run(tmp_path, "include:\n  - sub/compose.yaml\n  - sub/compose.yaml\n"
              "services:\n  dup:\n    image: d\n")
    assert out["services"] == {"dup": {"image": "d"}}


def test_conflicting_definition_is_an_error_naming_both_places(
        tmp_path: pathlib.Path) -> None:
    write(tmp_path / "sub" / "compose.yaml", "services:\n  dup:\n    image: d\n")
    with pytest.raises(ManifestError) as info:
        run(tmp_path, "include:\n  - sub/compose.yaml\nservices:\n  dup:\n    image: other\n")
    error = info.value
    assert error.path == "services.dup"
    assert error.loc is not None and error.loc.line == 4
    assert "sub/compose.yaml:2" in error.message


def test_include_cycle_is_a_cycle_error(tmp_path: pathlib.Path) -> None:
    write(tmp_path / "other.yaml", "include:\n  - compose.yaml\nservices: {}\n")
    with pytest.raises(CycleError) as info:
        run(tmp_path, "include:\n  - other.yaml\nservices: {}\n")
    assert info.value.trail == ["compose.yaml", "other.yaml", "compose.yaml"]


def test_missing_included_file_is_an_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ManifestError, match="not found") as info:
        run(tmp_path, "services: {}\ninclude:\n  - nope.yaml\n")
    assert info.value.loc is not None and info.value.loc.line == 3
