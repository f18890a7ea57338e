"""Container root filesystems on real overlayfs mounts, and the upper dir turned into a layer.

Images are made with ``archives.import_layers`` in an ImageStore under tmp_path. Every test
unmounts what it mounted in ``finally``, and an autouse fixture checks that no mount is left
under tmp_path (then detaches any, so one failure does not leak into the next tests).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from composer.runtime import rootfs
from composer.runtime.images import layers
from composer.runtime.images.archives import import_layers
from composer.runtime.images.diff import commit_layer, write_layer
from composer.runtime.images.store import Image, ImageStore

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting overlayfs needs root"),
]

MTIME = 1_600_000_000


def tar(*entries: tuple[str, Any], **owners: int) -> bytes:
    """A layer: (name, bytes) files, (name, None) directories, (name, "->target") symlinks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid = MTIME, owners.get("uid", 0), owners.get("gid", 0)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif isinstance(data, str):
                info.type, info.linkname = tarfile.SYMTYPE, data.removeprefix("->")
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


BOTTOM = tar(("./", None), ("etc/", None), ("etc/keep", b"v0"), ("etc/del", b"del"),
             ("etc/other", b"other"), ("x", b"x"), ("opt/", None), ("opt/a", b"a"),
             ("opt/b", b"b"), ("gone/", None), ("gone/f", b"f"), ("bin/", None),
             ("bin/tool", b"#!tool"), ("mv/", None), ("mv/in", b"in"))
MIDDLE = tar((".wh.x", b""), ("opt/.wh..wh..opq", b""), ("opt/c", b"c"), ("etc/keep", b"v1"))
TOP = tar(("y", b"y"), ("etc/new", b"new"), ("etc/link", "->keep"))


@pytest.fixture(autouse=True)
def no_mount_left(tmp_path: Path) -> Iterator[None]:
    yield
    left = rootfs.mounts_under(tmp_path)
    for point in reversed(left):  # so that a failed test does not leak into the next ones
        subprocess.run(["umount", "-l", str(point)], check=False)
    assert not left, f"mounts left under {tmp_path}: {left}"
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as s:
        yield s


def image(store: ImageStore, *tarballs: bytes, ref: str = "test/img:1") -> Image:
    return import_layers(store, [io.BytesIO(t) for t in tarballs], ref=ref)


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """What a container sees below ``root`` (the root itself excluded)."""
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what: Any = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                what = st.st_rdev
            else:
                what = None
            xattrs = {k: os.getxattr(path, k, follow_symlinks=False)
                      for k in sorted(os.listxattr(path, follow_symlinks=False))}
            out[os.path.relpath(path, root)] = (
                kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what, xattrs,
                st.st_mtime_ns, None if stat.S_ISDIR(st.st_mode) else st.st_nlink)
    return out


def read(path: Path) -> bytes:
    return path.read_bytes()


# -- mounting -----------------------------------------------------------------------------------


def test_three_layers_merged_view_and_clean_unmount(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, BOTTOM, MIDDLE, TOP)
    cdir = tmp_path / "containers" / "c1"
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        assert merged == cdir / "merged" and rootfs.is_mounted(merged)
        assert not (merged / "x").exists()  # whited out by the middle layer
        assert sorted(os.listdir(merged / "opt")) == ["c"]  # opaque: a and b hidden
        assert read(merged / "etc/keep") == b"v1" and read(merged / "y") == b"y"
        assert os.readlink(merged / "etc/link") == "keep" and read(merged / "etc/link") == b"v1"
        assert stat.S_IMODE(os.stat(merged).st_mode) == 0o755  # the image's root, not 0700
        # Writes land in upper, never in a layer.
        (merged / "new").write_bytes(b"written")
        os.unlink(merged / "etc/del")
        assert read(cdir / "upper/new") == b"written"
        whiteout = os.lstat(cdir / "upper/etc/del")
        assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
        assert all(not (lower / "new").exists() for lower in store.lower_dirs(img))
        assert read(store.lower_dirs(img)[-1] / "etc/del") == b"del"
        # Mounting again is a no-op that returns the same path: one mount, not two.
        assert rootfs.mount(cdir, store.lower_dirs(img)) == merged
        assert rootfs.mounts_under(tmp_path) == [merged]
    finally:
        rootfs.unmount(cdir)
    assert not rootfs.is_mounted(cdir / "merged")
    assert rootfs.mounts_under(tmp_path) == []
    assert os.listdir(cdir / "merged") == []
    assert read(cdir / "upper/new") == b"written"  # the container's changes are kept
    rootfs.unmount(cdir)  # not mounted: success
    try:  # a remount shows the kept changes again
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        assert read(merged / "new") == b"written" and not (merged / "etc/del").exists()
    finally:
        rootfs.remove(cdir)
    assert not cdir.exists()
    rootfs.remove(cdir)  # already gone: success


