"""Unpack one OCI image layer (a tar stream: gzip, zstd or plain) into a directory, safely.

A layer is untrusted input, so this does not use ``tarfile.extractall`` or its extraction
filters (which differ between Python versions and know nothing of OCI whiteouts): every entry
is written here, and the rules that keep it inside the layer directory are explicit.

* The archive is read once, as a stream: the compressed bytes are hashed (the blob digest),
  and so are the tar bytes (the diff id, which the image config lists). Memory stays small
  whatever the layer's size; the compression is sniffed from magic bytes, not media types.
* Entries go into a fresh private (0700) directory beside ``target``, which is renamed into
  place only after every entry was written and the digest matched; any failure removes it,
  so a caller sees a whole layer or nothing. ``target`` must not exist or must be an empty
  directory (rename(2) replaces an empty directory atomically); anything else is refused.
* OCI whiteouts become overlayfs ones, as containerd's overlay snapshotter does:
  ``dir/.wh.name`` -> character device 0:0 at ``dir/name``; ``dir/.wh..wh..opq`` ->
  ``trusted.overlay.opaque=y`` on ``dir``. Whiteout files themselves are not written.
* Kept: contents, modes (setuid/setgid/sticky), numeric owners (never name lookups),
  nanosecond PAX times, ``SCHILY.xattr.*``, symlinks (stored, never followed), hard links,
  devices and FIFOs. Directory modes and times are applied last, deepest first, so a 0555
  directory can still receive its files and its mtime is not disturbed by them.

Containment: a name is normalised lexically (a leading "/" is dropped, as Docker does, and a
".." that climbs above the root is refused); its parents are walked one component at a time
with ``lstat`` inside the root, and a symlink there is refused, so nothing is ever written
*through* a link; the last component is created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` (or
mkdir/mknod/symlink/link, which never follow) after whatever an earlier entry left there is
unlinked, not followed. A hard link must name a non-directory that this layer wrote.
Unpacking needs root (chown, mknod, trusted.* xattrs), like any real layer unpacker.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import IO, BinaryIO, Literal, Protocol, cast

from composer.errors import ComposerError

__all__ = [
    "HostileLayer",
    "LayerError",
    "UnpackResult",
    "detect_compression",
    "unpack",
    "whiteout_name",
]

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_XATTR_KEY = "SCHILY.xattr."
# Overlay's own metadata (redirect, metacopy, origin, ...) would let a layer steer lookups in
# the mounted filesystem; it is derived only from whiteout entries, never taken verbatim.
_OVERLAY_XATTRS = "trusted.overlay."
# security.* (SELinux labels, IMA) is policy of the machine that built the image; a filesystem
# or LSM that refuses it must not make the whole layer unusable. Any other refusal is an error.
_SKIPPABLE_XATTR_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM})
_SHA256 = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHUNK = 1 << 20


class HostileLayer(ComposerError):
    """A layer entry tried to write or link outside the layer, or through a symlink."""


class LayerError(ComposerError):
    """The layer cannot be unpacked: corrupt, truncated, wrong digest, unsupported entry."""


@dataclass(frozen=True)
class UnpackResult:
    """What was unpacked: the diff id (sha256 of the tar), the blob digest, entries, tar bytes."""

    diff_id: str
    compressed_digest: str
    entries: int
    size: int


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


class _Hashing:
    """Passes reads through, hashing and counting every byte on the way."""

    def __init__(self, inner: _Readable, hasher: _Hasher) -> None:
        self._inner = inner
        self.hasher = hasher
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._inner.read(size)
        self.hasher.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        # Readers stop early (tar at its end-of-archive blocks), but both digests cover
        # every byte of their stream, padding included.
        while self.read(_CHUNK):
            pass


class _Prefixed:
    """Replays the bytes read to sniff the compression, then reads on from the source."""

    def __init__(self, head: bytes, inner: _Readable) -> None:
        self._head = head
        self._inner = inner

    def read(self, size: int = -1, /) -> bytes:
        if not self._head:
            return self._inner.read(size)
        if size < 0:
            data, self._head = self._head + self._inner.read(), b""
        else:
            data, self._head = self._head[:size], self._head[size:]
        return data


class _Zstd:
    """A zstd stream reader whose errors are LayerErrors (zstandard is imported lazily)."""

    def __init__(self, inner: _Readable) -> None:
        import zstandard

        self._error = zstandard.ZstdError
        # A layer may be several frames (pigz-style parallel compressors write them).
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            cast("IO[bytes]", inner), read_across_frames=True, closefd=False
        )

    def read(self, size: int = -1, /) -> bytes:
        try:
            return self._reader.read(size)
        except self._error as exc:
            raise LayerError(f"corrupt zstd stream: {exc}") from exc


def detect_compression(head: bytes) -> Literal["gzip", "zstd", "none"]:
    """Name the compression of a layer from its first bytes (4 are enough)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


