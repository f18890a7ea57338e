"""Image archives in the formats people have: ``docker save`` tarballs, OCI image layout
archives, and plain rootfs tarballs (``docker import``).

Loading reads the archive once, as a stream (it may come from a pipe, and may be gzip'd): every
file goes straight into the blob store, hashed on the way, and a file named ``blobs/sha256/<hex>``
must have that digest. Entry order is free in both formats (``docker save`` writes manifest.json
last), so the images are assembled only at the end, and registered all-or-nothing through
:meth:`ImageStore.register_many`, which also checks every layer against the config's diff ids.

* ``docker save``: ``manifest.json`` lists each image's ``Config``, ``RepoTags`` and ``Layers``
  (uncompressed tars, symlinked between images by older Dockers; ``blobs/sha256/...`` paths in
  Docker 25+). There is no registry manifest in it, so an OCI manifest is written for each image:
  the image id (config digest) and diff ids survive a round trip, the manifest digest cannot.
* OCI layout: ``oci-layout``, ``index.json`` and ``blobs/sha256/``; refs come from the
  ``io.containerd.image.name`` annotation, else from ``org.opencontainers.image.ref.name`` when
  that holds a name and not only a tag. Blobs are kept as they are, so manifest digests survive.

Saving writes the same two formats. An OCI archive also carries a Docker-style manifest.json
pointing into ``blobs/`` (as Docker 25+ writes), so that ``docker load`` of any version reads it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import posixpath
import re
import secrets
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from composer.runtime.images import layers as layers_mod
from composer.runtime.images.blobs import BlobError
from composer.runtime.images.documents import canonical_json, json_object
from composer.runtime.images.platform import Platform
from composer.runtime.images.reference import InvalidReference, parse
from composer.runtime.images.store import (
    DOCKER_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    ImageStore,
    ImageStoreError,
    uncompressed,
)
from composer.state.store import LayerRow

__all__ = ["ArchiveError", "import_rootfs", "layer_media_type", "load", "save"]

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
_BLOB_NAME = re.compile(r"blobs/sha256/([a-f0-9]{64})")
_CONFIG_NAME = re.compile(r"(?:.*/)?([a-f0-9]{64})\.json")
# Read into memory rather than the blob store: no manifest names them.
_METADATA = frozenset({"manifest.json", "index.json", "oci-layout", "repositories"})
_MAX_METADATA = 16 << 20
_CHUNK = 1 << 20
class ArchiveError(ImageStoreError):
    """An archive cannot be read (corrupt, of an unknown format) or written."""


def layer_media_type(head: bytes) -> str:
    """The OCI layer media type for a blob that starts with ``head`` (4 bytes are enough)."""
    suffix = {"gzip": "+gzip", "zstd": "+zstd"}.get(layers_mod.detect_compression(head), "")
    return "application/vnd.oci.image.layer.v1.tar" + suffix


# -- loading ------------------------------------------------------------------------------------


@dataclass
class _Contents:
    """What the archive held: blob digests and small metadata files by path, and links."""

    blobs: dict[str, str] = field(default_factory=dict)
    small: dict[str, bytes] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def blob(self, name: Any, what: str) -> tuple[str, str]:
        """``(path, digest)`` of the file ``name`` (links followed)."""
        if not isinstance(name, str):
            raise ArchiveError(f"{what}: expected a file name, got {name!r}")
        path = _clean(name)
        for _ in range(32):
            if path not in self.links:
                break
            path = self.links[path]
        digest = self.blobs.get(path)
        if digest is None:
            raise ArchiveError(f"{what}: {name} is not in the archive")
        return path, digest

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.small[name])
        except (ValueError, UnicodeDecodeError) as e:
            raise ArchiveError(f"{name} in the archive is not valid JSON: {e}") from e


def _clean(name: str) -> str:
    parts: list[str] = []
    for comp in name.split("/"):
        if comp == "..":
            if not parts:
                raise ArchiveError(f"archive entry {name!r} points outside the archive")
            parts.pop()
        elif comp not in ("", "."):
            parts.append(comp)
    return "/".join(parts)


def _read(store: ImageStore, stream: BinaryIO) -> _Contents:
    contents = _Contents()
    try:
        # "r|*": forward only (a pipe will do), and gzip/bzip2/xz archives are opened as well.
        with tarfile.open(fileobj=stream, mode="r|*") as tf:
            while (member := tf.next()) is not None:
                tf.members.clear()  # type: ignore[attr-defined]  # keep memory flat (not in typeshed)
                _entry(store, tf, member, contents)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArchiveError(f"not a readable image archive: {e}") from e
    return contents


def _entry(store: ImageStore, tf: tarfile.TarFile, m: tarfile.TarInfo, into: _Contents) -> None:
    name = _clean(m.name)
    if m.issym():
        into.links[name] = _clean(posixpath.join(posixpath.dirname(name), m.linkname))
    elif m.islnk():
        into.links[name] = _clean(m.linkname)
    elif m.isreg():
        data = tf.extractfile(m)
        if data is None:
            raise ArchiveError(f"archive entry {name} has no data")
        if name in _METADATA or name.endswith(("/json", "/VERSION")):
            if m.size > _MAX_METADATA:
                raise ArchiveError(f"archive entry {name} is too large ({m.size} bytes)")
            into.small[name] = data.read()
            return
        match = _BLOB_NAME.fullmatch(name)
        try:
            digest, _ = store.blobs.write(iter(lambda: data.read(_CHUNK), b""), size=m.size,
                                          expected=f"sha256:{match.group(1)}" if match else None)
        except BlobError as e:
            raise ArchiveError(f"archive entry {name}: {e}: the archive is corrupt") from e
        into.blobs[name] = digest


def _blob_bytes(store: ImageStore, digest: str, what: str) -> bytes:
    with store.blobs.open(digest) as f:
        data = f.read(_MAX_METADATA + 1)
    if len(data) > _MAX_METADATA:
        raise ArchiveError(f"{what} {digest} is too large")
    return data


def _docker_tags(contents: _Contents) -> dict[str, list[str]]:
    """Config digest -> RepoTags, from manifest.json."""
    doc = contents.json("manifest.json") if "manifest.json" in contents.small else []
    if not isinstance(doc, list):
        raise ArchiveError("manifest.json in the archive is not a list of images")
    tags: dict[str, list[str]] = {}
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise ArchiveError(f"manifest.json entry {i} is not an object")
        _, digest = contents.blob(entry.get("Config"), f"manifest.json entry {i} config")
        repo_tags = entry.get("RepoTags") or []
        if not isinstance(repo_tags, list) or not all(isinstance(t, str) for t in repo_tags):
            raise ArchiveError(f"manifest.json entry {i}: RepoTags is not a list of names")
        tags.setdefault(digest, []).extend(repo_tags)
    return tags


def _docker_items(store: ImageStore, contents: _Contents) -> list[tuple[bytes, list[str]]]:
    doc = contents.json("manifest.json")
    tags = _docker_tags(contents)
    items: list[tuple[bytes, list[str]]] = []
    for i, entry in enumerate(doc):
        what = f"manifest.json entry {i}"
        path, config_digest = contents.blob(entry.get("Config"), f"{what} config")
        named = _CONFIG_NAME.fullmatch(path) or _BLOB_NAME.fullmatch(path)
        if named and f"sha256:{named.group(1)}" != config_digest:
            raise ArchiveError(f"{what}: config {path} has digest {config_digest}: the archive "
                               "is corrupt")
        names = entry.get("Layers")
        if not isinstance(names, list):
            raise ArchiveError(f"{what} has no Layers list")
        layers = []
        for name in names:
            _, digest = contents.blob(name, f"{what} layer")
            with store.blobs.open(digest) as blob:
                head, size = blob.read(4), os.fstat(blob.fileno()).st_size
            layers.append({"mediaType": layer_media_type(head), "digest": digest, "size": size})
        config = {"mediaType": OCI_CONFIG, "digest": config_digest,
                  "size": store.blobs.path(config_digest).stat().st_size}
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                    "layers": layers}
        items.append((canonical_json(manifest), tags.get(config_digest, [])))
    return items


def _annotated_refs(desc: Mapping[str, Any]) -> list[str]:
    notes = desc.get("annotations")
    notes = notes if isinstance(notes, dict) else {}
    name, ref_name = notes.get(CONTAINERD_NAME), notes.get(REF_NAME)
    if isinstance(name, str) and name:
        return [name]
    # The OCI spec makes ref.name a tag ("latest") as often as a name: only a name is a ref.
    if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name):
        with contextlib.suppress(InvalidReference):
            return [str(parse(ref_name))]
    return []


def _manifest_of(store: ImageStore, desc: Any, what: str, depth: int = 0) -> bytes:
    """The manifest a descriptor names; an index resolves to this platform's manifest."""
    if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
        raise ArchiveError(f"{what} is not a descriptor")
    digest = desc["digest"]
    try:
        data = _blob_bytes(store, digest, what)
    except BlobError as e:
        raise ArchiveError(f"{what}: blob {digest} is not in the archive") from e
    if desc.get("size") != len(data):
        raise ArchiveError(f"{what}: {digest} is {len(data)} bytes, the index says "
                           f"{desc.get('size')!r}")
    doc = json_object(data, f"{what} {digest}", ArchiveError)
    if doc.get("mediaType") not in (OCI_INDEX, DOCKER_LIST) and "manifests" not in doc:
        return data
    if depth > 4 or not isinstance(doc.get("manifests"), list):
        raise ArchiveError(f"{what} {digest}: an index that is nested too deep or lists nothing")
    host = Platform.host()
    system, arch = host.os, host.architecture

    def plat(d: Any) -> tuple[Any, Any]:
        p = d.get("platform") if isinstance(d, dict) else None
        return (p.get("os"), p.get("architecture")) if isinstance(p, dict) else (None, None)

    # BuildKit lists attestations as platform unknown/unknown: they are not images.
    images = [d for d in doc["manifests"] if plat(d)[0] != "unknown"]
    chosen = images if len(images) == 1 else [d for d in images if plat(d) == (system, arch)]
    if not chosen:
        offered = ", ".join(f"{o}/{a}" for o, a in map(plat, images)) or "nothing"
        raise ArchiveError(f"{what} {digest}: no image for {system}/{arch} (it has {offered})")
    return _manifest_of(store, chosen[0], what, depth + 1)


