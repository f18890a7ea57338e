"""``composer build``: build the images of a compose project's services that have ``build:``,
through the engine's builder, as ``docker compose build`` does.

An image is named by the service's ``image:`` or ``<project>-<service>``, and tagged with
``build.tags`` too. ``build:`` attributes the builder does not honour yet are warned about,
one line each, never ignored silently.

Build secrets (``build.secrets`` here, ``image build --secret``) go to the engine as a host
file's path (the engine reads it when a RUN mounts it, as it reads the context) or, for an
environment variable, as its value; see :func:`secret_flag` and :func:`compose_secrets`.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from composer.cli.app import App
from composer.errors import ComposerError, UsageError

#: The ``build:`` attributes ``composer build`` honours; the others are warned about.
HONOURED = frozenset({"context", "dockerfile", "dockerfile_inline", "args", "target",
                      "labels", "tags", "network", "no_cache", "pull", "shm_size",
                      "extra_hosts", "secrets", "platforms"})


def register(commands: Any) -> None:
    p = commands.add_parser("build", help="build the images of the project's services")
    p.add_argument("services_selected", nargs="*", metavar="SERVICE")
    p.add_argument("--no-cache", action="store_true", help="run every step again")
    p.add_argument("--pull", action="store_true", help="pull every base image again")
    p.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=run)


def build_body(project: Any, service: Any, options: argparse.Namespace) -> dict[str, Any]:
    """The engine's build request for one service."""
    from composer.cli.commands.container_flags import pairs
    from composer.plan.reconcile import image_ref

    spec = service.spec.get("build") or {}
    context = Path(str(spec.get("context") or "."))
    if not context.is_absolute():
        context = Path(project.working_dir) / context
    args = {k: str(v) for k, v in (spec.get("args") or {}).items() if v is not None}
    args.update(pairs(options.build_arg, "--build-arg"))
    labels = spec.get("labels") or {}
    if isinstance(labels, list):
        labels = dict(str(item).partition("=")[::2] for item in labels)
    return {
        "context": str(context),
        "dockerfile": spec.get("dockerfile") if not spec.get("dockerfile_inline") else None,
        "dockerfile_text": spec.get("dockerfile_inline"),
        "tags": [image_ref(project, service), *(spec.get("tags") or ())],
        "build_args": args, "target": spec.get("target"),
        "labels": {str(k): str(v) for k, v in labels.items()},
        "network": spec.get("network") or "bridge",
        "no_cache": bool(options.no_cache or spec.get("no_cache")),
        "pull": bool(options.pull or spec.get("pull")),
        # The loader gives bytes, and NAME=IP (Compose's canonical form) for the hosts.
        "shm_size": int(spec["shm_size"]) if spec.get("shm_size") else None,
        "extra_hosts": [str(h).replace("=", ":", 1) for h in spec.get("extra_hosts") or ()],
        "secrets": compose_secrets(project, service),
        # Compose builds for the service's platform when build.platforms does not say; the
        # engine accepts only this host's.
        "platform": ",".join(str(p) for p in spec.get("platforms") or ())
        or service.spec.get("platform") or None,
    }


def _file_secret(secret_id: str, path: str, origin: str) -> dict[str, Any]:
    return {"id": secret_id, "file": os.path.abspath(path), "origin": origin}


def _env_secret(secret_id: str, variable: str, environ: Mapping[str, str]) -> dict[str, Any]:
    # An unset variable is sent as a secret without a value: a RUN that requires it then
    # fails naming the variable, one that does not runs without it (BuildKit's rule).
    found: dict[str, Any] = {"id": secret_id, "origin": f"the environment variable {variable}"}
    if variable in environ:
        found["value"] = environ[variable]
    return found


