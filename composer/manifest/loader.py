"""The loader: compose files in, a validated, normalized project out.

The phases, in order (``docs/loading.md`` explains each):

 1. discover   files, project directory, environment, explicit name      source.py
 2. parse      YAML 1.2 with places, per document                        yamlload.py
 3. interpolate ``${VAR}`` in values, per file                           interpolate.py
 4. validate   coerce and check against schemas/compose.schema.json     schema.py
 5. canonical  short syntax -> long syntax, per file                     canonical.py
 6. include, extends                                                     include.py, extends.py
 7. merge      files in order, with !reset / !override                  merge.py
 8. paths      relative paths -> absolute, against the project dir      paths.py
 9. profiles   keep the enabled services                                 profiles.py
10. normalize  defaults, resource names, default network, env_file      normalize.py
11. check      cross references; warn for what composer does not do yet consistency.py, support.py
12. model      the frozen typed Project                                  model.py
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from composer.errors import Loc, ManifestError, ManifestWarning
from composer.manifest import source as source_mod
from composer.manifest.tree import YMap

if TYPE_CHECKING:
    from composer.manifest.model import Project


@dataclass(frozen=True)
class LoadOptions:
    """What the command line (or an API caller) says about where and how to load."""

    files: Sequence[str] = ()
    project_dir: str | None = None
    project_name: str | None = None
    env_files: Sequence[str] = ()
    profiles: Sequence[str] = ()
    services: Sequence[str] = ()
    environ: Mapping[str, str] | None = None
    cwd: str | None = None
    stdin: Callable[[], str] | None = None
    interpolate: bool = True
    normalize: bool = True
    consistency: bool = True


@dataclass
class Loaded:
    """The normalized tree (what ``config`` prints) and what was learnt on the way."""

    tree: YMap
    name: str
    project_dir: str
    files: tuple[str, ...]
    env: Mapping[str, str]
    env_files: tuple[str, ...]
    profiles: tuple[str, ...]
    warnings: list[ManifestWarning] = field(default_factory=list)
    interpolated: bool = True
    #: (name, text) of every compose file read: the project's, included and extended ones.
    compose_files: tuple[tuple[str, str], ...] = ()


class _Warnings:
    """Collects warnings once each, in the order they were first seen."""

    def __init__(self) -> None:
        self.items: list[ManifestWarning] = []
        self._seen: set[str] = set()

    def __call__(self, warning: ManifestWarning) -> None:
        key = str(warning)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(warning)


def load_project(
    files: Sequence[str] = (),
    *,
    project_dir: str | None = None,
    project_name: str | None = None,
    env_files: Sequence[str] = (),
    profiles: Sequence[str] = (),
    services: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Project:
    """Load a compose project the way ``docker compose`` would, or raise ``ManifestError``."""
    from composer.manifest.model import build_project

    loaded = load(LoadOptions(files=files, project_dir=project_dir, project_name=project_name,
                              env_files=env_files, profiles=profiles, services=services,
                              environ=environ, cwd=cwd))
    return build_project(loaded)


def load(options: LoadOptions) -> Loaded:
    """Run every phase and return the normalized tree."""
    sources = source_mod.discover(
        files=options.files, project_dir=options.project_dir,
        project_name=options.project_name, env_files=options.env_files,
        profiles=options.profiles, environ=options.environ, cwd=options.cwd,
        stdin=options.stdin)
    warn = _Warnings()
    for warning in sources.warnings:
        warn(warning)
    session = _Session(options, sources.project_dir, sources.env, warn)

    name = sources.explicit_name or session.declared_name(sources.files) or \
        source_mod.normalize_project_name(os.path.basename(sources.project_dir))
    if not name:
        raise ManifestError(
            f"cannot derive a project name from the directory {sources.project_dir}",
            hint="name the project with -p NAME or a top-level 'name:'")
    session.env = {**sources.env, "COMPOSE_PROJECT_NAME": name}

    tree = session.merged([(f.display, f.text) for f in sources.files], chain=())
    from composer.manifest.merge import enforce_unicity

    enforce_unicity(tree)
    _phase_paths(tree, sources.project_dir, options)
    from composer.manifest.profiles import select_services

    # Compose prints a raw project's every service, whatever profile it is in.
    select_services(tree, profiles=["*"] if not options.interpolate else sources.profiles,
                    requested=options.services)
    tree["name"] = name
    if options.normalize:
        from composer.manifest.normalize import normalize

        normalize(tree, project_name=name, project_dir=sources.project_dir,
                  env=session.env, warn=warn, raw=not options.interpolate)
    # A raw project (not interpolated) still holds ${VAR} where names will be: no cross
    # reference can be checked there.
    if options.consistency and options.interpolate:
        from composer.manifest.consistency import check

        check(tree)
    from composer.manifest.support import warn_unimplemented

    warn_unimplemented(tree, warn)
    return Loaded(tree=tree, name=name, project_dir=sources.project_dir,
                  files=tuple(f.path for f in sources.files), env=session.env,
                  env_files=sources.env_files, profiles=sources.profiles,
                  warnings=warn.items, interpolated=options.interpolate,
                  compose_files=tuple(session.read))


def _phase_paths(tree: YMap, project_dir: str, options: LoadOptions) -> None:
    from composer.manifest.paths import resolve_paths

    environ = os.environ if options.environ is None else options.environ
    resolve_paths(tree, project_dir, environ.get("HOME"))


class _Session:
    """Phases 2 to 7 for one project; knows how to load extended and included files."""

    def __init__(self, options: LoadOptions, project_dir: str, env: Mapping[str, str],
                 warn: _Warnings, read: list[tuple[str, str]] | None = None) -> None:
        self.options = options
        # Every compose file parsed, included and extended ones too, shared with sub-sessions.
        self.read: list[tuple[str, str]] = [] if read is None else read
        self.project_dir = project_dir
        self.env: Mapping[str, str] = env
        self.warn = warn
        self._file_cache: dict[str, YMap] = {}
        # Files parsed early for their name; the next phases take them from here once.
        self._parsed: dict[tuple[str, str], list[YMap]] = {}

    def declared_name(self, files: Sequence[source_mod.SourceFile]) -> str | None:
        """The last top-level ``name:`` across the files, interpolated."""
        from composer.manifest.yamlload import parse_documents

        name: str | None = None
        where: Loc | None = None
        for f in files:
            docs = self._parsed.setdefault((f.display, f.text),
                                           parse_documents(f.text, f.display))
            for doc in docs:
                value = doc.get("name")
                if isinstance(value, str) and value:
                    name = self._interpolate_text(value, doc, "name")
                    where = doc.loc_of("name")
        if name is None:
            return None
        # Compose normalizes a declared name (lowercase, allowed characters only) as it does
        # a folder's; it refuses only names given with -p or COMPOSE_PROJECT_NAME.
        normalized = source_mod.normalize_project_name(name)
        if not normalized:
            raise ManifestError(
                f'invalid project name "{name}": it has no letter or digit', path="name",
                loc=where, hint="use lowercase letters, digits, '-' and '_' in 'name:'")
        if normalized != name:
            self.warn(ManifestWarning(f'project name "{name}" is used as "{normalized}"',
                                      loc=where, path="name"))
        return normalized

    def _interpolate_text(self, value: str, doc: YMap, key: str) -> str:
        if not self.options.interpolate:
            return value
        from composer.manifest.interpolate import Interpolator

        return Interpolator(self.env, self.warn).text(value, loc=doc.loc_of(key), path=key)

    def per_file(self, display: str, text: str) -> list[YMap]:
        """Phases 2 to 5 for one file: parse, interpolate, validate, canonical forms."""
        from composer.manifest.canonical import canonicalize
        from composer.manifest.extends import drop_unknown_extends_keys
        from composer.manifest.interpolate import Interpolator
        from composer.manifest.schema import validate
        from composer.manifest.yamlload import parse_documents

        docs = self._parsed.pop((display, text), None) or parse_documents(text, display)
        if (display, text) not in self.read:
            self.read.append((display, text))
        if not any(_has_content(doc) for doc in docs):
            raise ManifestError("empty compose file", loc=Loc(display, 1, 1),
                                hint="a compose file needs at least a 'services:' mapping")
        out = []
        interpolator = Interpolator(self.env, self.warn)
        for doc in docs:
            if self.options.interpolate:
                doc = interpolator.tree(doc)
            drop_unknown_extends_keys(doc, self.warn)
            raw = not self.options.interpolate
            validate(doc, warn=self.warn, raw=raw)
            canonicalize(doc, warn=self.warn, raw=raw)
            out.append(doc)
        return out

    def load_file(self, path: str) -> YMap:
        """An extended file: phases 2 to 5 (and its own extends), cached by path."""
        path = os.path.abspath(path)
        if path not in self._file_cache:
            try:
                with open(path, encoding="utf-8-sig") as handle:
                    text = handle.read()
            except OSError as exc:
                raise ManifestError(f"cannot read {path}: {exc.strerror}",
                                    hint="check the 'extends.file' path") from None
            from composer.manifest.merge import merge

            docs = self.per_file(path, text)
            tree = docs[0]
            for doc in docs[1:]:
                tree = merge(tree, doc)
            self._file_cache[path] = tree
        return self._file_cache[path]

    def merged(self, files: Sequence[tuple[str, str]], chain: tuple[str, ...]) -> YMap:
        """Phases 2 to 7 for a list of files: each file on its own, then merged in order."""
        from composer.manifest.extends import resolve_extends
        from composer.manifest.include import apply_includes
        from composer.manifest.merge import merge, strip_reset_tags

        result: YMap | None = None
        for display, text in files:
            for doc in self.per_file(display, text):
                if "include" in doc:
                    apply_includes(doc, filename=display, project_dir=self.project_dir,
                                   load_subproject=self.load_subproject, chain=chain)
                if display != source_mod.STDIN:
                    resolve_extends(doc, filename=display, load_file=self.load_file)
                result = doc if result is None else merge(result, doc)
        assert result is not None
        strip_reset_tags(result)
        return result

    def load_subproject(self, files: list[str], project_dir: str, env_files: list[str],
                        chain: tuple[str, ...]) -> YMap:
        """An included project: its own directory and .env, paths resolved against them."""
        sources = source_mod.discover(files=files, project_dir=project_dir,
                                      env_files=env_files, environ=self.options.environ,
                                      cwd=project_dir)
        # The including project's environment wins over the included project's .env.
        env = {**sources.env, **self.env}
        sub = _Session(self.options, sources.project_dir, env, self.warn, self.read)
        tree = sub.merged([(f.display, f.text) for f in sources.files], chain=chain)
        _phase_paths(tree, sources.project_dir, self.options)
        return tree


def _has_content(doc: YMap) -> bool:
    """Whether a document says more than Compose ignores (``version``, an empty ``include``)."""
    return any(key != "version" and not (key == "include" and value is None)
               for key, value in doc.items())


def plain_tree(loaded: Loaded) -> dict[str, Any]:
    """The project as ``docker compose config`` prints it.

    After interpolation every ``$`` left in a value is a literal one, so it is printed
    escaped (``$$``), as Compose does: the output loads again to the same project."""
    from composer.manifest.tree import plain

    result: dict[str, Any] = plain(loaded.tree)
    if loaded.interpolated:
        escaped: dict[str, Any] = _escape_dollars(result)
        return escaped
    return result


def _escape_dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, dict):
        return {_escape_dollars(k): _escape_dollars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_dollars(v) for v in value]
    return value
