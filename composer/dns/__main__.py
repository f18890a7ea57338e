"""``python -m composer.dns --config FILE --pidfile FILE [--status FILE] [--log FILE]``

Loads the config and binds every gateway, and only then writes its pid to ``--pidfile``
(atomically): whoever started it knows it is ready when the pidfile appears, and that it failed
when it exits instead (the reason is in the log). SIGHUP reloads, SIGTERM and SIGINT exit 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from composer.dns.records import ConfigError
from composer.dns.server import Resolver, log
from composer.sidecar import log_handler, serving


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer.dns",
                                     description="composer's DNS resolver for its networks")
    parser.add_argument("--config", type=Path, required=True, help="the JSON records file")
    parser.add_argument("--pidfile", type=Path, required=True,
                        help="written once listening: the sign that it is ready")
    parser.add_argument("--status", type=Path,
                        help="rewritten after each load: the serial in force and any error")
    parser.add_argument("--log", type=Path, help="append the log here instead of stderr")
    parser.add_argument("--log-level", default="warning",
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    # Absolute: serving() changes to / (see composer.sidecar).
    for name in ("config", "pidfile", "status", "log"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).absolute())

    log.addHandler(log_handler("composer-dns", args.log))
    log.setLevel(args.log_level.upper())

    resolver = Resolver(args.config, status_path=args.status)
    # Before the pidfile exists nobody sends SIGHUP; handlers go first all the same, so that a
    # signal during start-up is queued for the loop rather than killing the process.
    resolver.install_signals()
    try:
        resolver.start()
    except (ConfigError, OSError) as e:
        log.error("cannot start: %s", e)
        return 1
    with serving(args.pidfile):
        log.info("serving %s on %s", args.config,
                 ", ".join(f"{g}:{p}" for g, p in resolver.listeners))
        resolver.serve()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
