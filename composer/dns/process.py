"""The engine's handle on the resolver process: write its records, start it, reload it, stop it.

The resolver is a process of its own (``python -m composer.dns``) so that names keep resolving
while the engine is down or restarting. Everything about it lives in one directory, driven as
:mod:`composer.sidecar` describes: ``config.json`` (the records), ``resolver.pid``,
``resolver.status`` and ``resolver.log``. :meth:`Resolver.update` waits for its own serial in
the status, so that when it returns the new records are answered (a container started right
after its network's update finds its peers).

This module is imported by the engine: it must not import dnslib (nor ``server``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from composer.dns.records import (
    DNS_PORT,
    ClientRecords,
    ConfigError,
    NetworkRecords,
    config_data,
    parse_config,
)
from composer.errors import ComposerError
from composer.sidecar import (  # noqa: F401  (re-exported: the resolver's own names for them)
    RELOAD_TIMEOUT,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Sidecar,
    write_atomically,
)

UPSTREAM_ENV = "COMPOSER_DNS_UPSTREAM"


class ResolverError(ComposerError):
    """The resolver could not be started, reloaded or stopped; the message says why (for a
    start, with the end of its log)."""


class Resolver(Sidecar):
    """The resolver process for one engine, through the files in ``directory``."""

    module = "composer.dns"
    stem = "resolver"
    what = "the DNS resolver"
    error_class = ResolverError

    def __init__(self, directory: Path, *, upstream: list[str] | None = None,
                 port: int = DNS_PORT) -> None:
        super().__init__(directory)
        if upstream is None and os.environ.get(UPSTREAM_ENV):
            upstream = [s.strip() for s in os.environ[UPSTREAM_ENV].split(",") if s.strip()]
        self.upstream = upstream  # None: the resolver reads the host's resolv.conf itself
        self.port = port

    def arguments(self) -> list[str]:
        return ["--config", str(self.config_path), "--pidfile", str(self.pidfile),
                "--status", str(self.status_path)]

    def identity(self) -> Path:
        return self.config_path

    def update(self, networks: Mapping[str, NetworkRecords],
               clients: Mapping[str, ClientRecords]) -> None:
        """Make the resolver answer these records: start it, or reload it, and return once
        they are live. No networks: no resolver."""
        if not networks:
            self.stop()
            return
        serial = time.time_ns()  # increasing across engine restarts too
        data = config_data(networks, clients, port=self.port, upstream=self.upstream,
                           serial=serial)
        try:
            parse_config(data)  # a bad record is the caller's error, raised here, not logged there
        except ConfigError as e:
            raise ResolverError(f"DNS records: {e}") from None
        self._write_config(data)
        status = self._deliver(serial)
        if status.get("error"):
            raise ResolverError(f"DNS resolver: {status['error']}")

    def running(self) -> int | None:
        """The resolver's pid if the pidfile names a live process that is this directory's
        resolver (a stale pidfile's pid may have been reused by anything)."""
        return self.pid()
