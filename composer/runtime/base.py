"""What the executor asks of a runtime: one small Protocol per concern, and one bundling them.

Every method takes plain data (strings and mappings, as a change's ``params`` carry them) and
returns plain data, so an adapter (runc/crun, an image store, netlink) and the in-memory runtime
of the unit tests are interchangeable. An adapter reports a failure it understands by raising
:class:`RuntimeFailure`; the executor turns it into a failed change.

Two rules every adapter keeps, because the executor never checks first (it decides nothing):
``ensure`` is success when the object already exists as asked, and ``remove`` is success when
the object is already gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from composer.errors import ComposerError


class RuntimeFailure(ComposerError):
    """The runtime could not do what a change asked (its message is shown as the change's error)."""


class Images(Protocol):
    """The image store: pull from a registry, build from a context, remove."""

    def pull(self, ref: str, *, platform: str | None = None) -> str:
        """Pull ``ref`` (for ``platform``, ``os/arch[/variant]``) and return the image id."""
        ...

    def build(self, service: str, build: Mapping[str, Any], tag: str) -> str:
        """Build ``service``'s image from its ``build`` section, tag it ``tag``, return its id."""
        ...

    def remove(self, ref: str) -> None:
        """Remove the image ``ref``; an image already gone is success."""
        ...


class Networks(Protocol):
    """Project networks, by their real name on the host."""

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """Make the network exist as ``spec`` says, carrying ``labels``."""
        ...

    def remove(self, name: str) -> None:
        """Remove the network; a network already gone is success."""
        ...


class Volumes(Protocol):
    """Named volumes, by their real name on the host."""

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        """Make the volume exist as ``spec`` says, carrying ``labels``."""
        ...

    def remove(self, name: str) -> None:
        """Remove the volume and its data; a volume already gone is success."""
        ...


class Containers(Protocol):
    """Containers, by their name (``myapp-web-1``)."""

    def create(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> str:
        """Create (not start) the container and return its id."""
        ...

    def start(self, name: str) -> None:
        """Start a created or stopped container."""
        ...

    def stop(self, name: str, *, timeout: float | None = None) -> None:
        """Stop it: its stop signal, then SIGKILL after ``timeout`` seconds (None: the default)."""
        ...

    def remove(self, name: str, *, volumes: bool = False) -> None:
        """Remove it (and its anonymous volumes when ``volumes``); a container gone is success."""
        ...

    def rename(self, old: str, new: str, *, replaces: str | None = None) -> None:
        """Give the container ``old`` the name ``new``; ``replaces``: the id of the container
        it replaces (removed by now), whose anonymous volumes it takes over."""
        ...

    def wait_healthy(self, name: str, *, timeout: float | None) -> None:
        """Return once its health check passes; raise when it is unhealthy or time runs out."""
        ...

    def wait_completed(self, name: str, *, timeout: float | None) -> int:
        """Return its exit code once it has exited; raise when time runs out."""
        ...


class Runtime(Protocol):
    """Everything the executor calls, grouped by concern."""

    # Read-only members, so an implementation may hold any conforming object (even a subclass).
    @property
    def images(self) -> Images: ...

    @property
    def containers(self) -> Containers: ...

    @property
    def networks(self) -> Networks: ...

    @property
    def volumes(self) -> Volumes: ...
