"""Unpacking OCI layers: what is preserved, whiteouts, digests, and every escape route refused.

Layers are built here with tarfile into memory. Hostile tests compare a snapshot of the whole
tmp_path (modes, owners, sizes, link counts, contents, mtimes) before and after, so a write
outside the target, even one cleaned up afterwards, changes the snapshot.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from composer.runtime.images.layers import (
    HostileLayer,
    LayerError,
    detect_compression,
    unpack,
    whiteout_name,
)

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking a layer needs root"),
]

MTIME = 1_600_000_000
Entry = tuple[tarfile.TarInfo, bytes | None]


def info(name: str, kind: bytes = tarfile.REGTYPE, **fields: Any) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mtime = MTIME
    ti.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    for key, value in fields.items():
        setattr(ti, key, value)
    return ti


def reg(name: str, data: bytes = b"", **fields: Any) -> Entry:
    return info(name, size=len(data), **fields), data


def mkdir(name: str, **fields: Any) -> Entry:
    return info(name, tarfile.DIRTYPE, **fields), None


def sym(name: str, target: str, **fields: Any) -> Entry:
    return info(name, tarfile.SYMTYPE, linkname=target, **fields), None


def hard(name: str, target: str) -> Entry:
    return info(name, tarfile.LNKTYPE, linkname=target), None


def tar(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "zstd": lambda raw: zstandard.ZstdCompressor().compress(raw),
    "none": lambda raw: raw,
}


@dataclass
class Area:
    store: Path
    target: Path
    outside: Path
    canary: Path


@pytest.fixture
def area(tmp_path: Path) -> Area:
    store, outside = tmp_path / "store", tmp_path / "outside"
    store.mkdir()
    outside.mkdir()
    canary = outside / "canary"
    canary.write_bytes(b"canary")
    os.utime(outside, ns=(MTIME * 10**9, MTIME * 10**9))
    os.utime(tmp_path, ns=(MTIME * 10**9, MTIME * 10**9))
    return Area(store, store / "layer", outside, canary)


def snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[object, ...]]:
    """Everything observable about the tree under root, except what is under ``skip``."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        if skip is not None and here == skip:
            dirs[:] = []
            continue
        for p in [here, *(here / n for n in files)]:
            st = os.lstat(p)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                extra = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            if skip is not None and p == skip.parent:
                # The target's own parent gains an entry (and a link) when unpacking succeeds.
                out[str(p)] = (st.st_mode, st.st_uid, st.st_gid)
                continue
            out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, st.st_nlink, st.st_size)
            out[str(p)] += (st.st_mtime_ns, extra)
        for d in dirs:
            if (here / d).is_symlink():
                out[str(here / d)] = ("link", os.readlink(here / d))
    return out


def hostile(area: Area, entries: list[Entry], message: str) -> None:
    """Unpacking must raise exactly ``message``, leave nothing and touch nothing."""
    root = area.store.parent
    before = snapshot(root, skip=area.target)
    with pytest.raises(HostileLayer) as caught:
        unpack(io.BytesIO(gzip.compress(tar(*entries))), area.target)
    assert str(caught.value) == message
    assert not area.target.exists()
    assert os.listdir(area.store) == []
    assert snapshot(root, skip=area.target) == before
    assert area.canary.read_bytes() == b"canary"


def unpacked_safely(area: Area, entries: list[Entry]) -> Path:
    """Unpacking succeeds and nothing outside the target changed."""
    root = area.store.parent
    before = snapshot(root, skip=area.target)
    unpack(io.BytesIO(tar(*entries)), area.target)
    assert snapshot(root, skip=area.target) == before
    assert os.listdir(area.store) == ["layer"]
    return area.target


def walk_names(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- sniffing and naming ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"etc/", "none"),
        (b"", "none"),
        (b"\x1f", "none"),
    ],
)
def test_detect_compression(head: bytes, kind: str) -> None:
    assert detect_compression(head) == kind


def test_whiteout_name() -> None:
    assert whiteout_name("etc/.wh.hosts") == ("whiteout", "etc/hosts")
    assert whiteout_name(".wh.top") == ("whiteout", "top")
    assert whiteout_name("var/cache/.wh..wh..opq") == ("opaque", "var/cache")
    assert whiteout_name(".wh..wh..opq") == ("opaque", "")
    assert whiteout_name("a/.wh..wh.plnk") == ("whiteout", "a/.wh.plnk")
    assert whiteout_name("etc/hosts") is None
    assert whiteout_name("etc/x.wh.y") is None
    for bad in ("a/.wh.", "a/.wh..", "a/.wh..."):
        with pytest.raises(HostileLayer, match="whites out"):
            whiteout_name(bad)


