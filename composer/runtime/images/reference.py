"""Image references (``busybox``, ``ghcr.io/org/app:1.2@sha256:...``), normalized as Docker does.

An image named in a compose file must land in the same store entry, and be fetched from the
same registry, as ``docker pull`` would use for that name. So this module follows the
"normalized named" rules of Docker's distribution/reference (``ParseNormalizedNamed``, with
``latest`` filled in when neither a tag nor a digest is given):

* the text before the first ``/`` is a registry host when it contains ``.`` or ``:``, is
  exactly ``localhost``, or has an uppercase letter (repository paths never do); otherwise the
  registry is Docker Hub, ``docker.io``; a text without ``/`` is always a Docker Hub name, so
  ``localhost:5000`` alone is the repository ``library/localhost`` with tag ``5000``;
* ``index.docker.io`` (the legacy Hub name) becomes ``docker.io``, and a one-component Docker
  Hub path gets the ``library/`` prefix of official images;
* path components are lowercase ``[a-z0-9]+`` joined by ``.``, ``_``, ``__`` or runs of ``-``;
  the path (``library/`` included, registry host excluded) is at most 255 characters;
* tags are ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; digests are ``sha256:``, ``sha384:`` or
  ``sha512:`` followed by the right number of lowercase hex digits; ``name:tag@digest`` keeps
  both.

Where Docker answers only "invalid reference format", the errors here say what is wrong and
what to write instead. One deliberate difference: a first component with characters that fit
neither a host nor a path (``a__b.c/d``) is an invalid registry host here, where Docker
returns a reference with no registry at all. And ``familiar()`` keeps ``docker.io/`` for a
Hub path whose first component would read as a host (``docker.io/a.b/c``), so the short form
always parses back to the same reference.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass

from composer.errors import ComposerError

__all__ = ["DOCKER_HUB", "InvalidReference", "Reference", "is_loopback", "parse"]

#: The registry of names without one, as Docker writes it in normalized names.
DOCKER_HUB = "docker.io"
#: Docker Hub's legacy name, still accepted and folded into ``docker.io``.
_LEGACY_HUB = "index.docker.io"
#: ``docker.io`` is a name, not a server: the v2 API of Docker Hub answers here.
_HUB_API_HOST = "registry-1.docker.io"
_OFFICIAL_PREFIX = "library/"
_DEFAULT_TAG = "latest"
_MAX_PATH = 255
_MAX_TAG = 128

#: Hex digits per supported algorithm: the ones Docker's daemon accepts (go-digest registered).
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*", re.ASCII)
_DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
# IPv6 is checked only for its alphabet, as Docker does: zones and dotted quads are refused.
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?", re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)
_TAG_CHARS = re.compile(r"[A-Za-z0-9_.-]*", re.ASCII)
_ALGORITHM = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*", re.ASCII)
_HEX = re.compile(r"[0-9a-fA-F]+", re.ASCII)
_IMAGE_ID = re.compile(r"[a-f0-9]{64}", re.ASCII)

_HINT_COMPONENT = ("use lowercase letters and digits, joined by '.', '_', '__' or dashes; "
                   "a path component starts and ends with a letter or digit")
_HINT_HOST = ("a registry host is a DNS name or IPv4 address (letters, digits, '-' and '.'), "
              "or an IPv6 address in brackets, optionally followed by :PORT")
_HINT_TAG = ("a tag is at most 128 letters, digits, '_', '.' and '-', and starts with a "
             "letter, digit or '_'")


class InvalidReference(ComposerError):
    """An image reference that Docker would refuse (or that composer cannot read back).

    ``text`` is the reference as given, ``reason`` what is wrong with it, ``hint`` what to
    write instead; ``str()`` renders ``invalid reference "TEXT": REASON`` and the hint on the
    next line, the way the other composer errors show theirs.
    """

    def __init__(self, text: str, reason: str, hint: str) -> None:
        self.text = text
        self.reason = reason
        self.hint = hint
        self.message = f'invalid reference "{_printable(text)}": {reason}'
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}"


class _Problem(Exception):
    """What a validator found; turned into InvalidReference by whoever knows the whole text."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalized image reference: registry host, repository path, tag and/or digest.

    Built by ``parse`` or directly; either way the value is normalized on construction
    (``index.docker.io`` -> ``docker.io``, ``library/`` added, ``latest`` when neither a tag
    nor a digest is given) and checked, so ``parse(str(ref)) == ref`` always holds.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __post_init__(self) -> None:
        domain, path = _normalize(self.domain, self.path)
        tag = self.tag
        if tag is None and self.digest is None:
            tag = _DEFAULT_TAG
        # Frozen: normalizing is the one write allowed, and it happens before anyone sees it.
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "tag", tag)
        try:
            _check_domain(domain, typed=False)
            _check_path(path)
            if tag is not None:
                _check_tag(tag)
            if self.digest is not None:
                _check_digest(self.digest)
        except _Problem as problem:
            raise InvalidReference(str(self), problem.reason, problem.hint) from None

    def __str__(self) -> str:
        return self._render(self.repository)

    @property
    def repository(self) -> str:
        """The registry host and the path: what a tag or a digest is looked up in."""
        return f"{self.domain}/{self.path}"

    @property
    def api_host(self) -> str:
        """The host (and port) serving the registry's ``/v2/`` API for this repository."""
        if self.domain in (DOCKER_HUB, _LEGACY_HUB):
            return _HUB_API_HOST
        return self.domain

    def familiar(self) -> str:
        """The short form Docker shows: no ``docker.io/``, no ``library/`` for official images.

        Other registries are shown in full. Unlike Docker, ``docker.io/`` stays when dropping
        it would make the first path component read as a registry host (``docker.io/a.b/c``),
        so the familiar form always parses back to the same reference.
        """
        if self.domain != DOCKER_HUB:
            return str(self)
        name = self.path
        official = name.removeprefix(_OFFICIAL_PREFIX)
        if official != name and "/" not in official:
            name = official
        elif "/" in name and _names_domain(name.partition("/")[0]):
            name = self.repository
        return self._render(name)

    def with_tag(self, tag: str) -> Reference:
        """The same repository (and digest, if any) with another tag."""
        return dataclasses.replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """The same repository (and tag, if any) pinned to a digest."""
        return dataclasses.replace(self, digest=digest)

    def _render(self, name: str) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return f"{name}{tag}{digest}"