def test_130_layers_under_a_long_state_root(store: ImageStore, tmp_path: Path) -> None:
    count = 130
    tarballs = [tar((f"f{i}", f"layer {i}".encode()), ("shared", f"{i}".encode()))
                for i in range(count)]
    img = image(store, *tarballs)
    cdir = tmp_path / ("x" * 150) / "containers" / ("c" * 64)
    absolute = ":".join(f"{cdir}/l/{i}" for i in range(count))
    assert len(absolute) > os.sysconf("SC_PAGESIZE")  # even the short names do not fit
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        assert rootfs.is_mounted(merged)
        for i in range(count):
            assert read(merged / f"f{i}") == f"layer {i}".encode()
        assert read(merged / "shared") == f"{count - 1}".encode()  # the top layer wins
        (merged / "written").write_bytes(b"w")
        assert read(cdir / "upper/written") == b"w"
        assert rootfs.mount(cdir, store.lower_dirs(img)) == merged
    finally:
        rootfs.remove(cdir)
    assert rootfs.mounts_under(tmp_path) == []


def test_single_layer_image_is_an_overlay_too(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, tar(("only", b"1")))
    cdir = tmp_path / "c"
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        assert read(merged / "only") == b"1"
        (merged / "more").write_bytes(b"2")
        assert read(cdir / "upper/more") == b"2"
    finally:
        rootfs.remove(cdir)


def test_no_layer_at_all(tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    try:
        merged = rootfs.mount(cdir, [])  # a builder's first step FROM scratch
        (merged / "first").write_bytes(b"1")
        assert os.listdir(merged) == ["first"] and read(cdir / "upper/first") == b"1"
    finally:
        rootfs.remove(cdir)


def test_concurrent_mounts_mount_once(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, BOTTOM, TOP)
    cdir = tmp_path / "c"
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: rootfs.mount(cdir, store.lower_dirs(img)),
                                    range(8)))
        assert set(results) == {cdir / "merged"}
        lines = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if f" {cdir}/merged " in line]
        assert len(lines) == 1
    finally:
        rootfs.remove(cdir)


def test_read_only(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, BOTTOM, TOP)
    cdir = tmp_path / "c"
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img), read_only=True)
        assert read(merged / "y") == b"y"
        with pytest.raises(OSError) as info:
            (merged / "new").write_bytes(b"no")
        assert info.value.errno == errno.EROFS
        assert rootfs.mount(cdir, store.lower_dirs(img), read_only=True) == merged
        with pytest.raises(rootfs.RootfsError, match="read-only"):
            rootfs.mount(cdir, store.lower_dirs(img))
    finally:
        rootfs.unmount(cdir)
    assert os.listdir(cdir / "upper") == []


def test_busy_mount_is_detached(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, BOTTOM)
    cdir = tmp_path / "c"
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        holder = subprocess.Popen(["sleep", "300"], cwd=merged)  # its cwd pins the mount
        try:
            rootfs.unmount(cdir)
            assert not rootfs.is_mounted(merged)
        finally:
            holder.kill()
            holder.wait()
    finally:
        rootfs.remove(cdir)


def test_remove_refuses_while_something_is_mounted_inside(tmp_path: Path) -> None:
    cdir = tmp_path / "c"
    inner = cdir / "upper" / "vol"
    inner.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    try:
        (inner / "data").write_bytes(b"keep me")
        with pytest.raises(rootfs.RootfsError, match="still mounted"):
            rootfs.remove(cdir)
        assert read(inner / "data") == b"keep me"
    finally:
        subprocess.run(["umount", str(inner)], check=True)
    rootfs.remove(cdir)
    assert not cdir.exists()


def test_mountinfo_escapes(tmp_path: Path) -> None:
    point = tmp_path / "with space\tand tab"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
    try:
        assert rootfs.is_mounted(point)
        assert rootfs.mounts_under(tmp_path) == [point]
        assert not rootfs.is_mounted(tmp_path)
        assert rootfs.mounts_under(tmp_path / "with") == []  # a prefix of a name is not under
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert not rootfs.is_mounted(point)


def test_check_state_root(tmp_path: Path, store: ImageStore) -> None:
    rootfs.check_state_root(tmp_path)
    rootfs.check_state_root(tmp_path / "not" / "yet")  # judged by its existing parent
    fast = tmp_path / "tmpfs"
    fast.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(fast)], check=True)
    try:
        with pytest.raises(rootfs.RootfsError, match=r"tmpfs.*COMPOSER_ROOT"):
            rootfs.check_state_root(fast)
        with pytest.raises(rootfs.RootfsError, match="tmpfs"):
            rootfs.check_state_root(fast / "composer")
    finally:
        subprocess.run(["umount", str(fast)], check=True)
    img = image(store, TOP)
    cdir = tmp_path / "c"
    try:
        merged = rootfs.mount(cdir, store.lower_dirs(img))
        with pytest.raises(rootfs.RootfsError, match="overlayfs"):
            rootfs.check_state_root(merged / "var/lib/composer")
    finally:
        rootfs.remove(cdir)