def whiteout_name(path: str) -> tuple[Literal["whiteout", "opaque"], str] | None:
    """Classify a normalised path: ``("opaque", dir)`` for ``dir/.wh..wh..opq``,
    ``("whiteout", "dir/name")`` for ``dir/.wh.name``, None for an ordinary entry. A whiteout
    of "", "." or ".." hides no sibling but the directory itself or its parent: refused."""
    parent, _, base = path.rpartition("/")
    if base == OPAQUE_MARKER:
        return ("opaque", parent)
    if not base.startswith(WHITEOUT_PREFIX):
        return None
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise HostileLayer(f'layer entry "{path}" whites out "{hidden}": refused')
    return ("whiteout", f"{parent}/{hidden}" if parent else hidden)


def _normalise(name: str) -> list[str] | None:
    """Split a tar name into components relative to the root; None if it climbs above it."""
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(comp)
    return parts


def _pax_ns(member: tarfile.TarInfo, key: str) -> int | None:
    # tarfile turns PAX times into floats, which cannot hold nanoseconds; reparse the text.
    raw = member.pax_headers.get(key)
    if raw is None:
        return None
    try:
        return int(Decimal(raw).scaleb(9).to_integral_value(rounding=ROUND_FLOOR))
    except (ArithmeticError, ValueError):
        return None


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = _pax_ns(member, "mtime")
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000
    atime = _pax_ns(member, "atime")
    return (mtime if atime is None else atime, mtime)


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out = []
    for key, value in member.pax_headers.items():
        if key.startswith(_XATTR_KEY) and not key.startswith(_XATTR_KEY + _OVERLAY_XATTRS):
            # tarfile decoded the raw value with surrogateescape; this restores the bytes.
            out.append((key[len(_XATTR_KEY) :], value.encode("utf-8", "surrogateescape")))
    return out


