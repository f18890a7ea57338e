"""``container commit``: a new image from what a container changed (its overlay upper dir).

The layer is written by ``images/diff.py``, the one implementation of "upper dir to OCI layer"
that the builder uses too. The new image's config is the container's (its command, env,
working dir, user, labels), as ``docker commit`` makes it. A running container is paused while
its upper dir is read, unless told otherwise, so the layer is one consistent moment.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from composer.state.containers import ContainerRow

if TYPE_CHECKING:
    from composer.engine.containers import ContainerManager
    from composer.runtime.images.store import Image


def commit(manager: ContainerManager, row: ContainerRow, *, repository: str | None,
           message: str, author: str, pause: bool) -> Image:
    from composer.runtime import rootfs
    from composer.runtime.images.diff import commit_layer
    from composer.runtime.images.reference import parse

    spec = manager.spec(row)
    image = manager.images.get(row.image_id)
    image_config = manager.image_config(row)
    env = [e for e in image_config.get("Env") or [] if e.split("=", 1)[0] not in spec.env]
    env += [f"{k}={v}" for k, v in spec.env.items()]
    changes: dict[str, Any] = {"Env": env}
    if spec.entrypoint is not None:
        changes["Entrypoint"] = list(spec.entrypoint) or None
        changes["Cmd"] = list(spec.command) if spec.command is not None else None
    elif spec.command is not None:
        changes["Cmd"] = list(spec.command)
    if spec.working_dir:
        changes["WorkingDir"] = spec.working_dir
    if spec.user:
        changes["User"] = spec.user
    if spec.labels:
        changes["Labels"] = {**(image_config.get("Labels") or {}), **spec.labels}
    ref = str(parse(repository)) if repository else None
    cdir = manager.layout.container_dir(row.id)
    paused = False
    with manager.lock(row.id):
        current = manager.find(row.id)
        if pause and current.status == "running":
            manager.runtime(current).pause(row.id)
            paused = True
        try:
            if not (cdir / "upper").is_dir():
                rootfs.mount(cdir, manager.images.lower_dirs(image)) if image else None
            return commit_layer(manager.images, cdir / "upper", base=image, ref=ref,
                                config_changes=changes, comment=message, author=author,
                                created_by=" ".join(spec.command or ()) or "composer commit")
        finally:
            if paused:
                with contextlib.suppress(Exception):
                    manager.runtime(current).resume(row.id)
