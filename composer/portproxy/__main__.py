"""``python -m composer.portproxy DIRECTORY [--log-level LEVEL]``

Reads ``DIRECTORY/config.json``, binds what it can (what it cannot is in ``proxy.status``), and
only then writes its pid to ``proxy.pid``: whoever started it knows it is ready when the
pidfile appears, and that it failed when it exits instead (the reason is in its stderr).
SIGHUP reloads, SIGTERM and SIGINT exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from composer.portproxy.config import STEM, ConfigError
from composer.portproxy.proxy import Proxy, log, raise_file_limit
from composer.sidecar import log_handler, paths, serving


async def run(directory: Path) -> int:
    proxy = Proxy(directory)
    # Before the pidfile exists nobody sends SIGHUP; handlers go first all the same, so that a
    # signal during start-up waits for the loop rather than killing the process.
    proxy.install_signals()
    try:
        proxy.start()
    except ConfigError as e:
        log.error("cannot start: %s", e)
        return 1
    with serving(paths(directory, STEM).pidfile):
        await proxy.serve()
    log.info("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer.portproxy",
                                     description="composer's proxy for IPv6 published ports")
    parser.add_argument("directory", type=Path,
                        help="holds config.json; proxy.pid and proxy.status are written there")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    log.addHandler(log_handler("composer-portproxy"))
    log.setLevel(args.log_level.upper())
    raise_file_limit()
    # Absolute: serving() changes to / (see composer.sidecar).
    return asyncio.run(run(args.directory.absolute()))


if __name__ == "__main__":
    sys.exit(main())
