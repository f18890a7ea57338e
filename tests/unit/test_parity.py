"""Small files where Compose does something particular, and its exact output for each.

``data/parity.json`` holds, per case, a compose file and what Docker Compose v2.40.3 printed
for it with ``-p p config`` (YAML) and ``config --format json``, the project folder written as
``${DIR}``; a case marked ``raw`` was printed with ``--no-interpolate``. Most cases came from
differential testing: random edits of corpus files run through both programs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from composer.manifest import printing
from composer.manifest.loader import LoadOptions, load, plain_tree

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "parity.json").read_text(encoding="utf-8"))


def _project(tmp_path: Path, text: str, raw: bool) -> dict[str, Any]:
    (tmp_path / "compose.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "s").write_text("secret", encoding="utf-8")
    loaded = load(LoadOptions(cwd=str(tmp_path), project_name="p", interpolate=not raw,
                              environ={"HOME": "/h", "PATH": "/bin"}))
    return plain_tree(loaded)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_yaml_and_json_are_compose_s(tmp_path: Path, case: dict[str, Any]) -> None:
    raw = bool(case.get("raw"))
    project = _project(tmp_path, case["compose.yaml"], raw)
    assert printing.to_yaml(project, raw=raw) == case["yaml"].replace("${DIR}", str(tmp_path))
    assert printing.to_json(project, raw=raw) == case["json"].replace("${DIR}", str(tmp_path))