class _Unpacker:
    """Writes entries one by one under ``root``, which it alone has written to."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.entries = 0
        # Non-directories this layer wrote and that are still there: the only legal
        # hard-link targets. Whiteout devices are not entries and are not listed.
        self.written: set[str] = set()
        # Directories whose mode and times wait for the end ("" is the root).
        self.dirs: dict[str, tarfile.TarInfo] = {}

    def entry(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        parts = _normalise(m.name)
        if parts is None:
            raise HostileLayer(f'layer entry "{m.name}" points outside the layer: refused')
        rel = "/".join(parts)
        special = whiteout_name(rel) if parts else None
        if special is not None:
            self._whiteout(m, *special)
            return
        if not parts:
            if not m.isdir():
                raise LayerError(f'layer entry "{m.name}" would replace the layer root')
            self.dirs[""] = m
            return
        path = self._parent(parts, f'layer entry "{m.name}"')
        if m.isdir():
            if not self._clear(path, rel, keep_dir=True):
                os.mkdir(path, 0o700)
            self._meta(path, m, mode=False, times=False)
            self.dirs[rel] = m
            return
        source = self._link_source(m) if m.islnk() else None
        if source == path:
            return  # a hard link to itself: already there
        self._clear(path, rel)
        if m.isreg():  # includes contiguous and GNU sparse files, which tarfile expands
            self._file(tf, path, m)
        elif m.issym():
            os.symlink(m.linkname, path)  # stored verbatim; where it points is not our business
            self._meta(path, m, mode=False)
        elif source is not None:
            # linkat without AT_SYMLINK_FOLLOW: a link to a symlink is another symlink. The
            # inode already carries its metadata; re-chowning it would clear setuid bits and
            # file capabilities, so the link header's copy of that metadata is not applied.
            os.link(source, path, follow_symlinks=False)
        elif m.ischr() or m.isblk() or m.isfifo():
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
            self._meta(path, m, mode=True)
        else:
            raise LayerError(f'layer entry "{m.name}": unsupported entry type {m.type!r}')
        self.written.add(rel)

    def _parent(self, parts: list[str], what: str, *, create: bool = True) -> str:
        """Return the path of ``parts`` after checking (or making) its parent directories."""
        path = self.root
        for i, comp in enumerate(parts[:-1]):
            path = os.path.join(path, comp)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise HostileLayer(f"{what} names nothing this layer wrote: refused") from None
                # Implicit parents, as Docker makes them; the umask must not decide the mode.
                os.mkdir(path, 0o755)
                os.chmod(path, 0o755)
                continue
            prefix = "/".join(parts[: i + 1])
            if stat.S_ISLNK(st.st_mode):
                raise HostileLayer(f'{what} goes through symlink "{prefix}": refused')
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f'{what}: "{prefix}" is not a directory')
        return os.path.join(path, parts[-1])

    def _clear(self, path: str, rel: str, *, keep_dir: bool = False) -> bool:
        """Remove what an earlier entry left at ``path`` (later entries win, as in tar);
        True when a directory is there and was kept (directories merge)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(path)  # a symlink itself goes, never what it points to
            self.written.discard(rel)
            return False
        if keep_dir:
            return True
        shutil.rmtree(path)  # fd-based on Linux: never follows symlinks inside the tree
        inside = rel + "/"
        self.written = {p for p in self.written if not p.startswith(inside)}
        for gone in [d for d in self.dirs if d == rel or d.startswith(inside)]:
            del self.dirs[gone]
        return False

    def _link_source(self, m: tarfile.TarInfo) -> str:
        what = f'layer entry "{m.name}" (hard link to "{m.linkname}")'
        parts = _normalise(m.linkname)
        if parts is None:
            raise HostileLayer(f"{what} points outside the layer: refused")
        if "/".join(parts) not in self.written:
            raise HostileLayer(f"{what} names nothing this layer wrote: refused")
        # Written entries had clean parents and replacing a parent forgets what was under it;
        # the walk re-checks anyway: going through a link is the one thing that must not happen.
        return self._parent(parts, what, create=False)

    def _file(self, tf: tarfile.TarFile, path: str, m: tarfile.TarInfo) -> None:
        data = tf.extractfile(m)
        if data is None:
            raise LayerError(f'layer entry "{m.name}" has no data')
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            while chunk := data.read(_CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            self._meta(fd, m, mode=True)
        finally:
            os.close(fd)

    def _meta(
        self, where: int | str, m: tarfile.TarInfo, *, mode: bool, times: bool = True
    ) -> None:
        """Owner, then mode, then xattrs, then times: chown clears setuid/setgid and file
        capabilities (security.capability), and every change after utime would bump ctime only.
        A path here is never a symlink unless it is the entry itself, which is not followed."""
        follow = isinstance(where, int)  # an fd is the object itself; a path must not follow
        os.chown(where, m.uid, m.gid, follow_symlinks=follow)
        if mode:
            # Only fds, devices and FIFOs come here with mode=True; none is a symlink.
            os.chmod(where, stat.S_IMODE(m.mode))
        for key, value in _xattrs(m):
            try:
                os.setxattr(where, key, value, follow_symlinks=follow)
            except OSError as exc:
                if key.startswith("security.") and exc.errno in _SKIPPABLE_XATTR_ERRNOS:
                    continue
                raise
        if times:
            os.utime(where, ns=_times(m), follow_symlinks=follow)

    def _whiteout(self, m: tarfile.TarInfo, kind: str, rel: str) -> None:
        parts = rel.split("/") if rel else []
        what = f'layer entry "{m.name}"'
        if kind == "opaque":
            # Walking the marker's own path checks (and makes) every directory down to it.
            marker = self._parent([*parts, OPAQUE_MARKER], what)
            os.setxattr(os.path.dirname(marker), OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        path = self._parent(parts, what)
        self._clear(path, rel)
        os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))  # mode 0, as containerd and Docker do
        os.chown(path, m.uid, m.gid, follow_symlinks=False)

    def finish(self) -> None:
        """Apply directory modes and times, deepest first, now that nothing more is written."""
        for rel in sorted(self.dirs, key=lambda r: r.count("/") + bool(r), reverse=True):
            m = self.dirs[rel]
            path = self._parent(rel.split("/"), f'layer entry "{m.name}"') if rel else self.root
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.chmod(fd, stat.S_IMODE(m.mode))
                os.utime(fd, ns=_times(m))
            finally:
                os.close(fd)
        if "" not in self.dirs:
            os.chmod(self.root, 0o755)  # mkdtemp's 0700 only kept it private while unpacking


