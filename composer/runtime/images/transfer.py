"""``pull`` and ``push``: between a registry and the image store, as ``docker pull``/``push``.

A pull resolves the reference to a manifest (an index picks the host's platform), downloads
the config and every layer blob the store does not have yet (verified by digest before
anything is stored), then registers the image with its reference in one transaction: an
interrupted pull leaves verified blobs (reused next time) and nothing half-registered. A push
uploads the blobs the registry lacks, then the manifest exactly as stored, so the digest a
registry reports is the one composer has.

Layers are transferred in parallel (``parallel`` at a time); ``progress`` hears one line per
blob, from the worker threads (a sink that prints must not mind that).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from composer.runtime.images.documents import json_object
from composer.runtime.images.reference import Reference, parse
from composer.runtime.images.registry import Manifest, Platform, RegistryClient, RegistryError
from composer.runtime.images.store import Image, ImageStore, ImageStoreError

Progress = Callable[[str], None]

#: Manifest media types by what the stored manifest says it is.
_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def pull(store: ImageStore, client: RegistryClient, text: str, *,
         platform: Platform | None = None, parallel: int = 3,
         progress: Progress = lambda line: None) -> Image:
    """Pull ``text`` (``busybox``, ``host:5000/app:1``, ``app@sha256:...``) into ``store``."""
    ref = parse(text)
    top = client.get_manifest(ref)
    manifest = client.resolve_platform(ref, top, platform or Platform.host())
    data = _manifest_json(manifest.data, ref)
    wanted = [data["config"], *data.get("layers", [])]
    with store.hold():
        missing = [d for d in wanted if not store.blobs.has(str(d["digest"]))]

        def fetch(descriptor: dict[str, Any]) -> None:
            digest = str(descriptor["digest"])
            store.blobs.write(client.blob(ref, digest), expected=digest,
                              size=int(descriptor["size"]))
            progress(f"{digest[7:19]}: pulled ({int(descriptor['size'])} bytes)")

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            for future in [pool.submit(fetch, d) for d in missing]:
                future.result()
        refs = [str(ref.with_digest(manifest.digest)) if ref.digest else str(ref)]
        image = store.register(manifest.data, refs=refs)
    progress(f"{ref.familiar()}: pulled {image.id} (manifest {manifest.digest})")
    return image


def push(store: ImageStore, client: RegistryClient, text: str, *, parallel: int = 3,
         progress: Progress = lambda line: None) -> str:
    """Push the stored image ``text`` to its registry; returns the manifest digest."""
    ref = parse(text)
    image = store.get(text)
    if image is None or image.manifest_digest is None:
        raise ImageStoreError(f"no such image: {text}")
    with store.blobs.open(image.manifest_digest) as handle:
        raw = handle.read()
    data = _manifest_json(raw, ref)
    media_type = str(data.get("mediaType") or _OCI_MANIFEST)

    def send(descriptor: dict[str, Any]) -> None:
        digest, size = str(descriptor["digest"]), int(descriptor["size"])

        def chunks() -> Any:
            with store.blobs.open(digest) as blob:
                while chunk := blob.read(1 << 20):
                    yield chunk

        client.push_blob(ref, digest, size, chunks)
        progress(f"{digest[7:19]}: pushed ({size} bytes)")

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for future in [pool.submit(send, d) for d in [data["config"], *data["layers"]]]:
            future.result()
    digest = client.put_manifest(ref, Manifest.of(media_type, raw))
    progress(f"{ref.familiar()}: pushed {digest}")
    return digest


def _manifest_json(raw: bytes, ref: Reference) -> dict[str, Any]:
    data = json_object(raw, f"the manifest of {ref}", RegistryError)
    if not isinstance(data.get("config"), dict):
        raise RegistryError(f"{ref}: not an image manifest (no config)")
    return data
