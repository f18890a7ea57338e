"""The image store: blobs, unpacked layers and the state database tied together under one root.

::

    root/blobs/sha256/<hex>        content-addressed blobs (BlobStore): manifests, configs, layers
    root/layers/<chain-id-hex>/    one unpacked layer: the directory overlayfs gets as a lowerdir
    root/state.db                  images, layers and refs (Store), unless the caller passes one

An image is its config digest, as in Docker. :meth:`ImageStore.register` takes a manifest whose
blobs are already stored, unpacks the layers not unpacked yet (keyed by chain id, so images that
share their bottom layers share directories) and only then records image, layers and refs in one
database transaction: blobs and directories are on disk before any row names them, so a crash
leaves garbage for :meth:`ImageStore.gc`, never a row naming something missing.

Several composer processes may share a root. Layers are unpacked under a temporary name and
renamed into place; whoever renames second finds the directory there and drops its copy (the
contents are the same: the chain id fixes them). Deleting is what can race with creating: a
register that found a layer directory present must not see it vanish before it commits. So
register (and anyone writing blobs ahead of a register, through :meth:`ImageStore.hold`) takes
a shared ``flock`` on ``root/lock``, and remove/prune/gc take it exclusively.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol, cast

from composer.errors import ComposerError
from composer.runtime.images import layers as layers_mod
from composer.runtime.images.blobs import BlobError, BlobStore, parse_digest
from composer.runtime.images.documents import json_object
from composer.runtime.images.reference import InvalidReference, parse
from composer.state.store import ImageRow, LayerRow, Store, StoreError, chain_id

__all__ = ["DOCKER_CONFIG", "DOCKER_LIST", "DOCKER_MANIFEST", "OCI_CONFIG", "OCI_INDEX",
           "OCI_MANIFEST", "Image", "ImageStore", "ImageStoreError", "uncompressed"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
# Every tar layer type of both specs, distributable or not; layers.unpack sniffs the actual
# compression, so the suffix is not trusted. Anything else (encrypted layers, artifacts) is not
# a filesystem composer can mount.
_LAYER_MEDIA = re.compile(
    r"application/vnd\.(?:oci\.image\.layer(?:\.nondistributable)?\.v1\.tar(?:\+gzip|\+zstd)?"
    r"|docker\.image\.rootfs\.(?:foreign\.)?diff\.tar(?:\.gzip|\.zstd)?)"
)
_ID_OR_PREFIX = re.compile(r"(?:sha256:)?([a-f0-9]{12,64})")
_MAX_JSON = 16 << 20  # manifests and configs are kilobytes; this bounds a hostile one
_CHUNK = 1 << 20


class ImageStoreError(ComposerError):
    """An image cannot be registered, found, tagged or removed as asked."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Image:
    """A registered image. ``layers`` are chain ids, bottom first; ``created`` comes from the
    config (registration time when the config has none)."""

    id: str
    manifest_digest: str | None
    refs: tuple[str, ...]
    config: Mapping[str, Any] = field(hash=False)
    layers: tuple[str, ...]
    created: float

    @property
    def short_id(self) -> str:
        """The 12 hex digits Docker shows."""
        return self.id.removeprefix("sha256:")[:12]


@dataclass
class _Prepared:
    image_id: str
    manifest_digest: str
    config_text: str
    layers: list[LayerRow]
    refs: list[str]
    created: float | None
    blobs: list[tuple[str, int, str | None]]


class _Zstd:
    """A zstd reader whose errors are OSErrors, like gzip's (zstandard is imported lazily)."""

    def __init__(self, blob: BinaryIO) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        # Several frames are legal (parallel compressors write them).
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast("IO[bytes]", blob), read_across_frames=True, closefd=False)

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._reader.read(size)
        except self._error as e:
            raise OSError(f"corrupt zstd stream: {e}") from e


