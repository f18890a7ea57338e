"""``config --resolve-image-digests`` and ``--lock-image-digests``: images pinned by digest.

Each service's ``image`` is asked of its registry (the manifest, or index, its tag names now)
and rewritten as ``name:tag@sha256:...``, Docker Compose's form: the tag stays readable, the
digest decides what is pulled. ``--lock-image-digests`` prints only that, as an override file
(``services: {web: {image: ...}}``) to pass after the project's own files with ``-f``:
``up`` then pulls exactly those digests, and fails naming the image when one is gone.
Services that only build have no remote image and are left out; a reference that has a digest
already is kept as it is. An image that cannot be resolved is an error, not a silent tag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from composer.errors import ComposerError


class DigestError(ComposerError):
    pass


def resolve_images(services: Mapping[str, Any]) -> dict[str, str]:
    """Each service with an ``image`` -> the image pinned to its current digest."""
    from composer.runtime.images.reference import InvalidReference, parse
    from composer.runtime.images.registry import RegistryClient

    pinned: dict[str, str] = {}
    wanted = {name: str(s["image"]) for name, s in services.items()
              if isinstance(s, Mapping) and s.get("image")}
    found: dict[str, str] = {}  # one request per distinct image
    with RegistryClient() as client:
        for name in sorted(wanted):
            image = wanted[name]
            try:
                ref = parse(image)
            except InvalidReference as e:
                raise DigestError(f"service {name}: {e}") from None
            if ref.digest is not None:
                pinned[name] = image
                continue
            if image not in found:
                try:
                    found[image] = client.get_manifest(ref).digest
                except ComposerError as e:
                    raise DigestError(f"service {name}: cannot resolve the digest of {image}: "
                                      f"{e}") from None
            pinned[name] = f"{image}@{found[image]}"
    return pinned


def lock_override(pinned: Mapping[str, str]) -> dict[str, Any]:
    """The override file ``--lock-image-digests`` prints."""
    return {"services": {name: {"image": pinned[name]} for name in sorted(pinned)}}


def render(document: Mapping[str, Any], fmt: str) -> str:
    import json

    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    import yaml

    return str(yaml.safe_dump(dict(document), default_flow_style=False, sort_keys=False))
