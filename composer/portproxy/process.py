"""The engine's handle on the port proxy process: write its entries, start it, reload it, stop
it, or adopt the one a previous engine left running (see :mod:`composer.sidecar`).

This module is imported by the engine: it imports neither asyncio nor ``proxy``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from composer.errors import ComposerError
from composer.portproxy.config import (
    STEM,
    UDP_TIMEOUT,
    ConfigError,
    ProxyEntry,
    config_data,
    parse_config,
)
from composer.sidecar import Sidecar

__all__ = ["PortProxy", "PortProxyError", "ProxyEntry"]


class PortProxyError(ComposerError):
    """The port proxy could not be started, reloaded or stopped, or was handed bad entries;
    the message says why (for a start, with the end of its log)."""


class PortProxy(Sidecar):
    """The port proxy process for one engine, through the files in ``directory``."""

    module = "composer.portproxy"
    stem = STEM
    what = "the port proxy"
    error_class = PortProxyError

    def __init__(self, directory: Path, *, udp_timeout: float = UDP_TIMEOUT) -> None:
        super().__init__(directory)
        self.udp_timeout = udp_timeout

    def update(self, entries: Sequence[ProxyEntry], *, keep: bool = False) -> dict[str, str]:
        """Make the proxy forward exactly ``entries``: start it, or reload it, and return once
        it has; no entries, no proxy, unless ``keep``: then a running proxy stays, idle, so
        that the next publication does not pay a process start (~60 ms). Returns the entries
        that could not listen (by :attr:`ProxyEntry.key`, with the reason, e.g. ``Address
        already in use``): the others forward all the same, and the failed ones are tried
        again at every update."""
        if not entries and (not keep or not self.running()):
            if not keep:
                self.stop()
            return {}
        data = config_data(entries, udp_timeout=self.udp_timeout)
        try:
            parse_config(data)  # a bad entry is the caller's error, raised here
        except ConfigError as e:
            raise PortProxyError(f"port proxy entries: {e}") from None
        # The engine updates at every container start and stop, mostly with the same ports;
        # entries that failed to listen are worth a reload though (their port may be free).
        current = self._in_force(data)
        if current is not None and not current.get("errors"):
            return {}
        data["serial"] = serial = time.time_ns()  # increasing across engine restarts too
        self._write_config(data)
        status = self._deliver(serial)
        if status.get("error"):
            raise PortProxyError(f"port proxy: {status['error']}")
        errors = status.get("errors")
        return {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}

    def running(self) -> bool:
        """Whether this directory's proxy runs (:meth:`pid` says which process it is)."""
        return self.pid() is not None