def _oci_items(store: ImageStore, contents: _Contents) -> list[tuple[bytes, list[str]]]:
    layout = contents.json("oci-layout")
    if not isinstance(layout, dict) or not str(layout.get("imageLayoutVersion")).startswith("1."):
        raise ArchiveError(f"unsupported OCI layout version in oci-layout: {layout!r}")
    index = contents.json("index.json")
    descs = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(descs, list):
        raise ArchiveError("index.json in the archive lists no manifests")
    tags = _docker_tags(contents)
    by_digest: dict[str, tuple[bytes, list[str]]] = {}
    for i, desc in enumerate(descs):
        manifest = _manifest_of(store, desc, f"index.json manifest {i}")
        config = json_object(manifest, f"index.json manifest {i}", ArchiveError).get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        item = by_digest.setdefault(hashlib.sha256(manifest).hexdigest(), (manifest, []))
        for ref in _annotated_refs(desc) + tags.get(str(config_digest), []):
            if (normalized := str(parse(ref))) not in item[1]:
                item[1].append(normalized)
    return list(by_digest.values())


def load(store: ImageStore, source: str | os.PathLike[str] | BinaryIO) -> list[Image]:
    """Load a ``docker save`` archive or an OCI layout archive (a path or a stream, plain or
    gzip'd); every image in it is registered, or none is. Returns the images, archive order."""
    with contextlib.ExitStack() as stack:
        stream = (stack.enter_context(open(source, "rb"))
                  if isinstance(source, str | os.PathLike) else source)
        with store.hold():
            contents = _read(store, stream)
            if "oci-layout" in contents.small and "index.json" in contents.small:
                items = _oci_items(store, contents)
            elif "manifest.json" in contents.small:
                items = _docker_items(store, contents)
            else:
                raise ArchiveError("not an image archive: neither manifest.json (docker save) "
                                   "nor oci-layout and index.json (OCI layout) is in it")
            return store.register_many(items)