# --- what is preserved --------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_files_modes_owners_and_digests(tmp_path: Path, compression: str) -> None:
    raw = tar(
        mkdir("./", mode=0o755),
        mkdir("bin"),
        reg("bin/tool", b"#!/bin/sh\n", mode=0o755),
        reg("bin/su", b"su", mode=0o4755),
        reg("bin/wall", b"wall", mode=0o2711, gid=5),
        mkdir("tmp", mode=0o1777),
        reg("home/u/notes", b"owned", mode=0o600, uid=1234, gid=5678),
        reg("empty"),
    )
    blob = COMPRESS[compression](raw)
    assert detect_compression(blob[:4]) == compression
    target = tmp_path / "layer"
    result = unpack(io.BytesIO(blob), target)

    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.compressed_digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(raw)  # padding to the tar record size included
    assert result.entries == 8
    assert (target / "bin/tool").read_bytes() == b"#!/bin/sh\n"
    modes = {n: stat.S_IMODE(os.lstat(target / n).st_mode) for n in ("bin/tool", "bin/su")}
    assert modes == {"bin/tool": 0o755, "bin/su": 0o4755}
    wall = os.lstat(target / "bin/wall")
    assert (stat.S_IMODE(wall.st_mode), wall.st_gid) == (0o2711, 5)
    assert stat.S_IMODE(os.lstat(target / "tmp").st_mode) == 0o1777
    notes = os.lstat(target / "home/u/notes")
    assert (notes.st_uid, notes.st_gid, stat.S_IMODE(notes.st_mode)) == (1234, 5678, 0o600)
    # An implicit parent is 0755 root:root, whatever the umask.
    home = os.lstat(target / "home")
    assert (stat.S_IMODE(home.st_mode), home.st_uid) == (0o755, 0)
    assert (target / "empty").read_bytes() == b""
    assert os.lstat(target / "bin/su").st_mtime_ns == MTIME * 10**9
    assert [p.name for p in tmp_path.iterdir()] == ["layer"]  # no temporary left beside it


def test_digests_cover_bytes_after_the_end_of_archive(tmp_path: Path) -> None:
    # GNU tar pads to its blocking factor; tarfile stops reading at the end-of-archive
    # blocks, but the diff id (and the blob digest) are over every byte of the stream.
    raw = tar(reg("f", b"x")) + bytes(5 * tarfile.RECORDSIZE)
    blob = gzip.compress(raw)
    result = unpack(io.BytesIO(blob), tmp_path / "layer")
    assert result.diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert result.compressed_digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(raw)


