"""The image store: registering manifests, lookups, lower dirs, Docker's rm/prune words, gc.

Images are built here: layer tars with tarfile, gzip'd (or zstd'd, or left plain), a config
naming their diff ids, and an OCI or Docker schema 2 manifest, all written into the BlobStore.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from composer.runtime.images import layers as layers_module
from composer.runtime.images.blobs import BlobStore
from composer.runtime.images.platform import Platform
from composer.runtime.images.store import Image, ImageStore, ImageStoreError
from composer.state.store import chain_id

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking a layer needs root"),
]

ROOT = Path(__file__).resolve().parents[2]
MTIME = 1_600_000_000
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes | None]) -> bytes:
    """A layer: name -> contents (None for a directory; ".wh." names are whiteouts)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


@dataclass
class Built:
    manifest: bytes
    id: str
    manifest_digest: str
    diff_ids: list[str]
    blobs: list[str]


def build(blobs: BlobStore, tars: Sequence[bytes], *, docker: bool = False,
          compress: Callable[[bytes], bytes] = gz, media: str | None = None,
          diff_ids: Sequence[str] | None = None, label: str = "x",
          created: str = "2024-01-02T03:04:05Z") -> Built:
    """Store the layers and a config; return the manifest (not stored: register does that)."""
    layers: list[dict[str, Any]] = []
    for tar in tars:
        blob = compress(tar)
        blobs.write_bytes(blob)
        layers.append({"mediaType": media or (DOCKER_LAYER if docker else OCI_LAYER_GZIP),
                       "digest": sha(blob), "size": len(blob)})
    diffs = list(diff_ids) if diff_ids is not None else [sha(t) for t in tars]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {"Env": ["PATH=/bin"], "Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": diffs},
    }).encode()
    blobs.write_bytes(config)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": ("application/vnd.docker.distribution.manifest.v2+json" if docker
                      else "application/vnd.oci.image.manifest.v1+json"),
        "config": {"mediaType": ("application/vnd.docker.container.image.v1+json" if docker
                                 else "application/vnd.oci.image.config.v1+json"),
                   "digest": sha(config), "size": len(config)},
        "layers": layers,
    }
    raw = json.dumps(manifest, indent=2).encode()
    return Built(raw, sha(config), sha(raw), diffs, [d["digest"] for d in layers])


BASE = layer_tar({"etc/": None, "etc/os-release": b"ID=test\n", "etc/old": b"old",
                  "var/": None, "var/cache": b"cache", "bin/": None, "bin/sh": b"#!sh"})
TOP = layer_tar({"etc/.wh.old": b"", "var/.wh..wh..opq": b"", "var/new": b"new",
                 "app/": None, "app/main": b"main"})
OTHER = layer_tar({"srv/": None, "srv/data": b"other"})


@pytest.fixture
def images(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "images") as s:
        yield s


