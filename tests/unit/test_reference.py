"""Image references, normalized by Docker's distribution/reference rules (``docker pull``)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.errors import ComposerError
from composer.runtime.images.reference import InvalidReference, Reference, is_loopback, parse

HEX = hashlib.sha256(b"busybox").hexdigest()
D = f"sha256:{HEX}"
D384 = f"sha384:{hashlib.sha384(b'x').hexdigest()}"
D512 = f"sha512:{hashlib.sha512(b'x').hexdigest()}"
LONG_TAG = "t" * 128

# Input -> (str(), familiar()). The str() column is what Docker's ParseNormalizedNamed and
# TagNameOnly produce; familiar() is Docker's FamiliarString of that.
VALID: list[tuple[str, str, str]] = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/org/app:2", "docker.io/org/app:2", "org/app:2"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("org/app", "docker.io/org/app:latest", "org/app:latest"),
    ("org/app:tag", "docker.io/org/app:tag", "org/app:tag"),
    ("docker.io/org/app:1", "docker.io/org/app:1", "org/app:1"),
    ("a/b/c", "docker.io/a/b/c:latest", "a/b/c:latest"),
    ("library/a/b", "docker.io/library/a/b:latest", "library/a/b:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000/app:1"),
    # No "/": never a registry, so this is the Hub repository "localhost" with tag "5000".
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
    ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest", "127.0.0.1:5000/x/y:latest"),
    ("1.2.3.4/app", "1.2.3.4/app:latest", "1.2.3.4/app:latest"),
    ("registry.local/app", "registry.local/app:latest", "registry.local/app:latest"),
    ("registry.local:5000/team/app:v2", "registry.local:5000/team/app:v2",
     "registry.local:5000/team/app:v2"),
    ("ghcr.io/o/r:v1.2.3", "ghcr.io/o/r:v1.2.3", "ghcr.io/o/r:v1.2.3"),
    ("quay.io/prometheus/node-exporter:v1.8.0", "quay.io/prometheus/node-exporter:v1.8.0",
     "quay.io/prometheus/node-exporter:v1.8.0"),
    ("example.com:8080/a/b/c/d:t", "example.com:8080/a/b/c/d:t", "example.com:8080/a/b/c/d:t"),
    ("host-name.example:1/x", "host-name.example:1/x:latest", "host-name.example:1/x:latest"),
    ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
    ("[::1]/app", "[::1]/app:latest", "[::1]/app:latest"),
    ("[2001:db8::1]:443/ns/app:1", "[2001:db8::1]:443/ns/app:1", "[2001:db8::1]:443/ns/app:1"),
    # Docker keeps the registry host's case, and takes a capitalized first part for a host.
    ("Registry.Example.com/app", "Registry.Example.com/app:latest",
     "Registry.Example.com/app:latest"),
    ("MyRegistry/app", "MyRegistry/app:latest", "MyRegistry/app:latest"),
    # Only docker.io is the Hub: registry-1.docker.io is left as written.
    ("registry-1.docker.io/library/busybox", "registry-1.docker.io/library/busybox:latest",
     "registry-1.docker.io/library/busybox:latest"),
    # Digests: no tag is filled in beside one; a tag given with one is kept.
    ("busybox@" + D, "docker.io/library/busybox@" + D, "busybox@" + D),
    ("busybox:1.36@" + D, "docker.io/library/busybox:1.36@" + D, "busybox:1.36@" + D),
    ("org/app@" + D, "docker.io/org/app@" + D, "org/app@" + D),
    ("ghcr.io/o/r@" + D, "ghcr.io/o/r@" + D, "ghcr.io/o/r@" + D),
    ("localhost:5000/app:1@" + D, "localhost:5000/app:1@" + D, "localhost:5000/app:1@" + D),
    ("busybox@" + D384, "docker.io/library/busybox@" + D384, "busybox@" + D384),
    ("busybox@" + D512, "docker.io/library/busybox@" + D512, "busybox@" + D512),
    # Tags: digits only, dots, dashes, underscores, capitals, a leading "_", 128 characters.
    ("python:3", "docker.io/library/python:3", "python:3"),
    ("app:2024", "docker.io/library/app:2024", "app:2024"),
    ("node:20.11.1-alpine3.19", "docker.io/library/node:20.11.1-alpine3.19",
     "node:20.11.1-alpine3.19"),
    ("busybox:Latest", "docker.io/library/busybox:Latest", "busybox:Latest"),
    ("busybox:_x", "docker.io/library/busybox:_x", "busybox:_x"),
    ("busybox:v1_2-3.4", "docker.io/library/busybox:v1_2-3.4", "busybox:v1_2-3.4"),
    ("busybox:" + LONG_TAG, "docker.io/library/busybox:" + LONG_TAG, "busybox:" + LONG_TAG),
    # Path separators: ".", "_", "__", any run of "-".
    ("my_app", "docker.io/library/my_app:latest", "my_app:latest"),
    ("my__app/x", "docker.io/my__app/x:latest", "my__app/x:latest"),
    ("my-app", "docker.io/library/my-app:latest", "my-app:latest"),
    ("my---app", "docker.io/library/my---app:latest", "my---app:latest"),
    ("org/my.app_v2--x:tag", "docker.io/org/my.app_v2--x:tag", "org/my.app_v2--x:tag"),
    ("0/1", "docker.io/0/1:latest", "0/1:latest"),
    # A Hub path whose first part would read as a host keeps "docker.io/" when shortened.
    ("docker.io/foo.com/bar", "docker.io/foo.com/bar:latest", "docker.io/foo.com/bar:latest"),
    ("docker.io/localhost/bar", "docker.io/localhost/bar:latest",
     "docker.io/localhost/bar:latest"),
    # The 255 limit is on the path with "library/" but without the registry host.
    ("a" * 247, "docker.io/library/" + "a" * 247 + ":latest", "a" * 247 + ":latest"),
    ("example.com/" + "a" * 255, "example.com/" + "a" * 255 + ":latest",
     "example.com/" + "a" * 255 + ":latest"),
]

LOWER_HINT = ("use lowercase letters and digits, joined by '.', '_', '__' or dashes; "
              "a path component starts and ends with a letter or digit")
HOST_HINT = ("a registry host is a DNS name or IPv4 address (letters, digits, '-' and '.'), "
             "or an IPv6 address in brackets, optionally followed by :PORT")
TAG_HINT = ("a tag is at most 128 letters, digits, '_', '.' and '-', and starts with a "
            "letter, digit or '_'")

# Input -> (message, hint).
INVALID: list[tuple[str, str, str]] = [
    ("", 'invalid reference "": the reference is empty',
     "name an image, e.g. busybox, org/app:1.0 or ghcr.io/org/app"),
    ("Busybox", 'invalid reference "Busybox": repository name must be lowercase',
     "write it in lowercase: busybox"),
    ("docker.io/Org/App:V1",
     'invalid reference "docker.io/Org/App:V1": repository name must be lowercase',
     "write it in lowercase: docker.io/org/app:V1"),
    ("ghcr.io/Org/app", 'invalid reference "ghcr.io/Org/app": repository name must be lowercase',
     "write it in lowercase: ghcr.io/org/app"),
    # A capitalized first part is a host only if the rest is lowercase; then lower it all.
    ("MyOrg/App", 'invalid reference "MyOrg/App": repository name must be lowercase',
     "write it in lowercase: myorg/app"),
    ("My_Org/app", 'invalid reference "My_Org/app": repository name must be lowercase',
     "write it in lowercase: my_org/app"),
    ("busybox/", "invalid reference \"busybox/\": it ends with '/'",
     "remove the trailing '/': busybox"),
    ("org/app/:1", "invalid reference \"org/app/:1\": it ends with '/'",
     "remove the trailing '/': org/app:1"),
    ("ghcr.io/", 'invalid reference "ghcr.io/": there is no repository path after "ghcr.io/"',
     "write HOST/PATH, e.g. ghcr.io/org/app"),
    ("/busybox", "invalid reference \"/busybox\": it starts with '/'",
     "remove the leading '/': busybox"),
    ("org//app", "invalid reference \"org//app\": it has an empty path component ('//')",
     "remove the extra '/': org/app"),
    ("localhost//app", "invalid reference \"localhost//app\": it has an empty path component "
     "('//')", "remove the extra '/': localhost/app"),
    ("busybox:", "invalid reference \"busybox:\": the tag after ':' is empty",
     "write a tag after ':' (e.g. busybox:latest) or drop the ':'"),
    ("busybox:a!b", 'invalid reference "busybox:a!b": tag "a!b" is not valid', TAG_HINT),
    ("busybox:1:2", 'invalid reference "busybox:1:2": tag "1:2" is not valid', TAG_HINT),
    ("busybox:-rc1", 'invalid reference "busybox:-rc1": tag "-rc1" starts with "-"', TAG_HINT),
    ("busybox:.x", 'invalid reference "busybox:.x": tag ".x" starts with "."', TAG_HINT),
    ("busybox:" + "t" * 129,
     f'invalid reference "busybox:{"t" * 129}": tag is 129 characters long, more than 128',
     "shorten the tag to 128 characters at most"),
    ("busybox@sha256:abc",
     'invalid reference "busybox@sha256:abc": sha256 digest has 3 hex digits, not 64',
     "check that the whole digest was copied"),
    ("busybox@sha512:" + HEX,
     f'invalid reference "busybox@sha512:{HEX}": sha512 digest has 64 hex digits, not 128',
     "check that the whole digest was copied"),
    ("busybox@md5:" + HEX[:32],
     f'invalid reference "busybox@md5:{HEX[:32]}": digest algorithm "md5" is not supported',
     "use sha256, sha384 or sha512 (in lowercase)"),
    ("busybox@SHA256:" + HEX,
     f'invalid reference "busybox@SHA256:{HEX}": digest algorithm "SHA256" is not supported',
     "use sha256, sha384 or sha512 (in lowercase)"),
    ("busybox@sha256:" + HEX.upper(),
     f'invalid reference "busybox@sha256:{HEX.upper()}": '
     f'digest "sha256:{HEX.upper()}" must be lowercase hex',
     f"write it in lowercase: sha256:{HEX}"),
    ("busybox@sha256:" + "g" * 64,
     f'invalid reference "busybox@sha256:{"g" * 64}": digest "sha256:{"g" * 64}" '
     "is not hexadecimal", "a sha256 digest is 64 hex digits (0-9, a-f)"),
    ("busybox@sha256", 'invalid reference "busybox@sha256": digest "sha256" is not ALGORITHM:HEX',
     "write the digest as sha256:<64 hex digits>"),
    ("busybox@", "invalid reference \"busybox@\": the digest after '@' is empty",
     "write NAME@sha256:<64 hex digits>, or drop the '@'"),
    ("@" + D, f"invalid reference \"@{D}\": there is no image name before '@'",
     "write NAME@sha256:<64 hex digits>, e.g. busybox@sha256:..."),
    ("http://x/y", 'invalid reference "http://x/y": it is a URL, not an image reference',
     "drop the scheme: x/y"),
    ("https://ghcr.io/o/r:1", 'invalid reference "https://ghcr.io/o/r:1": it is a URL, not an '
     "image reference", "drop the scheme: ghcr.io/o/r:1"),
    ("bu sybox", 'invalid reference "bu sybox": it contains whitespace',
     "remove the whitespace: busybox"),
    (" busybox", 'invalid reference " busybox": it contains whitespace',
     "remove the whitespace: busybox"),
    ("busybox\n", 'invalid reference "busybox\\n": it contains whitespace',
     "remove the whitespace: busybox"),
    (HEX, f'invalid reference "{HEX}": a 64-digit hex string is an image ID, not an image name',
     f"name the image, or pin it by digest: NAME@sha256:{HEX}"),
    ("a" * 248, f'invalid reference "{"a" * 248}": repository path is 256 characters long, '
     "more than 255", "use a shorter repository name"),
    ("a__b.c/d", 'invalid reference "a__b.c/d": registry host "a__b.c" is not valid', HOST_HINT),
    ("a..b/c", 'invalid reference "a..b/c": registry host "a..b" is not valid', HOST_HINT),
    ("-bad.com/x", 'invalid reference "-bad.com/x": registry host "-bad.com" is not valid',
     HOST_HINT),
    ("host:port/x", 'invalid reference "host:port/x": registry host "host:port" is not valid',
     HOST_HINT),
    ("[fe80::1%eth0]:5000/x",
     'invalid reference "[fe80::1%eth0]:5000/x": registry host "[fe80::1%eth0]:5000" is not '
     "valid", HOST_HINT),
    ("busybox!", 'invalid reference "busybox!": path component "busybox!" is not valid',
     LOWER_HINT),
    ("org/-app", 'invalid reference "org/-app": path component "-app" is not valid', LOWER_HINT),
    ("org/app-", 'invalid reference "org/app-": path component "app-" is not valid', LOWER_HINT),
    ("org/a___b", 'invalid reference "org/a___b": path component "a___b" is not valid',
     LOWER_HINT),
    ("org/a._b", 'invalid reference "org/a._b": path component "a._b" is not valid', LOWER_HINT),
]


@pytest.mark.parametrize(("text", "full", "familiar"), VALID, ids=[row[0][:40] for row in VALID])
def test_normalizes_like_docker(text: str, full: str, familiar: str) -> None:
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert parse(full) == ref
    assert parse(familiar) == ref
    assert ref.repository == f"{ref.domain}/{ref.path}"
    assert full.startswith(ref.repository)


def test_valid_table_is_large_enough() -> None:
    assert len(VALID) >= 40
    assert len(INVALID) >= 15


@pytest.mark.parametrize(("text", "message", "hint"), INVALID,
                         ids=[repr(row[0][:40]) for row in INVALID])
def test_rejects_with_a_plain_message(text: str, message: str, hint: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)
    error = caught.value
    assert error.message == message
    assert error.hint == hint
    assert error.text == text
    assert str(error) == f"{message}\n  hint: {hint}"
    assert isinstance(error, ComposerError)


def test_fields_of_a_hub_name() -> None:
    ref = parse("busybox")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "docker.io", "library/busybox", "latest", None)
    assert ref.repository == "docker.io/library/busybox"


def test_digest_only_has_no_tag() -> None:
    ref = parse("busybox@" + D)
    assert ref.tag is None
    assert ref.digest == D


def test_tag_and_digest_are_both_kept() -> None:
    ref = parse("ghcr.io/o/r:1.0@" + D)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("ghcr.io", "o/r", "1.0", D)


def test_port_and_ipv6_stay_in_the_domain() -> None:
    assert parse("localhost:5000/app").domain == "localhost:5000"
    assert parse("localhost:5000/app").path == "app"
    assert parse("[::1]:5000/a/b:c").domain == "[::1]:5000"
    assert parse("[::1]:5000/a/b:c").path == "a/b"


def test_with_tag_and_with_digest() -> None:
    ref = parse("ghcr.io/o/r:1")
    assert str(ref.with_tag("2")) == "ghcr.io/o/r:2"
    pinned = ref.with_digest(D)
    assert str(pinned) == f"ghcr.io/o/r:1@{D}"
    assert str(pinned.with_tag("3")) == f"ghcr.io/o/r:3@{D}"
    assert str(parse("busybox@" + D).with_tag("1")) == f"docker.io/library/busybox:1@{D}"
    assert ref == parse("ghcr.io/o/r:1")  # frozen: the originals are untouched


def test_with_tag_and_with_digest_check_their_argument() -> None:
    ref = parse("busybox")
    with pytest.raises(InvalidReference, match=r'tag "bad!" is not valid'):
        ref.with_tag("bad!")
    with pytest.raises(InvalidReference, match=r"sha256 digest has 3 hex digits, not 64"):
        ref.with_digest("sha256:abc")


def test_direct_construction_is_normalized() -> None:
    assert Reference("index.docker.io", "busybox") == parse("busybox")
    assert Reference("docker.io", "org/app", "1") == parse("org/app:1")
    assert Reference("ghcr.io", "o/r", None, D).tag is None
    assert hash(Reference("docker.io", "busybox")) == hash(parse("docker.io/library/busybox"))


@pytest.mark.parametrize(("domain", "path", "reason"), [
    ("myhost", "app", 'registry host "myhost" would be read as part of the path'),
    ("bad_host.com", "app", 'registry host "bad_host.com" is not valid'),
    ("ghcr.io", "Org/app", "repository name must be lowercase"),
    ("ghcr.io", "", "it has an empty path component"),
    ("ghcr.io", "a//b", "it has an empty path component"),
])
def test_direct_construction_is_checked(domain: str, path: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        Reference(domain, path)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("text", "host"), [
    ("busybox", "registry-1.docker.io"),
    ("docker.io/org/app", "registry-1.docker.io"),
    ("index.docker.io/org/app", "registry-1.docker.io"),
    ("ghcr.io/o/r", "ghcr.io"),
    ("localhost:5000/app", "localhost:5000"),
    ("[::1]:5000/app", "[::1]:5000"),
    ("registry-1.docker.io/library/busybox", "registry-1.docker.io"),
])
def test_api_host(text: str, host: str) -> None:
    assert parse(text).api_host == host


@pytest.mark.parametrize(("domain", "expected"), [
    ("localhost", True),
    ("localhost:5000", True),
    ("LocalHost:5000", True),
    ("127.0.0.1", True),
    ("127.0.0.1:5000", True),
    ("127.255.3.4:80", True),
    ("[::1]", True),
    ("[::1]:5000", True),
    ("[0:0:0:0:0:0:0:1]:5000", True),
    ("::1", True),
    ("[::ffff:127.0.0.1]:5000", True),
    ("128.0.0.1", False),
    ("10.0.0.1:5000", False),
    ("[::2]:5000", False),
    ("[127.0.0.1]", False),
    ("docker.io", False),
    ("localhost.localdomain", False),
    ("localhost.example.com:5000", False),
    ("mylocalhost", False),
    ("127.1", False),
    ("localhost:", False),
    ("localhost:port", False),
    ("[::1]5000", False),
    ("[::1", False),
    ("", False),
])
def test_is_loopback(domain: str, expected: bool) -> None:
    assert is_loopback(domain) is expected


def test_loopback_registries_from_references() -> None:
    assert is_loopback(parse("localhost:5000/app").domain)
    assert is_loopback(parse("127.0.0.1:5000/x/y").domain)
    assert is_loopback(parse("[::1]:5000/app").domain)
    assert not is_loopback(parse("localhost:5000").domain)  # docker.io/library/localhost


# Generators for the round-trip properties.
_component = st.from_regex(r"[a-z0-9]{1,4}(?:(?:[._]|__|-{1,3})[a-z0-9]{1,4}){0,2}",
                           fullmatch=True)
_path = st.lists(_component, min_size=1, max_size=4).map("/".join)
_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
_host = st.one_of(
    st.sampled_from(["docker.io", "index.docker.io", "localhost", "ghcr.io", "[::1]",
                     "[2001:db8::1]", "127.0.0.1"]),
    st.builds(lambda a, b: f"{a}.{b}", _label, _label),
    _label.filter(lambda label: label.lower() != label),  # a host only for its capitals
)
_port = st.one_of(st.just(""), st.integers(0, 65535).map(lambda n: f":{n}"))
_domain = st.builds(lambda host, port: host + port, _host, _port)
_tag = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True))
_HEX_DIGITS = {"sha256": 64, "sha384": 96, "sha512": 128}
_digest = st.one_of(st.none(), st.sampled_from(sorted(_HEX_DIGITS)).flatmap(
    lambda alg: st.text("0123456789abcdef", min_size=_HEX_DIGITS[alg],
                        max_size=_HEX_DIGITS[alg]).map(lambda digits: f"{alg}:{digits}")))


@settings(max_examples=300, deadline=None)
@given(_domain, _path, _tag, _digest)
def test_round_trip(domain: str, path: str, tag: str | None, digest: str | None) -> None:
    ref = Reference(domain, path, tag, digest)
    assert parse(str(ref)) == ref
    assert parse(ref.familiar()) == ref
    assert parse(str(ref)).familiar() == ref.familiar()
    if tag is None and digest is None:
        assert ref.tag == "latest"
    if digest is not None:
        assert str(ref).endswith("@" + digest)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="abcAB019._-/:@[]% ", max_size=24))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        ref = parse(text)
    except InvalidReference as error:
        assert error.text == text
        assert error.message.startswith(f'invalid reference "{text}": ')
        assert error.hint
        return
    assert parse(str(ref)) == ref
    assert parse(ref.familiar()) == ref
    assert ref.tag is not None or ref.digest is not None
