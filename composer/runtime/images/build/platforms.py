"""Build platforms: ``FROM --platform=...``, ``image build --platform`` and compose's
``build.platforms`` name the platforms an image is built for.

composer's builder runs every RUN natively and has no emulation, so the only platform it can
build for is the host's; anything else is refused with a clear message rather than built
wrongly. Names are compared as containerd normalizes them (``linux/x86_64`` is
``linux/amd64``, ``linux/arm64/v8`` is ``linux/arm64``).
"""

from __future__ import annotations

import re

from composer.runtime.images.build.flags import Refused
from composer.runtime.images.platform import Platform

_PART = re.compile(r"[A-Za-z0-9_.-]+")


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` (BuildKit also takes a bare ``os``, meaning the host's
    architecture on that OS)."""
    parts = text.strip().split("/")
    if not 1 <= len(parts) <= 3 or not all(_PART.fullmatch(p) for p in parts):
        raise Refused(f"invalid platform {text!r}", "write it as os/arch[/variant], such as "
                      "linux/amd64")
    if len(parts) == 1:
        host = Platform.host()
        return Platform(parts[0].lower(), host.architecture, host.variant)
    return Platform(parts[0].lower(), parts[1].lower(), parts[2].lower() if len(parts) > 2
                    else None)


def same_platform(one: Platform, other: Platform) -> bool:
    """Whether two names mean one platform (containerd's normalization: aliases, default
    variants)."""
    return one._normalized() == other._normalized()


def check_host_platforms(text: str, *, what: str, host: Platform | None = None) -> Platform:
    """Every platform of ``text`` (comma-separated, as ``--platform`` takes a list) must be the
    host's; the host's platform is returned. ``what`` names the option in the message."""
    host = host or Platform.host()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise Refused(f"{what} is empty", f"leave it out, or give this host's platform ({host})")
    for name in names:
        if not same_platform(parse_platform(name), host):
            raise Refused(
                f"{what}={name}: composer builds only for this host's platform ({host})",
                "composer's builder runs RUN steps natively, without emulation: build on a "
                f"{name} machine, or drop the option")
    return host
