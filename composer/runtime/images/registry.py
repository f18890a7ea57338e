"""An OCI distribution (registry v2 API) client: manifests, blobs and tags, pull and push.

Standard library only. What it does, and why:

* Transport: HTTPS with the system CA store (plus ``ca_file``); plain HTTP only for loopback
  registries and the hosts listed in ``insecure``, because anything else would let the network
  swap images. Connections are kept alive and reused (a TLS handshake per request would
  dominate small requests); a reused connection the server has closed is retried at once.
* Auth: anonymous first. A 401 names the scheme: ``Basic`` -> the user's credentials;
  ``Bearer`` -> a token from the realm (with the credentials, when there are any), cached per
  registry and scope until it expires. The challenge is remembered, so later requests fetch a
  token up front instead of sending a (possibly large) body only to get a 401. Credentials go
  only to the registry host and its realm, never to a redirect target (blob storage).
* Retries: connection errors and 429/502/503/504 are retried with exponential backoff (or the
  server's Retry-After); other 4xx never. An upload is retried as a whole from a new session:
  a failed session's state on the server is unknown.
* Integrity: manifests are returned as the exact bytes served and their sha256 is computed
  and checked against the reference's digest and the registry's Docker-Content-Digest; blobs
  are hashed while streamed and checked at the end.
* Docker Hub: ``docker.io`` is served by ``registry-1.docker.io``; its credentials live under
  ``https://index.docker.io/v1/`` in ``~/.docker/config.json``.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from composer.__about__ import __version__
from composer.errors import ComposerError
from composer.runtime.images.blobs import BlobError, parse_digest
from composer.runtime.images.documents import json_object
from composer.runtime.images.platform import Platform
from composer.runtime.images.reference import DOCKER_HUB, Reference, is_loopback, parse

__all__ = [
    "ALL_MANIFEST_TYPES", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "IMAGE_TYPES", "INDEX_TYPES",
    "OCI_INDEX", "OCI_MANIFEST", "Credentials", "Manifest", "Platform", "RegistryClient",
    "RegistryError", "credentials_for",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
ALL_MANIFEST_TYPES = (*INDEX_TYPES, *IMAGE_TYPES)
_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v1+prettyjws")

#: Credentials resolver: registry domain -> (username, secret), or None for anonymous.
Credentials: TypeAlias = Callable[[str], tuple[str, str] | None]

_MAX_MANIFEST = 4 << 20  # containerd's limit: a bigger "manifest" is a bug or an attack
_MAX_SMALL = 1 << 20  # token answers, error bodies
_CHUNK = 1 << 20
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_MAX_RETRY_AFTER = 60.0
_HUB_SERVER = "https://index.docker.io/v1/"
_HUB_NAMES = frozenset({DOCKER_HUB, "index.docker.io", "registry-1.docker.io"})
_HELPER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SCHEME = re.compile(r"[\s,]*([A-Za-z][A-Za-z0-9_.-]*)")
_PARAM = re.compile(r'[\s,]*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]*)')
_NEXT_LINK = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')
class RegistryError(ComposerError):
    """A registry request failed. ``status`` is the HTTP status (None for network errors),
    ``code`` the registry's error code, ``transient`` whether trying again later may help."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 transient: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.code, self.transient = message, status, code, transient


@dataclass(frozen=True)
class Manifest:
    """A manifest or index: its media type, the sha256 of its bytes, and the bytes as served."""

    media_type: str
    digest: str
    data: bytes

    @classmethod
    def of(cls, media_type: str, data: bytes) -> Manifest:
        return cls(media_type, _sha256(data), data)


def docker_config_path() -> str:
    """Where Docker keeps registry credentials: ``$DOCKER_CONFIG`` or ``~/.docker``."""
    folder = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    return os.path.join(folder, "config.json")


def credential_key(server: str) -> str:
    """The ``auths`` key Docker writes for ``server``: its host, Docker Hub's old URL."""
    host = _credential_host(server)
    return _HUB_SERVER if host == DOCKER_HUB else host


