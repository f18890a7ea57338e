"""Phase 1: which files make the project, its directory, its environment and its name.

This follows Docker Compose v2: ``-f`` (repeatable, ``-`` for stdin) or ``COMPOSE_FILE``,
otherwise the first of :data:`CANDIDATES` found in the working directory or a parent, plus
its ``compose.override.*``; the project directory is ``--project-directory`` or the first
file's folder; ``.env`` there (or the ``--env-file`` files) feeds interpolation, under the
process environment; the name comes from ``-p``, ``COMPOSE_PROJECT_NAME``, the last
top-level ``name:``, then the project directory's basename.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from composer.errors import ManifestError, ManifestWarning, UsageError

CANDIDATES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDES = ("compose.override.yaml", "compose.override.yml",
             "docker-compose.override.yaml", "docker-compose.override.yml")
STDIN = "-"

_VALID_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class SourceFile:
    """One compose file: its absolute path (or ``-``) and its text."""

    path: str
    text: str

    @property
    def display(self) -> str:
        return "<stdin>" if self.path == STDIN else self.path


@dataclass(frozen=True)
class Sources:
    """Everything phase 1 decides, before any YAML is read."""

    files: tuple[SourceFile, ...]
    project_dir: str
    env: Mapping[str, str]
    env_files: tuple[str, ...]
    explicit_name: str | None
    profiles: tuple[str, ...]
    warnings: tuple[ManifestWarning, ...] = field(default=())


def discover(
    *,
    files: Sequence[str] = (),
    project_dir: str | None = None,
    project_name: str | None = None,
    env_files: Sequence[str] = (),
    profiles: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    stdin: Callable[[], str] | None = None,
) -> Sources:
    """Decide the files, directory, environment and explicit name of a project."""
    environ = dict(os.environ if environ is None else environ)
    cwd = os.path.abspath(cwd or os.getcwd())
    warnings: list[ManifestWarning] = []
    if project_dir is not None:
        project_dir = os.path.abspath(os.path.join(cwd, project_dir))
        if not os.path.isdir(project_dir):
            raise UsageError(f"project directory {project_dir} does not exist")

    # The .env of the working directory (or project directory) may itself set COMPOSE_FILE.
    early_dir = project_dir or cwd
    dotenv_paths = _env_file_paths(env_files, environ, early_dir, cwd)
    env = _environment(dotenv_paths, environ, explicit=bool(env_files))

    paths = list(files)
    if not paths and env.get("COMPOSE_FILE"):
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        paths = [p for p in env["COMPOSE_FILE"].split(separator) if p]
        paths = [os.path.join(early_dir, p) for p in paths]
    if paths:
        chosen = [p if p == STDIN else os.path.abspath(os.path.join(cwd, p)) for p in paths]
    else:
        chosen = _search_upwards(project_dir or cwd, warnings)

    if project_dir is None:
        first = next((p for p in chosen if p != STDIN), None)
        project_dir = os.path.dirname(first) if first else cwd
        if project_dir != early_dir:
            dotenv_paths = _env_file_paths(env_files, environ, project_dir, cwd)
            env = _environment(dotenv_paths, environ, explicit=bool(env_files))

    sources = tuple(_read(path, stdin) for path in chosen)
    name = project_name or env.get("COMPOSE_PROJECT_NAME") or None
    if name is not None and not _VALID_NAME.match(name):
        raise UsageError(
            f'invalid project name "{name}": use only lowercase letters, digits, "-" and "_", '
            "starting with a letter or digit")
    active = list(profiles)
    if not active and env.get("COMPOSE_PROFILES"):
        active = [p.strip() for p in env["COMPOSE_PROFILES"].split(",") if p.strip()]
    return Sources(files=sources, project_dir=project_dir, env=env,
                   env_files=tuple(dotenv_paths), explicit_name=name,
                   profiles=tuple(active), warnings=tuple(warnings))


def normalize_project_name(name: str) -> str:
    """Compose's rule for names taken from ``name:`` or a folder: lowercase, allowed characters."""
    lowered = re.sub(r"[^a-z0-9_-]", "", name.lower())
    return lowered.lstrip("_-")


def _search_upwards(start: str, warnings: list[ManifestWarning]) -> list[str]:
    directory = start
    while True:
        found = [n for n in CANDIDATES if os.path.isfile(os.path.join(directory, n))]
        if found:
            if len(found) > 1:
                names = ", ".join(os.path.join(directory, n) for n in found)
                warnings.append(ManifestWarning(
                    f"found several compose files ({names}); using {found[0]}"))
            chosen = [os.path.join(directory, found[0])]
            override = next((n for n in OVERRIDES
                             if os.path.isfile(os.path.join(directory, n))), None)
            if override:
                chosen.append(os.path.join(directory, override))
            return chosen
        parent = os.path.dirname(directory)
        if parent == directory:
            raise ManifestError(
                f"no compose file found in {start} or any parent directory",
                hint=f"create {CANDIDATES[0]}, or name a file with -f FILE")
        directory = parent


def _env_file_paths(env_files: Sequence[str], environ: Mapping[str, str],
                    directory: str, cwd: str) -> list[str]:
    if env_files:
        return [os.path.abspath(os.path.join(cwd, p)) for p in env_files]
    if environ.get("COMPOSE_ENV_FILES"):
        return [os.path.abspath(os.path.join(cwd, p))
                for p in environ["COMPOSE_ENV_FILES"].split(",") if p]
    if environ.get("COMPOSE_DISABLE_ENV_FILE", "").lower() in ("1", "true"):
        return []
    default = os.path.join(directory, ".env")
    return [default] if os.path.isfile(default) else []


def _environment(paths: Sequence[str], environ: Mapping[str, str], *,
                 explicit: bool) -> dict[str, str]:
    """The process environment over the values of the .env files (later files win)."""
    from composer.manifest.dotenv import read_dotenv

    values: dict[str, str] = {}
    for path in paths:
        if os.path.isdir(path) and not explicit:
            continue

        def lookup(key: str) -> str | None:
            return environ.get(key, values.get(key))

        values.update(read_dotenv(path, lookup, required=True))
    values.update(environ)
    return values


def _read(path: str, stdin: Callable[[], str] | None) -> SourceFile:
    if path == STDIN:
        return SourceFile(STDIN, (stdin or sys.stdin.read)())
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return SourceFile(path, handle.read())
    except FileNotFoundError:
        raise ManifestError(f"compose file {path} not found",
                            hint="check the path given with -f or COMPOSE_FILE") from None
    except IsADirectoryError:
        raise ManifestError(f"{path} is a directory, not a compose file",
                            hint=f"name the file itself, e.g. {path}/{CANDIDATES[0]}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