def secret_flag(text: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``--secret id=X[,src=PATH|,env=VAR][,type=file|env]`` as Docker's buildx reads it: with
    neither source the secret is the environment variable named X when it is set, else the
    file X. A file must exist now (Docker checks it before the build too)."""
    environ = os.environ if environ is None else environ
    fields = next(csv.reader([text]), [])
    kind = secret_id = source = variable = None
    for item in fields:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise UsageError(f"--secret {text}: invalid field {item!r}: it must be key=value")
        if key == "type":
            if value not in ("file", "env"):
                raise UsageError(f"--secret {text}: unsupported secret type {value!r} (use "
                                 "file or env)")
            kind = value
        elif key == "id":
            secret_id = value
        elif key in ("source", "src"):
            source = value
        elif key == "env":
            variable = value
        else:
            raise UsageError(f"--secret {text}: unexpected key {key!r} (use id, src, env, "
                             "type)")
    if not secret_id:
        raise UsageError(f"--secret {text}: the secret needs an id (id=NAME)")
    if kind == "env" and variable is None:
        variable, source = source, None
    if variable is None and source is None:
        if secret_id in environ:
            variable = secret_id
        else:
            source = secret_id
    if variable is not None:
        return _env_secret(secret_id, variable, environ)
    assert source is not None
    if not os.path.isfile(source):
        raise UsageError(f"--secret {text}: {source}: no such file")
    return _file_secret(secret_id, source, f"the file {source}")


def compose_secrets(project: Any, service: Any) -> list[dict[str, Any]]:
    """The service's ``build.secrets`` as build secrets: each names a top-level secret with
    ``file:`` or ``environment:``; its id in the Dockerfile is the entry's ``target`` when
    given, else the secret's name (as Compose passes them). ``uid``, ``gid`` and ``mode``
    are the Dockerfile's ``--mount`` to set, as in Compose."""
    spec = service.spec.get("build") or {}
    environ = {**os.environ, **(project.environment or {})}
    found = []
    for entry in spec.get("secrets") or ():
        source = str(entry.get("source") if isinstance(entry, Mapping) else entry)
        target = entry.get("target") if isinstance(entry, Mapping) else None
        secret_id = str(target or source)
        where = f"services.{service.name}.build.secrets: {source}"
        top = project.secrets.get(source)
        if top is None:
            raise ComposerError(f"{where}: no such secret in the top-level secrets:")
        if top.spec.get("file"):
            path = Path(str(top.spec["file"]))
            found.append(_file_secret(secret_id, str(path if path.is_absolute() else
                                                     Path(project.working_dir) / path),
                                      f"the file {path} of secrets.{source}"))
        elif top.spec.get("environment"):
            found.append(_env_secret(secret_id, str(top.spec["environment"]), environ))
        else:
            raise ComposerError(f"{where}: a build takes only secrets with file: or "
                                "environment: (not external ones)")
    return found


def stream_build(app: App, engine: Any, body: dict[str, Any], *, label: str = "",
                 quiet: bool = False) -> str:
    """Send a build to the engine and print it as it goes: each RUN line as it is printed
    (``#N line``), each step when it is done (``#N [stage] INSTRUCTION  1.2s|CACHED``).
    Returns the image id; a failed build aborts with the builder's message."""
    prefix = f"{label} " if label else ""
    done = 0
    for event in engine.stream("POST", "/v1/build", body):
        if "error" in event:
            app.abort(f"{prefix.strip() + ': ' if label else ''}{event['error']}")
        if quiet:
            pass
        elif "output" in event:
            app.print(f"#{done + 1} {event['output']}")
        elif "step" in event:
            done += 1
            step = event["step"]
            status = "CACHED" if step["cached"] else f"{step['seconds']:.1f}s"
            app.print(f"#{done} [{prefix}{step['stage']}] {step['instruction']}  {status}")
        if "id" in event:
            return str(event["id"])
    app.abort("the engine ended the build without an answer (see its log)")


def run(app: App, options: argparse.Namespace) -> int:
    from composer.cli.commands.engine import engine_client
    from composer.manifest.loader import load_project

    project = load_project(options.files, project_dir=options.project_dir,
                           project_name=options.project_name, env_files=options.env_files,
                           profiles=options.profiles, services=options.services_selected)
    app.warnings(project.warnings)
    chosen = options.services_selected or sorted(project.services)
    built = [project.services[n] for n in chosen if project.services[n].build is not None]
    if not built:
        return 0
    engine = engine_client(options)
    for service in built:
        for key in sorted(set(service.spec.get("build") or {}) - HONOURED):
            app.warn(f"services.{service.name}.build.{key} is ignored: not implemented yet")
        body = build_body(project, service, options)
        if not options.quiet:
            app.print(f"Building {service.name} -> {body['tags'][0]}")
        try:
            image_id = stream_build(app, engine, body, label=service.name,
                                    quiet=options.quiet)
        except ComposerError as exc:
            app.abort(f"service {service.name}: {exc}")
        if not options.quiet:
            app.print(f"Built {service.name}: {image_id}")
    return 0
