"""``develop.watch`` rules: which host paths a rule takes, and where they go in the container.

As the Compose spec defines them: ``path`` is a host file or directory (made absolute by the
loader), ``target`` where it lands in the container, ``ignore`` and ``include`` are patterns
relative to ``path``, in ``.dockerignore`` syntax (the same matcher the builder uses, so the
two never disagree). Whatever the rule says, editor temporary files, anything under a ``.git``
directory and what the build context's ``.dockerignore`` excludes never trigger anything
(Compose's ``watch.EphemeralPathMatcher`` and ``LoadDockerIgnore``).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from composer.manifest.model import Project, Service
from composer.runtime.images.build.ignore import IgnoreRules

SYNC_ACTIONS = frozenset({"sync", "sync+restart", "sync+exec"})
RESTART_ACTIONS = frozenset({"restart", "sync+restart"})

# Editors' scratch files (tilt's and Compose's list): vim, emacs, JetBrains, kate, gedit.
_EPHEMERAL = ("4913", "*~", ".*.swp", ".*.swx", ".*.swo", ".*.swn", "#*#", ".#*",
              "*___jb_old___", "*___jb_tmp___", ".*.kate-swp", ".goutputstream-*",
              ".~lock.*#")


def ephemeral(name: str) -> bool:
    """Whether a file name is an editor's temporary file."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in _EPHEMERAL)


def always_ignored(host_path: str) -> bool:
    """Editor temporary files and whatever lies in a ``.git`` directory."""
    parts = Path(host_path).parts
    return ".git" in parts or ephemeral(parts[-1] if parts else "")


@dataclass(frozen=True)
class Rule:
    service: str
    action: str
    path: str
    target: str | None
    ignore: IgnoreRules
    include: IgnoreRules | None
    initial_sync: bool
    exec: Mapping[str, Any] | None
    #: The build context and its .dockerignore, for services that build.
    context: str | None = None
    context_ignore: IgnoreRules | None = None

    @property
    def syncs(self) -> bool:
        return self.action in SYNC_ACTIONS

    def relative(self, host_path: str) -> str | None:
        """``host_path`` relative to the rule's path ("." for the path itself), or None when
        it lies outside."""
        if host_path == self.path:
            return "."
        prefix = self.path.rstrip("/") + "/"
        return host_path[len(prefix):] if host_path.startswith(prefix) else None

    def accepts(self, host_path: str) -> bool:
        """Whether a change of ``host_path`` triggers this rule."""
        rel = self.relative(host_path)
        if rel is None or always_ignored(host_path):
            return False
        if rel != "." and self.ignore.matches(rel):
            return False
        if self.include is not None and rel != "." and not self.include.matches(rel):
            return False
        if self.context_ignore is not None and self.context is not None:
            in_context = os.path.relpath(host_path, self.context)
            if not in_context.startswith("..") and self.context_ignore.matches(in_context):
                return False
        return True

    def target_of(self, host_path: str) -> str | None:
        """Where ``host_path`` goes in the container (None when the rule does not take it or
        does not sync)."""
        if not self.syncs or self.target is None or not self.accepts(host_path):
            return None
        rel = self.relative(host_path)
        assert rel is not None
        return self.target if rel == "." else posixpath.join(self.target, rel)


def rules_of(project: Project, services: Iterable[str] = ()) -> list[Rule]:
    """Every rule of the services named (all when none), in the manifest's order."""
    wanted = set(services) or set(project.services)
    found: list[Rule] = []
    for name, service in sorted(project.services.items()):
        if name not in wanted:
            continue
        context, context_ignore = _context_of(service)
        develop = service.spec.get("develop") or {}
        for item in develop.get("watch") or ():
            action = str(item["action"])
            found.append(Rule(
                service=name, action=action, path=os.path.normpath(str(item["path"])),
                target=str(item["target"]) if item.get("target") else None,
                ignore=IgnoreRules(_strings(item.get("ignore"))),
                include=IgnoreRules(_strings(item.get("include")))
                if item.get("include") else None,
                initial_sync=bool(item.get("initial_sync")),
                exec=item.get("exec") if action == "sync+exec" else None,
                context=context, context_ignore=context_ignore))
    return found


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(value)] if isinstance(value, str) else [str(v) for v in value]


def _context_of(service: Service) -> tuple[str | None, IgnoreRules | None]:
    if service.build is None or not os.path.isdir(service.build.context):
        return None, None
    context = Path(service.build.context)
    rules = IgnoreRules.load(context, Path(service.build.dockerfile or "Dockerfile"))
    return str(context), rules
