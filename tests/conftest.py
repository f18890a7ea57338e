"""Shared fixtures: where the shared corpus is, and a clean environment for loading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("COMPOSER_CORPUS", ROOT.parent / "shared" / "corpus")).resolve()


@pytest.fixture
def corpus() -> Path:
    if not (CORPUS / "index.tsv").is_file():
        pytest.skip(f"the shared corpus is absent ({CORPUS}); it ships beside the project")
    return CORPUS


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The cache of documents known to be valid (composer.manifest.known_valid) in a folder
    of the test session's, for this process and every CLI it starts: the user's stays as
    it was."""
    os.environ["COMPOSER_CACHE_DIR"] = str(tmp_path_factory.mktemp("composer-cache"))
