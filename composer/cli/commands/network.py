"""``composer network create|ls|inspect|rm|connect|disconnect|prune``, in Docker's words."""

from __future__ import annotations

import argparse
import json
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError


def register(commands: Any) -> None:
    network = commands.add_parser("network", help="manage networks (create, ls, rm, ...)")
    verbs = network.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("create", help="create a bridge network")
    p.add_argument("name")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--internal", action="store_true", help="no way in or out of the host")
    p.add_argument("--subnet", action="append", default=[])
    p.add_argument("--ip-range", action="append", default=[])
    p.add_argument("--gateway", action="append", default=[])
    p.add_argument("--aux-address", action="append", default=[], metavar="NAME=IP")
    p.add_argument("-l", "--label", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--attachable", action="store_true", help="(accepted: every network is)")
    p = verbs.add_parser("ls", aliases=["list"], help="list networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = verbs.add_parser("inspect", help="show networks as JSON")
    p.add_argument("names", nargs="+")
    p = verbs.add_parser("rm", aliases=["remove"], help="remove networks")
    p.add_argument("-f", "--force", action="store_true", help="no error for a missing one")
    p.add_argument("names", nargs="+")
    p = verbs.add_parser("connect", help="connect a container to a network")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("network")
    p.add_argument("container")
    p = verbs.add_parser("disconnect", help="disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    p = verbs.add_parser("prune", help="remove every network no container uses")
    p.add_argument("-f", "--force", action="store_true", help="(accepted: prune never asks)")
    network.set_defaults(handler=run)


def _ipam(options: argparse.Namespace) -> list[dict[str, Any]]:
    from composer.cli.commands.container_flags import pairs

    if len(options.subnet) > 1:
        raise UsageError("--subnet: one subnet per network (IPv6 is not supported yet)")
    if (options.ip_range or options.gateway or options.aux_address) and not options.subnet:
        raise UsageError("--ip-range, --gateway and --aux-address need --subnet")
    if not options.subnet:
        return []
    config: dict[str, Any] = {"subnet": options.subnet[0]}
    if options.ip_range:
        config["ip_range"] = options.ip_range[0]
    if options.gateway:
        config["gateway"] = options.gateway[0]
    if options.aux_address:
        config["aux_addresses"] = pairs(options.aux_address, "--aux-address")
    return [config]


def run(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.container_flags import pairs
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.removal import print_pruned, remove_each

    engine = engine_client(options)
    verb = {"list": "ls", "remove": "rm"}.get(options.verb, options.verb)
    if verb == "create":
        made = engine.request("POST", "/v1/networks", {
            "name": options.name, "driver": options.driver, "internal": options.internal,
            "labels": pairs(options.label, "--label"), "options": pairs(options.opt, "--opt"),
            "ipam": _ipam(options)})
        app.print(made["Id"])
    elif verb == "ls":
        listed = engine.request("GET", "/v1/networks")
        if options.quiet:
            for n in listed:
                app.print(n["Id"] if options.no_trunc else n["Id"][:12])
        elif options.format == "json":
            app.print(json.dumps(listed, indent=2))
        else:
            width = 66 if options.no_trunc else 15
            app.print(f"{'NETWORK ID':<{width}}{'NAME':<24}{'DRIVER':<10}SCOPE")
            for n in listed:
                shown = n["Id"] if options.no_trunc else n["Id"][:12]
                app.print(f"{shown:<{width}}{n['Name']:<24}{n['Driver']:<10}{n['Scope']}")
    elif verb == "inspect":
        app.print(json.dumps([engine.request("GET", f"/v1/networks/{n}")
                              for n in options.names], indent=4))
    elif verb == "rm":
        return remove_each(app, options.names,
                           lambda name: engine.request("DELETE", f"/v1/networks/{name}"),
                           ignore=lambda exc: options.force and "not found" in str(exc))
    elif verb in ("connect", "disconnect"):
        body: dict[str, Any] = {"container": options.container}
        if verb == "connect":
            body.update(aliases=options.alias, ipv4_address=options.ip)
        engine.request("POST", f"/v1/networks/{options.network}/{verb}", body)
    else:
        print_pruned(app, "Networks",
                     engine.request("POST", "/v1/networks/prune")["NetworksDeleted"])
    return 0