def credentials_for(domain: str, *, config_path: str | None = None) -> tuple[str, str] | None:
    """The (username, secret) Docker would use for ``domain``, from ``~/.docker/config.json``.

    ``credHelpers`` (per registry) or ``credsStore`` name a ``docker-credential-NAME`` program,
    run only if it is on PATH; otherwise (or when it has nothing) the ``auths`` entry is used.
    """
    path = config_path or docker_config_path()
    try:
        with open(path, "rb") as f:
            config = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise RegistryError(f"cannot read registry credentials from {path}: {e}; "
                            "fix the file or remove it") from e
    if not isinstance(config, dict):
        raise RegistryError(f"{path} is not a JSON object; fix the file or remove it")
    host = _credential_host(domain)
    helpers = config.get("credHelpers")
    helper = next((name for key, name in helpers.items() if _credential_host(key) == host),
                  None) if isinstance(helpers, dict) else None
    helper = helper or config.get("credsStore")
    if isinstance(helper, str) and helper:
        found = _run_helper(helper, _HUB_SERVER if host == DOCKER_HUB else domain)
        if found is not None:
            return found
    auths = config.get("auths")
    for key, entry in (auths.items() if isinstance(auths, dict) else ()):
        if _credential_host(key) != host or not isinstance(entry, dict):
            continue
        if isinstance(entry.get("auth"), str) and entry["auth"]:
            try:
                user, sep, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            except ValueError as e:
                raise RegistryError(f"the auth of {key} in {path} is not base64 USER:PASSWORD; "
                                    f"run 'composer login {domain}' again") from e
            if sep:
                return user, secret
        if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
            return entry["username"], entry["password"]
    return None


def _credential_host(key: str) -> str:
    # config.json keys come as hosts or URLs ("https://index.docker.io/v1/"): compare hosts.
    host = key.lower().removeprefix("https://").removeprefix("http://").partition("/")[0]
    return DOCKER_HUB if host in _HUB_NAMES else host