def test_pax_nanosecond_times_and_xattrs(tmp_path: Path) -> None:
    binary = b"\x00\x01\xff\xfe"
    raw = tar(
        mkdir(
            "d",
            mode=0o750,
            pax_headers={"mtime": "1700000000.5", "SCHILY.xattr.user.dir": "on-dir"},
        ),
        reg(
            "d/f",
            b"x",
            pax_headers={
                "mtime": "1700000000.123456789",
                "atime": "1600000000.000000001",
                "SCHILY.xattr.user.comment": "hello",
                "SCHILY.xattr.trusted.origin": "lab",
                "SCHILY.xattr.user.binary": binary.decode("utf-8", "surrogateescape"),
                # Overlay's own metadata is never taken from an archive.
                "SCHILY.xattr.trusted.overlay.redirect": "/etc",
            },
        ),
        sym("d/l", "f", uid=7, gid=8, pax_headers={"SCHILY.xattr.trusted.on-link": "yes"}),
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    f = os.lstat(target / "d/f")
    assert f.st_mtime_ns == 1_700_000_000_123_456_789
    assert f.st_atime_ns == 1_600_000_000_000_000_001
    assert os.getxattr(target / "d/f", "user.comment") == b"hello"
    assert os.getxattr(target / "d/f", "trusted.origin") == b"lab"
    assert os.getxattr(target / "d/f", "user.binary") == binary
    assert "trusted.overlay.redirect" not in os.listxattr(target / "d/f")
    d = os.lstat(target / "d")
    assert (d.st_mtime_ns, stat.S_IMODE(d.st_mode)) == (1_700_000_000_500_000_000, 0o750)
    assert os.getxattr(target / "d", "user.dir") == b"on-dir"
    link = os.lstat(target / "d/l")
    assert (link.st_uid, link.st_gid) == (7, 8)
    assert os.getxattr(target / "d/l", "trusted.on-link", follow_symlinks=False) == b"yes"
    assert "trusted.on-link" not in os.listxattr(target / "d/f")


def test_security_xattrs_are_skipped_only_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.setxattr

    def refusing(path: Any, key: str, value: bytes, *args: Any, **kw: Any) -> None:
        if key.startswith(("security.", "user.refused")):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        real(path, key, value, *args, **kw)

    monkeypatch.setattr(os, "setxattr", refusing)
    label = {"SCHILY.xattr.security.selinux": "system_u:object_r:bin_t:s0"}
    unpack(io.BytesIO(tar(reg("f", b"x", pax_headers=label))), tmp_path / "ok")
    assert (tmp_path / "ok/f").read_bytes() == b"x"

    refused = {"SCHILY.xattr.user.refused": "v"}
    with pytest.raises(LayerError, match=r'^layer entry "g": .*not supported'):
        unpack(io.BytesIO(tar(reg("g", b"x", pax_headers=refused))), tmp_path / "bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok"]


def test_hard_links_share_the_inode_and_keep_setuid(tmp_path: Path) -> None:
    raw = tar(
        reg("usr/bin/a", b"binary", mode=0o4755, uid=1234),
        hard("usr/bin/b", "usr/bin/a"),
        hard("/c", "/usr/bin/a"),  # absolute names are relative to the layer root
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    a, b, c = (os.lstat(target / n) for n in ("usr/bin/a", "usr/bin/b", "c"))
    assert a.st_ino == b.st_ino == c.st_ino
    assert a.st_nlink == 3
    assert (stat.S_IMODE(a.st_mode), a.st_uid) == (0o4755, 1234)


def test_symlinks_are_stored_not_followed(tmp_path: Path) -> None:
    raw = tar(
        sym("dangling", "nowhere/at/all"),
        sym("abs", "/etc/passwd"),
        sym("up", "../../.."),
        sym("/etc/rel", "../abs"),
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    for name, dest in [("dangling", "nowhere/at/all"), ("abs", "/etc/passwd"), ("up", "../../..")]:
        assert stat.S_ISLNK(os.lstat(target / name).st_mode)
        assert os.readlink(target / name) == dest
    assert os.readlink(target / "etc/rel") == "../abs"
    assert os.lstat(target / "abs").st_mtime_ns == MTIME * 10**9


def test_devices_and_fifos(tmp_path: Path) -> None:
    raw = tar(
        (info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3, mode=0o666, uid=1234), None),
        (info("dev/loop0", tarfile.BLKTYPE, devmajor=7, devminor=0, mode=0o660, gid=6), None),
        (info("run/pipe", tarfile.FIFOTYPE, mode=0o620), None),
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    null = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(null.st_mode)
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert (stat.S_IMODE(null.st_mode), null.st_uid) == (0o666, 1234)
    loop = os.lstat(target / "dev/loop0")
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev), loop.st_gid) == (7, 0, 6)
    pipe = os.lstat(target / "run/pipe")
    assert stat.S_ISFIFO(pipe.st_mode)
    assert stat.S_IMODE(pipe.st_mode) == 0o620


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    raw = tar(
        mkdir("etc"),
        reg("etc/hosts", b"earlier entry in this layer"),
        reg("etc/.wh.hosts"),
        reg("etc/.wh.gone"),
        reg(".wh.top"),
        mkdir("opt"),
        reg("opt/.wh..wh..opq"),
        reg("var/cache/.wh..wh..opq"),  # the opaque directory is made when absent
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    for name in ("etc/hosts", "etc/gone", "top"):
        st = os.lstat(target / name)
        assert stat.S_ISCHR(st.st_mode), name
        assert st.st_rdev == os.makedev(0, 0)
    assert not any(".wh." in n for n in walk_names(target))
    for d in ("opt", "var/cache"):
        assert os.getxattr(target / d, "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(target / "etc")
    assert walk_names(target) == {
        "etc", "etc/hosts", "etc/gone", "top", "opt", "var", "var/cache",
    }  # fmt: skip


def test_later_entries_replace_earlier_ones(tmp_path: Path) -> None:
    raw = tar(
        reg("f", b"one"),
        reg("f", b"two", mode=0o600),
        mkdir("d"),
        reg("d/child", b"c"),
        reg("d", b"now a file"),
        reg("e", b"file first"),
        mkdir("e", mode=0o700),
        reg("e/inside", b"i"),
        sym("s", "f"),
        reg("s", b"not a link"),
        mkdir("m", mode=0o755),
        reg("m/a", b"a"),
        mkdir("m", mode=0o711),
        reg("m/b", b"b"),
        reg("x", b"x"),
        hard("y", "x"),
        reg("x", b"new x"),  # replaces x; y keeps the old inode
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    assert (target / "f").read_bytes() == b"two"
    assert stat.S_IMODE(os.lstat(target / "f").st_mode) == 0o600
    assert (target / "d").read_bytes() == b"now a file"
    assert (target / "e/inside").read_bytes() == b"i"
    assert stat.S_IMODE(os.lstat(target / "e").st_mode) == 0o700
    assert not (target / "s").is_symlink()
    assert (target / "s").read_bytes() == b"not a link"
    assert sorted(os.listdir(target / "m")) == ["a", "b"]
    assert stat.S_IMODE(os.lstat(target / "m").st_mode) == 0o711
    assert ((target / "x").read_bytes(), (target / "y").read_bytes()) == (b"new x", b"x")


def test_directory_modes_and_times_are_applied_after_contents(tmp_path: Path) -> None:
    raw = tar(
        mkdir(".", mode=0o700, mtime=MTIME + 1),
        mkdir("ro", mode=0o555, mtime=MTIME + 2),
        mkdir("ro/sub", mode=0o500, mtime=MTIME + 3),
        reg("ro/sub/g", b"g"),
        reg("ro/f", b"f", mode=0o444),
    )
    target = tmp_path / "layer"
    unpack(io.BytesIO(raw), target)
    assert (target / "ro/f").read_bytes() == b"f"
    assert (target / "ro/sub/g").read_bytes() == b"g"
    for name, mode, mtime in [("", 0o700, 1), ("ro", 0o555, 2), ("ro/sub", 0o500, 3)]:
        st = os.lstat(target / name)
        assert (stat.S_IMODE(st.st_mode), st.st_mtime_ns) == (mode, (MTIME + mtime) * 10**9)


# --- digests, targets, corrupt input ------------------------------------------------------


def test_expected_digest(tmp_path: Path) -> None:
    blob = gzip.compress(tar(mkdir("ro", mode=0o555), reg("ro/f", b"x", mode=0o4755)))
    good = "sha256:" + hashlib.sha256(blob).hexdigest()
    wrong = "sha256:" + "0" * 64
    with pytest.raises(LayerError) as caught:
        unpack(io.BytesIO(blob), tmp_path / "store/layer", expected_digest=wrong)
    assert str(caught.value) == f"layer digest mismatch: expected {wrong}, got {good}"
    assert os.listdir(tmp_path / "store") == []
    with pytest.raises(LayerError, match="is not sha256"):
        unpack(io.BytesIO(blob), tmp_path / "store/layer", expected_digest="md5:abc")
    result = unpack(io.BytesIO(blob), tmp_path / "store/layer", expected_digest=good)
    assert result.compressed_digest == good
    assert (tmp_path / "store/layer/ro/f").read_bytes() == b"x"


def test_target_must_be_absent_or_an_empty_directory(tmp_path: Path) -> None:
    blob = tar(reg("f", b"x"))
    (tmp_path / "empty").mkdir()
    unpack(io.BytesIO(blob), tmp_path / "empty")
    assert (tmp_path / "empty/f").read_bytes() == b"x"
    (tmp_path / "full").mkdir()
    (tmp_path / "full/keep").write_bytes(b"mine")
    (tmp_path / "file").write_bytes(b"mine")
    for name in ("full", "file", "empty"):
        with pytest.raises(LayerError, match="exists and is not an empty directory"):
            unpack(io.BytesIO(blob), tmp_path / name)
    assert (tmp_path / "full/keep").read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["empty", "file", "full"]


def test_source_may_be_a_path(tmp_path: Path) -> None:
    blob = zstandard.ZstdCompressor().compress(tar(reg("f", b"from a file")))
    (tmp_path / "blob").write_bytes(blob)
    result = unpack(str(tmp_path / "blob"), tmp_path / "layer")
    assert (tmp_path / "layer/f").read_bytes() == b"from a file"
    assert result.compressed_digest == "sha256:" + hashlib.sha256(blob).hexdigest()


class OneWay:
    """A non-seekable source that remembers its largest read."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)
        self.largest = 0

    def read(self, size: int = -1) -> bytes:
        assert size > 0, "the whole layer was asked for at once"
        self.largest = max(self.largest, size)
        return self._buf.read(size)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_large_layer_streams_in_small_memory(tmp_path: Path, compression: str) -> None:
    size = 48 << 20
    packed = io.BytesIO()
    sink: Any = (
        gzip.GzipFile(fileobj=packed, mode="wb", compresslevel=1)
        if compression == "gzip"
        else zstandard.ZstdCompressor().stream_writer(packed, closefd=False)
    )
    tar_hash = hashlib.sha256()

    class Tee:
        def write(self, data: bytes) -> int:
            tar_hash.update(data)
            return int(sink.write(data))

    with tarfile.open(fileobj=Tee(), mode="w|") as tf:  # type: ignore[call-overload]
        tf.addfile(info("big", size=size), Zeros(size))
    sink.close()
    source = OneWay(packed.getvalue())
    tracemalloc.start()
    try:
        result = unpack(source, tmp_path / "layer")  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert os.lstat(tmp_path / "layer/big").st_size == size
    assert result.diff_id == "sha256:" + tar_hash.hexdigest()
    assert result.size > size
    assert peak < 8 << 20, f"peak {peak} bytes for a {size}-byte layer"
    assert source.largest <= 1 << 20


class Zeros:
    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int) -> bytes:
        n = min(n, self.left)
        self.left -= n
        return bytes(n)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (gzip.compress(tar(reg("f", b"x" * 100_000)))[:-200], r"^corrupt or unreadable layer"),
        (zstandard.ZstdCompressor().compress(tar(reg("f", b"y" * 5000)))[:-30], r"corrupt"),
        (b"\x1f\x8b" + b"not really gzip" * 100, r"^corrupt or unreadable layer \(gzip\)"),
        (b"plain garbage that is no tar at all" * 40, r"^corrupt or unreadable layer \(none\)"),
        (tar(reg("ok", b"1"), (info("vol", b"V"), None)), r'^layer entry "vol": unsupported'),
        (tar(reg("f", b"1"), reg("f/g", b"2")), r'^layer entry "f/g": "f" is not a directory'),
        (tar(sym(".", "elsewhere")), r'^layer entry "\." would replace the layer root'),
    ],
)
def test_bad_layers_leave_nothing(tmp_path: Path, blob: bytes, message: str) -> None:
    with pytest.raises(LayerError, match=message):
        unpack(io.BytesIO(blob), tmp_path / "layer")
    assert os.listdir(tmp_path) == []


# --- containment --------------------------------------------------------------------------


def test_dot_dot_is_refused(area: Area) -> None:
    hostile(
        area,
        [reg("ok", b"1"), reg("../evil", b"x")],
        'layer entry "../evil" points outside the layer: refused',
    )


def test_dot_dot_after_a_directory_is_refused(area: Area) -> None:
    hostile(
        area,
        [mkdir("a"), reg("a/../../evil", b"x")],
        'layer entry "a/../../evil" points outside the layer: refused',
    )


def test_absolute_names_land_inside(area: Area) -> None:
    target = unpacked_safely(area, [reg("/etc/evil", b"x"), reg("//abs//twice", b"y")])
    assert (target / "etc/evil").read_bytes() == b"x"
    assert (target / "abs/twice").read_bytes() == b"y"
    assert not Path("/etc/evil").exists()


def test_writing_through_an_absolute_symlink_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("l", str(area.outside)), reg("l/evil", b"x")],
        'layer entry "l/evil" goes through symlink "l": refused',
    )


def test_writing_through_a_relative_symlink_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("l", "../.."), reg("l/x", b"x")],  # would be tmp_path/x
        'layer entry "l/x" goes through symlink "l": refused',
    )


def test_writing_through_a_symlink_chain_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("a", "b"), sym("b", ".."), mkdir("a/x")],
        'layer entry "a/x" goes through symlink "a": refused',
    )


def test_deeper_symlink_in_the_parents_is_refused(area: Area) -> None:
    hostile(
        area,
        [mkdir("usr"), sym("usr/lib", str(area.outside)), reg("usr/lib/x/y", b"x")],
        'layer entry "usr/lib/x/y" goes through symlink "usr/lib": refused',
    )


def test_hard_link_climbing_out_is_refused(area: Area) -> None:
    hostile(
        area,
        [hard("h", "../outside/canary")],
        'layer entry "h" (hard link to "../outside/canary") points outside the layer: refused',
    )


def test_hard_link_to_an_absolute_outside_path_is_refused(area: Area) -> None:
    # The absolute name is read inside the layer, where nothing of that name was written.
    name = str(area.canary)
    hostile(
        area,
        [hard("h", name)],
        f'layer entry "h" (hard link to "{name}") names nothing this layer wrote: refused',
    )


def test_hard_link_through_a_symlink_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("d", str(area.outside)), hard("h", "d/canary")],
        'layer entry "h" (hard link to "d/canary") names nothing this layer wrote: refused',
    )


def test_hard_link_to_a_directory_is_refused(area: Area) -> None:
    hostile(
        area,
        [mkdir("d"), hard("h", "d")],
        'layer entry "h" (hard link to "d") names nothing this layer wrote: refused',
    )


def test_hard_link_to_an_outward_symlink_is_only_a_symlink(area: Area) -> None:
    target = unpacked_safely(
        area,
        [sym("s", str(area.canary)), hard("h", "s"), hard("h2", "s"), reg("h2", b"pwned")],
    )
    assert os.readlink(target / "h") == str(area.canary)
    assert os.lstat(target / "h").st_ino == os.lstat(target / "s").st_ino
    assert (target / "h2").read_bytes() == b"pwned"
    assert not (target / "h2").is_symlink()
    assert os.lstat(area.canary).st_nlink == 1


def test_writing_under_a_hard_linked_symlink_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("s", str(area.outside)), hard("h", "s"), reg("h/evil", b"x")],
        'layer entry "h/evil" goes through symlink "h": refused',
    )


def test_directory_entry_replaces_a_symlink(area: Area) -> None:
    target = unpacked_safely(
        area, [sym("l", str(area.outside)), mkdir("l", mode=0o700), reg("l/x", b"x")]
    )
    assert stat.S_ISDIR(os.lstat(target / "l").st_mode)
    assert (target / "l/x").read_bytes() == b"x"


def test_file_entry_replaces_an_outward_symlink(area: Area) -> None:
    target = unpacked_safely(area, [sym("f", str(area.canary)), reg("f", b"pwned", mode=0o4755)])
    assert not (target / "f").is_symlink()
    assert (target / "f").read_bytes() == b"pwned"
    assert stat.S_IMODE(os.lstat(area.canary).st_mode) == 0o644


def test_device_and_fifo_entries_replace_outward_symlinks(area: Area) -> None:
    target = unpacked_safely(
        area,
        [
            sym("c", str(area.canary)),
            (info("c", tarfile.CHRTYPE, devmajor=1, devminor=3), None),
            sym("p", str(area.canary)),
            (info("p", tarfile.FIFOTYPE), None),
        ],
    )
    assert stat.S_ISCHR(os.lstat(target / "c").st_mode)
    assert stat.S_ISFIFO(os.lstat(target / "p").st_mode)


def test_whiteout_through_a_symlink_is_refused(area: Area) -> None:
    # Followed, this would replace the canary with a whiteout device.
    hostile(
        area,
        [sym("l", str(area.outside)), reg("l/.wh.canary")],
        'layer entry "l/.wh.canary" goes through symlink "l": refused',
    )


def test_whiteout_of_an_outward_symlink_replaces_only_the_symlink(area: Area) -> None:
    target = unpacked_safely(area, [sym("c", str(area.canary)), reg(".wh.c")])
    assert stat.S_ISCHR(os.lstat(target / "c").st_mode)


def test_opaque_marker_through_a_symlink_is_refused(area: Area) -> None:
    hostile(
        area,
        [sym("l", str(area.outside)), reg("l/.wh..wh..opq")],
        'layer entry "l/.wh..wh..opq" goes through symlink "l": refused',
    )
    assert "trusted.overlay.opaque" not in os.listxattr(area.outside)


def test_whiteout_of_dot_dot_is_refused(area: Area) -> None:
    hostile(area, [mkdir("a"), reg("a/.wh...")], 'layer entry "a/.wh..." whites out "..": refused')


def test_whiteout_climbing_out_is_refused(area: Area) -> None:
    hostile(
        area,
        [reg("../outside/.wh.canary")],
        'layer entry "../outside/.wh.canary" points outside the layer: refused',
    )
