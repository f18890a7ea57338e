"""``composer pull`` and ``composer images``: the images of a compose project.

``pull`` pulls every service's image as Docker Compose does: services that are built and have
no ``image`` are skipped, ``pull_policy: never`` and ``build`` are skipped, ``missing`` pulls
only what the store lacks, ``always`` (and the default policy, as ``docker compose pull``
does) pulls. ``--ignore-pull-failures`` goes on past a failed pull; ``-q`` prints nothing.
``push`` pushes the images the project builds (services with both ``build`` and ``image``, as
``docker compose push`` does); ``--include-deps`` adds the services the named ones depend on.
``images`` lists each service's image as the store has it.
"""

from __future__ import annotations

import argparse
from typing import Any

from composer.cli.app import App
from composer.errors import ComposerError


def register(commands: Any) -> None:
    pull = commands.add_parser("pull", help="pull the images of the project's services")
    pull.add_argument("services_selected", nargs="*", metavar="SERVICE")
    pull.add_argument("-q", "--quiet", action="store_true")
    pull.add_argument("--ignore-pull-failures", action="store_true")
    pull.add_argument("--policy", choices=("missing", "always"), default=None)
    pull.set_defaults(handler=run_pull)
    push = commands.add_parser("push", help="push the images the project's services build")
    push.add_argument("services_selected", nargs="*", metavar="SERVICE")
    push.add_argument("-q", "--quiet", action="store_true")
    push.add_argument("--ignore-push-failures", action="store_true")
    push.add_argument("--include-deps", action="store_true")
    push.set_defaults(handler=run_push)
    images = commands.add_parser("images", help="list the images of the project's services")
    images.add_argument("services_selected", nargs="*", metavar="SERVICE")
    images.add_argument("-q", "--quiet", action="store_true")
    images.set_defaults(handler=run_images)


def _project(app: App, options: argparse.Namespace) -> Any:
    from composer.manifest.loader import load_project

    project = load_project(options.files, project_dir=options.project_dir,
                           project_name=options.project_name, env_files=options.env_files,
                           profiles=options.profiles, services=options.services_selected)
    app.warnings(project.warnings)
    return project


def _store(options: argparse.Namespace) -> Any:
    from pathlib import Path

    from composer.cli.commands.image import state_root
    from composer.state.layout import open_images

    return open_images(Path(state_root(options)))


def run_pull(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import RegistryClient
    from composer.runtime.images.transfer import pull

    project = _project(app, options)
    with _store(options) as store, RegistryClient() as client:
        chosen = []
        for name in sorted(project.services):
            service = project.services[name]
            policy = options.policy or str(service.spec.get("pull_policy") or "always")
            if not service.image or policy in ("never", "build"):
                continue  # built here, or the user said never: nothing to pull
            if policy in ("missing", "if_not_present") and store.get(service.image):
                continue
            chosen.append(service)
        return _each(app, options, chosen, lambda ref, progress: pull(
            store, client, ref, progress=progress), ignore=options.ignore_pull_failures)


def _each(app: App, options: argparse.Namespace, services: list[Any], action: Any, *,
          ignore: bool) -> int:
    """Pull or push each service's image; with ``ignore``, go on past a failure (exit 1)."""
    failed = []
    for service in services:
        try:
            action(service.image, (lambda line: None) if options.quiet else app.print)
        except ComposerError as exc:
            if not ignore:
                raise
            app.warn(f"service {service.name}: {exc}")
            failed.append(service.name)
    return 1 if failed else 0


def run_push(app: App, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import RegistryClient
    from composer.runtime.images.transfer import push

    project = _project(app, options)
    # The loader keeps what the named services depend on; without --include-deps only the
    # named ones are pushed, as Compose does.
    chosen = (set(project.services) if options.include_deps or not options.services_selected
              else set(options.services_selected))
    # Only what is built here has something to push.
    built = [project.services[n] for n in sorted(chosen)
             if project.services[n].image and project.services[n].spec.get("build") is not None]
    with _store(options) as store, RegistryClient() as client:
        return _each(app, options, built, lambda ref, progress: push(
            store, client, ref, progress=progress), ignore=options.ignore_push_failures)


def run_images(app: App, options: argparse.Namespace) -> int:
    from composer.plan.reconcile import image_ref

    project = _project(app, options)
    with _store(options) as store:
        if not options.quiet:
            app.print(f"{'SERVICE':<20} {'IMAGE':<50} IMAGE ID")
        for name in sorted(project.services):
            ref = image_ref(project, project.services[name])
            try:
                image = store.get(ref)
            except ComposerError:
                # A project name can make "<project>-<service>" no valid image name
                # ("a_-web"): such an image cannot be in the store.
                image = None
            if options.quiet:
                if image is not None:
                    app.print(image.short_id)
                continue
            app.print(f"{name:<20} {ref:<50} {image.short_id if image else '(not pulled)'}")
    return 0
