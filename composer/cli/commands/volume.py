"""``composer volume create|ls|inspect|rm|prune``: named volumes, in Docker's words."""

from __future__ import annotations

import argparse
import json
from typing import Any

from composer.cli.app import App


def register(commands: Any) -> None:
    volume = commands.add_parser("volume", help="manage named volumes (create, ls, rm, ...)")
    verbs = volume.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("create", help="create a volume")
    p.add_argument("name", nargs="?")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    p = verbs.add_parser("ls", aliases=["list"], help="list volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = verbs.add_parser("inspect", help="show volumes as JSON")
    p.add_argument("names", nargs="+")
    p = verbs.add_parser("rm", aliases=["remove"], help="remove volumes (never one in use)")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+")
    p = verbs.add_parser("prune", help="remove every volume no container uses")
    p.add_argument("-f", "--force", action="store_true", help="(accepted: prune never asks)")
    volume.set_defaults(handler=run)


def run(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.container_flags import pairs
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.removal import print_pruned, remove_each

    engine = engine_client(options)
    verb = {"list": "ls", "remove": "rm"}.get(options.verb, options.verb)
    if verb == "create":
        made = engine.request("POST", "/v1/volumes", {
            "name": options.name, "labels": pairs(options.label, "--label"),
            "driver": options.driver, "options": pairs(options.opt, "--opt")})
        app.print(made["Name"])
    elif verb == "ls":
        listed = engine.request("GET", "/v1/volumes")
        if options.quiet:
            for v in listed:
                app.print(v["Name"])
        elif options.format == "json":
            app.print(json.dumps(listed, indent=2))
        else:
            app.print(f"{'DRIVER':<16}VOLUME NAME")
            for v in listed:
                app.print(f"{v['Driver']:<16}{v['Name']}")
    elif verb == "inspect":
        app.print(json.dumps([engine.request("GET", f"/v1/volumes/{n}") for n in options.names],
                             indent=4))
    elif verb == "rm":
        return remove_each(app, options.names, lambda name: engine.request(
            "DELETE", f"/v1/volumes/{name}", params={"force": int(options.force)}))
    else:
        print_pruned(app, "Volumes",
                     engine.request("POST", "/v1/volumes/prune")["VolumesDeleted"])
    return 0
