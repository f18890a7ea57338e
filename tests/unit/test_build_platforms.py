"""Build platforms: only this host's is accepted, spelled any way containerd spells it."""

from __future__ import annotations

import pytest

from composer.runtime.images.build.flags import Refused
from composer.runtime.images.build.platforms import (
    check_host_platforms,
    parse_platform,
    same_platform,
)
from composer.runtime.images.platform import Platform

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")


@pytest.mark.parametrize(("text", "expected"), [
    ("linux/amd64", AMD64), ("Linux/AMD64", AMD64), ("linux/arm64/v8", ARM64),
    ("linux/arm/v7", Platform("linux", "arm", "v7")),
])
def test_parse_platform(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected


def test_a_bare_os_means_the_hosts_architecture() -> None:
    host = Platform.host()
    assert parse_platform("linux") == Platform("linux", host.architecture, host.variant)


@pytest.mark.parametrize("text", ["", "linux/", "a/b/c/d", "linux/amd 64"])
def test_malformed_platforms_are_refused(text: str) -> None:
    with pytest.raises(Refused, match="invalid platform"):
        parse_platform(text)


@pytest.mark.parametrize(("one", "other"), [
    ("linux/x86_64", "linux/amd64"), ("linux/arm64", "linux/arm64/v8"),
    ("linux/aarch64", "linux/arm64"), ("linux/amd64/v1", "linux/amd64"),
])
def test_aliases_and_default_variants_are_the_same_platform(one: str, other: str) -> None:
    assert same_platform(parse_platform(one), parse_platform(other))


def test_only_the_hosts_platform_passes() -> None:
    assert check_host_platforms("linux/amd64", what="--platform", host=AMD64) == AMD64
    assert check_host_platforms("linux/x86_64,linux/amd64", what="--platform",
                                host=AMD64) == AMD64
    with pytest.raises(Refused) as refused:
        check_host_platforms("linux/amd64,linux/arm64", what="--platform", host=AMD64)
    assert refused.value.message == ("--platform=linux/arm64: composer builds only for this "
                                     "host's platform (linux/amd64)")
    assert refused.value.hint is not None and "without emulation" in refused.value.hint
    with pytest.raises(Refused, match="FROM --platform=windows/amd64"):
        check_host_platforms("windows/amd64", what="FROM --platform", host=AMD64)
    with pytest.raises(Refused, match="is empty"):
        check_host_platforms(" , ", what="--platform", host=AMD64)