def parse(text: str) -> Reference:
    """Read an image reference as ``docker pull`` does; raise InvalidReference if it is wrong."""
    try:
        return _parse(text)
    except _Problem as problem:
        raise InvalidReference(text, problem.reason, problem.hint) from None


def is_loopback(domain: str) -> bool:
    """Whether a registry host names this machine: ``localhost``, 127.0.0.0/8 or ``[::1]``.

    A ``:PORT`` is allowed. Only these may be spoken to in plain HTTP without the user asking:
    traffic to them never leaves the host. Names that merely resolve to a loopback address
    (``localhost.localdomain``, ``127.1``) are not trusted, since resolution can change.
    """
    host, port = domain, ""
    if domain.startswith("["):
        end = domain.find("]")
        if end < 0:
            return False
        host, rest = domain[1:end], domain[end + 1:]
        if ":" not in host or (rest and not rest.startswith(":")):
            return False  # brackets hold IPv6 only, and only a port may follow them
        port = rest[1:] if rest else "0"
    elif domain.count(":") == 1:
        host, _, port = domain.partition(":")
    else:
        # No colon, or a bare IPv6 address (several colons, no brackets, so no port).
        port = "0"
    if not port.isdigit() or not port.isascii():
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _parse(text: str) -> Reference:
    if not text:
        raise _Problem("the reference is empty",
                       "name an image, e.g. busybox, org/app:1.0 or ghcr.io/org/app")
    if any(c.isspace() for c in text):
        joined = "".join(text.split())
        raise _Problem("it contains whitespace", _suggest("remove the whitespace", joined))
    if "://" in text:
        bare = text.partition("://")[2]
        raise _Problem("it is a URL, not an image reference",
                       _suggest("drop the scheme", bare, "drop the scheme (http://, https://)"))
    if _IMAGE_ID.fullmatch(text):
        raise _Problem("a 64-digit hex string is an image ID, not an image name",
                       f"name the image, or pin it by digest: NAME@sha256:{text}")

    name_tag, at, digest = text.partition("@")
    if at and not name_tag:
        raise _Problem("there is no image name before '@'",
                       "write NAME@sha256:<64 hex digits>, e.g. busybox@sha256:...")

    # Docker's split: only a text with a '/' can name a registry, and only its first part.
    first, slash, rest = name_tag.partition("/")
    typed_domain = bool(slash) and _names_domain(first)
    # Taken for a host only for its capitals: Docker's rule, since a path has none.
    caps_domain = typed_domain and first != "localhost" and not ("." in first or ":" in first)
    domain, remainder = (first, rest) if typed_domain else (DOCKER_HUB, name_tag)
    path, colon, tag = remainder.partition(":")
    shown = f"{first}/{path}" if typed_domain else path
    after = text[len(shown):]

    # Case first, as Docker checks it before anything else in the name.
    if path.lower() != path or (caps_domain and not _DOMAIN.fullmatch(first)):
        # With a capitalized first part the user almost surely meant a Docker Hub path.
        fixed = shown.lower() if caps_domain or not typed_domain else f"{first}/{path.lower()}"
        raise _Problem("repository name must be lowercase",
                       _suggest("write it in lowercase", fixed + after, _HINT_COMPONENT))
    if typed_domain and not path:
        raise _Problem(f'there is no repository path after "{_printable(first)}/"',
                       f"write HOST/PATH, e.g. {_printable(first)}/org/app")
    if shown.startswith("/"):
        raise _Problem("it starts with '/'",
                       _suggest("remove the leading '/'", text.lstrip("/")))
    if shown.endswith("/"):
        raise _Problem("it ends with '/'",
                       _suggest("remove the trailing '/'", shown.rstrip("/") + after))
    if "//" in shown:
        raise _Problem("it has an empty path component ('//')",
                       _suggest("remove the extra '/'", re.sub("/+", "/", shown) + after))
    if typed_domain:
        _check_domain(first, typed=True)
    # Checked as normalized, as Docker does: "library/" counts toward the length limit.
    _check_path(_normalize(domain, path)[1])
    if colon:
        if not tag:
            raise _Problem("the tag after ':' is empty",
                           f"write a tag after ':' (e.g. {shown}:latest) or drop the ':'")
        _check_tag(tag)
    if at:
        if not digest:
            raise _Problem("the digest after '@' is empty",
                           "write NAME@sha256:<64 hex digits>, or drop the '@'")
        _check_digest(digest)
    return Reference(domain, path, tag if colon else None, digest if at else None)