def _run_helper(name: str, server: str) -> tuple[str, str] | None:
    program = shutil.which(f"docker-credential-{name}") if _HELPER_NAME.fullmatch(name) else None
    if program is None:
        return None
    try:
        done = subprocess.run([program, "get"], input=server.encode(), capture_output=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RegistryError(f"credential helper {program} failed for {server}: {e}") from e
    if done.returncode != 0:
        said = (done.stdout + done.stderr).decode(errors="replace").strip()
        if "credentials not found" in said.lower():
            return None
        raise RegistryError(f"credential helper {program} failed for {server}: {said}; "
                            f"check the helper, or run 'composer login {server}'")
    try:
        answer = json.loads(done.stdout)
        return str(answer["Username"]), str(answer["Secret"])
    except (ValueError, KeyError, TypeError) as e:
        raise RegistryError(f"credential helper {program} gave no Username/Secret JSON for "
                            f"{server}; check the helper") from e


class _Response:
    """A response and its connection: read to the end, the connection goes back to the pool."""

    def __init__(self, client: RegistryClient, key: tuple[str, str],
                 conn: http.client.HTTPConnection, raw: http.client.HTTPResponse) -> None:
        self._client, self._key, self._conn, self.raw = client, key, conn, raw
        self.status = raw.status
        self._closed = False

    def header(self, name: str) -> str | None:
        return self.raw.getheader(name)

    def read(self, limit: int) -> bytes:
        # limit + 1: seeing more than the limit proves it was exceeded, and a shorter body is
        # read to its end (so a chunked one's terminator is consumed and the connection kept).
        return self.raw.read(limit + 1)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        reusable = self.raw.isclosed() and not self.raw.will_close
        self.raw.close()
        if reusable:
            self._client._release(self._key, self._conn)
        else:
            self._conn.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            self.read(_MAX_SMALL)
        self.close()


_Body = bytes | Callable[[], Iterable[bytes]] | None


class RegistryClient:
    """A client for OCI distribution registries; safe to share between threads."""

    def __init__(self, *, insecure: Iterable[str] = (), credentials: Credentials = credentials_for,
                 retries: int = 3, backoff: float = 0.5, timeout: float = 30.0,
                 ca_file: str | None = None) -> None:
        self._insecure = frozenset(_credential_host(host) for host in insecure)
        self._credentials = credentials
        self.retries, self.backoff, self.timeout = max(0, retries), backoff, timeout
        self._ssl = ssl.create_default_context()
        if ca_file is not None:
            self._ssl.load_verify_locations(ca_file)
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._challenges: dict[str, tuple[str, dict[str, str]]] = {}
        self._creds: dict[str, tuple[str, str] | None] = {}
        self.sleep: Callable[[float], None] = time.sleep  # replaceable, for tests

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle connections (the client stays usable)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # --- the API -----------------------------------------------------------------------------

    def get_manifest(self, ref: Reference, *,
                     accept: Sequence[str] = ALL_MANIFEST_TYPES) -> Manifest:
        """The manifest (or index) ``ref`` names, by digest if it has one, else by tag."""
        what = f"manifest {ref}"
        url = self._url(ref, f"manifests/{ref.digest or ref.tag}")
        response = self._call(ref, "GET", url, _pull(ref), {"Accept": ", ".join(accept)},
                              follow=True)
        try:
            if response.status != 200:
                raise self._fail(ref, response, f"cannot get {what}")
            data = self._read(ref, response, _MAX_MANIFEST, what)
        finally:
            response.close()
        media_type = _media_type(response.header("Content-Type"), data, what)
        if media_type in _SCHEMA1:
            raise RegistryError(f"{what}: schema 1 manifests are not supported; push the image "
                                "again with a current Docker or buildah to get a schema 2 one")
        if media_type not in accept:
            raise RegistryError(f"{what} is a {media_type}, which was not asked for "
                                f"({', '.join(accept)})")
        digest = _sha256(data)
        if ref.digest is not None:
            algorithm, _, expected = ref.digest.partition(":")
            if hashlib.new(algorithm, data).hexdigest() != expected:
                raise RegistryError(f"{what}: {ref.domain} served bytes that do not match the "
                                    f"digest (they hash to {digest}); the registry or something "
                                    "between is corrupting or altering content")
        reported = response.header("Docker-Content-Digest")
        if reported and reported.startswith("sha256:") and reported != digest:
            raise RegistryError(f"{what}: {ref.domain} says its digest is {reported} but the "
                                f"bytes hash to {digest}; the content was altered on the way")
        return Manifest(media_type, digest, data)

    def resolve_platform(self, ref: Reference, manifest: Manifest,
                         platform: Platform) -> Manifest:
        """The image manifest for ``platform``: ``manifest`` itself if it is not an index."""
        if manifest.media_type in IMAGE_TYPES:
            return manifest
        doc = json_object(manifest.data, f"index {ref}", RegistryError)
        entries = doc.get("manifests")
        if manifest.media_type not in INDEX_TYPES or not isinstance(entries, list):
            raise RegistryError(f"{ref} is a {manifest.media_type}, not an image or an index")
        best: dict[str, Any] | None = None
        best_score, available, wanted = 0, [], platform._normalized()
        for entry in entries:
            spec = entry.get("platform") if isinstance(entry, dict) else None
            if not isinstance(spec, dict):
                continue
            annotations = entry.get("annotations")
            if isinstance(annotations, dict) and \
                    annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                continue  # build provenance (BuildKit), not an image
            variant = spec.get("variant")
            candidate = Platform(str(spec.get("os", "")), str(spec.get("architecture", "")),
                                 variant if isinstance(variant, str) and variant else None)
            if (candidate.os, candidate.architecture) == ("unknown", "unknown"):
                continue
            available.append(str(candidate))
            # An exact spelling beats a match found only through normalization (arm64 = v8).
            score = 2 if candidate == platform else int(candidate._normalized() == wanted)
            if score > best_score:
                best, best_score = entry, score
        if best is None:
            raise RegistryError(f"{ref} has no image for {platform}; it has: "
                                f"{', '.join(available) or 'no platform images'}; pick one of "
                                "these platforms, or another image")
        digest = best.get("digest")
        _check_digest(digest if isinstance(digest, str) else "", f"entry of index {ref}")
        child = self.get_manifest(ref.with_digest(str(digest)), accept=IMAGE_TYPES)
        if isinstance(best.get("size"), int) and best["size"] != len(child.data):
            raise RegistryError(f"{ref}: the {platform} manifest is {len(child.data)} bytes, "
                                f"the index says {best['size']}; the registry is inconsistent")
        return child

    def blob(self, ref: Reference, digest: str) -> Iterator[bytes]:
        """Stream a blob; RegistryError at the end if the bytes do not match ``digest``."""
        _check_digest(digest, f"blob of {ref.repository}")
        return self._blob_chunks(ref, digest)

    def _blob_chunks(self, ref: Reference, digest: str) -> Iterator[bytes]:
        response = self._call(ref, "GET", self._url(ref, f"blobs/{digest}"), _pull(ref),
                              follow=True)
        try:
            if response.status != 200:
                raise self._fail(ref, response, f"cannot get blob {digest}")
            hasher = hashlib.sha256()
            try:
                while chunk := response.raw.read(_CHUNK):
                    hasher.update(chunk)
                    yield chunk
            except (OSError, http.client.HTTPException) as e:
                raise RegistryError(f"download of blob {digest} from {ref.repository} was "
                                    f"interrupted: {e}; try again", transient=True) from e
            if f"sha256:{hasher.hexdigest()}" != digest:
                raise RegistryError(f"blob {digest} from {ref.repository} does not match its "
                                    f"digest (got sha256:{hasher.hexdigest()}); the registry "
                                    "or something between is corrupting content")
        finally:
            response.close()

    def has_blob(self, ref: Reference, digest: str) -> bool:
        """Whether the repository has the blob (a HEAD request)."""
        _check_digest(digest, f"blob of {ref.repository}")
        return self._has_blob(ref, digest, _pull(ref))

    def _has_blob(self, ref: Reference, digest: str, scopes: tuple[str, ...]) -> bool:
        response = self._call(ref, "HEAD", self._url(ref, f"blobs/{digest}"), scopes,
                              follow=True)
        response.discard()
        if response.status in (200, 404):
            return response.status == 200
        raise self._fail(ref, response, f"cannot check for blob {digest}")

    def push_blob(self, ref: Reference, digest: str, size: int,
                  chunks: Callable[[], Iterable[bytes]], *, mount_from: str | None = None,
                  chunk_size: int | None = None) -> None:
        """Upload a blob unless the repository has it; ``chunks()`` may be called once per try.

        ``mount_from`` is another repository path on the same registry to mount the blob from
        (no bytes sent); ``chunk_size`` switches from one PUT to PATCHes of that many bytes.
        """
        _check_digest(digest, f"blob for {ref.repository}")
        if size < 0 or (chunk_size is not None and chunk_size <= 0):
            raise ValueError("size must be >= 0 and chunk_size > 0")
        scopes, source = _push(ref), None
        if mount_from is not None:
            source = Reference(ref.domain, mount_from).path  # checked and normalized
            scopes = (*scopes, f"repository:{source}:pull")  # one token for all the requests
        if self._has_blob(ref, digest, scopes):
            return
        for attempt in range(self.retries + 1):
            try:
                self._upload(ref, digest, size, chunks, source, chunk_size, scopes)
                return
            except RegistryError as e:
                if not e.transient or attempt == self.retries:
                    raise
            self.sleep(self._delay(attempt, None))

    def _upload(self, ref: Reference, digest: str, size: int,
                chunks: Callable[[], Iterable[bytes]], source: str | None,
                chunk_size: int | None, scopes: tuple[str, ...]) -> None:
        what = f"blob {digest}"
        url = self._url(ref, "blobs/uploads/")
        if source is not None:
            url += "?" + urllib.parse.urlencode({"mount": digest, "from": source})
        response = self._call(ref, "POST", url, scopes, body=b"", attempts=1)
        if response.status == 201 and source is not None:
            response.discard()
            return  # mounted: the registry linked the blob it already had
        if response.status != 202:
            raise self._fail(ref, response, f"cannot start the upload of {what}")
        response.discard()
        location = self._location(ref, url, response)
        octets = {"Content-Type": "application/octet-stream"}
        if chunk_size is None:
            response = self._call(
                ref, "PUT", _with_query(location, digest=digest), scopes,
                {**octets, "Content-Length": str(size)},
                body=lambda: _checked(chunks(), size, digest, ref), attempts=1)
        else:
            offset = 0
            try:
                for piece in _pieces(_checked(chunks(), size, digest, ref), chunk_size):
                    response = self._call(
                        ref, "PATCH", location, scopes,
                        {**octets, "Content-Range": f"{offset}-{offset + len(piece) - 1}"},
                        body=piece, attempts=1)
                    if response.status != 202:
                        raise self._fail(ref, response, f"cannot upload {what}")
                    response.discard()
                    location = self._location(ref, location, response)
                    offset += len(piece)
            except RegistryError:
                with contextlib.suppress(RegistryError):  # leave no session behind, if we can
                    self._call(ref, "DELETE", location, scopes, attempts=1).discard()
                raise
            response = self._call(ref, "PUT", _with_query(location, digest=digest), scopes,
                                  body=b"", attempts=1)
        if response.status != 201:
            raise self._fail(ref, response, f"cannot upload {what}")
        response.discard()

    def put_manifest(self, ref: Reference, manifest: Manifest) -> str:
        """Push a manifest by tag (or by digest); returns the digest the registry reports."""
        digest = _sha256(manifest.data)
        if manifest.digest != digest:
            raise RegistryError(f"cannot push to {ref}: the manifest says its digest is "
                                f"{manifest.digest} but its bytes hash to {digest}")
        if ref.digest is not None and ref.digest != digest:
            raise RegistryError(f"cannot push to {ref}: the manifest's digest is {digest}; "
                                "push it by tag, or by its own digest")
        if manifest.media_type not in ALL_MANIFEST_TYPES:
            raise RegistryError(f"cannot push {manifest.media_type} to {ref}: composer pushes "
                                "OCI and Docker schema 2 manifests and indexes only")
        url = self._url(ref, f"manifests/{ref.tag or digest}")
        response = self._call(ref, "PUT", url, _push(ref),
                              {"Content-Type": manifest.media_type}, body=manifest.data)
        if response.status not in (200, 201):
            raise self._fail(ref, response, f"cannot push manifest {ref}")
        response.discard()
        reported = response.header("Docker-Content-Digest") or digest
        if reported != digest:
            raise RegistryError(f"pushed {ref}, but {ref.domain} reports digest {reported} "
                                f"for manifest {digest}; it may have rewritten the manifest")
        return reported

    def ping(self, domain: str) -> None:
        """Check that the registry answers and accepts our credentials (``composer login``):
        ``GET /v2/`` through the same auth flow, asking for no scope, as Docker does."""
        ref = parse(f"{domain}/library/ping")
        plain = self._plain_ok(ref.domain) or self._plain_ok(ref.api_host)
        url = f"{'http' if plain else 'https'}://{ref.api_host}/v2/"
        response = self._call(ref, "GET", url, ())
        try:
            if response.status != 200:
                raise self._fail(ref, response, f"{domain} does not answer as a registry")
        finally:
            response.close()

    def tags(self, ref: Reference) -> list[str]:
        """Every tag of the repository, following the registry's pagination."""
        url, found = self._url(ref, "tags/list"), []
        for _ in range(10_000):
            response = self._call(ref, "GET", url, _pull(ref))
            try:
                if response.status != 200:
                    raise self._fail(ref, response, f"cannot list the tags of {ref.repository}")
                listing = self._read(ref, response, 16 << 20, "tag list")
                doc = json_object(listing, "tag list", RegistryError)
            finally:
                response.close()
            tags = doc.get("tags") or []  # null for a repository without tags
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise RegistryError(f"{ref.domain} sent a malformed tag list for {ref.path}")
            found.extend(tags)
            link = _NEXT_LINK.search(response.header("Link") or "")
            if link is None:
                return found
            url = self._resolve(url, link.group(1))
        raise RegistryError(f"the tag list of {ref.repository} does not end; the registry loops")

    # --- HTTP, auth and retries --------------------------------------------------------------

    def _plain_ok(self, netloc: str) -> bool:
        return is_loopback(netloc) or _credential_host(netloc) in self._insecure

    def _url(self, ref: Reference, tail: str) -> str:
        plain = self._plain_ok(ref.domain) or self._plain_ok(ref.api_host)
        return f"{'http' if plain else 'https'}://{ref.api_host}/v2/{ref.path}/{tail}"

    def _resolve(self, base: str, location: str) -> str:
        url = urllib.parse.urljoin(base, location)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or \
                (parts.scheme == "http" and not self._plain_ok(parts.netloc)):
            raise RegistryError(f"refusing to follow {base} to {url}: only HTTPS, or hosts "
                                "listed as insecure, may be used")
        return url

    def _location(self, ref: Reference, base: str, response: _Response) -> str:
        location = response.header("Location")
        if not location:
            raise RegistryError(f"{ref.domain} started an upload to {ref.path} without saying "
                                "where (no Location header); the registry is broken")
        return self._resolve(base, location)

    def _release(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def _once(self, method: str, url: str, headers: dict[str, str], body: _Body) -> _Response:
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": f"composer/{__version__}", **headers}
        while True:
            with self._lock:
                pooled = self._idle.get(key)
                conn = pooled.pop() if pooled else None
            reused = conn is not None
            if conn is None:
                conn = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                                   context=self._ssl) \
                    if parts.scheme == "https" else \
                    http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            try:
                conn.request(method, target, body=body() if callable(body) else body,
                             headers=headers)
                return _Response(self, key, conn, conn.getresponse())
            except (ConnectionError, http.client.BadStatusLine):
                conn.close()
                # A kept-alive connection the server closed meanwhile: the request never got
                # there, so an idempotent one is sent again at once. POST and PATCH are not:
                # their failure fails the upload, which is retried whole from a new session.
                if not reused or method in ("POST", "PATCH"):
                    raise
                with self._lock:  # the server dropped idle connections: the others are stale too
                    self._idle.pop(key, None)
            except BaseException:
                conn.close()
                raise

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        seconds = self.backoff * 2.0 ** attempt
        if retry_after is not None:
            with contextlib.suppress(TypeError, ValueError, OverflowError):
                value = retry_after.strip()
                seconds = float(value) if value.isdigit() else \
                    email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        return min(max(seconds, 0.0), _MAX_RETRY_AFTER)

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: _Body,
                  attempts: int) -> _Response:
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._once(method, url, headers, body)
            except ssl.SSLCertVerificationError as e:
                host = urllib.parse.urlsplit(url).netloc
                raise RegistryError(f"cannot verify the TLS certificate of {host}: "
                                    f"{e.verify_message}; give its CA with ca_file, or list "
                                    "it as insecure if it is yours") from e
            except (OSError, http.client.HTTPException) as e:
                if last:
                    host = urllib.parse.urlsplit(url).netloc
                    raise RegistryError(f"cannot reach registry {host} ({method} {url}): "
                                        f"{e or type(e).__name__}; check that it is up and "
                                        "reachable", transient=True) from e
                self.sleep(self._delay(attempt, None))
                continue
            if response.status not in _RETRY_STATUSES or last:
                return response
            retry_after = response.header("Retry-After")
            response.discard()
            self.sleep(self._delay(attempt, retry_after))
        raise AssertionError("unreachable")

    def _call(self, ref: Reference, method: str, url: str, scopes: tuple[str, ...],
              headers: dict[str, str] | None = None, *, body: _Body = None,
              follow: bool = False, attempts: int | None = None) -> _Response:
        """One API request, with auth, retries and (with ``follow``) redirects."""
        attempts = self.retries + 1 if attempts is None else attempts
        for _ in range(_MAX_REDIRECTS + 1):
            response = self._authorized(ref, method, url, scopes, dict(headers or {}), body,
                                        attempts)
            location = response.header("Location")
            if not (follow and response.status in _REDIRECTS and location):
                return response
            response.discard()
            url = self._resolve(url, location)
        raise RegistryError(f"{ref.domain} redirects {method} {url} too many times")

    def _authorized(self, ref: Reference, method: str, url: str, scopes: tuple[str, ...],
                    headers: dict[str, str], body: _Body, attempts: int) -> _Response:
        parts = urllib.parse.urlsplit(url)
        # Credentials go to the registry only: not to a redirect target such as blob storage.
        own = parts.netloc.lower() == ref.api_host.lower()
        if own and (authorization := self._authorization(ref, scopes, fresh=False)):
            headers["Authorization"] = authorization
        response = self._exchange(method, url, headers, body, attempts)
        if response.status != 401 or not own:
            return response
        challenges = _challenges(response.raw.headers.get_all("WWW-Authenticate") or [])
        response.discard()
        challenge = challenges.get("bearer") or challenges.get("basic")
        if challenge is None:
            raise self._denied(ref)
        scheme = "bearer" if "bearer" in challenges else "basic"
        with self._lock:
            self._challenges[ref.api_host] = (scheme, challenge)
        headers["Authorization"] = self._authorization(ref, scopes, fresh=True,
                                                       asked=challenge.get("scope")) or ""
        response = self._exchange(method, url, headers, body, attempts)
        if response.status == 401:
            response.discard()
            raise self._denied(ref)
        return response

    def _credentials_of(self, domain: str) -> tuple[str, str] | None:
        with self._lock:
            if domain in self._creds:
                return self._creds[domain]
        found = self._credentials(domain)
        with self._lock:
            self._creds[domain] = found
        return found

    def _authorization(self, ref: Reference, scopes: tuple[str, ...], *, fresh: bool,
                       asked: str | None = None) -> str | None:
        """The Authorization header for a request; ``fresh`` after a 401 (whose challenge
        asked for the scope ``asked``): a cached token was not enough, or there was none."""
        with self._lock:
            known = self._challenges.get(ref.api_host)
        if known is None:
            return None  # anonymous until the registry asks for more
        scheme, params = known
        creds = self._credentials_of(ref.domain)
        if scheme == "basic":
            if creds is None:
                if fresh:
                    raise self._denied(ref)
                return None
            return "Basic " + base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
        key = (ref.api_host, " ".join(scopes))
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic() and not fresh:
            return f"Bearer {cached[0]}"
        token, lifetime = self._token(ref, params, _merge_scopes(*scopes, *(asked or "").split()),
                                      creds)
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + lifetime)
        return f"Bearer {token}"

    def _token(self, ref: Reference, params: dict[str, str], scopes: list[str],
               creds: tuple[str, str] | None) -> tuple[str, float]:
        realm = params.get("realm", "")
        try:
            url = self._resolve(self._url(ref, ""), realm) if realm else ""
        except RegistryError as e:
            raise RegistryError(f"{ref.domain} sends clients for tokens to {realm}, which is "
                                "not HTTPS; refusing to send credentials there") from e
        if not url:
            raise RegistryError(f"{ref.domain} asks for a bearer token but names no realm")
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query)
        query += [("service", params["service"])] if "service" in params else []
        query += [("scope", scope) for scope in scopes]
        headers: dict[str, str] = {}
        if creds is not None:
            query.append(("account", creds[0]))
            basic = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        response = self._exchange("GET", url, headers, None, self.retries + 1)
        try:
            if response.status in (401, 403):
                raise self._denied(ref)
            if response.status != 200:
                raise RegistryError(f"the token server {parts.netloc} of {ref.domain} answered "
                                    f"HTTP {response.status}; try again later",
                                    status=response.status, transient=response.status >= 500)
            answer = self._read(ref, response, _MAX_SMALL, "token")
            doc = json_object(answer, "token answer", RegistryError)
        finally:
            response.close()
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str):
            raise RegistryError(f"the token server {parts.netloc} of {ref.domain} sent no token")
        expires = doc.get("expires_in")
        # The distribution spec's floor: a token is good for at least 60 s.
        lifetime = max(expires, 60) if isinstance(expires, int) else 60
        return token, lifetime - 5.0

    def _denied(self, ref: Reference) -> RegistryError:
        where = f"{ref.domain}/{ref.path}"
        if self._credentials_of(ref.domain) is None:
            return RegistryError(f"authentication required for {where}: run 'composer login "
                                 f"{ref.domain}'", status=401)
        return RegistryError(f"access denied for {where}: the credentials for {ref.domain} were "
                             f"refused or do not grant access: run 'composer login "
                             f"{ref.domain}'", status=401)

    def _read(self, ref: Reference, response: _Response, limit: int, what: str) -> bytes:
        try:
            data = response.read(limit)
        except (OSError, http.client.HTTPException) as e:
            raise RegistryError(f"reading {what} from {ref.domain} failed: {e}; try again",
                                transient=True) from e
        if len(data) > limit:
            raise RegistryError(f"{what} from {ref.domain} is larger than {limit} bytes; "
                                "refusing it")
        return data

    def _fail(self, ref: Reference, response: _Response, what: str) -> RegistryError:
        status, code, detail = response.status, None, ""
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError, TypeError,
                                 AttributeError, IndexError, RegistryError):
            error = json_object(response.read(_MAX_SMALL), "error", RegistryError)["errors"][0]
            code, detail = str(error.get("code")), str(error.get("message", ""))
        response.close()
        hint = (f"run 'composer login {ref.domain}'" if status in (401, 403) else
                "check the repository name and the tag or digest" if status == 404 else
                "the registry is rate-limiting; wait, or log in for a higher limit"
                if status == 429 else "the registry is failing; try again later"
                if status >= 500 else "the registry refused the request")
        label = f" {code}" if code else ""
        said = f": {detail}" if detail else ""
        return RegistryError(f"{what} (registry {ref.domain}, repository {ref.path}): HTTP "
                             f"{status}{label}{said}; {hint}", status=status, code=code,
                             transient=status in _RETRY_STATUSES)


