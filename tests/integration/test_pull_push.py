"""Pull and push between composer's image store and a real registry (docker-registry).

An image made locally (``import`` of a root filesystem tarball) is pushed, then pulled into a
fresh store: same image id, same manifest digest, same files. skopeo reads what composer
pushed, and composer pulls what skopeo copied in, with the digests skopeo reports.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from composer.errors import ComposerError
from composer.runtime.images.reference import parse
from composer.runtime.images.registry import RegistryClient
from composer.runtime.images.store import ImageStore
from composer.runtime.images.transfer import pull, push
from composer.state.layout import open_images
from tests.integration.conftest import RegistryServer
from tests.skopeo import run_skopeo


def rootfs() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("bin/hello", b"#!/bin/sh\necho hello\n"), ("etc/motd", b"hi\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_push_then_pull_into_a_fresh_store_gives_the_same_image(
        registry: RegistryServer, scratch: Path) -> None:
    ref = f"{registry.domain}/composer/hello:1"
    lines: list[str] = []
    with ImageStore(scratch / "a") as source, ImageStore(scratch / "b") as target, \
            RegistryClient() as client:
        made = source.import_rootfs(io.BytesIO(rootfs()), ref=ref)
        digest = push(source, client, ref, progress=lines.append)
        assert digest == made.manifest_digest
        pulled = pull(target, client, ref, progress=lines.append)
        assert (pulled.id, pulled.manifest_digest) == (made.id, made.manifest_digest)
        assert pulled.refs == (ref,)
        top = target.lower_dirs(pulled)[0]
        assert (top / "bin/hello").read_bytes() == b"#!/bin/sh\necho hello\n"
        # Pulling again finds every blob already there: nothing is downloaded.
        before = len(lines)
        pull(target, client, ref, progress=lines.append)
        assert [line for line in lines[before:] if "pulled (" in line] == []
        by_digest = pull(target, client, f"{registry.domain}/composer/hello@{digest}")
        assert by_digest.id == made.id
    assert any(line.endswith(f"pushed {digest}") for line in lines)


def test_skopeo_reads_what_composer_pushed_and_composer_pulls_what_skopeo_copied(
        registry: RegistryServer, scratch: Path) -> None:
    ours = f"{registry.domain}/interop/from-composer:1"
    with ImageStore(scratch / "a") as store, RegistryClient() as client:
        made = store.import_rootfs(io.BytesIO(rootfs()), ref=ours)
        push(store, client, ours)
        info = json.loads(run_skopeo("inspect", "--tls-verify=false", f"docker://{ours}",
                                     home=scratch).stdout)
        assert info["Digest"] == made.manifest_digest
        theirs = f"{registry.domain}/interop/from-skopeo:1"
        run_skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                   f"docker://{ours}", f"docker://{theirs}", home=scratch)
        reported = json.loads(run_skopeo("inspect", "--tls-verify=false", f"docker://{theirs}",
                                         home=scratch).stdout)["Digest"]
    with ImageStore(scratch / "b") as fresh, RegistryClient() as client:
        pulled = pull(fresh, client, theirs)
        assert pulled.manifest_digest == reported
        assert pulled.id == made.id


def test_composer_image_pull_and_push_on_the_command_line(
        registry: RegistryServer, scratch: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(root),
           "HOME": "/nonexistent"}

    def composer(state: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "composer", "--root", str(scratch / state),
                               "image", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    ref = f"{registry.domain}/cli/hello:1"
    (scratch / "rootfs.tar.gz").write_bytes(rootfs())
    assert composer("a", "import", str(scratch / "rootfs.tar.gz"), ref).returncode == 0
    pushed = composer("a", "push", "-q", ref)
    assert pushed.returncode == 0, pushed.stderr
    pulled = composer("b", "pull", "-q", ref)
    assert (pulled.returncode, pulled.stdout.strip()) == (0, ref), pulled.stderr
    missing = composer("b", "pull", f"{registry.domain}/cli/nothing:1")
    assert missing.returncode == 1 and "cli/nothing" in missing.stderr


def test_composer_pull_and_images_for_a_project(registry: RegistryServer, scratch: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(root),
           "HOME": "/nonexistent"}
    ref = f"{registry.domain}/project/web:1"
    with ImageStore(scratch / "up") as source, RegistryClient() as client:
        source.import_rootfs(io.BytesIO(rootfs()), ref=ref)
        push(source, client, ref)
    (scratch / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {ref}\n  local:\n    build: .\n"
        f"  off:\n    image: {registry.domain}/project/none:1\n    pull_policy: never\n")

    def composer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "composer", "--root", str(scratch / "s"),
                               "-f", str(scratch / "compose.yaml"), "-p", "proj", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    def images() -> dict[str, str]:
        listed = composer("images")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()[1:]
        return {line.split()[0]: line.split(maxsplit=2)[2] for line in lines}

    assert images()["web"] == "(not pulled)"
    pulled = composer("pull", "-q")
    assert pulled.returncode == 0, pulled.stderr
    # web is pulled; the built service and the pull_policy: never one are left alone.
    after = images()
    assert len(after["web"]) == 12 and after["web"] != "(not pulled)"
    assert after["local"] == after["off"] == "(not pulled)"


def test_composer_push_for_a_project_pushes_what_it_builds(
        registry: RegistryServer, scratch: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": os.environ.get("PATH", os.defpath), "PYTHONPATH": str(root),
           "HOME": "/nonexistent"}
    built = f"{registry.domain}/project/built:1"
    other = f"{registry.domain}/project/dep:1"
    pulled_only = f"{registry.domain}/project/pulled:1"
    state = scratch / "s"
    # Until the builder exists, "built" images are imported under the names compose gives.
    with open_images(state) as store:
        for ref in (built, other, pulled_only):
            store.import_rootfs(io.BytesIO(rootfs()), ref=ref)
    (scratch / "compose.yaml").write_text(
        f"services:\n"
        f"  app:\n    build: .\n    image: {built}\n    depends_on: [dep]\n"
        f"  dep:\n    build: .\n    image: {other}\n"
        f"  db:\n    image: {pulled_only}\n"
        f"  local:\n    build: .\n")

    def composer(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "composer", "--root", str(state),
                               "-f", str(scratch / "compose.yaml"), "-p", "proj", *args],
                              capture_output=True, text=True, env=env, timeout=60)

    def in_registry(ref: str) -> bool:
        with RegistryClient() as client:
            try:
                client.get_manifest(parse(ref))
            except ComposerError:
                return False
            return True

    only_app = composer("push", "-q", "app")
    assert only_app.returncode == 0, only_app.stderr
    assert (in_registry(built), in_registry(other)) == (True, False)
    with_deps = composer("push", "--include-deps", "app")
    assert with_deps.returncode == 0, with_deps.stderr
    assert in_registry(other)
    # db is pulled, not built, and local has no image name: neither is pushed.
    assert not in_registry(pulled_only)
    with (ImageStore(scratch / "fresh") as fresh, open_images(state) as ours,
          RegistryClient() as client):
        assert pull(fresh, client, built).id == ours.get(built).id
