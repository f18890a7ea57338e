"""Host-wide claims on subnets, so that two state roots never choose the same one.

The host's routes show the subnets whose bridges exist now, but not those of a network whose
bridge is missing for a moment: an engine killed between writing a network's row and making
its bridge, or a bridge the next sweep will make again. Another state root choosing then would
take the same subnet, and the sweep would give the host two bridges with one route. So each
network's subnet is claimed, before its bridge exists and until after it is gone, by a file in
:data:`CLAIMS` (``<root tag>-<network id>``, holding the subnet and the state root): read and
written only under the host-wide network lock.

A claim of a state root that no longer exists on disk is stale (a test directory deleted
without a teardown) and is ignored, then dropped. ``/run`` is a tmpfs: after a reboot the
engines' sweeps claim their networks again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path

CLAIMS = Path("/run/composer/subnets")


def _path(tag: str, network_id: str) -> Path:
    return CLAIMS / f"{tag}-{network_id[:16]}"


def claim(tag: str, root: Path, network_id: str, subnet: str) -> None:
    """Claim ``subnet`` for network ``network_id`` of the state root ``root``."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    path = _path(tag, network_id)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps({"subnet": subnet, "root": str(root)}))
    os.replace(partial, path)


def release(tag: str, network_id: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        _path(tag, network_id).unlink()


def claimed_by_others(tag: str) -> list[ipaddress.IPv4Network]:
    """The subnets other (existing) state roots claim."""
    found = []
    for path, data in _claims():
        if path.name.startswith(f"{tag}-"):
            continue
        if not Path(data["root"]).is_dir():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # stale: its state root is gone
            continue
        found.append(ipaddress.IPv4Network(data["subnet"]))
    return found


def keep_only(tag: str, root: Path, networks: Iterable[tuple[str, str]]) -> None:
    """Make this root's claims exactly ``networks`` (id, subnet): at the engine's sweep."""
    wanted = {_path(tag, network_id).name: (network_id, subnet)
              for network_id, subnet in networks}
    for path, _ in _claims():
        if path.name.startswith(f"{tag}-") and path.name not in wanted:
            release(tag, path.name.removeprefix(f"{tag}-"))
    for network_id, subnet in wanted.values():
        claim(tag, root, network_id, subnet)


def mine(tag: str) -> list[str]:
    """This root's claims, by file name (for leak checks)."""
    return [path.name for path, _ in _claims() if path.name.startswith(f"{tag}-")]


def _claims() -> list[tuple[Path, dict[str, str]]]:
    if not CLAIMS.is_dir():
        return []
    found = []
    for path in CLAIMS.iterdir():
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text())
            ipaddress.IPv4Network(data["subnet"])
            str(data["root"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # vanished meanwhile, or not one of ours: never fatal
        found.append((path, data))
    return found
