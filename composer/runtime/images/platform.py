"""Image platforms: what this machine is, in the words OCI indexes use (``linux/arm64/v8``)."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass

_MACHINES = {"x86_64": ("amd64", None), "amd64": ("amd64", None), "aarch64": ("arm64", "v8"),
             "arm64": ("arm64", "v8"), "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"),
             "i386": ("386", None), "i686": ("386", None)}
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}
# containerd's normalization: an absent variant means the architecture's baseline.
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True)
class Platform:
    """An image platform as OCI indexes spell it: ``linux/arm64/v8``."""

    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def host(cls) -> Platform:
        """This machine, named as Go's GOARCH (and GOARM) would name it."""
        machine = _platform.machine().lower()
        architecture, variant = _MACHINES.get(machine, (machine, None))
        return cls("linux", architecture, variant)

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def _normalized(self) -> tuple[str, str, str]:
        architecture = _ARCH_ALIASES.get(self.architecture.lower(), self.architecture.lower())
        variant = (self.variant or "").lower()
        variant = f"v{variant}" if variant.isdigit() else variant
        return self.os.lower(), architecture, variant or _DEFAULT_VARIANTS.get(architecture, "")
