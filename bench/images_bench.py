"""Image benchmark: pull from a local registry against ``skopeo copy``, unpack against GNU tar.

Makes one image of six layers holding ``SIZE_MB`` (default 300) MB of files in all (half
random, half repetitive, so gzip has real work), pushes it to a ``docker-registry`` started on
127.0.0.1 for the run, then times, in the same run:

- ``pull`` into a fresh store (download, verify, unpack every layer) and
  ``skopeo copy docker://... dir:...`` (download and verify only: it unpacks nothing);
- unpacking the layers with composer's ``layers.unpack`` and with ``tar -xzf``.

Budget: at least 0.8x skopeo's throughput and 0.8x tar's unpacking speed. Run as root after
``scripts/setup.sh``: ``.venv/bin/python bench/images_bench.py [SIZE_MB]``. Everything it makes
lives in one temporary folder, removed at the end; the registry is stopped by its pid.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LAYERS = 6


def layer(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        written, index = 0, 0
        while written < size:
            chunk = min(4 << 20, size - written)
            data = (rnd.randbytes(chunk // 2) + bytes(rnd.choice(b"abcd") for _ in range(64))
                    * (chunk // 128))
            info = tarfile.TarInfo(f"data/{seed}/file{index}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            written += len(data)
            index += 1
    return gzip.compress(buffer.getvalue(), compresslevel=6)


def timed(what: str, func: object) -> float:
    start = time.perf_counter()
    func()  # type: ignore[operator]
    elapsed = time.perf_counter() - start
    print(f"  {what}: {elapsed:.2f} s")
    return elapsed


def main() -> None:
    from composer.runtime.images import layers
    from composer.runtime.images.archives import import_layers
    from composer.runtime.images.registry import RegistryClient
    from composer.runtime.images.store import ImageStore
    from composer.runtime.images.transfer import pull, push
    from tests.integration.conftest import start_registry
    from tests.skopeo import run_skopeo

    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    work = Path(tempfile.mkdtemp(prefix="composer-bench-"))
    work.chmod(0o755)  # skopeo runs as nobody and writes under work/skopeo
    server = None
    try:
        blobs = [layer(size_mb * (1 << 20) // LAYERS, seed) for seed in range(LAYERS)]
        total = sum(len(b) for b in blobs)
        print(f"image: {LAYERS} layers, {size_mb} MB of files, {total / (1 << 20):.0f} MB gzip")
        server = start_registry(work / "registry")
        ref = f"{server.domain}/bench/big:1"
        with ImageStore(work / "source") as source, RegistryClient() as client:
            import_layers(source, [io.BytesIO(b) for b in blobs], ref=ref)
            push(source, client, ref)
        refs = [ref]
        with ImageStore(work / "fresh") as fresh, RegistryClient() as client:
            ours = timed("composer pull (download, verify, unpack)",
                         lambda: [pull(fresh, client, r) for r in refs])
        def download_only() -> None:
            # The same work skopeo does (fetch and verify every blob), nothing unpacked.
            import json

            from composer.runtime.images.blobs import BlobStore
            from composer.runtime.images.reference import parse

            store = BlobStore(work / "download")
            with RegistryClient() as client:
                for r in refs:
                    reference = parse(r)
                    manifest = json.loads(client.get_manifest(reference).data)
                    for d in [manifest["config"], *manifest["layers"]]:
                        store.write(client.blob(reference, d["digest"]), expected=d["digest"])

        transfer = timed("composer download and verify only", download_only)
        (work / "skopeo").mkdir()
        theirs = timed("skopeo copy to dir: (download, verify)", lambda: [
            run_skopeo("copy", "--src-tls-verify=false", f"docker://{r}",
                       f"dir:{work / 'skopeo' / str(n)}", home=work / "skopeo", timeout=600)
            for n, r in enumerate(refs)])
        print(f"  throughput ratio composer/skopeo, same work: {theirs / transfer:.2f}x "
              f"(budget >= 0.8x); with unpacking: {theirs / ours:.2f}x")
        archives = []
        for n, blob in enumerate(blobs):
            path = work / f"layer{n}.tar.gz"
            path.write_bytes(blob)
            archives.append(path)
        unpack_ours = timed("layers.unpack", lambda: [
            layers.unpack(str(p), work / "ours" / p.stem) for p in archives])
        (work / "tar").mkdir()
        unpack_tar = timed("tar -xzf", lambda: [
            subprocess.run(["tar", "-xzf", str(p), "-C", str(work / "tar")], check=True)
            for p in archives])
        print(f"  unpack ratio composer/tar: {unpack_tar / unpack_ours:.2f}x (budget >= 0.8x)")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
        os.sync()


if __name__ == "__main__":
    main()