def _pull(ref: Reference) -> tuple[str, ...]:
    return (f"repository:{ref.path}:pull",)


def _push(ref: Reference) -> tuple[str, ...]:
    return (f"repository:{ref.path}:pull,push",)


def _merge_scopes(*scopes: str) -> list[str]:
    """``repository:a:pull`` and ``repository:a:pull,push`` -> one scope with both actions."""
    merged: dict[str, list[str]] = {}
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        known = merged.setdefault(resource, [])
        known.extend(a for a in actions.split(",") if a and a not in known)
    return [f"{resource}:{','.join(actions)}" for resource, actions in merged.items()]


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _check_digest(digest: str, what: str) -> None:
    try:
        parse_digest(digest)
    except BlobError as e:
        raise RegistryError(f"{what}: {e}") from e


def _media_type(content_type: str | None, data: bytes, what: str) -> str:
    declared = (content_type or "").partition(";")[0].strip().lower()
    doc = json_object(data, what, RegistryError)
    if declared in ALL_MANIFEST_TYPES or declared in _SCHEMA1:
        return declared
    # Registries and static servers that say only "application/json": the body tells.
    if doc.get("schemaVersion") == 1:
        return _SCHEMA1[0]
    if isinstance(doc.get("mediaType"), str):
        return str(doc["mediaType"])
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def _challenges(values: list[str]) -> dict[str, dict[str, str]]:
    """``WWW-Authenticate`` values -> {scheme: params}; a header may hold several challenges."""
    found: dict[str, dict[str, str]] = {}
    for value in values:
        pos = 0
        while (scheme := _SCHEME.match(value, pos)) is not None:
            params, pos = found.setdefault(scheme.group(1).lower(), {}), scheme.end()
            while (param := _PARAM.match(value, pos)) is not None:
                raw, pos = param.group(2), param.end()
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[param.group(1).lower()] = raw
    return found


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(
        parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def _checked(chunks: Iterable[bytes], size: int, digest: str, ref: Reference) -> Iterator[bytes]:
    """The chunks, stopped with RegistryError if they are not ``size`` bytes hashing to
    ``digest``: a wrong blob must not reach the registry (nor hang it on a short body)."""
    hasher, sent = hashlib.sha256(), 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > size:
            break
        hasher.update(chunk)
        yield chunk
    if sent != size or f"sha256:{hasher.hexdigest()}" != digest:
        raise RegistryError(f"the content given for blob {digest} ({ref.repository}) is not "
                            f"{size} bytes with that digest; the local copy is corrupt")


def _pieces(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
