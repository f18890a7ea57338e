"""The argument parser: Docker Compose v2's global flags and subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from composer.__about__ import __version__


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's exit code 2 is Compose's too
        self.print_usage()
        self.exit(2, f"error: {message}\n  hint: run '{self.prog} --help' for the options\n")


# Which module registers each command (and its one-line help, for the listing). Only the
# module of the command being run is imported and registered: building every command's
# parser (the container flags alone are 70 options, twice) and importing every module would
# cost each command about 40 ms.
COMMANDS: dict[str, tuple[str, str]] = {
    "config": ("config", "validate the project and print it normalized"),
    "convert": ("convert", "the project as Kubernetes manifests (convert kubernetes)"),
    "container": ("container", "manage single containers (run, ls, ...)"),
    "engine": ("engine", "control the engine (start, stop, status, run)"),
    "image": ("image", "manage images (pull, push, ls, rm, ...)"),
    "login": ("login", "log in to a registry"),
    "logout": ("login", "forget the credentials of a registry"),
    "network": ("network", "manage networks (create, ls, rm, connect, ...)"),
    "plan": ("plan", "show what 'up' would change, and why"),
    "up": ("project_up", "create and start the project's containers"),
    "create": ("project_up", "create the project's containers, not start them"),
    "down": ("project_up", "stop and remove the project's containers and networks"),
    "ls": ("project_up", "list the projects"),
    "run": ("project_up", "run a one-off command in a new container of a service"),
    "build": ("project_build", "build the images of the project's services"),
    "pull": ("project_images", "pull the images of the project's services"),
    "push": ("project_images", "push the images the project's services build"),
    "images": ("project_images", "list the images of the project's services"),
    "ps": ("project_ops", "list the project's containers"),
    "logs": ("project_ops", "show the output of the project's containers"),
    "exec": ("project_ops", "run a command in a running service container"),
    "start": ("project_ops", "start the project's stopped containers"),
    "stop": ("project_ops", "stop the project's containers"),
    "restart": ("project_ops", "restart the project's containers"),
    "kill": ("project_ops", "send a signal to the project's containers"),
    "pause": ("project_ops", "pause the project's containers"),
    "unpause": ("project_ops", "unpause the project's containers"),
    "rm": ("project_ops", "remove the project's stopped containers"),
    "top": ("project_ops", "the processes of the project's containers"),
    "port": ("project_ops", "the public port of a service's private port"),
    "wait": ("project_ops", "wait until the services' containers stop"),
    "cp": ("project_ops", "copy files between a service container and the host"),
    "stats": ("project_ops", "resource usage of the project's containers"),
    "events": ("project_ops", "the project's container events, as they happen"),
    "version": ("version", "show the composer version"),
    "watch": ("project_watch", "apply manifest edits and develop.watch rules as files change"),
    "volume": ("volume", "manage named volumes (create, ls, rm, ...)"),
}
# Global options that take a value (``-f FILE``), to find the command in an argument list.
_VALUED = {"-f", "--file", "-p", "--project-name", "--project-directory", "--profile",
           "--env-file", "--parallel", "--progress", "--ansi", "--root"}


def command_of(argv: Sequence[str]) -> str | None:
    """The command an argument list names (None for none, or for a help request)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-h", "--help"):
            return None
        elif arg in _VALUED:
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only its command is fully built (see COMMANDS)."""
    import importlib

    from composer.cli.main import PLANNED

    parser = Parser(prog="composer", description="Run compose projects as real Linux "
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
    progress = ("auto", "tty", "plain", "json", "quiet")
    parser.add_argument("--progress", choices=progress,
                        default=_from_environment("COMPOSE_PROGRESS", progress, "auto"))
    ansi = ("never", "always", "auto")
    parser.add_argument("--ansi", choices=ansi,
                        default=_from_environment("COMPOSE_ANSI", ansi, "auto"))
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--root", metavar="DIR", help="state root (default /var/lib/composer)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    wanted = None if argv is None else command_of(argv)
    modules = sorted({m for m, _ in COMMANDS.values()}) if wanted not in COMMANDS else \
        [COMMANDS[str(wanted)][0]]
    for module in modules:
        importlib.import_module(f"composer.cli.commands.{module}").register(commands)
    registered = set(commands.choices)
    for name, (_, text) in sorted(COMMANDS.items()):
        if name not in registered:
            commands.add_parser(name, help=text, add_help=False)  # listed, never run
    for name in sorted(PLANNED):
        sub = commands.add_parser(name, help="(not implemented yet)", add_help=False)
        sub.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _from_environment(variable: str, choices: tuple[str, ...], unset: str) -> str:
    """The default of a global option from its ``COMPOSE_*`` variable (``unset`` when it is
    not set); a value the option does not take is an error, not silently ignored."""
    import os

    from composer.errors import UsageError

    value = os.environ.get(variable) or unset
    if value not in choices:
        raise UsageError(f"{variable}={value!r} is not one of {', '.join(choices)}: "
                         f"set it to one of them or unset it")
    return value
