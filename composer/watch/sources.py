"""The files a project was loaded from, so that saving any of them reloads it.

Those are the compose files (with the included and extended ones), the ``.env`` or
``--env-file`` files, every service's ``env_file`` and ``label_file``, and the files of the
secrets and configs. The normalized project no longer names ``env_file`` (it is read into
``environment``), so the loader runs once more without its normalize phase, where the paths
are already absolute but still there. A load that fails leaves the caller's set as it was.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from composer.manifest.loader import LoadOptions, load
from composer.manifest.source import STDIN


def manifest_files(files: Sequence[str] = (), *, project_dir: str | None = None,
                   project_name: str | None = None, env_files: Sequence[str] = (),
                   profiles: Sequence[str] = (), environ: Mapping[str, str] | None = None,
                   cwd: str | None = None) -> frozenset[str]:
    """The absolute paths of every file the project is made of (raises ManifestError)."""
    loaded = load(LoadOptions(files=files, project_dir=project_dir,
                              project_name=project_name, env_files=env_files,
                              profiles=profiles, environ=environ, cwd=cwd,
                              normalize=False, consistency=False))
    found = {name for name, _ in loaded.compose_files}
    found.update(path for path in loaded.files if path != STDIN)
    found.update(loaded.env_files)
    tree: Mapping[str, Any] = loaded.tree
    for service in (tree.get("services") or {}).values():
        found.update(_env_file_paths(service.get("env_file")))
        found.update(str(p) for p in service.get("label_file") or () if isinstance(p, str))
    for kind in ("secrets", "configs"):
        for spec in (tree.get(kind) or {}).values():
            if isinstance(spec, Mapping) and isinstance(spec.get("file"), str) \
                    and not spec.get("external"):
                found.add(spec["file"])
    return frozenset(os.path.abspath(p) for p in found if p and p != "<stdin>")


def _env_file_paths(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    paths = []
    for entry in value or ():
        if isinstance(entry, str):
            paths.append(entry)
        elif isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
            paths.append(entry["path"])
    return paths
