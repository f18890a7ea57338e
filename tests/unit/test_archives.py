"""Image archives: docker save and OCI layout round trips, skopeo's archives, corruption.

The round trip property: saving and loading into a fresh store gives the same image ids
(config digests), the same diff ids, and with the OCI format the same manifest digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.runtime.images.archives import ArchiveError, load, save
from composer.runtime.images.platform import Platform
from composer.runtime.images.store import Image, ImageStore, ImageStoreError
from tests.skopeo import run_skopeo
from tests.unit.test_image_store import BASE, OTHER, TOP, build, layer_tar, sha

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="unpacking a layer needs root"),
]

SKOPEO = "/usr/bin/skopeo"


@pytest.fixture
def source(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "source") as s:
        yield s


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ImageStore]:
    with ImageStore(tmp_path / "target") as s:
        yield s


def two_images(store: ImageStore) -> tuple[Image, Image]:
    """Two images sharing their base layer, one with two refs."""
    one = store.register(build(store.blobs, [BASE, TOP]).manifest, refs=["app:1", "app:one"])
    two = store.register(build(store.blobs, [BASE, OTHER], docker=True).manifest,
                         refs=["ghcr.io/org/two:2"])
    return one, two


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        return {m.name: (tf.extractfile(m) or io.BytesIO()).read() for m in tf if m.isfile()}


def archive(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, to in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, to
            tf.addfile(info)
    return buf.getvalue()


def diff_ids(image: Image) -> list[str]:
    return list(image.config["rootfs"]["diff_ids"])


def test_docker_save_then_load_gives_the_same_images(source: ImageStore, target: ImageStore,
                                                     tmp_path: Path) -> None:
    one, two = two_images(source)
    path = tmp_path / "images.tar"
    save(source, ["app:1", "app:one", "ghcr.io/org/two:2"], path)
    files = members(path.read_bytes())
    manifest = json.loads(files["manifest.json"])
    hex_one, hex_two = one.id.removeprefix("sha256:"), two.id.removeprefix("sha256:")
    assert manifest == [
        {"Config": f"{hex_one}.json", "RepoTags": ["app:1", "app:one"],
         "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids(one)]},
        {"Config": f"{hex_two}.json", "RepoTags": ["ghcr.io/org/two:2"],
         "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in diff_ids(two)]},
    ]
    # Layers are uncompressed tars, each exactly the bytes its diff id covers; the shared
    # base is written once.
    layer_files = {n: d for n, d in files.items() if n.endswith("/layer.tar")}
    assert len(layer_files) == 3
    for name, data in layer_files.items():
        assert "sha256:" + hashlib.sha256(data).hexdigest() == "sha256:" + name.split("/")[0]
    assert sha(files[f"{hex_one}.json"]) == one.id

    loaded = load(target, path)
    assert [i.id for i in loaded] == [one.id, two.id]
    assert [i.refs for i in loaded] == [one.refs, two.refs]
    assert [diff_ids(i) for i in loaded] == [diff_ids(one), diff_ids(two)]
    assert [i.layers for i in loaded] == [one.layers, two.layers]
    assert (target.lower_dirs(loaded[0])[0] / "app/main").read_bytes() == b"main"
    assert (target.lower_dirs(loaded[1])[0] / "srv/data").read_bytes() == b"other"
    assert load(target, path) == loaded  # loading again changes nothing


def test_oci_save_then_load_keeps_ids_and_manifest_digests(source: ImageStore,
                                                           target: ImageStore) -> None:
    one, two = two_images(source)
    buf = io.BytesIO()
    save(source, ["app:1", "app:one", two.id], buf, format="oci")
    files = members(buf.getvalue())
    index = json.loads(files["index.json"])
    assert [(d["digest"], d.get("annotations")) for d in index["manifests"]] == [
        (one.manifest_digest, {"io.containerd.image.name": "docker.io/library/app:1",
                               "org.opencontainers.image.ref.name": "1"}),
        (one.manifest_digest, {"io.containerd.image.name": "docker.io/library/app:one",
                               "org.opencontainers.image.ref.name": "one"}),
        (two.manifest_digest, None),  # saved by id: no ref, as docker save does
    ]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            assert sha(data) == "sha256:" + name.rsplit("/", 1)[1]

    buf.seek(0)
    loaded = load(target, buf)
    assert [(i.id, i.manifest_digest) for i in loaded] == [
        (one.id, one.manifest_digest), (two.id, two.manifest_digest)]
    assert loaded[0].refs == one.refs and loaded[1].refs == ()
    assert [i.layers for i in loaded] == [one.layers, two.layers]


def test_a_gzipped_docker_archive_with_symlinked_layers_loads(target: ImageStore) -> None:
    # What older Dockers write: legacy layer directories, a layer shared through a symlink,
    # a repositories file; gzip'd as people ship them.
    config = json.dumps({"os": "linux", "architecture": "amd64",
                         "rootfs": {"type": "layers", "diff_ids": [sha(BASE)]}}).encode()
    config2 = json.dumps({"os": "linux", "architecture": "amd64", "config": {"User": "1"},
                          "rootfs": {"type": "layers", "diff_ids": [sha(BASE)]}}).encode()
    hex1, hex2 = sha(config)[7:], sha(config2)[7:]
    manifest = [{"Config": f"{hex1}.json", "RepoTags": ["a:1"], "Layers": ["aaa/layer.tar"]},
                {"Config": f"{hex2}.json", "RepoTags": None, "Layers": ["bbb/layer.tar"]}]
    raw = archive({"aaa/layer.tar": BASE, "aaa/json": b"{}", "aaa/VERSION": b"1.0",
                   f"{hex1}.json": config, f"{hex2}.json": config2,
                   "repositories": b'{"a": {"1": "aaa"}}',
                   "manifest.json": json.dumps(manifest).encode()},
                  links={"bbb/layer.tar": "../aaa/layer.tar"})
    first, second = load(target, io.BytesIO(gzip.compress(raw)))
    assert (first.id, first.refs) == (sha(config), ("docker.io/library/a:1",))
    assert (second.id, second.refs) == (sha(config2), ())
    assert first.layers == second.layers == (sha(BASE),)


def test_an_index_of_platforms_loads_this_platforms_image(source: ImageStore,
                                                          target: ImageStore) -> None:
    system, arch = Platform.host().os, Platform.host().architecture
    mine = build(source.blobs, [BASE], label="mine")
    other = build(source.blobs, [OTHER], label="other")
    nested = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                         "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": other.manifest_digest,
         "size": len(other.manifest), "platform": {"os": system, "architecture": "mips"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mine.manifest_digest,
         "size": len(mine.manifest), "platform": {"os": system, "architecture": arch}},
    ]}).encode()
    blobs = {f"blobs/sha256/{sha(b)[7:]}": b for b in [nested, mine.manifest, other.manifest]}
    for digest in [mine.id, *mine.blobs, other.id, *other.blobs]:
        blobs[f"blobs/sha256/{digest[7:]}"] = source.blobs.path(digest).read_bytes()
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(nested),
         "size": len(nested), "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}]}
    raw = archive({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', **blobs,
                   "index.json": json.dumps(index).encode()})
    [image] = load(target, io.BytesIO(raw))
    assert (image.id, image.manifest_digest) == (mine.id, mine.manifest_digest)
    assert image.refs == ("docker.io/library/multi:1",)


@pytest.fixture
def skopeo_home() -> Iterator[Path]:
    """A folder outside pytest's root-only tmp tree, removed afterwards."""
    home = Path(tempfile.mkdtemp(prefix="composer-skopeo-"))
    yield home
    shutil.rmtree(home)


