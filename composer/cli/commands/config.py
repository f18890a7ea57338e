"""``composer config``: load, validate and print the normalized project."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from composer.cli.app import App


def register(commands: Any) -> None:
    p = commands.add_parser("config", help="validate the project and print it normalized")
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("-q", "--quiet", action="store_true", help="only validate")
    listing = p.add_mutually_exclusive_group()
    for flag, what in (("--services", "service names"), ("--volumes", "volume keys"),
                       ("--networks", "network keys"), ("--images", "image names"),
                       ("--profiles", "profile names"), ("--variables", "variables used"),
                       ("--environment", "environment used for interpolation")):
        # dest "list_*": "--profiles" would otherwise overwrite the global "--profile" list.
        listing.add_argument(flag, dest=f"list_{flag[2:]}", action="store_true",
                             help=f"print the {what}")
    listing.add_argument("--hash", metavar="SERVICES",
                         help="print the config hash of SERVICES (comma-separated, or '*')")
    p.add_argument("--no-interpolate", action="store_true", help="keep ${VAR} as written")
    p.add_argument("--no-consistency", action="store_true",
                   help="skip the cross-reference checks")
    p.add_argument("--resolve-image-digests", action="store_true",
                   help="pin each image to its registry digest (name:tag@sha256:...)")
    p.add_argument("--lock-image-digests", action="store_true",
                   help="print an override file pinning each image to its digest")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.set_defaults(handler=run)


def run(app: App, options: argparse.Namespace) -> int:
    from composer.manifest.loader import LoadOptions, load, plain_tree

    if options.list_variables:
        return _variables(app, options)
    loaded = load(LoadOptions(
        files=options.files, project_dir=options.project_dir,
        project_name=options.project_name, env_files=options.env_files,
        profiles=options.profiles, services=options.services_selected,
        interpolate=not options.no_interpolate, consistency=not options.no_consistency))
    app.warnings(loaded.warnings)
    if options.quiet:
        return 0
    if options.hash:
        return _hashes(app, loaded, options.hash)
    project = plain_tree(loaded)
    if options.services_selected:
        keep = _with_dependencies(project, options.services_selected)
        project["services"] = {k: v for k, v in project["services"].items() if k in keep}
    if options.resolve_image_digests or options.lock_image_digests:
        text = _pinned(app, project, options)
    else:
        text = _render(project, loaded, options)
    if options.output:
        with open(options.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _pinned(app: App, project: dict[str, Any], options: argparse.Namespace) -> str:
    from composer.cli.commands.config_digests import lock_override, render, resolve_images
    from composer.manifest import printing

    services: dict[str, Any] = project.get("services") or {}
    pinned = resolve_images(services)
    if options.lock_image_digests:
        for name, service in sorted(services.items()):
            if any(isinstance(h, dict) and h.get("image") for h in service.get("pre_start") or ()):
                app.warn(f"service {name}: the images of its pre_start hooks are not pinned by "
                         "the lock file (hooks are appended when files merge); use "
                         "--resolve-image-digests for the whole project pinned")
        return render(lock_override(pinned), options.format)
    for name, image in pinned.items():
        services[name]["image"] = image
    if options.format == "json":
        return printing.to_json(project, raw=options.no_interpolate) + "\n"
    return printing.to_yaml(project, raw=options.no_interpolate)


def _render(project: dict[str, Any], loaded: Any, options: argparse.Namespace) -> str:
    services: dict[str, Any] = project.get("services") or {}
    lines: list[str] | None = None
    if options.list_services:
        lines = _dependency_order(services)
    elif options.list_volumes:
        lines = sorted(project.get("volumes") or {})
    elif options.list_networks:
        lines = sorted(project.get("networks") or {})
    elif options.list_images:
        # One line per service, by service name, as Compose prints them (duplicates too).
        from composer.manifest.model import built_image_name

        lines = [services[name].get("image") or built_image_name(project["name"], name)
                 for name in sorted(services)]
    elif options.list_profiles:
        from composer.manifest.profiles import list_profiles
        from composer.manifest.yamlload import parse_documents

        # From the files as read (stdin, included and extended ones too): profiles that are
        # off have had their services dropped from the project already.
        trees = [doc for display, text in loaded.compose_files
                 for doc in parse_documents(text, display)]
        lines = sorted({p for tree in trees for p in list_profiles(tree)})
    elif options.list_environment:
        lines = [f"{k}={v}" for k, v in sorted(loaded.env.items())]
    if lines is not None:
        return "".join(f"{line}\n" for line in lines)
    from composer.manifest import printing

    raw = options.no_interpolate
    if options.format == "json":
        return printing.to_json(project, raw=raw) + "\n"
    return printing.to_yaml(project, raw=raw)


def _hashes(app: App, loaded: Any, requested: str) -> int:
    """``<service> <hash>`` per service, by name, as ``docker compose config --hash`` prints."""
    from composer.manifest.contents import contents
    from composer.manifest.model import build_project
    from composer.state.labels import service_hash

    project = build_project(loaded)
    digests = contents(project)  # the hash the planner labels containers with
    names = sorted(project.services) if requested.strip() == "*" else \
        sorted({name.strip() for name in requested.split(",") if name.strip()})
    for name in names:
        if name not in project.services:
            app.abort(f"no such service: {name}")
    for name in names:
        app.print(f"{name} {service_hash(project.services[name], digests)}")
    return 0


def _variables(app: App, options: argparse.Namespace) -> int:
    """The variables every compose file of the project uses (included and extended ones too),
    by name: Compose prints them in no fixed order."""
    from composer.cli import output
    from composer.manifest.interpolate import list_variables
    from composer.manifest.loader import LoadOptions, load
    from composer.manifest.yamlload import parse_documents

    # Without interpolation, so that a ${VAR:?} left unset is listed rather than fatal.
    loaded = load(LoadOptions(
        files=options.files, project_dir=options.project_dir,
        project_name=options.project_name, env_files=options.env_files,
        profiles=options.profiles, interpolate=False, consistency=False))
    found: dict[str, Any] = {}
    for display, text in loaded.compose_files:
        for doc in parse_documents(text, display):
            for var in list_variables(doc):
                found.setdefault(var.name, var)
    variables = [found[name] for name in sorted(found)]
    if options.format == "json":
        app.print(output.to_json({v.name: {
            "Name": v.name, "DefaultValue": v.default or "",
            "PresenceValue": v.alternate or "", "Required": v.required}
            for v in variables}, indent=4))
        return 0
    rows = [("NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE")]
    rows += [(v.name, str(v.required).lower(), v.default or "", v.alternate or "")
             for v in variables]
    # Columns as Compose's tab writer lays them out: at least 20 wide, 3 spaces of padding.
    widths = [max(20, *(len(r[i]) + 3 for r in rows)) for i in range(3)]
    for r in rows:
        cells = zip(r[:3], widths, strict=True)
        app.print("".join(cell.ljust(width) for cell, width in cells) + r[3])
    return 0


def _with_dependencies(project: dict[str, Any], selected: list[str]) -> set[str]:
    services = project.get("services") or {}
    keep: set[str] = set()
    todo = list(selected)
    while todo:
        name = todo.pop()
        if name in keep or name not in services:
            continue
        keep.add(name)
        todo.extend((services[name] or {}).get("depends_on") or {})
    return keep


def _dependency_order(services: dict[str, Any]) -> list[str]:
    """Dependencies before their dependents, ties by name: stable whatever the file order."""
    done: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in services:
            return
        seen.add(name)
        for dep in sorted((services[name] or {}).get("depends_on") or {}):
            visit(dep)
        done.append(name)

    for name in sorted(services):
        visit(name)
    return done


