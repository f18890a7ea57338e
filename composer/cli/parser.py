"""The argument parser: Docker Compose v2's global flags and subcommands."""

from __future__ import annotations

import argparse
from typing import Any

from composer.__about__ import __version__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's exit code 2 is Compose's too
        self.print_usage()
        self.exit(2, f"error: {message}\n  hint: run '{self.prog} --help' for the options\n")


def build_parser() -> argparse.ArgumentParser:
    from composer.cli.commands import (
        config,
        container,
        engine,
        image,
        login,
        plan,
        project_images,
        version,
    )
    from composer.cli.main import PLANNED

    parser = _Parser(prog="composer", description="Run compose projects as real Linux "
                     "containers, without Docker.")
    parser.add_argument("-v", "--version", action="version",
                        version=f"composer version {__version__}")
    parser.add_argument("-f", "--file", dest="files", action="append", default=[],
                        metavar="FILE", help="compose file (repeatable; '-' reads stdin)")
    parser.add_argument("-p", "--project-name", dest="project_name", metavar="NAME")
    parser.add_argument("--project-directory", dest="project_dir", metavar="DIR")
    parser.add_argument("--profile", dest="profiles", action="append", default=[],
                        metavar="PROFILE", help="enable a profile (repeatable)")
    parser.add_argument("--env-file", dest="env_files", action="append", default=[],
                        metavar="FILE", help="environment file (repeatable)")
    parser.add_argument("--parallel", type=int, default=-1, metavar="N")
    parser.add_argument("--progress", choices=("auto", "tty", "plain", "json", "quiet"),
                        default="auto")
    parser.add_argument("--ansi", choices=("never", "always", "auto"), default="auto")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--root", metavar="DIR", help="state root (default /var/lib/composer)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    config.register(commands)
    container.register(commands)
    engine.register(commands)
    image.register(commands)
    login.register(commands)
    plan.register(commands)
    project_images.register(commands)
    version.register(commands)
    for name in sorted(PLANNED):
        sub = commands.add_parser(name, help="(not implemented yet)", add_help=False)
        sub.add_argument("rest", nargs=argparse.REMAINDER)
    return parser
