"""Which stages a build needs, and the build-time variables each one sees (BuildKit's rules).

The global scope (what FROM lines see) holds the automatic platform args (TARGETPLATFORM,
TARGETOS, TARGETARCH, TARGETVARIANT and the BUILD* four) and the ARGs before the first FROM;
a value given by the user replaces a default, and a default may use what came before it.
Build args the user gives are not visible anywhere until an ARG declares them.

Inside a stage nothing from the global scope is visible until an ARG redeclares it; an ARG
with no default takes the user's value, else the global value. ``ArgScope`` keeps one
environment per stage, as BuildKit does: the base image's ENV, then ENV and ARG instructions
in order, the last one setting a name winning (so ``ARG V`` then ``ENV V=1`` gives 1, as the
Dockerfile reference promises). A stage built FROM another stage starts with a copy of that
stage's scope (``fork``).

The predefined proxy args (HTTP_PROXY, HTTPS_PROXY, FTP_PROXY, NO_PROXY, ALL_PROXY, each also
lower-case) reach RUN without a declaration but stay out of the image history unless an ARG
declares them. Build args no ARG declares are listed in ``BuildPlan.unused_args`` for the
caller's "One or more build-args [...] were not consumed" warning.

``COPY --from`` and ``--mount from=`` take a stage name (any case), a stage index, or else an
image; ``FROM name`` takes a stage only when that stage comes earlier in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from composer.runtime.images.build.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
)
from composer.runtime.images.build.substitute import ExpansionError, expand
from composer.runtime.images.platform import Platform

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
PLATFORM_ARGS = ("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT",
                 "BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
# containerd's normalization drops the variant an architecture has by default.
_DEFAULT_VARIANTS = {"arm64": "v8", "amd64": "v1"}


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    """The automatic platform args for a build on ``build`` of an image for ``target``."""
    values: dict[str, str] = {}
    for prefix, platform in (("TARGET", target), ("BUILD", build)):
        variant = platform.variant or ""
        if _DEFAULT_VARIANTS.get(platform.architecture) == variant:
            variant = ""
        parts = [platform.os, platform.architecture] + ([variant] if variant else [])
        values |= {f"{prefix}PLATFORM": "/".join(parts), f"{prefix}OS": platform.os,
                   f"{prefix}ARCH": platform.architecture, f"{prefix}VARIANT": variant}
    return values


def _given(build_args: Mapping[str, str | None] | None) -> dict[str, str]:
    # A build arg without a value (compose's "args: [NAME]" with NAME unset) is not given.
    return {name: value for name, value in (build_args or {}).items() if value is not None}


def _expand(word: str, env: Mapping[str, str], dockerfile: Dockerfile, line: int) -> str:
    try:
        return expand(word, env, escape=dockerfile.escape)
    except ExpansionError as err:
        raise DockerfileError(str(err), path=dockerfile.path, line=line) from None


def global_scope(dockerfile: Dockerfile, build_args: Mapping[str, str | None] | None = None, *,
                 target_platform: Platform | None = None,
                 build_platform: Platform | None = None) -> dict[str, str]:
    """The variables FROM lines (and ARGs redeclared without a default) see."""
    given = _given(build_args)
    host = Platform.host()
    scope = platform_args(target_platform or build_platform or host, build_platform or host)
    scope |= {name: given[name] for name in PLATFORM_ARGS if name in given}
    for instruction in dockerfile.global_args:
        for name, default in instruction.pairs:
            if name in given:
                scope[name] = given[name]
            elif default is not None:
                scope[name] = _expand(default, scope, dockerfile, instruction.line)
    return scope


class ArgScope:
    """The variables one stage sees while it is built. ``env`` is what ``${...}`` expands from
    and what RUN gets (plus ``run_env``'s proxies); the image config's Env is the builder's to
    keep (ENV only)."""

    def __init__(self, dockerfile: Dockerfile, global_args: Mapping[str, str],
                 build_args: Mapping[str, str | None] | None = None,
                 image_env: Mapping[str, str] | None = None) -> None:
        self._dockerfile = dockerfile
        self._globals = dict(global_args)
        self._given = _given(build_args)
        self._env: dict[str, str] = dict(image_env or {})
        self._declared: dict[str, str | None] = {}

    @property
    def env(self) -> Mapping[str, str]:
        return MappingProxyType(self._env)

    def declare(self, instruction: Instruction) -> tuple[tuple[str, str | None], ...]:
        """Apply an ARG; returns each name with the value it took (None: declared, unset),
        which is what the history line ``ARG name=value`` shows."""
        resolved: list[tuple[str, str | None]] = []
        for name, default in instruction.pairs:
            value: str | None
            if name in self._given:
                value = self._given[name]
            elif default is not None:
                value = _expand(default, self._env, self._dockerfile, instruction.line)
            else:
                value = self._globals.get(name)
            if value is not None:
                self._env[name] = value
            self._declared.pop(name, None)
            self._declared[name] = value
            resolved.append((name, value))
        return tuple(resolved)

    def set_env(self, name: str, value: str) -> None:
        """An ENV instruction (or the base image's Env) set ``name``."""
        self._env[name] = value

    def fork(self) -> ArgScope:
        """The scope a stage built FROM this one starts with."""
        child = ArgScope(self._dockerfile, self._globals, None, self._env)
        child._given = dict(self._given)
        child._declared = dict(self._declared)
        return child

    def run_env(self) -> dict[str, str]:
        """The environment of a RUN: ``env`` and the proxy args the user gave, declared or
        not."""
        proxies = {name: self._given[name] for name in PROXY_ARGS
                   if name in self._given and name not in self._env}
        return {**self._env, **proxies}

    def history_args(self) -> tuple[str, ...]:
        """``NAME=value`` for the declared args that have a value, in declaration order: the
        ``|N A=1 B=2`` part of a RUN's history entry (undeclared proxies never appear)."""
        return tuple(f"{name}={value}" for name, value in self._declared.items()
                     if value is not None)


@dataclass(frozen=True)
class PlannedStage:
    """A stage to build. ``base`` is FROM's image expanded (``scratch`` for none);
    ``base_stage`` is set when it names an earlier stage. ``sources`` are the stages and
    ``images`` the images its COPY --from and RUN --mount from= read."""

    stage: Stage
    base: str
    base_stage: int | None
    platform: str | None
    sources: tuple[int, ...]
    images: tuple[str, ...]

    @property
    def needs(self) -> tuple[int, ...]:
        """The stages that must be built before this one."""
        extra = (self.base_stage,) if self.base_stage is not None else ()
        return tuple(sorted({*extra, *self.sources}))


@dataclass(frozen=True)
class BuildPlan:
    """The stages a build of ``target`` needs, each after the stages it needs (the target
    last), the global scope, and the build args nothing declared (sorted)."""

    target: int
    stages: tuple[PlannedStage, ...]
    global_args: Mapping[str, str] = field(hash=False)
    unused_args: tuple[str, ...]


def plan(dockerfile: Dockerfile, *, target: str | None = None,
         build_args: Mapping[str, str | None] | None = None,
         target_platform: Platform | None = None,
         build_platform: Platform | None = None) -> BuildPlan:
    """Resolve ``--target`` (a stage name; default the last stage) and what it needs."""
    scope = global_scope(dockerfile, build_args, target_platform=target_platform,
                         build_platform=build_platform)
    target_index = _target(dockerfile, target)
    planned: dict[int, PlannedStage] = {}
    order: list[int] = []
    visiting: list[int] = []

    def visit(index: int) -> None:
        if index in planned:
            return
        if index in visiting:
            trail = [_label(dockerfile.stages[i]) for i in visiting[visiting.index(index):]]
            raise DockerfileError(
                "circular dependency between stages: " + " -> ".join([*trail, trail[0]]),
                path=dockerfile.path, line=dockerfile.stages[index].line,
                hint="no stage may need itself through FROM, COPY --from or --mount from=")
        visiting.append(index)
        stage = _plan_stage(dockerfile, dockerfile.stages[index], scope)
        for need in stage.needs:
            visit(need)
        visiting.pop()
        planned[index] = stage
        order.append(index)

    visit(target_index)
    declared = {name for instruction in dockerfile.global_args for name, _ in instruction.pairs}
    for index in order:
        declared |= {name for instruction in dockerfile.stages[index].instructions
                     if instruction.keyword == "ARG" for name, _ in instruction.pairs}
    known = declared | set(PROXY_ARGS) | set(PLATFORM_ARGS)
    unused = tuple(sorted(name for name in _given(build_args) if name not in known))
    return BuildPlan(target_index, tuple(planned[i] for i in order),
                     MappingProxyType(scope), unused)


def _label(stage: Stage) -> str:
    return stage.name or f"stage {stage.index}"


def _target(dockerfile: Dockerfile, target: str | None) -> int:
    if target is None:
        return len(dockerfile.stages) - 1
    for stage in dockerfile.stages:
        if stage.name == target.lower():
            return stage.index
    names = ", ".join(stage.name for stage in dockerfile.stages if stage.name) or "none"
    raise DockerfileError(f"target stage {target!r} could not be found", path=dockerfile.path,
                          hint=f"the named stages are: {names}")


def _plan_stage(dockerfile: Dockerfile, stage: Stage, scope: Mapping[str, str]) -> PlannedStage:
    base = _expand(stage.base, scope, dockerfile, stage.line)
    if not base:
        raise DockerfileError(f"base name ({stage.base}) should not be blank",
                              path=dockerfile.path, line=stage.line,
                              hint="give the build arg a value or the ARG a default")
    platform = _expand(stage.platform, scope, dockerfile, stage.line) if stage.platform else ""
    earlier = [s for s in dockerfile.stages[:stage.index] if s.name == base.lower()]
    sources: set[int] = set()
    images: list[str] = []
    for instruction in stage.instructions:
        refs = [instruction.flag("from")] if instruction.keyword == "COPY" else []
        refs += [mount.from_ for mount in instruction.mounts]
        for ref in refs:
            if ref is None:
                continue
            source = dockerfile.stage(ref)
            if source is not None:
                sources.add(source.index)
            elif ref.isascii() and ref.isdigit():
                raise DockerfileError(
                    f"--from={ref} names no stage: the file has {len(dockerfile.stages)}",
                    path=dockerfile.path, line=instruction.line,
                    hint="stage indexes count from 0 in the order the FROM lines come")
            elif ref not in images:
                images.append(ref)
    return PlannedStage(stage, base, earlier[0].index if earlier else None, platform or None,
                        tuple(sorted(sources)), tuple(images))
