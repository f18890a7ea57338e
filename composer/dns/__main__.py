"""``python -m composer.dns --config FILE --pidfile FILE [--status FILE] [--log FILE]``

Loads the config and binds every gateway, and only then writes its pid to ``--pidfile``
(atomically): whoever started it knows it is ready when the pidfile appears, and that it failed
when it exits instead (the reason is in the log). SIGHUP reloads, SIGTERM and SIGINT exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from composer.dns.process import write_atomically
from composer.dns.records import ConfigError
from composer.dns.server import Resolver, log


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
    # Absolute before the chdir below.
    for name in ("config", "pidfile", "status", "log"):
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).absolute())

    handler: logging.Handler = (logging.FileHandler(args.log) if args.log
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s composer-dns[%(process)d] %(levelname)s %(message)s"))
    log.addHandler(handler)
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
    write_atomically(args.pidfile, f"{os.getpid()}\n")
    # Hold no directory busy (the engine's working directory may be a mount): with -m,
    # sys.path holds the start directory as an absolute path, so imports still work.
    os.chdir("/")
    log.info("serving %s on %s", args.config,
             ", ".join(f"{g}:{p}" for g, p in resolver.listeners))
    try:
        resolver.serve()
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(args.pidfile.read_text()) == os.getpid():
                args.pidfile.unlink()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
