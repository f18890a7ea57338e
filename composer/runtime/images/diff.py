"""An overlay upper directory turned back into an OCI layer: the one implementation of that
diff, used by ``container commit`` and by the Dockerfile builder.

The upper dir of a mount made with ``redirect_dir=off,metacopy=off`` (see
:mod:`composer.runtime.rootfs`) holds only whole files and the two overlayfs markers, so it
maps onto a layer tar entry by entry, as Docker's and containerd's overlay drivers write it:

* a character device 0/0 (overlayfs's whiteout) -> an empty regular file ``.wh.<name>``;
* a directory with ``trusted.overlay.opaque=y`` -> the directory, then ``<dir>/.wh..wh..opq``;
* the same inode seen twice -> a hard link entry to the first name; sockets are skipped;
* everything else as it is: numeric owners, modes, nanosecond mtimes (PAX), symlinks, devices,
  FIFOs and xattrs (``SCHILY.xattr.*``), except overlayfs's own ``trusted.overlay.*``.

The walk is sorted by the bytes of the names and only the files' own metadata goes in (no
atime, no ctime, no owner names, no current time): the same upper dir gives the same tar, the
same diff id. The tar streams through the hashes and the compressor into ``out``; nothing
holds the whole layer. The upper root itself is not an entry (as in Docker's diffs).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, Protocol, cast

from composer.errors import ComposerError
from composer.runtime.images.archives import layer_media_type
from composer.runtime.images.blobs import BlobError
from composer.runtime.images.documents import json_object
from composer.runtime.images.layers import OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX
from composer.runtime.images.platform import Platform
from composer.runtime.images.store import Image, ImageStore

__all__ = ["DiffError", "LayerDiff", "commit_config", "commit_layer", "write_layer"]

LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar"
_SUFFIX = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}
_OVERLAY_XATTRS = "trusted.overlay."
# Present only when a mount recorded a rename or a metadata-only copy up: the upper dir then
# does not hold what the container sees, and no layer can be made from it.
_UNDIFFABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
_CHUNK = 1 << 20
GZIP_LEVEL = 6
ZSTD_LEVEL = 3


class DiffError(ComposerError):
    """An upper directory cannot be turned into a layer."""


@dataclass(frozen=True)
class LayerDiff:
    """A written layer: the diff id (sha256 of the tar), the digest and size of the bytes
    written (compressed or not) and their OCI media type."""

    diff_id: str
    digest: str
    size: int
    media_type: str


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Hashing:
    """Hashes and counts what passes, then writes it on."""

    def __init__(self, inner: _Sink) -> None:
        self._inner = inner
        self.hasher = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes, /) -> int:
        self.hasher.update(data)
        self.count += len(data)
        self._inner.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class _Walker:
    """Adds the entries of ``upper`` to ``tf``, depth first, parents before children."""

    def __init__(self, upper: str, tf: tarfile.TarFile) -> None:
        self.upper = upper
        self.tf = tf
        self.links: dict[tuple[int, int], str] = {}

    def run(self) -> None:
        root = os.lstat(self.upper)
        if not stat.S_ISDIR(root.st_mode):
            raise DiffError(f"{self.upper} is not a directory")
        if self._opaque(self.upper):
            self._marker(f"{OPAQUE_MARKER}", root)
        # An explicit stack: a deep tree must not hit Python's recursion limit.
        stack: list[tuple[str, Iterator[bytes]]] = [("", iter(self._names(self.upper)))]
        while stack:
            prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                continue
            rel = prefix + os.fsdecode(name)
            path = os.path.join(self.upper, rel)
            st = os.lstat(path)
            if self._entry(rel, path, st):
                stack.append((rel + "/", iter(self._names(path))))

    @staticmethod
    def _names(path: str) -> list[bytes]:
        return sorted(os.listdir(os.fsencode(path)))

    def _xattrs(self, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            keys = sorted(os.listxattr(path, follow_symlinks=False))
        except OSError:
            return out  # a filesystem without xattrs has none to keep
        for key in keys:
            if key in _UNDIFFABLE:
                raise DiffError(f"{path} has {key}: the overlay was mounted with redirect_dir "
                                "or metacopy on, so its upper dir is not a layer")
            if key.startswith(_OVERLAY_XATTRS):
                continue
            value = os.getxattr(path, key, follow_symlinks=False)
            # tarfile writes such a str back as these very bytes (hdrcharset=BINARY if need be).
            out["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
        return out

    @staticmethod
    def _opaque(path: str) -> bool:
        try:
            return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError:
            return False

    @staticmethod
    def _info(name: str, st: os.stat_result, kind: bytes, mode: int | None = None,
              pax: Mapping[str, str] | None = None) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode) if mode is None else mode
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        headers = dict(pax or {})
        ns = st.st_mtime_ns
        seconds, fraction = divmod(abs(ns), 1_000_000_000)
        info.mtime = seconds if ns >= 0 else 0
        if fraction or ns < 0:
            # What the ustar field cannot hold; the decimal text keeps every nanosecond.
            sign = "-" if ns < 0 else ""
            headers["mtime"] = f"{sign}{seconds}.{fraction:09d}".rstrip("0").rstrip(".")
        info.pax_headers = headers
        return info

    def _marker(self, name: str, st: os.stat_result) -> None:
        self.tf.addfile(self._info(name, st, tarfile.REGTYPE, stat.S_IMODE(st.st_mode) & 0o777))

    def _entry(self, rel: str, path: str, st: os.stat_result) -> bool:
        """Add one entry; True for a directory whose children come next."""
        mode = st.st_mode
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            # overlayfs shares one whiteout inode between many names: test before hard links.
            parent, _, base = rel.rpartition("/")
            name = f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base
            self.tf.addfile(self._info(name, st, tarfile.REGTYPE, 0o600))
            return False
        if stat.S_ISSOCK(mode):
            return False  # a socket is a live endpoint, not content
        if stat.S_ISDIR(mode):
            self.tf.addfile(self._info(rel, st, tarfile.DIRTYPE, pax=self._xattrs(path)))
            if self._opaque(path):
                self._marker(f"{rel}/{OPAQUE_MARKER}", st)
            return True
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and key in self.links:
            info = self._info(rel, st, tarfile.LNKTYPE)
            info.linkname = self.links[key]
            self.tf.addfile(info)
            return False
        if stat.S_ISREG(mode):
            self._file(rel, path)
        elif stat.S_ISLNK(mode):
            info = self._info(rel, st, tarfile.SYMTYPE, pax=self._xattrs(path))
            info.linkname = os.readlink(path)
            self.tf.addfile(info)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            kind = (tarfile.CHRTYPE if stat.S_ISCHR(mode) else
                    tarfile.BLKTYPE if stat.S_ISBLK(mode) else tarfile.FIFOTYPE)
            info = self._info(rel, st, kind, pax=self._xattrs(path))
            if not stat.S_ISFIFO(mode):
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self.tf.addfile(info)
        else:
            raise DiffError(f"{path}: unsupported file type {stat.S_IFMT(mode):o}")
        if st.st_nlink > 1:
            self.links[key] = rel
        return False

    def _file(self, rel: str, path: str) -> None:
        # O_NONBLOCK: a FIFO swapped in after the lstat must not hang the commit.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)  # the size and metadata of what is read, not of what was listed
            if not stat.S_ISREG(st.st_mode):
                raise DiffError(f"{path} changed while the layer was written")
            info = self._info(rel, st, tarfile.REGTYPE, pax=self._xattrs(path))
            info.size = st.st_size
            self.tf.addfile(info, f)


def write_layer(upper: Path, out: BinaryIO, *,
                compression: Literal["gzip", "zstd", "none"] = "gzip") -> LayerDiff:
    """Write the layer of the upper dir ``upper`` to ``out`` (see the module's rules)."""
    if compression not in _SUFFIX:
        raise DiffError(f"unknown layer compression {compression!r}: gzip, zstd or none")
    packed = _Hashing(out)
    plain: _Hashing
    finish: list[Callable[[], object]]
    if compression == "gzip":
        # mtime 0 and no file name in the header: the blob depends on the tar alone.
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=cast("IO[bytes]", packed),
                           compresslevel=GZIP_LEVEL, mtime=0)
        plain = _Hashing(gz)
        finish = [gz.close]
    elif compression == "zstd":
        import zstandard

        writer = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(
            cast("IO[bytes]", packed), closefd=False)
        plain = _Hashing(writer)
        finish = [writer.close]
    else:
        plain = packed
        finish = []
    try:
        with tarfile.open(fileobj=cast("IO[bytes]", plain), mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape", bufsize=_CHUNK) as tf:
            _Walker(os.fspath(upper), tf).run()
        for step in finish:
            step()
    except OSError as e:
        raise DiffError(f"cannot write the layer of {upper}: {e}") from e
    return LayerDiff(diff_id="sha256:" + plain.hasher.hexdigest(),
                     digest="sha256:" + packed.hasher.hexdigest(), size=packed.count,
                     media_type=LAYER_MEDIA + _SUFFIX[compression])


# -- commit -------------------------------------------------------------------------------------

# The OCI names of Docker's layer media types: a new OCI manifest lists the same blobs.
_DOCKER_TO_OCI = {
    "application/vnd.docker.image.rootfs.diff.tar": LAYER_MEDIA,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_MEDIA + "+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd": LAYER_MEDIA + "+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar":
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}
# What Docker's commit leaves behind from the base (they describe the base's container).
_NOT_INHERITED = ("author", "container", "container_config", "docker_version")


def _oci_media(store: ImageStore, digest: str, media: Any) -> str:
    if isinstance(media, str) and media:
        return _DOCKER_TO_OCI.get(media, media)
    with store.blobs.open(digest) as blob:  # none given: say what the bytes are
        return layer_media_type(blob.read(4))


def _base_layers(store: ImageStore, base: Image) -> list[dict[str, Any]]:
    """The base's layer descriptors, with OCI media types."""
    descs: list[dict[str, Any]] = []
    try:
        if base.manifest_digest is not None:
            with store.blobs.open(base.manifest_digest) as f:
                doc = json_object(f.read(), f"manifest {base.manifest_digest}", DiffError)
            for desc in doc.get("layers") or []:
                descs.append({**desc, "mediaType": _oci_media(store, str(desc.get("digest")),
                                                              desc.get("mediaType"))})
        else:  # no manifest recorded: the layer rows know the blobs
            row = store.db.image(base.id)
            for layer in row.layers if row is not None else ():
                if layer.blob_digest is None:
                    raise DiffError(f"the base image {base.short_id} has a layer without a blob")
                blob = store.db.blob(layer.blob_digest)
                descs.append({"mediaType": _oci_media(store, layer.blob_digest,
                                                      blob and blob.media_type),
                              "digest": layer.blob_digest,
                              "size": os.lstat(store.blobs.path(layer.blob_digest)).st_size})
    except (BlobError, OSError) as e:
        raise DiffError(f"the base image {base.short_id}: {e}") from e
    if len(descs) != len(base.layers):
        raise DiffError(f"the base image {base.short_id} lists {len(descs)} layer blobs for "
                        f"{len(base.layers)} layers")
    return descs


def commit_layer(store: ImageStore, upper: Path, *, base: Image | None, ref: str | None,
                 config_changes: Mapping[str, Any] | None = None, comment: str = "",
                 author: str = "", created_by: str = "",
                 compression: Literal["gzip", "zstd", "none"] = "gzip") -> Image:
    """``docker commit``: a new image, ``base`` (None: from scratch) plus the layer of
    ``upper``, registered in ``store`` (tagged ``ref`` when given).

    The config is the base's, with ``config_changes`` applied to its container config
    (``Env``, ``Cmd``, ``Labels``...: each key replaced, a None value removes it), the new diff
    id appended and a history entry (created, author, created_by, comment) added, as Docker
    writes one. The manifest is OCI; the store unpacks and verifies the new layer as for any
    image.
    """
    with store.hold():
        try:
            # Unnamed (O_TMPFILE) in the store's own tmp: nothing to clean after a crash.
            with tempfile.TemporaryFile(dir=store.root / "tmp") as spool:
                layer = write_layer(upper, cast(BinaryIO, spool), compression=compression)
                spool.seek(0)
                store.blobs.write(iter(lambda: spool.read(_CHUNK), b""),
                                  expected=layer.digest, size=layer.size)
        except (OSError, BlobError) as e:
            raise DiffError(f"cannot store the layer of {upper}: {e}") from e
        return _derived(store, base, layer, ref=ref, config_changes=config_changes,
                        history={"comment": comment, "author": author,
                                 "created_by": created_by})


def commit_config(store: ImageStore, *, base: Image | None, ref: str | None = None,
                  config_changes: Mapping[str, Any] | None = None, created_by: str = "",
                  comment: str = "") -> Image:
    """A new image with ``base``'s layers and its config changed, and a history entry marked
    ``empty_layer`` (what a Dockerfile's ENV, LABEL, CMD, ... add, as Docker records them)."""
    with store.hold():
        return _derived(store, base, None, ref=ref, config_changes=config_changes,
                        history={"created_by": created_by, "comment": comment})


def _derived(store: ImageStore, base: Image | None, layer: LayerDiff | None, *,
             ref: str | None, config_changes: Mapping[str, Any] | None,
             history: Mapping[str, str]) -> Image:
    """Register the image ``base`` + ``layer`` (None: no new layer) with its config."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if base is not None:
        config = {k: v for k, v in base.config.items() if k not in _NOT_INHERITED}
        rootfs = base.config.get("rootfs")
        diff_ids = list(rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else []
        layers = _base_layers(store, base)
    else:
        host = Platform.host()
        config = {"architecture": host.architecture, "os": host.os}
        diff_ids, layers = [], []
    container = dict(config.get("config") or {})
    for key, value in (config_changes or {}).items():
        if value is None:
            container.pop(key, None)
        else:
            container[key] = value
    # Docker's omitempty: an empty field is left out.
    entry: dict[str, Any] = {"created": now, **{k: v for k, v in history.items() if v}}
    if layer is None:
        entry["empty_layer"] = True
    else:
        diff_ids.append(layer.diff_id)
        layers.append({"mediaType": layer.media_type, "digest": layer.digest,
                       "size": layer.size})
    past = config.get("history")
    config.update({
        "created": now,
        "config": container,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [*(past if isinstance(past, list) else []), entry],
    })
    if history.get("author"):
        config["author"] = history["author"]
    try:
        return store.register_config(config, layers, ref=ref)
    except BlobError as e:
        raise DiffError(f"cannot store the image config: {e}") from e
