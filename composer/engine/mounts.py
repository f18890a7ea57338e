"""The mounts a container gets, resolved from its spec to host paths at each start.

Named volumes are the directories they are: created on first use, and an empty one filled from
the image's content at its target (unless ``nocopy``), as Docker does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from composer.runtime.spec import ContainerSpec, Mount
from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager


def resolve_mounts(manager: ContainerManager, row: ContainerRow, spec: ContainerSpec,
                   merged: Path) -> tuple[Mount, ...]:
    from composer.engine.containers import ContainerError
    from composer.runtime.volumes import populate

    mounts = []
    for mount in spec.mounts:
        if mount.type != "volume":
            mounts.append(mount)
            continue
        if not mount.source:
            raise ContainerError(f"anonymous volume on {mount.target}: not supported yet; "
                                 f"name it (-v NAME:{mount.target})")
        volume = manager.volumes.create(mount.source)
        if "nocopy" not in mount.options:
            populate(volume.mountpoint, merged, mount.target)
        mounts.append(replace(mount, source=str(volume.mountpoint),
                              options=tuple(o for o in mount.options if o != "nocopy")))
    return tuple(mounts)
