"""Stage selection for --target and build-arg scoping, as BuildKit resolves them."""

from __future__ import annotations

import pytest

from composer.runtime.images.build import (
    ArgScope,
    Dockerfile,
    DockerfileError,
    global_scope,
    parse,
    plan,
    platform_args,
)
from composer.runtime.images.platform import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")

MULTI = """\
FROM golang AS deps
RUN go mod download
FROM deps AS build
RUN --mount=type=cache,target=/c go build
FROM alpine AS tools
RUN apk add curl
FROM scratch AS final
COPY --from=build /out /app
COPY --from=2 /usr/bin/curl /curl
FROM alpine AS unrelated
RUN true
"""


def indexes(text: str, target: str | None = None) -> list[int]:
    return [planned.stage.index for planned in plan(parse(text), target=target).stages]


# --- platform args ----------------------------------------------------------------------

@pytest.mark.parametrize(("platform", "expected"), [
    (AMD64, ("linux/amd64", "linux", "amd64", "")),
    (ARM64, ("linux/arm64", "linux", "arm64", "")),
    (Platform("linux", "arm", "v7"), ("linux/arm/v7", "linux", "arm", "v7")),
    (Platform("linux", "amd64", "v3"), ("linux/amd64/v3", "linux", "amd64", "v3")),
])
def test_platform_args(platform: Platform, expected: tuple[str, str, str, str]) -> None:
    values = platform_args(platform, AMD64)
    assert (values["TARGETPLATFORM"], values["TARGETOS"], values["TARGETARCH"],
            values["TARGETVARIANT"]) == expected
    assert values["BUILDPLATFORM"] == "linux/amd64"
    assert values["BUILDARCH"] == "amd64"


# --- the global scope -------------------------------------------------------------------

def scope_of(text: str, build_args: dict[str, str | None] | None = None) -> dict[str, str]:
    return global_scope(parse(text + "FROM a\n"), build_args, target_platform=ARM64,
                        build_platform=AMD64)


def test_global_defaults_chain() -> None:
    scope = scope_of("ARG A=1\nARG B=${A}2 C\n")
    assert (scope["A"], scope["B"]) == ("1", "12")
    assert "C" not in scope


def test_global_user_values_replace_defaults() -> None:
    scope = scope_of("ARG A=1\nARG B=${A}2\n", {"A": "9", "C": "given"})
    assert (scope["A"], scope["B"]) == ("9", "92")
    assert "C" not in scope  # given, but no ARG declares it


def test_global_scope_has_the_platform_args() -> None:
    scope = scope_of("ARG IMAGE=app-$TARGETARCH\n")
    assert (scope["TARGETPLATFORM"], scope["BUILDPLATFORM"]) == ("linux/arm64", "linux/amd64")
    assert scope["IMAGE"] == "app-arm64"


def test_user_value_replaces_a_platform_arg() -> None:
    assert scope_of("", {"TARGETARCH": "riscv64"})["TARGETARCH"] == "riscv64"


def test_a_value_of_none_is_not_given() -> None:
    assert scope_of("ARG A=1\n", {"A": None})["A"] == "1"


def test_global_expansion_error_names_the_line() -> None:
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: .*A: required"):
        scope_of("ARG X=1\nARG B=${A:?required}\n")


# --- stage selection --------------------------------------------------------------------

def test_default_target_is_the_last_stage() -> None:
    assert indexes(MULTI) == [4]


@pytest.mark.parametrize(("target", "needed"), [
    ("final", [0, 1, 2, 3]),
    ("FINAL", [0, 1, 2, 3]),
    ("build", [0, 1]),
    ("deps", [0]),
    ("tools", [2]),
    ("unrelated", [4]),
])
def test_target_needs(target: str, needed: list[int]) -> None:
    assert indexes(MULTI, target=target) == needed


def test_planned_stage_details() -> None:
    built = plan(parse(MULTI), target="final")
    deps, build, tools, final = built.stages
    assert (deps.base, deps.base_stage, deps.needs) == ("golang", None, ())
    assert (build.base, build.base_stage, build.needs) == ("deps", 0, (0,))
    assert (final.base, final.sources, final.needs) == ("scratch", (1, 2), (1, 2))
    assert tools.needs == ()
    assert built.target == 3
    assert final.stage.name == "final"


