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