def uncompressed(blob: BinaryIO) -> _Readable:
    """A reader of the tar inside a (gzip, zstd or plain) seekable layer blob; corrupt data
    raises OSError or EOFError. Reads from the start, wherever the file position was."""
    blob.seek(0)
    head = blob.read(4)
    blob.seek(0)
    kind = layers_mod.detect_compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=blob, mode="rb")
    return _Zstd(blob) if kind == "zstd" else blob


def _descriptor(value: Any, what: str) -> tuple[str | None, str, int]:
    """``(mediaType, digest, size)`` of an OCI descriptor, checked."""
    if not isinstance(value, dict):
        raise ImageStoreError(f"{what}: expected a descriptor object, got {value!r}")
    digest, size, media = value.get("digest"), value.get("size"), value.get("mediaType")
    if (not isinstance(digest, str) or not isinstance(media, str | None)
            or not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ImageStoreError(f"{what}: invalid descriptor {value!r}")
    _hex(digest)
    return media, digest, size


def _created(config: Mapping[str, Any]) -> float | None:
    with contextlib.suppress(TypeError, ValueError):  # an odd date still makes an image
        when = datetime.fromisoformat(config.get("created"))  # type: ignore[arg-type]
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    return None


def _hex(digest: str) -> str:
    try:
        return parse_digest(digest)[1]
    except BlobError as e:
        raise ImageStoreError(str(e)) from e


def _single_reference(refs: Sequence[str]) -> bool:
    """Docker's isSingleReference: one tag at most, and every ref in that one repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    parsed = [parse(r) for r in refs]
    tags = [p for p in parsed if p.digest is None]
    if len(tags) > 1:
        return False
    canonical = {p.repository for p in parsed if p.digest is not None}
    return len(canonical) == 1 and (tags or parsed)[0].repository in canonical


def _familiar(ref: str) -> str:
    return parse(ref).familiar()


class ImageStore:
    """Images under ``root``; several processes may use the same root at once."""

    def __init__(self, root: str | os.PathLike[str], *, store: Store | None = None,
                 close_store: bool = False) -> None:
        self.root = Path(root)
        try:
            self.blobs = BlobStore(self.root)
            self._layers = self.root / "layers"
            self._layers.mkdir(mode=0o700, exist_ok=True)
            if not stat.S_ISDIR(os.lstat(self._layers).st_mode):
                raise ImageStoreError(f"{self._layers} is not a directory (a symlink?)")
        except (BlobError, OSError) as e:
            raise ImageStoreError(f"cannot create image store in {self.root}: {e}") from e
        # A store of its own (tests, tools) lives in the image root; a state root's ImageStore
        # shares the root's database, and closes it when told it owns it.
        self._owns_db = store is None or close_store
        self.db = store if store is not None else Store.open(self.root)

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> ImageStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locking --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _flock(self, kind: int) -> Iterator[None]:
        # One descriptor per use: flock locks belong to the open file, so two holders in one
        # process (threads, or hold() around register()) are two holders, as they should be.
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Keep gc/remove/prune away while blobs are written that no image names yet.

        Shared between writers; do not call gc, remove or prune inside it (they would wait for
        it forever).
        """
        return self._flock(fcntl.LOCK_SH)

    # -- registering ----------------------------------------------------------------------------

    def register(self, manifest: bytes, *, refs: Sequence[str] = ()) -> Image:
        """Register the image of ``manifest`` (OCI or Docker schema 2) whose blobs are stored."""
        return self.register_many([(manifest, refs)])[0]

    def register_config(self, config: Mapping[str, Any], layers: Sequence[Mapping[str, Any]],
                        *, ref: str | None = None) -> Image:
        """Store ``config`` and register the OCI image of it and ``layers`` (descriptors of
        stored blobs), tagged ``ref`` when given: what commit, build and import end with."""
        from composer.runtime.images.documents import canonical_json

        config_bytes = canonical_json(dict(config))
        config_digest = self.blobs.write_bytes(config_bytes)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [dict(layer) for layer in layers],
        }
        return self.register(canonical_json(manifest), refs=[ref] if ref else [])

    def register_many(self, items: Iterable[tuple[bytes, Sequence[str]]]) -> list[Image]:
        """Register several images all-or-nothing: every layer is unpacked and checked before
        one transaction records them all (an archive with one bad image registers none)."""
        with self.hold():
            known = {(layer.blob_digest, layer.diff_id)
                     for row in self.db.images() for layer in row.layers}
            prepared = [self._prepare(manifest, refs, known) for manifest, refs in items]
            try:
                with self.db.transaction():
                    for p in prepared:
                        for digest, size, media in p.blobs:
                            self.db.record_blob(digest, size, media)
                        self.db.put_image(p.image_id, p.manifest_digest, p.config_text, p.layers,
                                          refs=p.refs, created=p.created)
            except StoreError as e:
                raise ImageStoreError(f"cannot register image: {e}") from e
            return [self._image(p.image_id) for p in prepared]

    def _prepare(self, manifest: bytes, refs: Sequence[str],
                 known: set[tuple[str | None, str]]) -> _Prepared:
        doc = json_object(manifest, "image manifest", ImageStoreError)
        media = doc.get("mediaType")
        if media in (OCI_INDEX, DOCKER_LIST) or ("manifests" in doc and "layers" not in doc):
            raise ImageStoreError("the manifest is an image index (one manifest per platform): "
                                  "register the manifest of one platform")
        if doc.get("schemaVersion") != 2 or media not in (None, OCI_MANIFEST, DOCKER_MANIFEST):
            raise ImageStoreError(
                f"unsupported manifest (schemaVersion {doc.get('schemaVersion')!r}, mediaType "
                f"{media!r}): expected an OCI image manifest or a Docker schema 2 manifest")
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        normalized = [parse(r) for r in refs]
        for ref in normalized:
            if ref.digest not in (None, manifest_digest):
                raise ImageStoreError(f"reference {ref} names another manifest than this one")
        config_media, config_digest, config_size = _descriptor(doc.get("config"), "config")
        raw_layers = doc.get("layers")
        if not isinstance(raw_layers, list):
            raise ImageStoreError("image manifest has no layers list")
        descs = [_descriptor(d, f"layer {i}") for i, d in enumerate(raw_layers)]
        for i, (layer_media, digest, _) in enumerate(descs):
            if layer_media is not None and not _LAYER_MEDIA.fullmatch(layer_media):
                raise ImageStoreError(f"layer {i} {digest}: unsupported media type "
                                      f"{layer_media}: not a tar layer")
        config_bytes = self._read(config_digest, config_size, "config")
        config = json_object(config_bytes, f"image config {config_digest}", ImageStoreError)
        rootfs = config.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise ImageStoreError(f"image config {config_digest} has no rootfs.diff_ids list")
        if len(diff_ids) != len(descs):
            raise ImageStoreError(f"image config {config_digest} lists {len(diff_ids)} diff ids "
                                  f"for {len(descs)} layers in the manifest")
        for i, ((_, digest, size), diff) in enumerate(zip(descs, diff_ids, strict=True)):
            _hex(diff)
            self._check_size(digest, size, f"layer {i}")
        rows: list[LayerRow] = []
        parent: str | None = None
        for i, ((_, digest, _), diff) in enumerate(zip(descs, diff_ids, strict=True)):
            chain = chain_id(parent, diff)
            unpacked = self._ensure_layer(i, chain, diff, digest, known)
            rows.append(LayerRow(diff_id=diff, chain_id=chain, blob_digest=digest, size=unpacked))
            parent = chain
        # Stored last: a manifest blob on disk means its layers were good (gc removes it if the
        # transaction never comes).
        self.blobs.write_bytes(manifest, expected=manifest_digest)
        media_types = [(manifest_digest, len(manifest), media or OCI_MANIFEST),
                       (config_digest, config_size, config_media)]
        media_types += [(d, size, m) for m, d, size in descs]
        return _Prepared(config_digest, manifest_digest, config_bytes.decode(), rows,
                         [str(r) for r in normalized], _created(config), media_types)

    def _check_size(self, digest: str, size: int, what: str) -> int:
        try:
            actual = os.lstat(self.blobs.path(digest)).st_size
        except FileNotFoundError:
            raise ImageStoreError(f"{what} blob {digest} is not in the store") from None
        if actual != size:
            raise ImageStoreError(f"{what} blob {digest}: the manifest says {size} bytes, the "
                                  f"stored blob has {actual}")
        return actual

    def _read(self, digest: str, size: int, what: str) -> bytes:
        if self._check_size(digest, size, what) > _MAX_JSON:
            raise ImageStoreError(f"{what} blob {digest} is too large ({size} bytes)")
        with self.blobs.open(digest) as f:
            return f.read()

    def _ensure_layer(self, index: int, chain: str, diff: str, digest: str,
                      known: set[tuple[str | None, str]]) -> int | None:
        """Unpack a layer unless its chain id is unpacked; the unpacked size, or None."""
        final = self.layer_path(chain)
        what = f"layer {index} ({digest})"
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISDIR(os.lstat(final).st_mode):
                raise ImageStoreError(f"{final} is not a directory: refusing it")
            if (digest, diff) not in known:
                # The directory came from another blob: this one must hold the same tar, or
                # the image would record (and `save` would export) a layer it does not have.
                got = self.diff_id(digest)
                if got != diff:
                    raise ImageStoreError(f"{what} has diff id {got}, the config says {diff}")
                known.add((digest, diff))
            return None
        tmp = self._layers / f".{_hex(chain)}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                with self.blobs.open(digest) as blob:
                    result = layers_mod.unpack(blob, tmp, expected_digest=digest)
            except (layers_mod.LayerError, layers_mod.HostileLayer, BlobError) as e:
                raise ImageStoreError(f"{what}: {e}") from e
            if result.diff_id != diff:
                raise ImageStoreError(f"{what} has diff id {result.diff_id}, the config says "
                                      f"{diff}: refusing the image")
            try:
                os.rename(tmp, final)
            except OSError as e:
                # Another process renamed its (identical) copy first: keep theirs.
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise ImageStoreError(f"cannot move {what} into {final}: {e}") from e
            known.add((digest, diff))
            return result.size
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    def diff_id(self, digest: str) -> str:
        """The diff id of a stored layer blob: the sha256 of the tar inside it."""
        hasher = hashlib.sha256()
        try:
            with self.blobs.open(digest) as blob:
                reader = uncompressed(blob)
                while chunk := reader.read(_CHUNK):
                    hasher.update(chunk)
        except (OSError, EOFError, BlobError) as e:
            raise ImageStoreError(f"layer blob {digest} cannot be decompressed: {e}") from e
        return "sha256:" + hasher.hexdigest()

    # -- looking up -----------------------------------------------------------------------------

    def layer_path(self, chain_id: str) -> Path:
        """The directory of an unpacked layer (whether or not it is there)."""
        return self._layers / _hex(chain_id)

    def lower_dirs(self, image: Image) -> list[Path]:
        """The layer directories of an image, top layer first, as overlayfs lowerdir wants."""
        return [self.layer_path(c) for c in reversed(image.layers)]

    def _image(self, image_id: str) -> Image:
        row = self.db.image(image_id)
        if row is None:
            raise ImageStoreError(f"No such image: {image_id}")
        return _from_row(row)

    def lookup(self, ref_or_id: str) -> tuple[Image | None, str | None]:
        """The image named by a ref, a full id or a unique id prefix (>= 12 hex digits), and
        the normalized ref it was found by (None when found by id), as Docker looks up."""
        match = _ID_OR_PREFIX.fullmatch(ref_or_id)
        if match and len(match.group(1)) == 64:
            row = self.db.image("sha256:" + match.group(1))
            return (None if row is None else _from_row(row)), None
        if not ref_or_id.startswith("sha256:"):
            try:
                ref = str(parse(ref_or_id))
            except InvalidReference:
                if match is None:
                    raise
            else:
                image_id = self.db.resolve(ref)
                if image_id is not None:
                    return self._image(image_id), ref
        if match is None:
            return None, None
        prefix = "sha256:" + match.group(1)
        found = [row for row in self.db.images() if row.id.startswith(prefix)]
        if len(found) > 1:
            raise ImageStoreError(f"image id prefix {ref_or_id} is ambiguous: "
                                  f"{len(found)} images match")
        return (_from_row(found[0]) if found else None), None

    def get(self, ref_or_id: str) -> Image | None:
        """The image named by a ref (``busybox`` normalizes), an id or an id prefix; or None."""
        return self.lookup(ref_or_id)[0]

    def tag(self, source: str, target: str) -> Image:
        """Point the ref ``target`` at the image ``source`` names (moving it if it pointed
        elsewhere, which may leave that image dangling)."""
        image = self.get(source)
        if image is None:
            raise ImageStoreError(f"No such image: {source}")
        ref = parse(target)
        if ref.digest is not None:
            raise ImageStoreError(f"refusing to create a tag with a digest reference: {target}")
        self.db.tag(str(ref), image.id)
        return self._image(image.id)

    # -- removing -------------------------------------------------------------------------------

    def remove(self, ref_or_id: str, *, force: bool = False,
               in_use: Callable[[str], bool] = lambda image_id: False) -> list[str]:
        """``docker image rm``: returns "Untagged: REF" and "Deleted: ID" lines in order.

        A ref is untagged; the image goes with its last ref. By id, an image with refs in
        several repositories needs ``force``. An image a container uses (``in_use(id)``) is
        never deleted: by id that is refused even with force; its last ref goes only with force.
        """
        with self._flock(fcntl.LOCK_EX):
            image, by_ref = self.lookup(ref_or_id)
            if image is None:
                raise ImageStoreError(f"No such image: {ref_or_id}")
            refs = list(image.refs)
            used = in_use(image.id)
            records: list[str] = []
            if by_ref is not None:
                if used and not force and _single_reference(refs):
                    raise ImageStoreError(
                        f'conflict: unable to remove repository reference "{ref_or_id}" (must '
                        f"force) - a container is using its referenced image {image.short_id}")
                self.db.untag(by_ref)
                records.append(f"Untagged: {_familiar(by_ref)}")
                refs.remove(by_ref)
                name = parse(by_ref)
                same_repo = [parse(r) for r in refs if parse(r).repository == name.repository]
                if name.digest is None and not any(r.digest is None for r in same_repo):
                    # The last tag of a repository takes its digest refs along, as in Docker.
                    for pinned in same_repo:
                        self.db.untag(str(pinned))
                        records.append(f"Untagged: {pinned.familiar()}")
                        refs.remove(str(pinned))
                if refs or used:
                    return records  # still tagged, or a container keeps it (now dangling)
            else:
                if used:
                    raise ImageStoreError(f"conflict: unable to delete {image.short_id} (cannot "
                                          "be forced) - image is being used by a container")
                if refs and not force and not _single_reference(refs):
                    raise ImageStoreError(f"conflict: unable to delete {image.short_id} (must be "
                                          "forced) - image is referenced in multiple repositories")
            self._delete(image.id, records)
            return records

    def _delete(self, image_id: str, records: list[str]) -> None:
        row = self.db.image(image_id)
        if row is None:
            return
        for ref in row.refs:
            self.db.untag(ref)
            records.append(f"Untagged: {_familiar(ref)}")
        self.db.remove_image(image_id)
        records.append(f"Deleted: {image_id}")
        used_layers = self.db.used_layers()
        for layer in reversed(row.layers):
            if layer.chain_id not in used_layers and self._drop_layer(layer.chain_id):
                records.append(f"Deleted: {layer.chain_id}")
        used_blobs = self.db.used_blobs()
        mine = {row.id, row.manifest_digest, *(layer.blob_digest for layer in row.layers)}
        for digest in sorted(d for d in mine if d is not None and d not in used_blobs):
            self._drop_blob(digest)

    def _drop_layer(self, chain: str) -> bool:
        final = self.layer_path(chain)
        existed = os.path.lexists(final)
        if existed:
            # Renamed away first, so no one ever finds a half-deleted tree under the real name.
            doomed = self._layers / f".{final.name}.{secrets.token_hex(4)}.removing"
            os.rename(final, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
        return self.db.remove_layer(chain) or existed

    def _drop_blob(self, digest: str) -> None:
        self.db.forget_blob(digest)  # the row first: no row outlives its file
        self.blobs.remove(digest)

    def prune(self, *, all: bool = False,
              in_use: Callable[[str], bool] = lambda image_id: False) -> list[str]:
        """``docker image prune [-a]``: delete dangling images (every unused one with ``all``),
        never one a container uses, then collect garbage. Returns what was untagged/deleted.

        The builder's cached steps are untagged images too: they are the build cache, which
        Docker's ``image prune`` leaves alone, so only ``all`` takes them."""
        from composer.state import build_cache

        records: list[str] = []
        with self._flock(fcntl.LOCK_EX):
            cached = set() if all else build_cache.images(self.db)
            for image in self.list():
                if (image.refs and not all) or in_use(image.id) or image.id in cached:
                    continue
                self._delete(image.id, records)
            self._gc()
        return records

    def gc(self) -> tuple[int, int]:
        """Remove blobs and unpacked layers that no image uses: ``(blobs, layers)`` removed."""
        with self._flock(fcntl.LOCK_EX):
            return self._gc()

    def _gc(self) -> tuple[int, int]:
        used_blobs = self.db.used_blobs()
        unused_blobs = sorted(self.blobs.digests() - used_blobs)
        for digest in unused_blobs:
            self._drop_blob(digest)
        on_disk: set[str] = set()
        with os.scandir(self._layers) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    # Leftovers of interrupted unpacks and removals: with the exclusive lock
                    # held, no register is running anywhere to own them.
                    doomed = Path(entry.path)
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(doomed, ignore_errors=True)
                    else:
                        doomed.unlink(missing_ok=True)
                elif re.fullmatch(r"[a-f0-9]{64}", entry.name):
                    on_disk.add("sha256:" + entry.name)
        known = on_disk | {layer.chain_id for layer in self.db.layers()}
        unused_layers = sorted(known - self.db.used_layers())
        removed = sum(self._drop_layer(chain) for chain in unused_layers)
        self.blobs.clean_temporary()
        return len(unused_blobs), removed

    # -- importing ------------------------------------------------------------------------------

    def import_rootfs(self, tarball: str | os.PathLike[str] | BinaryIO, *, ref: str | None = None,
                      config: Mapping[str, Any] | None = None) -> Image:
        """``docker import``: a one-layer image from a rootfs tarball (see archives)."""
        # Imported here: archives builds on this module (the tarball is one more outside format).
        from composer.runtime.images.archives import import_rootfs

        return import_rootfs(self, tarball, ref=ref, config=config)

    # Last in the class: below this, "list" in an annotation would name the method.
    def list(self) -> list[Image]:
        """Every image, newest first (as ``docker images``), then by id."""
        return sorted((_from_row(r) for r in self.db.images()), key=lambda i: (-i.created, i.id))


def _from_row(row: ImageRow) -> Image:
    return Image(id=row.id, manifest_digest=row.manifest_digest, refs=row.refs,
                 config=json.loads(row.config),
                 layers=tuple(layer.chain_id for layer in row.layers), created=row.created)