def _normalize(domain: str, path: str) -> tuple[str, str]:
    """Docker Hub's two spellings folded into one, and official images under ``library/``."""
    if domain == _LEGACY_HUB:
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return domain, path


def _names_domain(first: str) -> bool:
    """Docker's test for "the part before the first '/' is a registry host"."""
    return ("." in first or ":" in first or first == "localhost"
            or first.lower() != first)


def _check_domain(domain: str, *, typed: bool) -> None:
    if not _DOMAIN.fullmatch(domain):
        raise _Problem(f'registry host "{_printable(domain)}" is not valid', _HINT_HOST)
    if not typed and domain != DOCKER_HUB and not _names_domain(domain):
        # Built directly: "myhost/app" would read back as the Docker Hub path "myhost/app".
        raise _Problem(f'registry host "{domain}" would be read as part of the path',
                       "a registry host needs a '.' or a ':PORT', or must be localhost")


def _check_path(path: str) -> None:
    if path.lower() != path:
        raise _Problem("repository name must be lowercase",
                       _suggest("write it in lowercase", path.lower(), _HINT_COMPONENT))
    for component in path.split("/"):
        if not component:
            raise _Problem("it has an empty path component", "remove the extra '/'")
        if not _COMPONENT.fullmatch(component):
            raise _Problem(f'path component "{_printable(component)}" is not valid',
                           _HINT_COMPONENT)
    if len(path) > _MAX_PATH:
        raise _Problem(f"repository path is {len(path)} characters long, more than "
                       f"{_MAX_PATH}", "use a shorter repository name")


def _check_tag(tag: str) -> None:
    if not _TAG.fullmatch(tag):
        if _TAG_CHARS.fullmatch(tag):
            raise _Problem(f'tag "{tag}" starts with "{tag[0]}"', _HINT_TAG)
        raise _Problem(f'tag "{_printable(tag)}" is not valid', _HINT_TAG)
    if len(tag) > _MAX_TAG:
        raise _Problem(f"tag is {len(tag)} characters long, more than {_MAX_TAG}",
                       "shorten the tag to 128 characters at most")


def _check_digest(digest: str) -> None:
    shown = _printable(digest)
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not algorithm or not encoded or not _ALGORITHM.fullmatch(algorithm):
        raise _Problem(f'digest "{shown}" is not ALGORITHM:HEX',
                       "write the digest as sha256:<64 hex digits>")
    expected = _DIGEST_LENGTHS.get(algorithm)
    if expected is None:
        raise _Problem(f'digest algorithm "{algorithm}" is not supported',
                       "use sha256, sha384 or sha512 (in lowercase)")
    if not _HEX.fullmatch(encoded):
        raise _Problem(f'digest "{shown}" is not hexadecimal',
                       f"a {algorithm} digest is {expected} hex digits (0-9, a-f)")
    if len(encoded) != expected:
        raise _Problem(f"{algorithm} digest has {len(encoded)} hex digits, not {expected}",
                       "check that the whole digest was copied")
    if encoded.lower() != encoded:
        raise _Problem(f'digest "{shown}" must be lowercase hex',
                       f"write it in lowercase: {algorithm}:{encoded.lower()}")


def _suggest(what: str, candidate: str, otherwise: str | None = None) -> str:
    """``what: candidate`` when the candidate is a valid reference, else the fallback."""
    try:
        _parse(candidate)
    except _Problem:
        return otherwise if otherwise is not None else what
    return f"{what}: {candidate}"


def _printable(text: str) -> str:
    """The text with control characters escaped, so an error message stays on one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
