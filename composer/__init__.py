"""composer: run compose.yaml projects as real Linux containers, without Docker.

The public API is small and kept stable (``tests/unit/test_public_api.py`` guards it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from composer.__about__ import __version__

if TYPE_CHECKING:
    from composer.manifest.loader import load_project
    from composer.manifest.model import Project

__all__ = ["ComposerError", "ManifestError", "Project", "__version__", "load_project"]

from composer.errors import ComposerError, ManifestError


def __getattr__(name: str) -> Any:
    # Loading pulls in YAML and jsonschema: keep ``import composer`` (and --version) cheap.
    if name == "load_project":
        from composer.manifest.loader import load_project

        return load_project
    if name == "Project":
        from composer.manifest.model import Project

        return Project
    raise AttributeError(f"module 'composer' has no attribute {name!r}")
