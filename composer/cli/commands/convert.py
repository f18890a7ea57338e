"""``composer convert``: Docker Compose's alias of ``config``, and ``convert kubernetes``.

Docker Compose keeps ``convert`` as an alias of ``config`` (for its old cloud integrations), so
``composer convert [OPTIONS] [SERVICE...]`` is ``composer config``, flags and all; a first
argument ``kubernetes`` selects the Kubernetes conversion instead
(``composer convert kubernetes [OPTIONS] [SERVICE...]``). One parser carries both option sets
so that either spelling parses in one pass; each mode refuses the other's options.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from composer.cli.app import App
from composer.errors import UsageError

TARGETS = ("kubernetes",)
_K8S_ONLY = {"namespace": "--namespace", "registry": "--registry",
             "service_type": "--service-type", "output_dir": "--output-dir",
             "apply": "--apply", "image_override": "--image-override", "strict": "--strict"}
_CONFIG_ONLY = {"list_services": "--services", "list_volumes": "--volumes",
                "list_networks": "--networks", "list_images": "--images",
                "list_profiles": "--profiles", "list_variables": "--variables",
                "list_environment": "--environment", "hash": "--hash",
                "no_interpolate": "--no-interpolate", "no_consistency": "--no-consistency",
                "resolve_image_digests": "--resolve-image-digests",
                "lock_image_digests": "--lock-image-digests"}


class _Into:
    """Hands ``config``'s registration a parser, so that ``convert`` shares its options;
    ``positionals=False`` leaves out its SERVICE list (see :func:`register`)."""

    def __init__(self, parser: argparse.ArgumentParser, positionals: bool = True) -> None:
        self.parser = parser
        self.positionals = positionals

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        return self if not self.positionals else self.parser

    def add_argument(self, *names: str, **kwargs: Any) -> Any:
        if names and not names[0].startswith("-"):
            return None
        return self.parser.add_argument(*names, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)


def _options(parser: argparse.ArgumentParser, positionals: bool) -> None:
    from composer.cli.commands import config

    config.register(_Into(parser, positionals))
    k8s = parser.add_argument_group("kubernetes", "options of 'composer convert kubernetes' "
                                    "(-o FILE and --format json apply too)")
    k8s.add_argument("--namespace", metavar="NS", help="put every object in namespace NS "
                     "(and create it)")
    k8s.add_argument("--registry", metavar="HOST/PREFIX", help="name the images composer "
                     "builds HOST/PREFIX/<project>-<service>")
    k8s.add_argument("--service-type", choices=("ClusterIP", "NodePort", "LoadBalancer"),
                     default="ClusterIP", help="the type of the Services of services that "
                     "publish ports (label composer.kubernetes/service-type overrides)")
    k8s.add_argument("--output-dir", metavar="DIR", help="write one file per object in DIR")
    k8s.add_argument("--image-override", metavar="FILE", help="write a compose override "
                     "that names the built images as the pods run them (for build and push)")
    k8s.add_argument("--apply", action="store_true", help="apply the manifests with "
                     "'kubectl apply -f -' (kubectl's current context)")
    k8s.add_argument("--strict", action="store_true",
                     help="exit 1 when anything had to be dropped")


def register(commands: Any) -> None:
    p = commands.add_parser(
        "convert", help="the project as Kubernetes manifests (convert kubernetes), or config",
        description="'composer convert kubernetes [OPTIONS] [SERVICE...]' writes the project "
        "as Kubernetes manifests and reports what does not convert; 'composer convert' "
        "alone is 'composer config' (Docker Compose's alias).")
    _options(p, positionals=False)
    # Everything from the first word on is parsed again by run(), options and words mixed
    # (``convert kubernetes --format json web``), which one argparse pass cannot do.
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[kubernetes] [SERVICE...]",
                   help="'kubernetes' converts; without it this is 'composer config'")
    p.set_defaults(handler=run)


def run(app: App, options: argparse.Namespace) -> int:
    from composer.cli.parser import Parser

    again = Parser(prog="composer convert")
    _options(again, positionals=True)
    again.parse_intermixed_args(options.rest, namespace=options)
    selected = list(options.services_selected)
    if selected and selected[0] in TARGETS:
        options.services_selected = selected[1:]
        return run_kubernetes(app, options)
    given = [flag for dest, flag in _K8S_ONLY.items()
             if getattr(options, dest) not in (None, False, "ClusterIP")]
    if given:
        raise UsageError(f"{', '.join(given)}: only for 'composer convert kubernetes' "
                         "('composer convert' alone is 'composer config')")
    from composer.cli.commands import config

    return config.run(app, options)


def run_kubernetes(app: App, options: argparse.Namespace) -> int:
    from composer.export.kubernetes import (
        Options,
        convert_loaded,
        image_override,
        to_json,
        to_yaml,
        write_directory,
    )
    from composer.manifest.loader import LoadOptions, load

    _check(options)
    loaded = load(LoadOptions(
        files=options.files, project_dir=options.project_dir,
        project_name=options.project_name, env_files=options.env_files,
        profiles=options.profiles, services=options.services_selected))
    app.warnings(loaded.warnings)
    conversion = convert_loaded(loaded, Options(
        namespace=options.namespace, registry=options.registry,
        service_type=options.service_type))
    app.err.write(conversion.report.render())
    text = to_json(conversion.objects) if options.format == "json" else \
        to_yaml(conversion.objects)
    if options.output_dir:
        written = write_directory(conversion.objects, options.output_dir)
        app.err.write(f"kubernetes: {len(written)} files written in {options.output_dir}\n")
    elif options.output:
        with open(options.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    elif not options.apply and not options.quiet:
        sys.stdout.write(text)
    if options.image_override:
        from composer.manifest import printing

        with open(options.image_override, "w", encoding="utf-8") as handle:
            handle.write(printing.to_yaml(image_override(conversion)))
    code = 0
    if options.apply:
        code = apply(app, to_yaml(conversion.objects), dry_run=options.dry_run)
    if options.strict and conversion.report.dropped_count:
        app.error(f"--strict: {conversion.report.dropped_count} attributes could not be "
                  "converted (see the report above)")
        return code or 1
    return code


def _check(options: argparse.Namespace) -> None:
    for dest, flag in _CONFIG_ONLY.items():
        if getattr(options, dest):
            raise UsageError(f"{flag}: not an option of 'composer convert kubernetes' "
                             "(it is one of 'composer config')")
    if options.output and options.output_dir:
        raise UsageError("-o and --output-dir: give one of them")
    if options.output_dir and options.format == "json":
        raise UsageError("--output-dir writes YAML files: leave out --format json")
    namespace = options.namespace
    if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
                                                  namespace):
        raise UsageError(f"--namespace {namespace!r}: a namespace is a DNS label (lowercase "
                         "letters, digits and '-', at most 63)")
    registry = options.registry
    if registry is not None and (not registry.strip("/") or "://" in registry or
                                 any(c.isspace() for c in registry)):
        raise UsageError(f"--registry {registry!r}: give HOST[:PORT]/PREFIX, no scheme "
                         "(registry.example.com/team)")


_HOW = ("install kubectl and point it at a cluster (kubectl config use-context NAME), or "
        "write the manifests with -o FILE / --output-dir DIR and apply them where kubectl "
        "works: kubectl apply -f FILE")


def apply(app: App, manifests: str, *, dry_run: bool = False) -> int:
    """``kubectl apply -f -`` of the manifests, once kubectl is there and has a context."""
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        app.abort(f"--apply: kubectl is not installed (not on PATH): {_HOW}")
    try:
        context = subprocess.run([kubectl, "config", "current-context"], capture_output=True,
                                 text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        app.abort(f"--apply: 'kubectl config current-context' failed ({exc}): {_HOW}")
    if context.returncode != 0 or not context.stdout.strip():
        why = context.stderr.strip() or "no current context"
        app.abort(f"--apply: kubectl has no cluster to talk to ({why}): {_HOW}")
    app.err.write(f"kubernetes: applying to context {context.stdout.strip()}\n")
    command = [kubectl, "apply", "-f", "-"]
    if dry_run:
        command.append("--dry-run=client")
    done = subprocess.run(command, input=manifests, text=True, check=False)
    if done.returncode != 0:
        app.error(f"kubectl apply failed (exit {done.returncode})")
    return 0 if done.returncode == 0 else 1