def test_unknown_target_lists_the_stages() -> None:
    with pytest.raises(DockerfileError, match="target stage 'nope' could not be found") as err:
        plan(parse(MULTI), target="nope")
    assert err.value.hint == "the named stages are: deps, build, tools, final, unrelated"


def test_mount_from_a_stage_is_a_dependency() -> None:
    text = "FROM a AS src\nFROM b\nRUN --mount=type=bind,from=src,target=/s make\n"
    assert indexes(text) == [0, 1]


def test_images_read_by_copy_and_mounts() -> None:
    text = ("FROM a\nCOPY --from=nginx:1.25 /etc/nginx /n\n"
            "RUN --mount=from=busybox,target=/bb --mount=type=cache,target=/c true\n"
            "COPY --from=nginx:1.25 /x /x\n")
    assert plan(parse(text)).stages[0].images == ("nginx:1.25", "busybox")


def test_from_names_a_stage_only_when_it_comes_earlier() -> None:
    text = "FROM later AS first\nFROM alpine AS later\n"
    stage = plan(parse(text), target="first").stages[0]
    assert (stage.base, stage.base_stage) == ("later", None)


def test_copy_from_a_later_stage_by_name() -> None:
    text = "FROM a AS first\nCOPY --from=later /x /x\nFROM b AS later\n"
    assert indexes(text, target="first") == [1, 0]


def test_from_is_expanded_with_the_global_scope() -> None:
    text = "ARG BASE=build\nARG TAG=3.19\nFROM alpine:$TAG AS build\nFROM ${BASE}\n"
    built = plan(parse(text))
    assert [(s.base, s.base_stage) for s in built.stages] == [("alpine:3.19", None),
                                                               ("build", 0)]
    assert plan(parse(text), build_args={"BASE": "debian"}).stages[-1].base == "debian"


def test_platform_is_expanded() -> None:
    text = "FROM --platform=$BUILDPLATFORM golang AS build\nFROM --platform=${NONE} alpine\n"
    built = plan(parse(text), target="build", build_platform=ARM64)
    assert built.stages[0].platform == "linux/arm64"
    assert plan(parse(text)).stages[0].platform is None


@pytest.mark.parametrize(("text", "line", "message"), [
    ("FROM a AS x\nCOPY --from=y /a /a\nFROM b AS y\nCOPY --from=x /b /b\n", 3,
     "circular dependency between stages: y -> x -> y"),
    ("FROM a AS x\nCOPY --from=x /a /a\n", 1, "circular dependency between stages: x -> x"),
    ("FROM a\nCOPY --from=0 /a /a\n", 1, "stage 0 -> stage 0"),
    ("FROM a\nCOPY --from=7 /a /a\n", 2, "--from=7 names no stage: the file has 1"),
    ("ARG B\nFROM $B\n", 2, "base name ($B) should not be blank"),
    ("FROM ${B:?set-B}\n", 1, "B: set-B"),
])
def test_plan_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(DockerfileError) as err:
        plan(parse(text))
    assert err.value.line == line
    assert message in err.value.message


# --- unused build args ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "given", "unused"), [
    ("FROM a\nARG USED\n", {"USED": "1", "EXTRA": "2", "ALSO": "3"}, ("ALSO", "EXTRA")),
    ("ARG GLOBAL\nFROM a\n", {"GLOBAL": "1"}, ()),
    ("FROM a\n", {"HTTP_PROXY": "p", "no_proxy": "n", "TARGETARCH": "arm64"}, ()),
    ("FROM a\n", {"UNSET": None}, ()),
    ("FROM a AS other\nARG ONLY_THERE\nFROM b\n", {"ONLY_THERE": "1"}, ("ONLY_THERE",)),
])
def test_unused_build_args(text: str, given: dict[str, str | None],
                           unused: tuple[str, ...]) -> None:
    assert plan(parse(text), build_args=given).unused_args == unused


# --- one stage's scope ------------------------------------------------------------------