def _unpack_stream(raw: _Readable, root: str) -> UnpackResult:
    packed = _Hashing(raw, hashlib.sha256())
    head = b""
    while len(head) < 4 and (more := packed.read(4 - len(head))):
        head += more
    compression = detect_compression(head)
    body = _Prefixed(head, packed)
    stream: _Readable
    if compression == "gzip":
        stream = gzip.GzipFile(fileobj=cast("IO[bytes]", body), mode="rb")
    elif compression == "zstd":
        stream = _Zstd(body)
    else:
        stream = body
    plain = _Hashing(stream, hashlib.sha256())
    unpacker = _Unpacker(root)
    try:
        # Stream mode ("r|") reads forward only; tarfile.open wants a full file object type.
        with tarfile.open(
            fileobj=cast("IO[bytes]", plain), mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tf:
            while (member := tf.next()) is not None:
                # tarfile keeps every member it has seen; a layer of a million files would
                # keep a million TarInfos, so forget each one once it is handled.
                tf.members.clear()  # type: ignore[attr-defined]  # (not in typeshed)
                try:
                    unpacker.entry(tf, member)
                except OSError as exc:
                    raise LayerError(f'layer entry "{member.name}": {exc}') from exc
        plain.drain()
        packed.drain()
        unpacker.finish()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise LayerError(f"corrupt or unreadable layer ({compression}): {exc}") from exc
    return UnpackResult(
        diff_id="sha256:" + plain.hasher.hexdigest(),
        compressed_digest="sha256:" + packed.hasher.hexdigest(),
        entries=unpacker.entries,
        size=plain.count,
    )


def unpack(
    source: BinaryIO | str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    expected_digest: str | None = None,
) -> UnpackResult:
    """Unpack the layer ``source`` (a readable binary stream or a path) into ``target``.

    ``target`` must not exist or must be an empty directory; its parent is created if need
    be. ``expected_digest`` (``sha256:<hex>`` of the bytes as given) is checked at the end.
    Raises :class:`HostileLayer` for an entry that would land outside, :class:`LayerError`
    for anything else; either way nothing of the layer is left behind.
    """
    if expected_digest is not None and not _SHA256.match(expected_digest):
        raise LayerError(f"expected digest {expected_digest!r} is not sha256:<64 lowercase hex>")
    dest = os.path.abspath(os.fspath(target))
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISDIR(os.lstat(dest).st_mode) or os.listdir(dest):
            raise LayerError(f"cannot unpack into {dest}: it exists and is not an empty directory")
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    # Beside the target: the same filesystem, so the final rename is atomic.
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".unpacking", dir=parent)
    try:
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as fh:
                result = _unpack_stream(fh, tmp)
        else:
            result = _unpack_stream(source, tmp)
        if expected_digest is not None and result.compressed_digest != expected_digest:
            raise LayerError(
                f"layer digest mismatch: expected {expected_digest}, got {result.compressed_digest}"
            )
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise LayerError(f"cannot move the unpacked layer to {dest}: {exc}") from exc
    except BaseException:
        # As root (which unpacking needs) the 0555 directories of a finished tree do not
        # stop this; rmtree never follows the layer's symlinks.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result
