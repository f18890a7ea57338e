"""``config`` prints what ``docker compose config`` prints, for a file that sets everything.

``data/kitchen-sink/compose.yaml`` sets every attribute of the format; ``expected.yaml`` and
``expected.json`` beside it are Docker Compose v2.40.3's own output for it (``--profile p``),
with the folder written as ``${DIR}``. The corpus tests check the same on real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from composer.manifest import printing
from composer.manifest.loader import LoadOptions, load, plain_tree

KITCHEN_SINK = Path(__file__).parent / "data" / "kitchen-sink"


def _kitchen_sink() -> dict[str, object]:
    loaded = load(LoadOptions(cwd=str(KITCHEN_SINK), profiles=["p"],
                              environ={"HOME": "/h", "PATH": "/bin"}))
    return plain_tree(loaded)


def _expected(name: str) -> str:
    return (KITCHEN_SINK / name).read_text(encoding="utf-8").replace("${DIR}", str(KITCHEN_SINK))


def _without_newer_attributes(text: str) -> str:
    # pull_refresh_after is newer than Compose 2.40.3, which drops it; composer keeps it.
    return "".join(line for line in text.splitlines(keepends=True)
                   if "pull_refresh_after" not in line)


def test_yaml_is_compose_s_text() -> None:
    ours = printing.to_yaml(_kitchen_sink())
    assert _without_newer_attributes(ours) == _expected("expected.yaml")


def test_json_is_compose_s_text_but_for_the_models_it_forgets() -> None:
    ours = json.loads(printing.to_json(_kitchen_sink()))
    # Compose 2.40.3's JSON loses the top-level models (its YAML has them): composer keeps them.
    assert ours.pop("models") == {"m": {"name": "mn", "model": "ai/x", "context_size": 1,
                                        "runtime_flags": ["a"]}}
    assert ours["services"]["all"].pop("pull_refresh_after") == "1h"
    assert json.dumps(ours, indent=2, ensure_ascii=False) == _expected("expected.json")


@pytest.mark.parametrize(("value", "printed"), [
    ("yes", '"yes"'), ("n", '"n"'), ("3306", '"3306"'), ("1:30", '"1:30"'),
    ("2024-01-02", '"2024-01-02"'), ("0x1F", '"0x1F"'), ("", '""'), ("null", '"null"'),
    ("1.5", '"1.5"'), ("plain", "plain"), ("02:42:ac:11:65:43", "02:42:ac:11:65:43"),
    ("a: b", "'a: b'"), ("multi\nline\n", "|\n  multi\n  line\n"),
])
def test_strings_that_would_read_back_as_something_else_are_double_quoted(
        value: str, printed: str) -> None:
    text = printing.to_yaml({"x-v": value})
    assert text.startswith(f"x-v: {printed}")


def test_json_escapes_html_characters_as_go_does() -> None:
    assert printing.to_json({"x": "a < b && c > d"}) == \
        '{\n  "x": "a \\u003c b \\u0026\\u0026 c \\u003e d"\n}'