def stage_scope(text: str, given: dict[str, str | None] | None = None,
                image_env: dict[str, str] | None = None) -> tuple[Dockerfile, ArgScope]:
    dockerfile = parse(text)
    scope = ArgScope(dockerfile, global_scope(dockerfile, given, target_platform=AMD64,
                                              build_platform=AMD64), given, image_env)
    return dockerfile, scope


def run_stage(text: str, given: dict[str, str | None] | None = None,
              image_env: dict[str, str] | None = None) -> ArgScope:
    """Dispatch the ARG and ENV instructions of the last stage, as the builder will."""
    dockerfile, scope = stage_scope(text, given, image_env)
    for instruction in dockerfile.stages[-1].instructions:
        if instruction.keyword == "ARG":
            scope.declare(instruction)
        elif instruction.keyword == "ENV":
            for key, value in instruction.pairs:
                scope.set_env(key, value or "")
    return scope


def test_global_args_are_not_visible_until_redeclared() -> None:
    assert "V" not in run_stage("ARG V=1\nFROM a\n").env
    assert run_stage("ARG V=1\nFROM a\nARG V\n").env["V"] == "1"


@pytest.mark.parametrize(("text", "given", "value"), [
    ("ARG V=1\nFROM a\nARG V\n", {"V": "2"}, "2"),
    ("FROM a\nARG V=1\n", None, "1"),
    ("FROM a\nARG V=1\n", {"V": "2"}, "2"),
    ("FROM a\nARG V=1\nARG V=3\n", None, "3"),
    ("FROM a\nENV BASE=/opt\nARG V=$BASE/bin\n", None, "/opt/bin"),
    ("ARG G=global\nFROM a\nARG V=${G:-none}\n", None, "none"),
    ("FROM a\nARG V\nENV V=from-env\n", {"V": "given"}, "from-env"),
    ("FROM a\nENV V=from-env\nARG V\n", {"V": "given"}, "given"),
    ("FROM a\nARG TARGETARCH\nARG V=$TARGETARCH\n", None, "amd64"),
])
def test_stage_variable_values(text: str, given: dict[str, str | None] | None,
                               value: str) -> None:
    assert run_stage(text, given).env["V"] == value


def test_an_arg_without_value_stays_unset() -> None:
    scope = run_stage("FROM a\nARG V\n")
    assert "V" not in scope.env
    assert scope.history_args() == ()


def test_declare_reports_what_each_arg_took() -> None:
    dockerfile, scope = stage_scope("ARG G=1\nFROM a\nARG G X=2 Y\n", {"X": "9"})
    assert scope.declare(dockerfile.stages[0].instructions[0]) == (
        ("G", "1"), ("X", "9"), ("Y", None))


def test_image_env_is_seen_by_defaults() -> None:
    scope = run_stage("FROM a\nARG P=$PATH:/x\n", image_env={"PATH": "/bin"})
    assert scope.env["P"] == "/bin:/x"


def test_proxies_reach_run_but_not_history_unless_declared() -> None:
    given: dict[str, str | None] = {"HTTP_PROXY": "http://p", "https_proxy": "http://s",
                                    "OTHER": "o"}
    scope = run_stage("FROM a\nARG V=1\n", given)
    assert scope.run_env() == {"V": "1", "HTTP_PROXY": "http://p", "https_proxy": "http://s"}
    assert scope.history_args() == ("V=1",)
    declared = run_stage("FROM a\nARG V=1 HTTP_PROXY\n", given)
    assert declared.history_args() == ("V=1", "HTTP_PROXY=http://p")


def test_a_stage_built_on_a_stage_inherits_its_args() -> None:
    dockerfile, base = stage_scope("FROM a AS base\nARG V=1\nFROM base\nRUN x\n")
    base.declare(dockerfile.stages[0].instructions[0])
    child = base.fork()
    child.set_env("W", "2")
    assert (child.env["V"], child.history_args()) == ("1", ("V=1",))
    assert "W" not in base.env


def test_declare_expansion_error_names_the_line() -> None:
    dockerfile, scope = stage_scope("FROM a\n\nARG V=${U:?give-U}\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:3: .*U: give-U"):
        scope.declare(dockerfile.stages[0].instructions[0])
