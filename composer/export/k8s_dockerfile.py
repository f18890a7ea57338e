"""What a built image declares that Kubernetes would not see: its Dockerfile's ``EXPOSE``
(a Service needs the ports) and ``HEALTHCHECK`` (Kubernetes ignores image health checks).

A small reading of the stage that is built (``build.target`` or the last one), following
``FROM <earlier stage>``; words with variables are skipped rather than guessed.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from composer.manifest.model import Build


@dataclass
class ImageHints:
    ports: list[tuple[int, str]] = field(default_factory=list)
    #: compose-shaped: test, interval, timeout, retries, start_period (None: HEALTHCHECK NONE)
    healthcheck: dict[str, Any] | None = None


def dockerfile_text(build: Build, read: Any) -> str | None:
    """The Dockerfile of a local build context, or None (remote context, unreadable)."""
    if build.dockerfile_inline:
        return build.dockerfile_inline
    if "://" in build.context or build.context.startswith("git@"):
        return None
    path = os.path.join(build.context, build.dockerfile or "Dockerfile")
    try:
        data: bytes = read(path)
        return data.decode("utf-8", errors="replace")
    except OSError:
        return None


def _instructions(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def image_hints(text: str, target: str | None = None) -> ImageHints:
    stages: dict[str, ImageHints] = {}
    current = ImageHints()
    chosen: ImageHints | None = None
    for keyword, rest in _instructions(text):
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            base = stages.get(words[0].lower()) if words else None
            current = ImageHints(list(base.ports), base.healthcheck) if base else ImageHints()
            if len(words) >= 3 and words[1].lower() == "as":
                stages[words[2].lower()] = current
                if target and words[2].lower() == target.lower():
                    chosen = current
        elif keyword == "EXPOSE":
            for word in rest.split():
                match = re.fullmatch(r"(\d+)(?:/(tcp|udp|sctp))?", word.lower())
                if match and (int(match.group(1)), match.group(2) or "tcp") not in current.ports:
                    current.ports.append((int(match.group(1)), match.group(2) or "tcp"))
        elif keyword == "HEALTHCHECK":
            current.healthcheck = _healthcheck(rest)
    return chosen or current


def _healthcheck(rest: str) -> dict[str, Any] | None:
    check: dict[str, Any] = {}
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        name = key.replace("-", "_")
        if name in ("interval", "timeout", "start_period", "start_interval"):
            check[name] = value
        elif name == "retries" and value.isdigit():
            check["retries"] = int(value)
        rest = rest.strip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        return None
    command = command.strip()
    if command.startswith("["):
        try:
            words = json.loads(command)
            check["test"] = ["CMD", *[str(w) for w in words]]
        except ValueError:
            check["test"] = ["CMD-SHELL", command]
    else:
        check["test"] = ["CMD-SHELL", command]
    return check

