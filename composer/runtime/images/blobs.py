"""Content-addressed blob storage on disk: ``root/blobs/sha256/<hex>``.

A blob's name is the sha256 of its bytes, so a stored blob is immutable and two writers of the
same blob write the same bytes. Writes stream into a private temporary file in ``root/tmp`` (the
same filesystem, so the final rename is atomic), are hashed on the way, checked against the
expected digest and size, fsynced, and only then renamed into place with ``os.replace``. A reader
therefore sees a whole verified blob or no blob; a crash leaves at worst a partial file in
``root/tmp``, which :meth:`BlobStore.clean_temporary` removes later.

Concurrency between composer processes needs no lock: temporary names are unique per writer
(pid + random), ``os.replace`` is atomic, and when two writers race for the same digest the
second rename replaces identical bytes with identical bytes.

Symlinks: the store's directories are created with mode 0700 (only root, who runs composer, can
plant anything in them) and are refused if they are symlinks. Temporary files are created with
``O_EXCL | O_NOFOLLOW``, blobs are opened with ``O_NOFOLLOW``, and ``os.replace`` renames over a
planted symlink instead of writing through it, so nothing in here writes or reads through a link.
The root itself may be a symlink (people move /var/lib/composer to a larger disk that way).

Only sha256 is stored; that is what every registry and image format uses today.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from composer.errors import ComposerError

__all__ = ["BlobError", "BlobStore", "parse_digest"]

_ALGORITHM = "sha256"
# The OCI image-spec digest grammar: algorithm ":" encoded. Used with fullmatch: "$" would
# accept a trailing newline, which would then end up in a file name.
_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")
# The OCI spec requires lowercase hex for sha256; anything else is a different (or no) blob.
_SHA256_HEX = re.compile(r"^[a-f0-9]{64}$")
_TMP_SUFFIX = ".partial"
_CHUNK = 1 << 20


class BlobError(ComposerError):
    """A blob is missing, malformed, or does not match what was expected."""


def parse_digest(digest: str) -> tuple[str, str]:
    """Split ``sha256:<64 lowercase hex>`` into ``("sha256", hex)``.

    Raises :class:`BlobError` for anything malformed or of another algorithm; since the hex part
    becomes a file name, this is also what keeps ``../`` and friends out of paths.
    """
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None:
        raise BlobError(f"malformed digest {digest!r}: expected sha256:<64 hex digits>")
    algorithm, encoded = match.groups()
    if algorithm != _ALGORITHM:
        raise BlobError(f"unsupported digest algorithm {algorithm!r} in {digest!r}: only sha256")
    if not _SHA256_HEX.fullmatch(encoded):
        raise BlobError(
            f"malformed digest {digest!r}: a sha256 digest is 64 lowercase hex digits"
        )
    return algorithm, encoded


class BlobStore:
    """Blobs by sha256 digest under ``root``; safe for concurrent use by several processes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._blobs = self.root / "blobs" / _ALGORITHM
        self._tmp = self.root / "tmp"
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            # One level at a time: mkdir(parents=True) would give intermediate directories the
            # umask's mode instead of 0700.
            for directory in (self.root / "blobs", self._blobs, self._tmp):
                directory.mkdir(mode=0o700, exist_ok=True)
                if not stat.S_ISDIR(os.lstat(directory).st_mode):
                    raise BlobError(f"{directory} is not a directory (a symlink?): refusing it")
        except OSError as e:
            raise BlobError(f"cannot create blob store in {self.root}: {e}") from e

    def path(self, digest: str) -> Path:
        """Where a blob lives (whether or not it is there)."""
        _, hex_digest = parse_digest(digest)
        return self._blobs / hex_digest

    def has(self, digest: str) -> bool:
        """True if the blob is stored (as a regular file; a planted symlink does not count)."""
        try:
            return stat.S_ISREG(os.lstat(self.path(digest)).st_mode)
        except FileNotFoundError:
            return False

    def open(self, digest: str) -> BinaryIO:
        """Open a stored blob for reading; :class:`BlobError` if it is missing."""
        path = self.path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise BlobError(f"blob {digest} is not in the store") from e
        except OSError as e:
            raise BlobError(f"cannot open blob {digest}: {e.strerror}") from e
        return os.fdopen(fd, "rb")

    def write(
        self,
        chunks: Iterable[bytes],
        *,
        expected: str | None = None,
        size: int | None = None,
    ) -> tuple[str, int]:
        """Store a stream of bytes; returns ``(digest, size)``.

        With ``expected`` and/or ``size``, the stream must match them, else :class:`BlobError`
        is raised and nothing is stored (the temporary file is removed). A stream longer than
        ``size`` is abandoned as soon as it overruns, not after downloading all of it. If the
        blob is already stored, the existing file is kept.
        """
        if expected is not None:
            parse_digest(expected)
        if size is not None and size < 0:
            raise BlobError(f"invalid expected size {size}")
        tmp = self._tmp / f"{os.getpid()}-{secrets.token_hex(8)}{_TMP_SUFFIX}"
        try:
            fd = os.open(
                tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError as e:
            raise BlobError(f"cannot create a temporary file in {self._tmp}: {e.strerror}") from e
        what = f"blob {expected}" if expected else "a blob"
        try:
            hasher = hashlib.sha256()
            written = 0
            with os.fdopen(fd, "wb") as f:
                # Errors raised by the source (a dropped connection) pass through as they are;
                # only our own file operations are reported as BlobError.
                for chunk in chunks:
                    hasher.update(chunk)
                    try:
                        f.write(chunk)
                    except OSError as e:
                        raise BlobError(f"cannot store {what}: {e}") from e
                    written += len(chunk)
                    if size is not None and written > size:
                        raise BlobError(
                            f"size mismatch for {expected or 'blob'}: expected {size} bytes, "
                            f"got more than that"
                        )
                try:
                    f.flush()
                    # Durable before it becomes visible: the database may name it right after.
                    os.fsync(f.fileno())
                except OSError as e:
                    raise BlobError(f"cannot store {what}: {e}") from e
            digest = f"{_ALGORITHM}:{hasher.hexdigest()}"
            if size is not None and written != size:
                raise BlobError(
                    f"size mismatch for {expected or digest}: expected {size} bytes, "
                    f"got {written}"
                )
            if expected is not None and digest != expected:
                raise BlobError(
                    f"digest mismatch: expected {expected}, got {digest} ({written} bytes)"
                )
            try:
                if self.has(digest):
                    # Same name, same bytes: keep the existing file (a reader may have it open).
                    tmp.unlink()
                else:
                    os.replace(tmp, self.path(digest))
                    _fsync_dir(self._blobs)
            except OSError as e:
                raise BlobError(f"cannot store {what}: {e}") from e
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return digest, written

    def write_bytes(self, data: bytes, *, expected: str | None = None) -> str:
        """Store ``data``; returns its digest (checked against ``expected`` when given)."""
        digest, _ = self.write([data], expected=expected, size=len(data))
        return digest

    def remove(self, digest: str) -> None:
        """Remove a blob; removing a missing blob succeeds (another process may have won)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> set[str]:
        """Every stored blob's digest (names that are not sha256 hex are ignored)."""
        found: set[str] = set()
        with os.scandir(self._blobs) as entries:
            for entry in entries:
                if _SHA256_HEX.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    found.add(f"{_ALGORITHM}:{entry.name}")
        return found

    def verify(self, digest: str) -> bool:
        """Re-hash a stored blob: True if its bytes match its name; False if corrupt or missing."""
        _, hex_digest = parse_digest(digest)
        hasher = hashlib.sha256()
        try:
            with self.open(digest) as f:
                while block := f.read(_CHUNK):
                    hasher.update(block)
        except BlobError:
            return False
        return hasher.hexdigest() == hex_digest

    def clean_temporary(self, older_than: float = 3600) -> int:
        """Remove partial writes older than ``older_than`` seconds; returns how many.

        Age, not ownership, decides: a younger file may belong to a write in progress in another
        process, whose rename would then fail. An hour without a single byte written (the
        modification time moves with every chunk) means the writer is gone.
        """
        cutoff = time.time() - older_than
        removed = 0
        with os.scandir(self._tmp) as entries:
            for entry in entries:
                if not entry.name.endswith(_TMP_SUFFIX):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode) or info.st_mtime >= cutoff:
                        continue
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue  # another process cleaned it, or its writer finished
                removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
