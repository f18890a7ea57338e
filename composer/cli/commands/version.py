"""``composer version``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from composer.__about__ import __version__
from composer.cli.app import App


def register(commands: Any) -> None:
    parser = commands.add_parser("version", help="show the composer version")
    parser.add_argument("--format", choices=("pretty", "json"), default="pretty")
    parser.add_argument("--short", action="store_true")
    parser.set_defaults(handler=run)


def run(app: App, options: argparse.Namespace) -> int:
    if options.short:
        app.print(__version__)
    elif options.format == "json":
        app.print(json.dumps({"version": __version__}))
    else:
        app.print(f"composer version {__version__}")
    return 0
