"""The cache of documents already found valid: a hit skips the schema check, a change of the
document misses, failures are never remembered."""

from __future__ import annotations

from pathlib import Path

import pytest

from composer.errors import ManifestError
from composer.manifest import known_valid, schema
from composer.manifest.loader import load_project


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(known_valid.CACHE_ENV, str(folder))
    return folder


def _write(folder: Path, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "compose.yaml"
    path.write_text(text)
    return path


def test_a_valid_document_is_remembered_and_then_not_checked_again(
        cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "p", "services:\n  web:\n    image: busybox\n")
    load_project([path])
    remembered = list((cache / "valid").iterdir())
    assert len(remembered) == 1

    def no_validator() -> None:
        raise AssertionError("the schema was checked again")

    monkeypatch.setattr(schema, "_validator", no_validator)
    project = load_project([path])
    assert "web" in project.services
    # An edit is a new document: checked again.
    path.write_text("services:\n  web:\n    image: busybox:1\n")
    with pytest.raises(AssertionError, match="checked again"):
        load_project([path])


def test_an_invalid_document_is_never_remembered(cache: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "p", "services:\n  web:\n    image: busybox\n    restart: 3\n")
    for _ in range(2):
        with pytest.raises(ManifestError):
            load_project([path])
    assert not (cache / "valid").exists() or not list((cache / "valid").iterdir())


def test_the_key_covers_the_schema_and_spells_only_what_json_spells_exactly() -> None:
    document = {"services": {"web": {"image": "busybox"}}}
    assert known_valid.digest(document, b"{}") != known_valid.digest(document, b"{ }")
    assert known_valid.digest(document, b"{}") == known_valid.digest(dict(document), b"{}")
    assert known_valid.digest({"x": float("nan")}, b"{}") is None
    assert known_valid.digest({"x": object()}, b"{}") is None


def test_an_unwritable_cache_costs_only_the_check(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(known_valid.CACHE_ENV, str(blocker))
    path = _write(tmp_path / "p", "services:\n  web:\n    image: busybox\n")
    assert "web" in load_project([path]).services
    assert "web" in load_project([path]).services


def test_the_oldest_entries_go_beyond_the_limit(cache: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(known_valid, "KEEP", 3)
    for i in range(7):
        known_valid.remember(f"{i:064x}")
    left = sorted(p.name for p in (cache / "valid").iterdir())
    assert len(left) == 3 and left[-1] == f"{6:064x}"
