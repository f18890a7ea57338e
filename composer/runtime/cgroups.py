"""cgroups: which kind this host has, and where a container's cgroup goes.

cgroupfs driver on v1 and hybrid hosts, the systemd driver where systemd runs cgroup v2 (see
the design). One parent per project, so a project's containers can be found and limited together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CgroupSettings:
    """Where one container's cgroup lives, as the OCI runtime is told.

    ``path`` for the cgroupfs driver is a cgroup path (``/composer/<group>/<id>``); for the
    systemd driver it is runc's ``slice:prefix:name`` form
    (``composer-<group>.slice:composer:<id>``).
    ``version`` is 2 only on unified hosts; hybrid hosts are 1 (limits go to the v1 controllers).
    """

    driver: Literal["cgroupfs", "systemd"]
    version: Literal[1, 2]
    path: str
