"""The public API is small and deliberate: this test notices when it drifts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import composer
from composer.manifest.model import Project

ROOT = Path(__file__).resolve().parents[2]


def test_exported_names() -> None:
    assert sorted(composer.__all__) == [
        "ComposerError", "ManifestError", "Project", "__version__", "load_project"]
    for name in composer.__all__:
        assert getattr(composer, name) is not None


def test_load_project_returns_a_frozen_typed_model() -> None:
    project = composer.load_project([str(ROOT / "examples" / "webapp" / "compose.yaml")],
                                    environ={"PATH": "/usr/bin"})
    assert isinstance(project, Project)
    web = project.services["web"]
    assert web.ports[0].target == 8080 and web.ports[0].published == "8080"
    assert web.depends_on["api"].condition == "service_healthy"
    assert project.services["api"].build is not None
    assert project.networks["back"].name == "webapp_back"
    assert project.to_dict()["name"] == "webapp"
    try:
        web.spec["image"] = "other"  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("the model must be read-only")


def test_importing_composer_stays_cheap() -> None:
    code = "import sys, composer; print(sorted(m for m in ('yaml', 'jsonschema', 'networkx') " \
           "if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"