@pytest.mark.skipif(not os.path.exists(SKOPEO), reason=f"skopeo is not installed at {SKOPEO}")
def test_archives_written_by_skopeo_load(source: ImageStore, target: ImageStore,
                                         skopeo_home: Path) -> None:
    tmp_path = skopeo_home  # skopeo runs as nobody: its files live where nobody can go
    image = source.register(build(source.blobs, [BASE, TOP]).manifest, refs=["app:1"])
    ours = tmp_path / "ours.tar"
    save(source, ["app:1"], ours, format="oci")
    layout = tmp_path / "layout"
    with tarfile.open(ours) as tf:
        tf.extractall(layout, filter="data")
    oci_archive, docker_archive = tmp_path / "skopeo-oci.tar", tmp_path / "skopeo-docker.tar"
    for destination in [f"oci-archive:{oci_archive}:docker.io/library/app:2",
                        f"docker-archive:{docker_archive}:app:3"]:
        # Our layout is the source, so this checks skopeo can read what save writes too.
        run_skopeo("copy", f"oci:{layout}:1", destination, home=tmp_path)
    [from_oci] = load(target, oci_archive)
    assert (from_oci.id, from_oci.manifest_digest) == (image.id, image.manifest_digest)
    assert from_oci.refs == ("docker.io/library/app:2",)
    [from_docker] = load(target, docker_archive)  # legacy layout, symlinked layer.tar files
    assert from_docker.id == image.id and diff_ids(from_docker) == diff_ids(image)
    assert from_docker.refs == ("docker.io/library/app:2", "docker.io/library/app:3")
    assert (target.lower_dirs(from_docker)[0] / "app/main").read_bytes() == b"main"


