"""Phase 10a: the top-level secrets, configs and volumes, each checked on its own.

Run before unused resources are dropped: Compose refuses a badly declared resource even
when no service uses it.
"""

from __future__ import annotations

from composer.errors import ManifestError
from composer.manifest.tree import Path, YMap, dotted, locate


def check_resources(root: YMap) -> None:
    _check_file_sources(root)
    _check_external_volumes(root)


def _error(root: YMap, path: Path, message: str, hint: str) -> ManifestError:
    return ManifestError(message, loc=locate(root, path), path=dotted(path), hint=hint)


def _check_file_sources(root: YMap) -> None:
    """A secret or config comes from exactly one place, unless it is external."""
    for kind, sources in (("secrets", ("file", "environment")),
                          ("configs", ("file", "environment", "content"))):
        for name, spec in (root.get(kind) or {}).items():
            if not isinstance(spec, dict) or spec.get("external"):
                continue
            given = [key for key in sources if spec.get(key) is not None]
            choice = "|".join(sources)
            if len(given) > 1:
                raise _error(root, (kind, name, given[1]),
                             f"{choice} attributes are mutually exclusive",
                             hint=f"keep one of {', '.join(given)}")
            if not given:
                raise _error(root, (kind, name), f"one of {choice} must be set",
                             hint="say where the value comes from, or mark it 'external: true'")


def _check_external_volumes(root: YMap) -> None:
    """An external volume exists already: composer cannot create it with other settings."""
    for name, spec in (root.get("volumes") or {}).items():
        if not isinstance(spec, dict) or not spec.get("external"):
            continue
        for key in ("driver", "driver_opts", "labels"):
            if spec.get(key):
                raise _error(root, ("volumes", name, key),
                             f'conflicting parameters "external" and "{key}" specified',
                             hint=f"remove '{key}', or 'external: true' to let composer "
                             "create the volume")
