"""Docker Compose v2.40.3's verdict on real compose files is the reference.

For every compose file of ``../shared/corpus/index.tsv``: where Compose accepted it, our
``config --format json`` must be its output, text for text (key order, escapes and all), and our
YAML ``config`` must be the YAML it printed (kept in ``expected-yaml/`` beside this file, made by
``scripts/corpus-yaml.py``); where it refused the file, we refuse it too, with a located error.
Remaining differences are listed below with their reason.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pytest

from composer.errors import ManifestError
from composer.manifest import printing
from composer.manifest.loader import LoadOptions, load, plain_tree
from tests.conftest import CORPUS

FAKE_HOME = "/home/composer-corpus-user"
EXPECTED_YAML = Path(__file__).parent / "expected-yaml"

# path -> why composer's output differs from Compose's (each one still checked to differ).
KNOWN_DIFFERENCES: dict[str, str] = {
    "compose/docker__compose/pkg/e2e/testdata/TestComposeModel/compose.yaml":
        "Compose 2.40.3 leaves the top-level 'models' out of its JSON (its YAML prints "
        "them) although a service refers to them; composer prints them",
}

# path -> why composer accepts (or refuses) what Compose refuses (or accepts).
VERDICT_DIFFERENCES: dict[str, str] = {
    "compose/docker__compose/pkg/e2e/fixtures/build-test/ssh/compose.yaml":
        "the file is valid: Compose 2.40.3 fails only while printing build.ssh as JSON "
        "(its MarshalJSON of SSHKey is broken); composer accepts and prints it",
}


def _rows() -> list[dict[str, str]]:
    index = CORPUS / "index.tsv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r for r in rows if r["note"].startswith("compose")]


ROWS = _rows()
ACCEPTED = [r["path"] for r in ROWS if r["compose_v2"] == "ok"]
REFUSED = [r["path"] for r in ROWS if r["compose_v2"] not in ("ok", "")]
PRE_START = {p for p in REFUSED if "'pre_start' not allowed" in
             next(r["compose_v2"] for r in ROWS if r["path"] == p)}


def _load(path: str) -> dict[str, Any]:
    file = CORPUS / path
    loaded = load(LoadOptions(files=[str(file)], cwd=str(file.parent),
                              environ={"HOME": FAKE_HOME, "PATH": os.defpath}))
    return plain_tree(loaded)


def _expected_text(folder: Path, name: str) -> str:
    text = (folder / name).read_text(encoding="utf-8")
    return text.replace("${CORPUS}", str(CORPUS)).replace("${HOME}", FAKE_HOME)


def _params(paths: list[str], differences: dict[str, str]) -> list[Any]:
    return [pytest.param(p, id=p.removeprefix("compose/"),
                         marks=[pytest.mark.xfail(reason=differences[p], strict=True)]
                         if p in differences else [])
            for p in paths]


@pytest.mark.corpus
@pytest.mark.parametrize("path", _params(ACCEPTED, KNOWN_DIFFERENCES))
def test_accepted_files_print_as_compose_prints_them_in_json(corpus: Path, path: str) -> None:
    ours = printing.to_json(_load(path))
    assert ours == _expected_text(CORPUS / "expected", f"{path}.json").rstrip("\n")


@pytest.mark.corpus
@pytest.mark.parametrize("path", _params(ACCEPTED, {}))
def test_accepted_files_print_as_compose_prints_them_in_yaml(corpus: Path, path: str) -> None:
    ours = printing.to_yaml(_load(path))
    assert ours == _expected_text(EXPECTED_YAML, f"{path}.yaml")


@pytest.mark.corpus
@pytest.mark.parametrize("path", _params(sorted(set(REFUSED) - PRE_START),
                                         VERDICT_DIFFERENCES))
def test_refused_files_are_refused_with_a_located_error(corpus: Path, path: str) -> None:
    with pytest.raises(ManifestError) as caught:
        _load(path)
    assert caught.value.loc is not None, f"error without a place: {caught.value}"
    assert caught.value.loc.line >= 1


@pytest.mark.corpus
@pytest.mark.parametrize("path", sorted(PRE_START))
def test_pre_start_hooks_are_accepted(corpus: Path, path: str) -> None:
    project = _load(path)
    assert any("pre_start" in (s or {}) for s in project["services"].values())


def test_corpus_is_collected_or_skipped_with_reason() -> None:
    if not ROWS:
        pytest.skip(f"the shared corpus is absent ({CORPUS})")
    assert len(ACCEPTED) >= 300 and len(REFUSED) >= 90
