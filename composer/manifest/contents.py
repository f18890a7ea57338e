"""Digests of what a project's secrets and configs hold, for the config hash.

A service's container must be recreated when a secret or config it uses changes, and a
change of the file's bytes (or of the variable, or the inline content) leaves the compose
model itself as it was. So the content is read here, once per plan, outside the pure planner:
:func:`contents` gives ``{"secrets.NAME": "sha256:...", "configs.NAME": ...}``, which the
planner folds into the hash of each service that uses them
(:func:`composer.state.labels.service_config`).

External secrets and configs have no content composer knows: they are left out. A file that
cannot be read gets a marker digest, so that it becoming readable is a change too (the
container's start reports the error itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from composer.manifest.model import Project, Resource

UNREADABLE = "unreadable"


def contents(project: Project) -> dict[str, str]:
    """Every non-external secret's and config's content digest, by ``kind.name``."""
    found = {}
    for kind, resources in (("secrets", project.secrets), ("configs", project.configs)):
        for name, resource in resources.items():
            digest = _digest(resource, project.environment)
            if digest is not None:
                found[f"{kind}.{name}"] = digest
    return found


def _digest(resource: Resource, environment: Mapping[str, str]) -> str | None:
    spec = resource.spec
    if resource.external:
        return None
    if "content" in spec:
        data = str(spec["content"]).encode()
    elif "environment" in spec:
        data = environment.get(str(spec["environment"]), "").encode()
    elif "file" in spec:
        try:
            with open(str(spec["file"]), "rb") as handle:
                data = handle.read()
        except OSError:
            return UNREADABLE
    else:
        return None
    # 64 bits tell a change apart, and keep the plan's reason readable.
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]