@pytest.fixture
def unpacks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every layer unpack the store does."""
    calls: list[Path] = []
    real = layers_module.unpack

    def counting(source: Any, target: Any, **kw: Any) -> Any:
        calls.append(Path(target))
        return real(source, target, **kw)

    monkeypatch.setattr(layers_module, "unpack", counting)
    return calls


def layer_dirs(images: ImageStore) -> list[str]:
    return sorted(os.listdir(images.root / "layers"))


# -- registering and looking up -----------------------------------------------------------------


def test_register_oci_manifest_then_get_by_ref_id_and_prefix(images: ImageStore) -> None:
    built = build(images.blobs, [BASE, TOP])
    image = images.register(built.manifest, refs=["app", "ghcr.io/org/app:1.0"])
    assert image.id == built.id
    assert image.manifest_digest == built.manifest_digest
    assert image.refs == ("docker.io/library/app:latest", "ghcr.io/org/app:1.0")
    assert image.layers == (built.diff_ids[0], chain_id(built.diff_ids[0], built.diff_ids[1]))
    assert image.config["config"]["Labels"] == {"test": "x"}
    assert image.created == 1704164645.0  # the config's created, not the registration time
    assert images.blobs.has(built.manifest_digest)  # the manifest is stored as a blob
    hex_id = built.id.removeprefix("sha256:")
    for name in ["app", "app:latest", "docker.io/library/app", "ghcr.io/org/app:1.0",
                 built.id, hex_id, hex_id[:12], "sha256:" + hex_id[:12]]:
        assert images.get(name) == image, name
    assert images.get("app:2") is None
    assert images.get(hex_id[:11]) is None  # too short for a prefix: read as a repository name
    assert images.get("sha256:" + "0" * 64) is None
    assert images.list() == [image]


def test_docker_schema2_zstd_plain_and_foreign_layers(images: ImageStore) -> None:
    docker = images.register(build(images.blobs, [BASE], docker=True).manifest, refs=["d"])
    cctx = zstandard.ZstdCompressor()
    zstd = images.register(build(images.blobs, [OTHER], compress=cctx.compress,
                                 media="application/vnd.oci.image.layer.v1.tar+zstd").manifest)
    plain = images.register(build(images.blobs, [TOP], compress=lambda b: b,
                                  media="application/vnd.oci.image.layer.v1.tar").manifest)
    foreign = images.register(build(
        images.blobs, [OTHER], media="application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        label="foreign").manifest)
    assert (images.lower_dirs(docker)[0] / "etc/os-release").read_bytes() == b"ID=test\n"
    assert (images.lower_dirs(zstd)[0] / "srv/data").read_bytes() == b"other"
    assert (images.lower_dirs(plain)[0] / "app/main").read_bytes() == b"main"
    assert images.lower_dirs(foreign) == images.lower_dirs(zstd)  # same diff id, same dir
    assert len(images.list()) == 4


def test_lower_dirs_top_first_with_files_and_whiteouts(images: ImageStore) -> None:
    image = images.register(build(images.blobs, [BASE, TOP]).manifest)
    top, base = images.lower_dirs(image)
    assert top == images.layer_path(image.layers[1]) == images.root / "layers" / (
        image.layers[1].removeprefix("sha256:"))
    assert base == images.layer_path(image.layers[0])
    assert (base / "etc/old").read_bytes() == b"old"
    assert (base / "bin/sh").read_bytes() == b"#!sh"
    assert (top / "app/main").read_bytes() == b"main"
    whiteout = os.lstat(top / "etc/old")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == os.makedev(0, 0)
    assert os.getxattr(top / "var", "trusted.overlay.opaque") == b"y"
    assert not (top / "etc/.wh.old").exists() and not (top / "etc/os-release").exists()


def test_register_is_idempotent(images: ImageStore, unpacks: list[Path]) -> None:
    built = build(images.blobs, [BASE, TOP])
    first = images.register(built.manifest, refs=["app:1"])
    assert len(unpacks) == 2

    def snapshot() -> Any:
        dirs = {n: os.stat(images.root / "layers" / n).st_ino for n in layer_dirs(images)}
        return images.db.images(), images.db.layers(), images.blobs.digests(), dirs

    before = snapshot()
    assert images.register(built.manifest, refs=["app:1"]) == first
    assert images.register(built.manifest) == first  # no refs given: the old ones stay
    assert snapshot() == before
    assert len(unpacks) == 2  # nothing unpacked again


def test_diff_id_mismatch_is_refused_and_nothing_registered(images: ImageStore) -> None:
    wrong = sha(b"not the top layer")
    built = build(images.blobs, [BASE, TOP], diff_ids=[sha(BASE), wrong])
    with pytest.raises(ImageStoreError, match=f"has diff id {sha(TOP)}, the config says {wrong}"):
        images.register(built.manifest, refs=["app"])
    assert images.db.images() == [] and images.db.layers() == []
    assert images.get("app") is None
    assert not images.blobs.has(built.manifest_digest)
    # The good base layer stayed on disk (another process may have been about to use it); the
    # bad one left nothing, not even its temporary directory. gc takes the base away.
    assert layer_dirs(images) == [sha(BASE).removeprefix("sha256:")]
    assert images.gc() == (3, 1)  # config and two layer blobs; the base layer
    assert layer_dirs(images) == []


def test_a_second_blob_for_an_unpacked_layer_must_hold_the_same_tar(images: ImageStore) -> None:
    images.register(build(images.blobs, [BASE]).manifest)
    # The base is unpacked already, so this image's blob is not unpacked: it is still checked.
    liar = build(images.blobs, [OTHER], diff_ids=[sha(BASE)], label="liar")
    with pytest.raises(ImageStoreError, match="has diff id"):
        images.register(liar.manifest)
    assert [row.id for row in images.db.images()] != [liar.id]
    assert len(images.list()) == 1
    # A recompressed copy of the same tar is fine.
    again = build(images.blobs, [BASE], compress=lambda b: gzip.compress(b, 1, mtime=0),
                  label="recompressed")
    assert images.register(again.manifest).layers == (sha(BASE),)


def test_images_sharing_a_base_layer_unpack_it_once(images: ImageStore,
                                                    unpacks: list[Path]) -> None:
    one = images.register(build(images.blobs, [BASE, TOP]).manifest, refs=["one"])
    two = images.register(build(images.blobs, [BASE, OTHER]).manifest, refs=["two"])
    assert len(unpacks) == 3
    assert one.layers[0] == two.layers[0]
    assert images.lower_dirs(one)[-1] == images.lower_dirs(two)[-1]
    assert len(layer_dirs(images)) == 3
    # Unpacked under a temporary name, then renamed into place.
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in unpacks)


def test_losing_the_rename_race_keeps_the_winners_layer(images: ImageStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = layers_module.unpack
    winner = images.layer_path(sha(BASE))

    def racing(source: Any, target: Any, **kw: Any) -> Any:
        result = real(source, target, **kw)
        # Meanwhile another process renames its copy of the same layer into place.
        real(io.BytesIO(gz(BASE)), winner)
        (winner / "winner").write_bytes(b"")
        return result

    monkeypatch.setattr(layers_module, "unpack", racing)
    image = images.register(build(images.blobs, [BASE]).manifest)
    assert images.lower_dirs(image) == [winner] and (winner / "winner").exists()
    assert layer_dirs(images) == [winner.name]  # our copy was dropped, nothing left behind


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m.update(mediaType="application/vnd.oci.image.index.v1+json"), "image index"),
    (lambda m: m.update(schemaVersion=1), "unsupported manifest"),
    (lambda m: m["layers"][0].update(mediaType="application/vnd.oci.image.layer.v1.tar+enc"),
     "unsupported media type"),
    (lambda m: m["layers"][0].update(digest=sha(b"missing")), "is not in the store"),
    (lambda m: m["layers"][0].update(size=1), "the manifest says 1 bytes"),
    (lambda m: m["layers"].pop(), "lists 1 diff ids for 0 layers"),
    (lambda m: m["config"].update(digest="sha256:abc"), "malformed digest"),
])
def test_bad_manifests_are_refused(images: ImageStore, change: Callable[[dict[str, Any]], None],
                                   message: str) -> None:
    manifest = json.loads(build(images.blobs, [BASE]).manifest)
    change(manifest)
    with pytest.raises(ImageStoreError, match=message):
        images.register(json.dumps(manifest).encode(), refs=["app"])
    assert images.db.images() == []


def test_tag_moves_a_ref_and_refuses_digests(images: ImageStore) -> None:
    one = images.register(build(images.blobs, [BASE]).manifest, refs=["app:1"])
    two = images.register(build(images.blobs, [OTHER]).manifest)
    assert images.tag(two.id, "app:1").refs == ("docker.io/library/app:1",)
    assert images.get("app:1") == images.get(two.id)
    assert images.get(one.id) is not None and images.get(one.id).refs == ()  # type: ignore[union-attr]
    assert images.tag("app:1", "quay.io/x/y").refs == ("docker.io/library/app:1",
                                                        "quay.io/x/y:latest")
    with pytest.raises(ImageStoreError, match="digest reference"):
        images.tag("app:1", "app@" + sha(b"m"))
    with pytest.raises(ImageStoreError, match="No such image: nope"):
        images.tag("nope", "app:2")


# -- remove, prune, gc --------------------------------------------------------------------------


def short(image: Image) -> str:
    return image.id.removeprefix("sha256:")[:12]


def test_remove_untags_then_deletes_in_dockers_words(images: ImageStore) -> None:
    built = build(images.blobs, [BASE, TOP])
    image = images.register(built.manifest, refs=["app:1", "app:2"])
    assert images.remove("app:1") == ["Untagged: app:1"]
    assert images.get(image.id) is not None
    assert images.remove("app:2") == [
        "Untagged: app:2", f"Deleted: {image.id}", f"Deleted: {image.layers[1]}",
        f"Deleted: {image.layers[0]}"]
    assert images.list() == [] and layer_dirs(images) == [] and images.db.layers() == []
    assert images.blobs.digests() == set()  # manifest, config and layer blobs went too
    with pytest.raises(ImageStoreError, match="No such image: app:2"):
        images.remove("app:2")


def test_remove_by_id_and_digest_refs(images: ImageStore) -> None:
    built = build(images.blobs, [BASE])
    pinned = f"app@{built.manifest_digest}"
    image = images.register(built.manifest, refs=["app:1", pinned, "other:1"])
    with pytest.raises(ImageStoreError, match=f"unable to delete {short(image)} \\(must be "
                                              "forced\\) - image is referenced in multiple"):
        images.remove(image.id)
    # The last tag of a repository takes that repository's digest refs along.
    assert images.remove("app:1") == ["Untagged: app:1", f"Untagged: {pinned}"]
    assert images.get(image.id).refs == ("docker.io/library/other:1",)  # type: ignore[union-attr]
    images.tag("other:1", "other:2")
    assert images.remove(short(image), force=True) == [
        "Untagged: other:1", "Untagged: other:2", f"Deleted: {image.id}",
        f"Deleted: {image.layers[0]}"]
    # By id with a single ref, no force needed. (The blobs went with the image: store again.)
    again = images.register(build(images.blobs, [BASE]).manifest, refs=["app:1"])
    assert images.remove(again.id)[:2] == ["Untagged: app:1", f"Deleted: {again.id}"]


def test_an_image_a_container_uses_is_never_deleted(images: ImageStore) -> None:
    image = images.register(build(images.blobs, [BASE]).manifest, refs=["app:1"])
    used = {image.id}.__contains__
    for force in (False, True):
        with pytest.raises(ImageStoreError, match=f"unable to delete {short(image)} \\(cannot be "
                                                  "forced\\) - image is being used"):
            images.remove(image.id, force=force, in_use=used)
    with pytest.raises(ImageStoreError, match='remove repository reference "app:1" \\(must '
                                              f"force\\) - a container is using .*{short(image)}"):
        images.remove("app:1", in_use=used)
    # Forced, the ref goes, and the image stays, dangling, for its container.
    assert images.remove("app:1", force=True, in_use=used) == ["Untagged: app:1"]
    assert images.get(image.id) is not None and images.get(image.id).refs == ()  # type: ignore[union-attr]
    assert images.prune(all=True, in_use=used) == []
    assert images.get(image.id) is not None and images.lower_dirs(image)[0].is_dir()


def test_prune_dangling_then_all(images: ImageStore) -> None:
    tagged = images.register(build(images.blobs, [BASE, TOP]).manifest, refs=["app"])
    dangling = images.register(build(images.blobs, [BASE, OTHER]).manifest)
    assert images.prune() == [f"Deleted: {dangling.id}", f"Deleted: {dangling.layers[1]}"]
    assert [i.id for i in images.list()] == [tagged.id]
    assert all(p.is_dir() for p in images.lower_dirs(tagged))  # the shared base stayed
    assert images.prune() == []
    assert images.prune(all=True) == [
        "Untagged: app:latest", f"Deleted: {tagged.id}", f"Deleted: {tagged.layers[1]}",
        f"Deleted: {tagged.layers[0]}"]
    assert images.list() == [] and layer_dirs(images) == [] and images.blobs.digests() == set()


def test_gc_removes_what_no_image_uses_and_nothing_another_uses(images: ImageStore) -> None:
    one = images.register(build(images.blobs, [BASE, TOP]).manifest, refs=["one"])
    two = images.register(build(images.blobs, [BASE, OTHER]).manifest, refs=["two"])
    assert images.gc() == (0, 0)
    orphan = images.blobs.write_bytes(b"orphan")
    (images.root / "layers" / ("f" * 64)).mkdir()
    (images.root / "layers" / ".dead.123.tmp").mkdir()  # an interrupted unpack
    images.db.remove_image(one.id)  # rows gone, files left: what a crash leaves
    assert images.gc() == (4, 2)  # one's manifest, config, top blob + orphan; top + stray dir
    assert not images.blobs.has(orphan) and not images.blobs.has(one.id)
    assert layer_dirs(images) == sorted(c.removeprefix("sha256:") for c in two.layers)
    assert all(images.blobs.has(d) for d in [two.id, two.manifest_digest or ""])
    assert (images.lower_dirs(two)[0] / "srv/data").read_bytes() == b"other"
    assert images.gc() == (0, 0)


# -- import, concurrency ------------------------------------------------------------------------


def test_import_rootfs_then_get(images: ImageStore, tmp_path: Path) -> None:
    rootfs = layer_tar({"bin/": None, "bin/sh": b"#!sh", "etc/": None, "etc/hostname": b"x"})
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gz(rootfs))
    image = images.import_rootfs(path, ref="imported:1", config={"Cmd": ["/bin/sh"]})
    assert images.get("imported:1") == image
    system, arch = Platform.host().os, Platform.host().architecture
    assert (image.config["os"], image.config["architecture"]) == (system, arch)
    assert image.config["rootfs"] == {"type": "layers", "diff_ids": [sha(rootfs)]}
    assert image.config["config"]["Cmd"] == ["/bin/sh"]
    assert image.config["config"]["Env"][0].startswith("PATH=/usr/local/sbin:")
    assert image.config["created"].endswith("Z")
    assert (images.lower_dirs(image)[0] / "bin/sh").read_bytes() == b"#!sh"
    manifest = json.loads(images.blobs.path(image.manifest_digest or "").read_bytes())
    assert manifest["layers"][0]["mediaType"] == OCI_LAYER_GZIP
    # A plain tar from a stream, with its own PATH and no ref: a dangling image.
    plain = images.import_rootfs(io.BytesIO(rootfs), config={"Env": ["PATH=/bin"]})
    assert plain.refs == () and plain.layers == image.layers
    assert plain.config["config"]["Env"] == ["PATH=/bin"]
    assert images.get(plain.id) == plain
    with pytest.raises(ImageStoreError):
        images.import_rootfs(io.BytesIO(b"not a tarball" * 100))


CHILD = """
import sys
from composer.runtime.images.store import ImageStore
root, manifest, ref = sys.argv[1:]
with ImageStore(root) as s:
    print(s.register(open(manifest, "rb").read(), refs=[ref]).id)
"""


def test_two_processes_register_images_sharing_layers(tmp_path: Path) -> None:
    root = tmp_path / "images"
    big = layer_tar({f"usr/lib/f{i}": bytes(200) for i in range(300)})
    with ImageStore(root) as s:
        one = build(s.blobs, [big, BASE, TOP])
        two = build(s.blobs, [big, BASE, OTHER])
    for n, built in enumerate([one, two]):
        (tmp_path / f"m{n}").write_bytes(built.manifest)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(root), str(tmp_path / f"m{n}"),
                               f"app:{n}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, cwd=ROOT) for n in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [o[0].decode().strip() for o in outputs] == [one.id, two.id]
    with ImageStore(root) as s:
        a, b = s.get("app:0"), s.get("app:1")
        assert a is not None and b is not None
        assert a.layers[:2] == b.layers[:2]
        assert len(s.db.layers()) == 4
        assert layer_dirs(s) == sorted({c.removeprefix("sha256:") for c in a.layers + b.layers})
        assert (s.lower_dirs(a)[-1] / "usr/lib/f299").stat().st_size == 200
        assert (s.lower_dirs(b)[0] / "srv/data").read_bytes() == b"other"
