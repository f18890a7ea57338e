"""``container run`` of an image the store lacks: the engine pulls it from a real registry."""

from __future__ import annotations

from composer.runtime.images.registry import RegistryClient
from composer.runtime.images.store import ImageStore
from composer.runtime.images.transfer import push
from tests.e2e.conftest import Engine, engine  # noqa: F401 (the fixture)
from tests.images import busybox_image
from tests.integration.conftest import RegistryServer


def test_run_pulls_a_missing_image_then_runs_it(engine: Engine,  # noqa: F811
                                                registry: RegistryServer,
                                                scratch: object) -> None:
    from pathlib import Path

    ref = f"{registry.domain}/base/busybox:1"
    with ImageStore(Path(str(scratch)) / "source") as source, RegistryClient() as client:
        busybox_image(source, ref, config={"Cmd": ["echo", "from the registry"]})
        push(source, client, ref)
    assert engine.cli("image", "inspect", ref).returncode != 0  # not in the engine's store
    done = engine.cli("container", "run", "--rm", ref)
    assert (done.returncode, done.stdout) == (0, "from the registry\n"), done.stderr
    assert engine.cli("image", "inspect", ref).returncode == 0
    never = engine.cli("container", "run", "--rm", "--pull", "never",
                       f"{registry.domain}/base/other:1", "true")
    assert never.returncode == 125 and "No such image" in never.stderr


def test_an_image_volume_gets_an_anonymous_volume(engine: Engine) -> None:  # noqa: F811
    import json

    from composer.state.layout import open_images

    with open_images(engine.root) as store:
        busybox_image(store, "local/withvolume:1", config={"Volumes": {"/data": {}}})
    done = engine.cli("container", "run", "--name", "withvolume", "local/withvolume:1", "sh",
                      "-c", "echo kept > /data/x && grep -c ' /data ' /proc/mounts")
    assert done.stdout == "1\n", done.stderr  # /data is a mount, not the container's own layer
    assert "VOLUME" not in done.stderr
    listed = engine.cli("volume", "ls", "-q").stdout.split()
    assert len(listed) == 1 and len(listed[0]) == 64, listed  # Docker's anonymous volume names
    mounts = json.loads(engine.cli("container", "inspect", "withvolume").stdout)[0]["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == \
        [("volume", listed[0], "/data")]
    assert engine.cli("container", "rm", "-v", "withvolume").returncode == 0
    assert engine.cli("volume", "ls", "-q").stdout == ""
