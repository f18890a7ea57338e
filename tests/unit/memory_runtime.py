"""An in-memory Runtime for the planner's and the executor's unit tests ONLY; nothing else uses it.

It keeps the end state (containers by name with their state, networks, volumes, images) and
records every call, in the order calls began, in ``calls`` as ``(method, key, *arguments)``;
``timeline`` records ``("begin" | "end", method, key)`` so tests can check what overlapped.
Container calls are named after the method (``"start"``); the others carry their concern
(``"ensure_network"``, ``"remove_volume"``, ``"pull"``, ``"build"``, ``"remove_image"``), so
``(method, key)`` names one call whatever the concern. ``key`` is the first argument.

Knobs, all keyed by ``(method, key)``:

- ``fail_on``: a set (raise RuntimeFailure) or a mapping to the exception to raise;
- ``block``: a threading.Event the call waits for before doing anything;
- ``entered(method, key)``: an Event set when that call begins;
- ``delay``: seconds every call sleeps, so concurrent calls overlap; ``max_active`` is the
  largest number of calls observed in progress at once.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from composer.runtime.base import RuntimeFailure

Key = tuple[str, str]

#: How long a blocked call waits before failing: a broken test fails instead of hanging.
BLOCK_TIMEOUT = 5.0


@dataclass
class MemoryContainer:
    id: str
    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    state: str = "created"
    exit_code: int | None = None


@dataclass
class MemoryResource:
    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)


class MemoryRuntime:
    """The Runtime protocol, in memory; see the module docstring for the knobs."""

    def __init__(
        self,
        *,
        fail_on: Collection[Key] | Mapping[Key, Exception] = (),
        delay: float = 0.0,
        block: Mapping[Key, threading.Event] | None = None,
    ) -> None:
        self.fail_on = fail_on
        self.delay = delay
        self.block = dict(block or {})
        self.calls: list[tuple[Any, ...]] = []
        self.timeline: list[tuple[str, str, str]] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        self._entered: dict[Key, threading.Event] = {}
        self.images = MemoryImages(self)
        self.containers = MemoryContainers(self)
        self.networks = MemoryNetworks(self)
        self.volumes = MemoryVolumes(self)

    def entered(self, method: str, key: str) -> threading.Event:
        with self.lock:
            return self._entered.setdefault((method, key), threading.Event())

    def methods(self) -> list[Key]:
        """``(method, key)`` of every call, in the order they began."""
        return [(call[0], call[1]) for call in self.calls]

    @contextmanager
    def call(self, method: str, key: str, *arguments: Any) -> Iterator[None]:
        """Record the call, apply the knobs, and let the body change state under the lock."""
        with self.lock:
            self.calls.append((method, key, *arguments))
            self.timeline.append(("begin", method, key))
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            entered = self._entered.setdefault((method, key), threading.Event())
        entered.set()
        try:
            gate = self.block.get((method, key))
            if gate is not None and not gate.wait(BLOCK_TIMEOUT):
                raise RuntimeFailure(f"{method} {key}: the test never released it")
            if self.delay:
                time.sleep(self.delay)
            if (method, key) in self.fail_on:
                if isinstance(self.fail_on, Mapping):
                    raise self.fail_on[(method, key)]
                raise RuntimeFailure(f"{method} {key}: injected failure")
            with self.lock:
                yield
        finally:
            with self.lock:
                self.active -= 1
                self.timeline.append(("end", method, key))


class MemoryImages:
    def __init__(self, runtime: MemoryRuntime) -> None:
        self.runtime = runtime
        self.by_ref: dict[str, str] = {}

    def pull(self, ref: str, *, platform: str | None = None) -> str:
        with self.runtime.call("pull", ref, platform):
            image_id = "sha256:" + hashlib.sha256(f"{ref}|{platform}".encode()).hexdigest()[:12]
            self.by_ref[ref] = image_id
            return image_id

    def build(self, service: str, build: Mapping[str, Any], tag: str) -> str:
        with self.runtime.call("build", service, build, tag):
            image_id = "sha256:" + hashlib.sha256(f"{service}|{tag}".encode()).hexdigest()[:12]
            self.by_ref[tag] = image_id
            return image_id

    def remove(self, ref: str) -> None:
        with self.runtime.call("remove_image", ref):
            self.by_ref.pop(ref, None)


class MemoryContainers:
    def __init__(self, runtime: MemoryRuntime) -> None:
        self.runtime = runtime
        self.by_name: dict[str, MemoryContainer] = {}
        #: What wait_healthy finds ("healthy" unless a test says otherwise) and wait_completed.
        self.health: dict[str, str] = {}
        self.exit_codes: dict[str, int] = {}
        self._next_id = 0

    def _get(self, name: str) -> MemoryContainer:
        try:
            return self.by_name[name]
        except KeyError:
            raise RuntimeFailure(f"no such container: {name}") from None

    def create(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> str:
        with self.runtime.call("create", name, spec, labels):
            if name in self.by_name:
                raise RuntimeFailure(f"container name {name} is already in use")
            self._next_id += 1
            container = MemoryContainer(f"c{self._next_id:04d}", name, spec, labels)
            self.by_name[name] = container
            return container.id

    def start(self, name: str) -> None:
        with self.runtime.call("start", name):
            self._get(name).state = "running"

    def stop(self, name: str, *, timeout: float | None = None) -> None:
        with self.runtime.call("stop", name, timeout):
            container = self._get(name)
            if container.state == "running":
                container.state, container.exit_code = "exited", 0

    def remove(self, name: str, *, volumes: bool = False) -> None:
        with self.runtime.call("remove", name, volumes):
            self.by_name.pop(name, None)

    def rename(self, old: str, new: str, *, replaces: str | None = None) -> None:
        with self.runtime.call("rename", old, new):
            if new in self.by_name:
                raise RuntimeFailure(f"container name {new} is already in use")
            container = self._get(old)
            del self.by_name[old]
            container.name = new
            self.by_name[new] = container

    def wait_healthy(self, name: str, *, timeout: float | None) -> None:
        with self.runtime.call("wait_healthy", name, timeout):
            self._get(name)
            health = self.health.get(name, "healthy")
            if health != "healthy":
                raise RuntimeFailure(f"container {name} is {health}")

    def wait_completed(self, name: str, *, timeout: float | None) -> int:
        with self.runtime.call("wait_completed", name, timeout):
            container = self._get(name)
            container.state = "exited"
            container.exit_code = self.exit_codes.get(name, 0)
            return container.exit_code


class MemoryNetworks:
    def __init__(self, runtime: MemoryRuntime) -> None:
        self.runtime = runtime
        self.by_name: dict[str, MemoryResource] = {}

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        with self.runtime.call("ensure_network", name, spec, labels):
            self.by_name.setdefault(name, MemoryResource(name, spec, labels))

    def remove(self, name: str) -> None:
        with self.runtime.call("remove_network", name):
            self.by_name.pop(name, None)


class MemoryVolumes:
    def __init__(self, runtime: MemoryRuntime) -> None:
        self.runtime = runtime
        self.by_name: dict[str, MemoryResource] = {}

    def ensure(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        with self.runtime.call("ensure_volume", name, spec, labels):
            self.by_name.setdefault(name, MemoryResource(name, spec, labels))

    def remove(self, name: str) -> None:
        with self.runtime.call("remove_volume", name):
            self.by_name.pop(name, None)
