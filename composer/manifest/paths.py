"""Phase 8: relative paths made absolute, where Docker Compose makes them absolute.

Relative to the project directory (or, for included projects, to theirs): build contexts
that are not remote, ``additional_contexts`` that are paths, ``build.ssh`` key files,
``env_file`` and ``label_file`` paths, ``extends.file``, bind-mount sources, ``develop.watch``
paths, secret and config ``file``, and the ``device`` of a ``local`` volume with ``o: bind``.
A leading ``~`` is the user's home. Left alone, as Compose leaves them: ``build.dockerfile``,
``working_dir``, and Windows paths (``C:\\data``).
"""

from __future__ import annotations

import os
import re
from typing import Any

from composer.manifest.tree import YMap

_WINDOWS = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")
_REMOTE_PREFIXES = ("git@", "github.com/", "git://")
_CONTEXT_KINDS = ("service:", "docker-image:", "oci-layout:", "target:")


def resolve_paths(root: YMap, base_dir: str, home: str | None = None) -> None:
    """Resolve every relative path of a project tree against ``base_dir``, in place."""
    services = root.get("services")
    if isinstance(services, dict):
        for service in services.values():
            if isinstance(service, dict):
                resolve_service_paths(service, base_dir, home)
                build = service.get("build")
                if isinstance(build, dict) and "context" not in build:
                    # A build without a context builds the project directory, even in a
                    # service extended from a file elsewhere.
                    build["context"] = base_dir
    for kind in ("secrets", "configs"):
        resources = root.get(kind)
        if isinstance(resources, dict):
            for spec in resources.values():
                if isinstance(spec, dict) and isinstance(spec.get("file"), str):
                    spec["file"] = absolute(spec["file"], base_dir, home)
    volumes = root.get("volumes")
    if isinstance(volumes, dict):
        for spec in volumes.values():
            if isinstance(spec, dict):
                _volume_device(spec, base_dir, home)


def resolve_service_paths(service: dict[str, Any], base_dir: str,
                          home: str | None = None) -> None:
    """Resolve the relative paths of one service against ``base_dir``, in place."""
    build = service.get("build")
    if isinstance(build, dict):
        context = build.get("context")
        # An empty context stays empty (Compose then prints the build without one).
        if isinstance(context, str) and context and not is_remote(context):
            build["context"] = absolute(context, base_dir, home)
        ssh = build.get("ssh")
        if isinstance(ssh, list):
            # "ID=PATH" keys are files on this machine; a bare "default" is the agent.
            for i, entry in enumerate(ssh):
                if isinstance(entry, str) and "=" in entry:
                    key, _, key_path = entry.partition("=")
                    ssh[i] = f"{key}={absolute(key_path, base_dir, home)}"
        contexts = build.get("additional_contexts")
        if isinstance(contexts, dict):
            for name, value in contexts.items():
                if isinstance(value, str) and not is_remote(value) \
                        and not value.startswith(_CONTEXT_KINDS):
                    contexts[name] = absolute(value, base_dir, home)
    for entry in _list(service.get("env_file")):
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            entry["path"] = absolute(entry["path"], base_dir, home)
    label_files = service.get("label_file")
    if isinstance(label_files, list):
        for i, path in enumerate(label_files):
            if isinstance(path, str):
                label_files[i] = absolute(path, base_dir, home)
    extends = service.get("extends")
    if isinstance(extends, dict) and isinstance(extends.get("file"), str):
        extends["file"] = absolute(extends["file"], base_dir, home)
    for volume in _list(service.get("volumes")):
        if isinstance(volume, dict) and volume.get("type") == "bind" \
                and isinstance(volume.get("source"), str):
            volume["source"] = absolute(volume["source"], base_dir, home)
    develop = service.get("develop")
    if isinstance(develop, dict):
        for rule in _list(develop.get("watch")):
            if isinstance(rule, dict) and isinstance(rule.get("path"), str):
                rule["path"] = absolute(rule["path"], base_dir, home)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _volume_device(spec: dict[str, Any], base_dir: str, home: str | None) -> None:
    # Compose resolves the device only for "driver: local" (written out) with "o: bind"
    # exactly; "ro,bind" or a missing driver leave it as written.
    opts = spec.get("driver_opts")
    if spec.get("driver") != "local" or not isinstance(opts, dict):
        return
    if opts.get("o") == "bind" and isinstance(opts.get("device"), str):
        opts["device"] = absolute(opts["device"], base_dir, home)


def is_remote(context: str) -> bool:
    """Whether a build context is a URL or a git remote (never resolved)."""
    return "://" in context or context.startswith(_REMOTE_PREFIXES)


def absolute(path: str, base_dir: str, home: str | None = None) -> str:
    """``path`` with ``~`` expanded, joined to ``base_dir`` when relative, then cleaned.

    ``home`` is the ``HOME`` of the environment the project is loaded in (the process's when
    not given), as Compose takes it from ``$HOME``."""
    if _WINDOWS.match(path):
        return path
    if path.startswith("~"):
        # Compose replaces a leading "~" by the home directory, even in "~user/x".
        rest = path[1:].lstrip("/")
        home = home or os.path.expanduser("~")
        path = os.path.join(home, rest) if rest else home
    if os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))
