"""``composer``: the command line, shaped like ``docker compose``.

Start-up stays cheap: ``--version`` answers before argparse or any loader module is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Compose's subcommands that composer has not implemented yet; they fail with a clear word
# instead of argparse's "invalid choice".
PLANNED = {
    "attach", "commit", "export", "publish", "scale", "volumes",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-v"], ["version", "--short"]):
        from composer.__about__ import __version__

        print(__version__ if args[-1] == "--short" else f"composer version {__version__}")
        return 0

    from composer.cli.app import Abort, App
    from composer.cli.parser import build_parser
    from composer.errors import ComposerError

    app = App()
    try:
        parser = build_parser(args)
        # Flags of commands still to come are not declared yet; only those commands may
        # have them.
        options, unknown = parser.parse_known_args(args)
        if unknown and options.command not in PLANNED:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        if options.command is None:
            parser.print_help(sys.stderr)
            return 2
        if options.command in PLANNED:
            app.abort(f"'composer {options.command}' is not implemented yet: this release "
                      "loads, validates and plans projects (composer config, composer plan) "
                      "and runs single containers (composer container ...)")
        handler = options.handler
        code: int = handler(app, options)
        return code
    except ComposerError as exc:
        try:
            app.fail(exc)
        except Abort as abort:
            return abort.code
    except Abort as abort:
        return abort.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