# -- saving -------------------------------------------------------------------------------------


class _Checked:
    """Reads a decompressed layer for tarfile: full reads, hashed and counted on the way."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        parts: list[bytes] = []
        want = _CHUNK if size < 0 else size
        got = 0
        # tarfile takes a short read for the end of the data; decompressors may return less.
        while got < want and (chunk := self._inner.read(want - got)):
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
        self.hasher.update(data)
        self.count += len(data)
        return data


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0  # fixed: the same images, the same bytes
    return info


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    tf.addfile(_info(name, len(data)), io.BytesIO(data))


def _add_blob(tf: tarfile.TarFile, store: ImageStore, name: str, digest: str) -> None:
    with store.blobs.open(digest) as f:
        tf.addfile(_info(name, os.fstat(f.fileno()).st_size), f)


def _add_layer(tf: tarfile.TarFile, store: ImageStore, name: str, layer: LayerRow) -> None:
    if layer.blob_digest is None:
        raise ArchiveError(f"layer {layer.diff_id} has no blob to save")
    size = layer.size
    if size is None:  # unpacked by a process that did not record it: measure first
        with store.blobs.open(layer.blob_digest) as blob:
            counter = _Checked(uncompressed(blob))
            while counter.read(_CHUNK):
                pass
            size = counter.count
    with store.blobs.open(layer.blob_digest) as blob:
        reader = _Checked(uncompressed(blob))
        tf.addfile(_info(name, size), reader)
        extra = reader.read(1)
    if extra or "sha256:" + reader.hasher.hexdigest() != layer.diff_id:
        raise ArchiveError(f"layer blob {layer.blob_digest} does not decompress to "
                           f"{layer.diff_id}: the store is corrupt")


_Chosen = list[tuple[Image, list[str]]]


def _repo_tags(refs: Sequence[str]) -> list[str] | None:
    # Docker writes null, not [], for an image saved by id; digests have no place in RepoTags.
    return [parse(r).familiar() for r in refs if parse(r).digest is None] or None


def _write_docker(store: ImageStore, chosen: _Chosen, tf: tarfile.TarFile) -> None:
    written: set[str] = set()
    entries = []
    for image, refs in chosen:
        row = store.db.image(image.id)
        if row is None:
            raise ArchiveError(f"No such image: {image.id}")
        config_name = image.id.removeprefix("sha256:") + ".json"
        if config_name not in written:
            _add_blob(tf, store, config_name, image.id)
            written.add(config_name)
        names = []
        for layer in row.layers:
            # Named by diff id: the tar in it is exactly the bytes that digest covers.
            name = layer.diff_id.removeprefix("sha256:") + "/layer.tar"
            if name not in written:
                _add_layer(tf, store, name, layer)
                written.add(name)
            names.append(name)
        entries.append({"Config": config_name, "RepoTags": _repo_tags(refs), "Layers": names})
    _add_bytes(tf, "manifest.json", canonical_json(entries))


def _write_oci(store: ImageStore, chosen: _Chosen, tf: tarfile.TarFile) -> None:
    # oci-layout first and index.json last: a streaming reader knows the format at once, and
    # an index never names a blob that is not written before it.
    _add_bytes(tf, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    written: set[str] = set()
    descs: list[dict[str, Any]] = []
    entries = []
    for image, refs in chosen:
        if image.manifest_digest is None:
            raise ArchiveError(f"image {image.short_id} has no manifest to save")
        manifest_bytes = _blob_bytes(store, image.manifest_digest, "manifest")
        manifest = json_object(manifest_bytes, f"manifest {image.manifest_digest}", ArchiveError)
        layer_digests = [str(d.get("digest")) for d in manifest.get("layers", [])]
        for digest in [image.id, *layer_digests, image.manifest_digest]:
            if digest not in written:
                _add_blob(tf, store, "blobs/sha256/" + digest.removeprefix("sha256:"), digest)
                written.add(digest)
        desc = {"mediaType": manifest.get("mediaType", OCI_MANIFEST),
                "digest": image.manifest_digest, "size": len(manifest_bytes)}
        # One entry per ref, as containerd and Docker write them; ref.name carries the tag.
        for ref in refs:
            notes = {CONTAINERD_NAME: ref}
            if (tag := parse(ref).tag) is not None:
                notes[REF_NAME] = tag
            descs.append({**desc, "annotations": notes})
        if not refs:
            descs.append(desc)
        entries.append({"Config": "blobs/sha256/" + image.id.removeprefix("sha256:"),
                        "RepoTags": _repo_tags(refs),
                        "Layers": ["blobs/sha256/" + d.removeprefix("sha256:")
                                   for d in layer_digests]})
    _add_bytes(tf, "manifest.json", canonical_json(entries))
    _add_bytes(tf, "index.json", canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descs}))


def save(store: ImageStore, refs: Sequence[str], target: str | os.PathLike[str] | BinaryIO, *,
         format: str = "docker") -> None:
    """Write the images ``refs`` name (refs, ids or id prefixes) as a ``docker save`` archive
    (``format="docker"``) or an OCI layout archive (``"oci"``). A path is written atomically;
    an image named by id is saved without refs, as Docker does."""
    writers: dict[str, Callable[[ImageStore, _Chosen, tarfile.TarFile], None]] = {
        "docker": _write_docker, "oci": _write_oci}
    if format not in writers:
        raise ArchiveError(f"unknown archive format {format!r}: expected docker or oci")
    with store.hold():
        chosen: dict[str, tuple[Image, list[str]]] = {}
        for text in refs:
            image, ref = store.lookup(text)
            if image is None:
                raise ArchiveError(f"No such image: {text}")
            names = chosen.setdefault(image.id, (image, []))[1]
            if ref is not None and ref not in names:
                names.append(ref)

        def write(out: BinaryIO) -> None:
            try:
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    writers[format](store, list(chosen.values()), tf)
            except (OSError, EOFError, tarfile.TarError) as e:
                raise ArchiveError(f"cannot write the archive: {e}") from e

        if not isinstance(target, str | os.PathLike):
            write(target)
            return
        path = Path(target)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
        try:
            with open(tmp, "xb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


# -- importing ----------------------------------------------------------------------------------


def import_rootfs(store: ImageStore, tarball: str | os.PathLike[str] | BinaryIO, *,
                  ref: str | None = None, config: Mapping[str, Any] | None = None) -> Image:
    """``docker import``: a one-layer image from a rootfs tarball (gzip, zstd or plain), stored
    as it is. ``config`` is the container config (Env, Cmd, Entrypoint, WorkingDir, Labels...);
    Env gets a PATH when it sets none, since nothing would run without one."""
    return import_layers(store, [tarball], ref=ref, config=config,
                         comments=["Imported from tarball"])


def import_layers(store: ImageStore, tarballs: Sequence[str | os.PathLike[str] | BinaryIO], *,
                  ref: str | None = None, config: Mapping[str, Any] | None = None,
                  comments: Sequence[str] = ()) -> Image:
    """One image whose layers are ``tarballs``, bottom first, each stored as it is (a layer
    tarball, gzip, zstd or plain, may hold OCI whiteouts). ``comments[i]`` goes into layer i's
    history entry. ``config`` as for :func:`import_rootfs`."""
    if not tarballs:
        raise ArchiveError("an image needs at least one layer")
    with store.hold(), contextlib.ExitStack() as stack:
        descriptors, diff_ids = [], []
        for tarball in tarballs:
            source = (stack.enter_context(open(tarball, "rb"))
                      if isinstance(tarball, str | os.PathLike) else tarball)
            try:
                digest, size = store.blobs.write(iter(functools.partial(source.read, _CHUNK),
                                                      b""))
            except BlobError as e:
                raise ArchiveError(f"cannot store the tarball: {e}") from e
            with store.blobs.open(digest) as blob:
                media = layer_media_type(blob.read(4))
            descriptors.append({"mediaType": media, "digest": digest, "size": size})
            diff_ids.append(store.diff_id(digest))
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        container = dict(config or {})
        env = [str(e) for e in container.get("Env") or ()]
        if not any(e.startswith("PATH=") for e in env):
            env.insert(0, DEFAULT_PATH)
        container["Env"] = env
        host = Platform.host()
        history = [{"created": now, "created_by": "composer import",
                    **({"comment": comments[i]} if i < len(comments) else {})}
                   for i in range(len(tarballs))]
        return store.register_config({
            "architecture": host.architecture, "os": host.os, "created": now,
            "config": container, "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }, descriptors, ref=ref)
