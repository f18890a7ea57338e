"""``image history``: steps paired with layers as Docker pairs them, on a real store."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from composer.runtime.images.archives import import_layers
from composer.runtime.images.history import Step, human_size, steps
from composer.state.layout import open_images
from tests.unit.test_cli_image import composer


def layer_tar(name: str, data: bytes) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_empty_steps_have_no_layer_and_the_newest_comes_first() -> None:
    config = {"history": [
        {"created": "2024-01-02T03:04:05Z", "created_by": "ADD rootfs.tar /"},
        {"created": "2024-01-02T03:04:06Z", "created_by": "ENV A=1", "empty_layer": True},
        {"created_by": "RUN make", "comment": "built"},
    ]}
    got = steps(config, [("sha256:aa", 100), ("sha256:bb", None)])
    assert got == [
        Step(created=None, created_by="RUN make", comment="built", layer="sha256:bb", size=None),
        Step(created=1704164646.0, created_by="ENV A=1", comment="", layer=None, size=0),
        Step(created=1704164645.0, created_by="ADD rootfs.tar /", comment="", layer="sha256:aa",
             size=100),
    ]


def test_layers_without_history_are_still_shown() -> None:
    got = steps({}, [("sha256:aa", 1), ("sha256:bb", 2)])
    assert [s.layer for s in got] == ["sha256:bb", "sha256:aa"]


def test_sizes_read_as_docker_prints_them() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 1234567, 5_000_000_000, None)] == \
        ["0B", "999B", "1kB", "1.23MB", "5GB", "?"]


def test_history_of_a_three_layer_image(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with open_images(state) as store:
        image = import_layers(store, [layer_tar(f"f{i}", b"x" * (10 ** i)) for i in range(3)],
                              ref="local/three:1", comments=["one", "two", "three"])
    assert len(image.layers) == 3
    table = composer(state, "image", "history", "local/three:1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:2] == ["IMAGE", "CREATED"]
    assert lines[1].startswith(image.short_id) and lines[1].endswith("three")
    assert [line.split()[0] for line in lines[2:]] == ["<missing>", "<missing>"]
    assert lines[2].endswith("two") and lines[3].endswith("one")
    listed = json.loads(composer(state, "image", "history", "--format", "json",
                                 "local/three:1").stdout)
    assert [s["Comment"] for s in listed] == ["three", "two", "one"]
    assert [s["Layer"] for s in listed] == list(reversed(image.layers))
    # The size of each layer's tar: one small file in a 10 KiB tar each.
    assert [s["Size"] for s in listed] == [10240, 10240, 10240]
    quiet = composer(state, "image", "history", "-q", "local/three:1").stdout.split()
    assert quiet == [image.short_id, "<missing>", "<missing>"]
    missing = composer(state, "image", "history", "local/nope:1")
    assert missing.returncode != 0 and "no such image: local/nope:1" in missing.stderr
