"""An upper dir as an OCI layer: entries, whiteouts, reproducibility, compression, commit.

Upper dirs are made by hand here as overlayfs would leave them (whiteouts are char devices
0/0, sometimes sharing one inode; opaque dirs carry trusted.overlay.opaque=y), so these tests
need root (mknod, trusted.* xattrs) but no mount. The round trip through a real mount is in
tests/integration/test_rootfs.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import socket
import stat
import struct
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from composer.runtime.images import layers
from composer.runtime.images.archives import import_layers
from composer.runtime.images.diff import DiffError, LayerDiff, commit_layer, write_layer
from composer.runtime.images.store import ImageStore
from tests.unit.test_image_store import BASE, TOP, build

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and trusted xattrs need root"),
]

NS = 1_600_000_000_123_456_789
# A valid VFS_CAP_REVISION_2 security.capability: effective, cap_net_bind_service.
CAPABILITY = struct.pack("<5I", 0x02000001, 1 << 10, 0, 0, 0)


def make_upper(root: Path) -> Path:
    """An upper dir with one of everything."""
    upper = root / "upper"
    upper.mkdir()
    (upper / "file").write_bytes(b"content")
    os.setxattr(upper / "file", "user.text", b"hello")
    os.setxattr(upper / "file", "user.binary", b"\xff\xfe\x00bytes")
    os.setxattr(upper / "file", "trusted.overlay.origin", b"\x00\xfb-origin")
    (upper / "bin").mkdir()
    (upper / "bin/ping").write_bytes(b"ELF")
    os.chmod(upper / "bin/ping", 0o4755)
    os.setxattr(upper / "bin/ping", "security.capability", CAPABILITY)
    os.link(upper / "file", upper / "bin/hard")
    os.mknod(upper / "deleted", stat.S_IFCHR, os.makedev(0, 0))
    os.link(upper / "deleted", upper / "bin/deleted-too")  # overlayfs shares whiteout inodes
    (upper / "opaque").mkdir(mode=0o750)
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque/inside").write_bytes(b"in")
    (upper / "impure").mkdir()
    os.setxattr(upper / "impure", "trusted.overlay.impure", b"y")
    os.symlink("../file", upper / "bin/link")
    os.mkfifo(upper / "fifo", 0o640)
    os.mknod(upper / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(upper / "block", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    (upper / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name")
    deep = upper / "d" / ("n" * 120) / "deeper"
    deep.mkdir(parents=True)
    (deep / "long").write_bytes(b"long")
    os.chown(upper / "d", 1000, 1001)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(upper / "sock"))
    for path in sorted(upper.rglob("*"), reverse=True):  # children first: dirs keep theirs
        os.utime(path, ns=(NS, NS), follow_symlinks=False)
    return upper


def write(upper: Path, out: Path, compression: Any = "gzip") -> LayerDiff:
    with open(out, "wb") as f:
        return write_layer(upper, f, compression=compression)


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as tf:
        return tf.getmembers()


def tree(root: Path) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        xattrs = {k: os.getxattr(path, k, follow_symlinks=False)
                  for k in os.listxattr(path, follow_symlinks=False)
                  if not k.startswith("trusted.overlay.") or k == "trusted.overlay.opaque"}
        out[str(path.relative_to(root))] = (
            stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_uid, st.st_gid, st.st_rdev,
            None if whiteout else st.st_mtime_ns, xattrs,  # unpack leaves whiteouts' times
            path.read_bytes() if stat.S_ISREG(st.st_mode) else None,
            os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
            None if stat.S_ISDIR(st.st_mode) or whiteout else st.st_nlink)
    return out


def test_entries_as_docker_writes_them(tmp_path: Path) -> None:
    upper = make_upper(tmp_path)
    write(upper, tmp_path / "layer.tar", "none")
    got = {m.name: m for m in members(tmp_path / "layer.tar")}
    long = "d/" + "n" * 120
    assert list(got) == [  # sorted by the upper's names, each directory before its contents
        "bin", "bin/.wh.deleted-too", "bin/hard", "bin/link", "bin/ping", "block",
        os.fsdecode(b"caf\xe9"), "d", long, f"{long}/deeper", f"{long}/deeper/long",
        ".wh.deleted", "fifo", "file", "impure", "null", "opaque", "opaque/.wh..wh..opq",
        "opaque/inside"]
    assert "sock" not in got  # sockets are skipped
    assert got["opaque/.wh..wh..opq"].isreg() and got["opaque/.wh..wh..opq"].size == 0
    assert got["opaque/.wh..wh..opq"].mode == 0o750
    for whiteout in (".wh.deleted", "bin/.wh.deleted-too"):  # one inode, yet no hard link
        assert got[whiteout].isreg() and got[whiteout].size == 0 and got[whiteout].mode == 0o600
    # The hard link points at the first name in the walk's order.
    assert got["bin/hard"].isreg() and got["file"].islnk() and got["file"].linkname == "bin/hard"
    assert got["bin/link"].issym() and got["bin/link"].linkname == "../file"
    assert got["fifo"].isfifo() and got["fifo"].mode == 0o640
    assert got["null"].ischr() and (got["null"].devmajor, got["null"].devminor) == (1, 3)
    assert got["block"].isblk() and (got["block"].devmajor, got["block"].devminor) == (7, 0)
    assert got["bin/ping"].mode == 0o4755
    assert got["d"].uid == 1000 and got["d"].gid == 1001 and got["d"].uname == ""
    pax = got["bin/hard"].pax_headers
    assert pax["mtime"] == "1600000000.123456789"
    assert pax["SCHILY.xattr.user.text"] == "hello"
    assert got["bin/ping"].pax_headers["SCHILY.xattr.security.capability"].encode(
        "utf-8", "surrogateescape") == CAPABILITY
    assert not [k for m in got.values() for k in m.pax_headers if "trusted.overlay" in k]
    assert "atime" not in pax and "ctime" not in pax


def test_order_is_sorted_by_name_bytes(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    for name in ("b", "a.txt", "a", "B", "a/z", "a/y"):
        path = upper / name
        if name in ("a", "b"):
            path.mkdir()
        else:
            path.write_bytes(b"")
    write(upper, tmp_path / "layer.tar", "none")
    assert [m.name for m in members(tmp_path / "layer.tar")] == [
        "B", "a", "a/y", "a/z", "a.txt", "b"]


def test_unpack_gives_the_upper_back(tmp_path: Path) -> None:
    upper = make_upper(tmp_path)
    os.unlink(upper / "sock")
    for compression in ("gzip", "zstd", "none"):
        layer = write(upper, tmp_path / f"layer.{compression}", compression)
        with open(tmp_path / f"layer.{compression}", "rb") as f:
            assert layers.detect_compression(f.read(4)) == compression
        target = tmp_path / f"unpacked-{compression}"
        result = layers.unpack(tmp_path / f"layer.{compression}", target)
        assert (result.diff_id, result.compressed_digest) == (layer.diff_id, layer.digest)
        assert tree(target) == tree(upper)


def test_reproducible_and_compressions_agree(tmp_path: Path) -> None:
    upper = make_upper(tmp_path)
    diffs = {}
    for compression in ("gzip", "zstd", "none"):
        one = write(upper, tmp_path / "one", compression)
        os.utime(upper / "file", ns=(1, NS))  # atime is no part of a layer
        two = write(upper, tmp_path / "two", compression)
        assert one == two
        assert (tmp_path / "one").read_bytes() == (tmp_path / "two").read_bytes()
        data = (tmp_path / "one").read_bytes()
        assert one.size == len(data) and one.digest == "sha256:" + hashlib.sha256(
            data).hexdigest()
        diffs[compression] = one
    assert len({d.diff_id for d in diffs.values()}) == 1  # the same tar in each
    assert diffs["none"].digest == diffs["none"].diff_id
    assert diffs["gzip"].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert diffs["zstd"].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert diffs["none"].media_type == "application/vnd.oci.image.layer.v1.tar"
    write(upper, tmp_path / "gz", "gzip")
    header = (tmp_path / "gz").read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0" and not header[3] & 0x08  # mtime 0, no file name
    assert hashlib.sha256(gzip.decompress((tmp_path / "gz").read_bytes())).hexdigest() == \
        diffs["gzip"].diff_id.removeprefix("sha256:")


def test_opaque_root_and_empty_upper(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    write(upper, tmp_path / "empty.tar", "none")
    assert members(tmp_path / "empty.tar") == []
    layers.unpack(tmp_path / "empty.tar", tmp_path / "empty")
    os.setxattr(upper, "trusted.overlay.opaque", b"y")
    write(upper, tmp_path / "opaque.tar", "none")
    assert [m.name for m in members(tmp_path / "opaque.tar")] == [".wh..wh..opq"]


def test_refuses_redirects_and_metacopy(tmp_path: Path) -> None:
    for key in ("trusted.overlay.redirect", "trusted.overlay.metacopy"):
        upper = tmp_path / key
        (upper / "dir").mkdir(parents=True)
        os.setxattr(upper / "dir", key, b"/elsewhere")
        with pytest.raises(DiffError, match="redirect_dir or metacopy"):
            write(upper, tmp_path / "layer")
    with pytest.raises(DiffError, match="not a directory"):
        write(tmp_path / "layer", tmp_path / "other")
    with pytest.raises(DiffError, match="compression"):
        write(tmp_path, tmp_path / "other", "lz4")


def test_streams(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    upper.mkdir()
    with open(upper / "big", "wb") as f:
        f.truncate(64 << 20)  # sparse: cheap to make, 64 MiB to read
    tracemalloc.start()
    try:
        layer = write(upper, tmp_path / "layer.zst", "zstd")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert layer.size < 1 << 20


# -- commit_layer -------------------------------------------------------------------------------


def small_upper(root: Path) -> Path:
    upper = root / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/app.conf").write_bytes(b"conf")
    os.mknod(upper / "etc/old", stat.S_IFCHR, os.makedev(0, 0))
    return upper


def test_commit_on_an_imported_base(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "images") as store:
        base = import_layers(store, [io.BytesIO(BASE), io.BytesIO(TOP)], ref="base:1",
                             config={"Env": ["A=1"], "Cmd": ["sh"], "WorkingDir": "/app"})
        new = commit_layer(store, small_upper(tmp_path), base=base, ref="app:committed",
                           config_changes={"Cmd": ["/app/run"], "WorkingDir": None},
                           comment="c", created_by="sh")
        assert store.get("app:committed") == new and new.id != base.id
        assert new.layers[:2] == base.layers and len(new.layers) == 3
        assert new.config["config"] == {"Env": base.config["config"]["Env"],
                                        "Cmd": ["/app/run"]}
        assert new.config["rootfs"]["diff_ids"][:2] == base.config["rootfs"]["diff_ids"]
        assert new.config["history"][:2] == base.config["history"]
        assert set(new.config["history"][-1]) == {"created", "created_by", "comment"}
        assert "author" not in new.config
        merged_view = store.lower_dirs(new)[0]
        assert (merged_view / "etc/app.conf").read_bytes() == b"conf"
        old = os.lstat(merged_view / "etc/old")
        assert stat.S_ISCHR(old.st_mode) and old.st_rdev == 0
        manifest = json.loads(store.blobs.path(new.manifest_digest or "").read_bytes())
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["layers"][-1]["mediaType"].endswith("+gzip")


def test_commit_on_a_docker_manifest_and_from_scratch(tmp_path: Path) -> None:
    with ImageStore(tmp_path / "images") as store:
        built = build(store.blobs, [BASE], docker=True)
        base = store.register(built.manifest, refs=["docker:1"])
        new = commit_layer(store, small_upper(tmp_path), base=base, ref=None,
                           compression="zstd", author="me")
        assert new.refs == () and new.layers[0] == base.layers[0]
        manifest = json.loads(store.blobs.path(new.manifest_digest or "").read_bytes())
        assert [d["mediaType"] for d in manifest["layers"]] == [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd"]
        assert new.config["author"] == "me" and new.config["history"] == [
            {"created": new.config["created"], "author": "me"}]
        scratch = commit_layer(store, tmp_path / "upper", base=None, ref="scratch:1")
        assert len(scratch.layers) == 1 and scratch.config["os"] == "linux"
        assert (store.lower_dirs(scratch)[0] / "etc/app.conf").read_bytes() == b"conf"


def test_a_config_step_keeps_the_layers_and_records_an_empty_layer(tmp_path: Path) -> None:
    from composer.runtime.images.diff import commit_config

    with ImageStore(tmp_path / "images") as store:
        base = import_layers(store, [io.BytesIO(BASE)], ref="base:1", config={"Env": ["A=1"]})
        env = commit_config(store, base=base, config_changes={"Env": ["A=1", "B=2"]},
                            created_by="ENV B=2")
        assert env.layers == base.layers and env.id != base.id and env.refs == ()
        assert env.config["rootfs"] == base.config["rootfs"]
        assert env.config["config"]["Env"] == ["A=1", "B=2"]
        assert env.config["history"][-1] == {"created": env.config["created"],
                                             "created_by": "ENV B=2", "empty_layer": True}
        scratch = commit_config(store, base=None, ref="empty:1",
                                config_changes={"Cmd": ["/app"]})
        assert scratch.layers == () and store.get("empty:1") == scratch
        assert scratch.config["rootfs"] == {"type": "layers", "diff_ids": []}
