"""The content-addressed blob store: verified atomic writes, concurrency, digests, cleanup."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import ComposerError
from composer.runtime.images.blobs import BlobError, BlobStore, parse_digest

ROOT = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def leftovers(store: BlobStore) -> list[str]:
    return sorted(os.listdir(store.root / "tmp"))


def test_write_read_has(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "images")
    data = b"hello, layers\n" * 1000
    digest, size = store.write(iter([data[:100], data[100:]]))
    assert (digest, size) == (sha(data), len(data))
    assert store.has(digest)
    assert store.path(digest) == tmp_path / "images" / "blobs" / "sha256" / digest[7:]
    with store.open(digest) as f:
        assert f.read() == data
    assert store.digests() == {digest}
    assert store.verify(digest)
    assert leftovers(store) == []
    assert not store.has(sha(b"other"))
    for directory in ("", "blobs", "blobs/sha256", "tmp"):
        assert stat.S_IMODE((tmp_path / "images" / directory).stat().st_mode) == 0o700


def test_write_bytes_and_an_empty_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.write_bytes(b"{}", expected=sha(b"{}")) == sha(b"{}")
    assert store.write(iter([]), size=0) == (sha(b""), 0)
    assert store.digests() == {sha(b"{}"), sha(b"")}


def test_the_expected_digest_is_verified(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.write([b"abc"], expected=sha(b"abc"), size=3) == (sha(b"abc"), 3)
    with pytest.raises(BlobError, match="digest mismatch") as err:
        store.write([b"tampered"], expected=sha(b"original"))
    assert sha(b"original") in str(err.value) and sha(b"tampered") in str(err.value)
    assert isinstance(err.value, ComposerError)
    # Nothing stored under either name, and no partial file left behind.
    assert not store.has(sha(b"original"))
    assert not store.has(sha(b"tampered"))
    assert store.digests() == {sha(b"abc")}
    assert leftovers(store) == []


def test_size_mismatch_stores_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match=r"size mismatch.*expected 10 bytes, got 3"):
        store.write([b"abc"], size=10)

    pulled: list[int] = []

    def endless() -> Iterator[bytes]:
        for i in range(1000):
            pulled.append(i)
            yield b"x" * 10

    # A stream longer than announced is abandoned as soon as it overruns.
    with pytest.raises(BlobError, match="size mismatch"):
        store.write(endless(), size=25)
    assert len(pulled) == 3
    assert store.digests() == set()
    assert leftovers(store) == []


def test_an_interrupted_stream_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    def broken() -> Iterator[bytes]:
        yield b"first half"
        raise ConnectionResetError("registry went away")

    with pytest.raises(ConnectionResetError):
        store.write(broken())
    assert store.digests() == set()
    assert leftovers(store) == []


def test_an_existing_blob_is_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.write_bytes(b"same bytes")
    before = os.stat(store.path(digest))
    with store.open(digest) as reader:
        assert store.write_bytes(b"same bytes", expected=digest) == digest
        assert reader.read() == b"same bytes"
    after = os.stat(store.path(digest))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert leftovers(store) == []


def test_missing_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    missing = sha(b"nothing")
    with pytest.raises(BlobError, match="not in the store"):
        store.open(missing)
    assert store.verify(missing) is False
    store.remove(missing)  # missing is success
    digest = store.write_bytes(b"x")
    store.remove(digest)
    assert not store.has(digest)
    assert store.digests() == set()


def test_verify_detects_corruption(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.write_bytes(b"pristine")
    store.path(digest).write_bytes(b"bit rot")
    assert store.has(digest)
    assert store.verify(digest) is False


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "sha256",
        "sha256:",
        "abc",
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha256:" + "A" * 64,  # the OCI spec requires lowercase hex
        "sha256:" + "g" * 64,
        "sha256:../../../../etc/passwd",
        "sha256:" + "a" * 62 + "/a",
        "SHA256:" + "a" * 64,
        " sha256:" + "a" * 64,
        "sha256:" + "a" * 64 + "\n",
    ],
)
def test_malformed_digests(tmp_path: Path, bad: str) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match="malformed digest"):
        parse_digest(bad)
    with pytest.raises(BlobError):
        store.path(bad)
    with pytest.raises(BlobError):
        store.write([b"x"], expected=bad)
    assert leftovers(store) == []


def test_unsupported_algorithms(tmp_path: Path) -> None:
    assert parse_digest("sha256:" + "0" * 64) == ("sha256", "0" * 64)
    with pytest.raises(BlobError, match="unsupported digest algorithm 'sha512'"):
        parse_digest("sha512:" + "0" * 128)
    with pytest.raises(BlobError, match="unsupported"):
        BlobStore(tmp_path).has("md5:" + "0" * 32)


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "images")
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    digest = sha(b"payload")
    store.path(digest).symlink_to(outside)
    assert not store.has(digest)
    with pytest.raises(BlobError):
        store.open(digest)
    assert store.digests() == set()
    # Writing replaces the planted link instead of writing through it.
    assert store.write_bytes(b"payload") == digest
    assert outside.read_bytes() == b"secret"
    assert not store.path(digest).is_symlink()
    assert store.verify(digest)


def test_a_symlinked_store_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "tmp").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BlobError, match="symlink"):
        BlobStore(tmp_path / "images")


def test_concurrent_writes_from_threads(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    data = os.urandom(64 * 1024)
    digest = sha(data)
    start = threading.Barrier(6)
    results: list[tuple[str, int]] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            start.wait(5)
            # Small chunks so that the writers really interleave.
            chunks = (data[i:i + 1024] for i in range(0, len(data), 1024))
            results.append(store.write(chunks, expected=digest))
        except BaseException as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert results == [(digest, len(data))] * 6
    assert store.verify(digest)
    assert store.digests() == {digest}
    assert leftovers(store) == []


def test_concurrent_writes_from_two_processes(tmp_path: Path) -> None:
    root = tmp_path / "images"
    BlobStore(root)
    go = tmp_path / "go"
    # Both processes write the same 256 KiB blob in small chunks once the file "go" appears,
    # so that their writes overlap instead of one finishing during the other's start-up.
    code = f"""
import os, sys, time
from composer.runtime.images.blobs import BlobStore
store = BlobStore({str(root)!r})
data = bytes(range(256)) * 1024
while not os.path.exists({str(go)!r}):
    time.sleep(0.005)
chunks = (data[i:i + 4096] for i in range(0, len(data), 4096))
print(store.write(chunks, size=len(data))[0])
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(0.2)
    go.touch()
    outputs = [p.communicate(timeout=30) for p in procs]
    data = bytes(range(256)) * 1024
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == sha(data)
    store = BlobStore(root)
    assert store.digests() == {sha(data)}
    with store.open(sha(data)) as f:
        assert f.read() == data
    assert leftovers(store) == []


def test_clean_temporary_removes_only_old_partial_writes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    tmp = tmp_path / "tmp"
    old, fresh = tmp / "123-aaaa.partial", tmp / "456-bbbb.partial"
    unrelated = tmp / "not-ours"
    for f in (old, fresh, unrelated):
        f.write_bytes(b"half a layer")
    an_hour_ago = time.time() - 3700
    for f in (old, unrelated):
        os.utime(f, (an_hour_ago, an_hour_ago))
    digest = store.write_bytes(b"stored")
    assert store.clean_temporary() == 1
    assert not old.exists()
    assert fresh.exists()  # may be a write in progress in another process
    assert unrelated.exists()
    assert store.has(digest)
    assert store.clean_temporary(older_than=0) == 1
    assert sorted(os.listdir(tmp)) == ["not-ours"]
    assert store.clean_temporary() == 0