# -- the upper dir as a layer ---------------------------------------------------------------------


def change(merged: Path) -> None:
    """Every kind of change a container makes."""
    (merged / "added").write_bytes(b"added")
    os.setxattr(merged / "added", "user.x", b"attr")
    os.utime(merged / "added", ns=(MTIME * 10**9, MTIME * 10**9 + 123_456_789))
    with open(merged / "etc/keep", "ab") as f:
        f.write(b" modified")
    os.unlink(merged / "etc/del")  # -> whiteout
    shutil.rmtree(merged / "opt")  # -> opaque once recreated
    (merged / "opt").mkdir(mode=0o750)
    (merged / "opt/fresh").write_bytes(b"fresh")
    shutil.rmtree(merged / "gone")  # -> a whiteout of a directory
    os.chmod(merged / "bin/tool", 0o4755)  # a full copy up: metacopy is off
    os.chown(merged / "etc/other", 1000, 1000)
    os.symlink("etc/keep", merged / "symlink")
    os.link(merged / "added", merged / "hardlink")
    os.mkfifo(merged / "fifo", 0o640)
    os.mknod(merged / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.setxattr(merged / "etc", "user.dir", b"d")
    with pytest.raises(OSError) as info:  # redirect_dir=off: a lower dir cannot be renamed
        os.rename(merged / "mv", merged / "moved")
    assert info.value.errno == errno.EXDEV


def test_upper_dir_round_trips_as_a_layer(store: ImageStore, tmp_path: Path) -> None:
    img = image(store, BOTTOM, MIDDLE, TOP)
    lowers = store.lower_dirs(img)
    first, second = tmp_path / "c1", tmp_path / "c2"
    try:
        change(rootfs.mount(first, lowers))
        seen = snapshot(first / "merged")
    finally:
        rootfs.unmount(first)
    with open(tmp_path / "layer.tar.gz", "wb") as out:
        layer = write_layer(first / "upper", out)
    with tarfile.open(tmp_path / "layer.tar.gz") as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert {n for n in members if ".wh." in n} == {"etc/.wh.del", ".wh.gone",
                                                   "opt/.wh..wh..opq"}
    assert members["hardlink"].islnk() and members["hardlink"].linkname == "added"
    assert members["added"].pax_headers["SCHILY.xattr.user.x"] == "attr"
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay")
                   for m in members.values() for k in m.pax_headers)
    with open(tmp_path / "again.tar.gz", "wb") as out:
        assert write_layer(first / "upper", out) == layer  # reproducible
    unpacked = tmp_path / "unpacked"
    with open(tmp_path / "layer.tar.gz", "rb") as f:
        result = layers.unpack(f, unpacked)
    assert (result.diff_id, result.compressed_digest) == (layer.diff_id, layer.digest)
    try:
        merged = rootfs.mount(second, [unpacked, *lowers])
        assert snapshot(merged) == seen
    finally:
        rootfs.remove(second)
        rootfs.remove(first)


def test_commit_layer_end_to_end(store: ImageStore, tmp_path: Path) -> None:
    base = image(store, BOTTOM, MIDDLE, TOP)
    cdir = tmp_path / "c"
    try:
        change(rootfs.mount(cdir, store.lower_dirs(base)))
        seen = snapshot(cdir / "merged")
    finally:
        rootfs.unmount(cdir)
    new = commit_layer(store, cdir / "upper", base=base, ref="test/committed:1",
                       config_changes={"Cmd": ["/bin/tool"]}, comment="changed things",
                       author="Tester <t@example.com>", created_by="/bin/sh -c change")
    assert store.get("test/committed:1") == new
    assert new.layers[:-1] == base.layers and len(new.layers) == len(base.layers) + 1
    history = new.config["history"]
    assert history[:-1] == base.config["history"]
    assert history[-1]["comment"] == "changed things"
    assert history[-1]["author"] == new.config["author"] == "Tester <t@example.com>"
    assert history[-1]["created_by"] == "/bin/sh -c change"
    assert new.config["config"]["Cmd"] == ["/bin/tool"]
    assert new.config["config"]["Env"] == base.config["config"]["Env"]
    lowers: Sequence[Path] = store.lower_dirs(new)
    assert all(p.is_dir() for p in lowers)
    other = tmp_path / "from-committed"
    try:
        assert snapshot(rootfs.mount(other, lowers)) == seen
    finally:
        rootfs.remove(other)
        rootfs.remove(cdir)
