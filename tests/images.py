"""Base images for tests, made offline: a busybox image from Debian's ``busybox-static``.

Docker Hub is out of reach on these machines, so the tests make their own: one layer holding
the static busybox binary, a link per applet in /bin, an /etc/passwd and /etc/group with root,
``nobody`` and a user ``app`` (uid 1000, gid 1000, also in group ``extra``, gid 1001), and the
usual empty directories. ``busybox_image`` imports it into an image store under a name.
"""

from __future__ import annotations

import functools
import io
import subprocess
import tarfile
from typing import Any

import pytest

BUSYBOX = "/bin/busybox"
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:app:/home/app:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = "root:x:0:\napp:x:1000:\nextra:x:1001:app\nnogroup:x:65534:\n"


def _is_static_busybox(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    # A dynamic binary names its interpreter; the static one (busybox-static) does not.
    return head.startswith(b"\x7fELF") and b"ld-linux" not in head


@functools.cache
def busybox_layer() -> bytes:
    """The layer as an uncompressed tar (cached: every test gets the same bytes)."""
    if not _is_static_busybox(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not a static busybox: install busybox-static "
                    "(scripts/setup.sh does)")
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes = tarfile.DIRTYPE, mode: int = 0o755,
                data: bytes = b"", link: str = "", uid: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, 0, uid, uid
            info.linkname = link
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for d in ("bin", "dev", "etc", "proc", "sys", "root", "home", "var", "run"):
            add(d)
        add("tmp", mode=0o1777)
        add("home/app", uid=1000)
        with open(BUSYBOX, "rb") as f:
            add("bin/busybox", tarfile.REGTYPE, 0o755, f.read())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, link="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode())
    return buffer.getvalue()


def busybox_image(store: Any, ref: str = "local/busybox:latest",
                  config: dict[str, Any] | None = None) -> Any:
    """Import the busybox image into ``store`` (an ImageStore) as ``ref``; returns the Image.
    ``config`` is the image's container config (Cmd defaults to ``["sh"]``)."""
    from composer.runtime.images.archives import import_layers

    return import_layers(store, [io.BytesIO(busybox_layer())], ref=ref,
                         config={"Cmd": ["sh"], **(config or {})})