def corrupt(data: bytes, name: str, new: bytes) -> bytes:
    files = members(data)
    files[name] = new
    return archive(files)


def test_a_corrupt_oci_archive_registers_nothing(source: ImageStore, target: ImageStore) -> None:
    _, two = two_images(source)
    buf = io.BytesIO()
    save(source, ["app:1", "ghcr.io/org/two:2"], buf, format="oci")
    # The second image's own layer: the first image alone would be fine, yet nothing loads.
    bad_layer = json.loads(source.blobs.path(two.manifest_digest or "").read_bytes())
    name = "blobs/sha256/" + bad_layer["layers"][1]["digest"][7:]
    with pytest.raises(ArchiveError, match=r"digest mismatch.*the archive is corrupt"):
        load(target, io.BytesIO(corrupt(buf.getvalue(), name, gzip.compress(b"x", mtime=0))))
    assert target.list() == [] and target.db.layers() == []
    assert target.gc()[1] == 0  # nothing was unpacked: the digest failed while streaming


def test_a_corrupt_docker_archive_registers_nothing(source: ImageStore,
                                                    target: ImageStore) -> None:
    one, two = two_images(source)
    buf = io.BytesIO()
    save(source, ["app:1", "ghcr.io/org/two:2"], buf)
    data = buf.getvalue()
    evil = layer_tar({"srv/": None, "srv/data": b"evil!"})
    top_of_two = diff_ids(two)[1][7:] + "/layer.tar"
    with pytest.raises(ImageStoreError, match=f"the config says {diff_ids(two)[1]}"):
        load(target, io.BytesIO(corrupt(data, top_of_two, evil)))
    assert target.list() == [] and target.db.layers() == []
    config = one.id[7:] + ".json"
    with pytest.raises(ArchiveError, match=f"config {config} has digest .* corrupt"):
        load(target, io.BytesIO(corrupt(data, config, members(data)[config] + b" ")))
    assert target.list() == []


@pytest.mark.parametrize(("raw", "message"), [
    (b"\x00garbage" * 200, "not a readable image archive"),
    (archive({"hello.txt": b"hi"}), "not an image archive"),
    (archive({"manifest.json": b'[{"Config": "c.json", "Layers": []}]'}), "not in the archive"),
    (archive({"../escape": b"x", "manifest.json": b"[]"}), "points outside the archive"),
    (archive({"oci-layout": b'{"imageLayoutVersion":"2.0"}', "index.json": b"{}"}),
     "unsupported OCI layout version"),
])
def test_what_is_not_an_image_archive_is_refused(target: ImageStore, raw: bytes,
                                                 message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        load(target, io.BytesIO(raw))
    assert target.list() == []


def test_save_refuses_unknown_images_and_formats(source: ImageStore, tmp_path: Path) -> None:
    two_images(source)
    path = tmp_path / "out.tar"
    with pytest.raises(ArchiveError, match="No such image: nope"):
        save(source, ["app:1", "nope"], path)
    with pytest.raises(ArchiveError, match="unknown archive format 'zip'"):
        save(source, ["app:1"], path, format="zip")
    assert os.listdir(tmp_path) == ["source"]  # no archive, not even a partial one
    # A layer blob that no longer decompresses to its diff id is caught, not exported.
    image = source.get("app:1")
    assert image is not None
    top_blob = json.loads(source.blobs.path(image.manifest_digest or "").read_bytes())
    blob_path = source.blobs.path(top_blob["layers"][1]["digest"])
    os.chmod(blob_path, 0o600)
    blob_path.write_bytes(gzip.compress(TOP.replace(b"main", b"MAIN"), mtime=0))
    with pytest.raises(ArchiveError, match="does not decompress to"):
        save(source, ["app:1"], path)
    assert os.listdir(tmp_path) == ["source"]
