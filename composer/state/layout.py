"""Where things live under a state root and a run root, in one place.

State root (default ``/var/lib/composer``; survives reboots): ``state.db``, ``images/``,
``containers/<id>/`` (the overlay upper and work dirs, the bundle, the logs). Run root (default
``/run/composer``; stale after a reboot): the OCI runtimes' own state, conmon's files per
container, the engine's socket, pid and lock, and the boot id it last saw.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from composer.runtime.images.store import ImageStore
    from composer.state.store import Store

DEFAULT_ROOT = Path("/var/lib/composer")
DEFAULT_RUN_ROOT = Path("/run/composer")


def run_root_for(root: Path | None) -> Path:
    """The run root: ``COMPOSER_RUN_ROOT``, else ``<root>/run`` when a state root was chosen
    (so that side-by-side roots never share one), else ``/run/composer``."""
    chosen = os.environ.get("COMPOSER_RUN_ROOT")
    if chosen:
        return Path(chosen)
    return DEFAULT_RUN_ROOT if root is None or root == DEFAULT_ROOT else root / "run"


@dataclass(frozen=True)
class Layout:
    root: Path
    run: Path

    @property
    def images(self) -> Path:
        return self.root / "images"

    def container_dir(self, container_id: str) -> Path:
        """Upper/work/merged dirs, the bundle and the logs of one container."""
        return self.root / "containers" / container_id

    def monitor_dir(self, container_id: str) -> Path:
        """conmon's pid, exit and socket files of one container (under the run root)."""
        return self.run / "containers" / container_id

    def runtime_root(self, runtime: str) -> Path:
        """The ``--root`` of one OCI runtime (its own state)."""
        return self.run / "runtimes" / os.path.basename(runtime)

    @property
    def boot_id_file(self) -> Path:
        return self.run / "boot-id"


def open_store(root: Path) -> Store:
    from composer.state.store import Store

    return Store.open(root)


def open_images(root: Path, db: Store | None = None) -> ImageStore:
    """The image store of a state root, sharing the root's database (opened here, and closed
    with the image store, when ``db`` is None)."""
    from composer.runtime.images.store import ImageStore

    (root / "images").mkdir(parents=True, exist_ok=True, mode=0o700)
    if db is None:
        return ImageStore(root / "images", store=open_store(root), close_store=True)
    return ImageStore(root / "images", store=db)
