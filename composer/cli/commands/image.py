"""``composer image ...``: the image store, in Docker's words.

``pull``, ``push``, ``ls``, ``inspect``, ``tag``, ``rm``, ``prune``, ``import``, ``load``,
``save`` and ``history``. The store lives under the state root (``--root``,
``COMPOSER_ROOT``, default ``/var/lib/composer``) in ``images/``. Until the engine exists
these commands use the store directly; they are safe beside each other (the store locks what
it changes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from composer.cli.app import App

DEFAULT_ROOT = "/var/lib/composer"


def register(commands: Any) -> None:
    image = commands.add_parser("image", help="manage images (pull, push, ls, rm, ...)")
    verbs = image.add_subparsers(dest="verb", metavar="VERB", required=True)
    p = verbs.add_parser("build", help="build an image from a Dockerfile")
    p.add_argument("context", help="the build context, a directory")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]")
    p.add_argument("-f", "--file", metavar="DOCKERFILE",
                   help="the Dockerfile, relative to the context (default: Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--target", help="the stage to build (default: the last)")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.add_argument("--pull", action="store_true", help="pull every base image again")
    p.add_argument("--network", default="bridge", help="RUN's network (default: bridge)")
    p.add_argument("--shm-size", metavar="SIZE", help="RUN's /dev/shm size (64m)")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                   help="an /etc/hosts entry for RUN (IP may be host-gateway)")
    p.add_argument("--secret", action="append", default=[],
                   metavar="id=ID[,src=PATH|,env=VAR]",
                   help="a secret for RUN --mount=type=secret (a file or a variable)")
    p.add_argument("--platform", help="the platform to build for (only this host's)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the image id")
    p = verbs.add_parser("pull", help="pull an image from a registry")
    p.add_argument("name")
    p.add_argument("--platform", help="os/arch[/variant], default: this host's")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verbs.add_parser("push", help="push an image to its registry")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true")
    p = verbs.add_parser("ls", help="list images")
    p.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = verbs.add_parser("inspect", help="show an image's config and layers as JSON")
    p.add_argument("names", nargs="+")
    p = verbs.add_parser("tag", help="give an image another name")
    p.add_argument("source")
    p.add_argument("target")
    p = verbs.add_parser("rm", help="remove images")
    p.add_argument("names", nargs="+")
    p.add_argument("-f", "--force", action="store_true")
    p = verbs.add_parser("prune", help="remove dangling images (all unused with -a)")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true", help="(accepted: prune never asks)")
    p = verbs.add_parser("import", help="make an image from a root filesystem tarball")
    p.add_argument("file", help="a tarball (plain, gzip or zstd), or - for stdin")
    p.add_argument("name", nargs="?")
    p = verbs.add_parser("load", help="load a 'docker save' or OCI archive")
    p.add_argument("-i", "--input", default="-", help="the archive (default: stdin)")
    p = verbs.add_parser("save", help="write images to a 'docker save' or OCI archive")
    p.add_argument("names", nargs="+")
    p.add_argument("-o", "--output", default="-")
    p.add_argument("--format", choices=("docker", "oci"), default="docker")
    p = verbs.add_parser("history", help="show the steps that made an image")
    p.add_argument("name")
    p.add_argument("-q", "--quiet", action="store_true", help="only layer ids")
    p.add_argument("--no-trunc", action="store_true", help="do not shorten ids and commands")
    p.add_argument("-H", "--human", choices=("true", "false"), default="true",
                   help="sizes and dates in human terms (default true)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    image.set_defaults(handler=run)


def state_root(options: argparse.Namespace) -> str:
    return str(options.root or os.environ.get("COMPOSER_ROOT") or DEFAULT_ROOT)


def run(app: App, options: argparse.Namespace) -> int:
    from pathlib import Path

    from composer.state.layout import open_images

    if options.verb == "build":  # RUN steps are containers: the engine builds
        return _build(app, options)
    with open_images(Path(state_root(options))) as store:
        handler = _VERBS[options.verb]
        return handler(app, store, options)


def _pull(app: App, store: Any, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import Platform, RegistryClient
    from composer.runtime.images.transfer import pull

    platform = None
    if options.platform:
        os_name, _, rest = options.platform.partition("/")
        arch, _, variant = rest.partition("/")
        platform = Platform(os_name, arch, variant or None)
    with RegistryClient() as client:
        image = pull(store, client, options.name, platform=platform,
                     progress=(lambda line: None) if options.quiet else app.print)
    if options.quiet:
        app.print(image.refs[0] if image.refs else image.id)
    return 0


def _push(app: App, store: Any, options: argparse.Namespace) -> int:
    from composer.runtime.images.registry import RegistryClient
    from composer.runtime.images.transfer import push

    with RegistryClient() as client:
        digest = push(store, client, options.name,
                      progress=(lambda line: None) if options.quiet else app.print)
    if options.quiet:
        app.print(digest)
    return 0


def _ls(app: App, store: Any, options: argparse.Namespace) -> int:
    images = store.list()
    if options.quiet:
        for image in images:
            app.print(image.short_id)
        return 0
    from composer.runtime.images.reference import parse

    # Names as Docker shows them: docker.io/library/busybox:latest is busybox:latest.
    rows = [(parse(ref).familiar() if ref != "<none>" else ref, image)
            for image in images for ref in (image.refs or ("<none>",))]
    if options.format == "json":
        app.print(json.dumps([{"Repository": ref, "ID": image.id, "Created": image.created,
                               "Layers": len(image.layers)} for ref, image in rows], indent=2))
        return 0
    app.print(f"{'REPOSITORY:TAG':<50} {'IMAGE ID':<14} CREATED")
    for ref, image in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(image.created))
        app.print(f"{ref:<50} {image.short_id:<14} {created}")
    return 0


def _inspect(app: App, store: Any, options: argparse.Namespace) -> int:
    out = []
    for name in options.names:
        image = store.get(name)
        if image is None:
            app.abort(f"no such image: {name}")
        out.append({"Id": image.id, "RepoTags": list(image.refs),
                    "ManifestDigest": image.manifest_digest, "Layers": list(image.layers),
                    "Config": image.config})
    app.print(json.dumps(out, indent=2))
    return 0


def _tag(app: App, store: Any, options: argparse.Namespace) -> int:
    store.tag(options.source, options.target)
    return 0


def _in_use(store: Any) -> Any:
    """Containers keep their images: GC asks the containers table."""
    from composer.state import containers

    return lambda image_id: containers.image_in_use(store.db, image_id)


def _rm(app: App, store: Any, options: argparse.Namespace) -> int:
    for name in options.names:
        for line in store.remove(name, force=options.force, in_use=_in_use(store)):
            app.print(line)
    return 0


def _prune(app: App, store: Any, options: argparse.Namespace) -> int:
    for line in store.prune(all=options.all, in_use=_in_use(store)):
        app.print(line)
    return 0


def _import(app: App, store: Any, options: argparse.Namespace) -> int:
    source = sys.stdin.buffer if options.file == "-" else options.file
    image = store.import_rootfs(source, ref=options.name)
    app.print(image.id)
    return 0


def _load(app: App, store: Any, options: argparse.Namespace) -> int:
    from composer.runtime.images.archives import load

    source = sys.stdin.buffer if options.input == "-" else options.input
    for image in load(store, source):
        for ref in image.refs or (image.id,):
            app.print(f"Loaded image: {ref}")
    return 0


def _save(app: App, store: Any, options: argparse.Namespace) -> int:
    from composer.runtime.images.archives import save

    if options.output == "-" and sys.stdout.isatty():
        app.abort("refusing to write an archive to a terminal: use -o FILE or a pipe")
    target = sys.stdout.buffer if options.output == "-" else options.output
    save(store, options.names, target, format=options.format)
    return 0


def _history(app: App, store: Any, options: argparse.Namespace) -> int:
    from composer.runtime.images.history import human_size, steps

    image = store.get(options.name)
    if image is None:
        app.abort(f"no such image: {options.name}")
    row = store.db.image(image.id)
    history = steps(image.config, [(layer.chain_id, layer.size) for layer in row.layers])

    if options.format == "json":
        app.print(json.dumps([{"Layer": s.layer, "Created": s.created, "CreatedBy": s.created_by,
                               "Size": s.size, "Comment": s.comment} for s in history],
                             indent=2))
        return 0
    # Docker shows the image id on the newest step and <missing> below it: the steps of a
    # pulled image have no image ids of their own.
    shown_id = image.id if options.no_trunc else image.short_id
    if options.quiet:
        for n in range(len(history)):
            app.print(shown_id if n == 0 else "<missing>")
        return 0
    human = options.human == "true"
    app.print(f"{'IMAGE':<14} {'CREATED':<20} {'CREATED BY':<46} {'SIZE':<10} COMMENT")
    for n, s in enumerate(history):
        shown = shown_id if n == 0 else "<missing>"
        created = ("" if s.created is None else
                   time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.created)))
        by = s.created_by if options.no_trunc or len(s.created_by) <= 45 else (
            s.created_by[:42] + "...")
        size = human_size(s.size) if human else str(s.size if s.size is not None else "?")
        app.print(f"{shown:<14} {created:<20} {by:<46} {size:<10} {s.comment}".rstrip())
    return 0


def _build(app: App, options: argparse.Namespace) -> int:
    from pathlib import Path

    from composer.cli.commands.container_flags import byte_size, pairs
    from composer.cli.commands.engine import engine_client
    from composer.cli.commands.project_build import secret_flag, stream_build
    from composer.errors import ComposerError

    context = Path(options.context).resolve()
    if options.file:
        dockerfile = Path(options.file)
        dockerfile = (dockerfile if dockerfile.is_absolute() else Path.cwd() / dockerfile)
        try:
            relative = str(dockerfile.resolve().relative_to(context))
        except ValueError:
            app.abort(f"-f {options.file}: the Dockerfile must be inside the context {context}")
    else:
        relative = None
    body = {"context": str(context), "dockerfile": relative, "tags": options.tag,
            "build_args": pairs(options.build_arg, "--build-arg"), "target": options.target,
            "no_cache": options.no_cache, "pull": options.pull, "network": options.network,
            "shm_size": byte_size(options.shm_size, "--shm-size") if options.shm_size else None,
            "extra_hosts": options.add_host,
            "secrets": [secret_flag(text) for text in options.secret],
            "platform": options.platform}
    try:
        image_id = stream_build(app, engine_client(options), body, quiet=options.quiet)
    except ComposerError as exc:
        app.abort(str(exc))
    if not options.quiet:
        for tag in options.tag:
            app.print(f"naming to {tag} done")
    app.print(image_id)
    return 0


_VERBS = {"pull": _pull, "push": _push, "ls": _ls, "inspect": _inspect, "tag": _tag,
          "rm": _rm, "prune": _prune, "import": _import, "load": _load, "save": _save,
          "history": _history}
