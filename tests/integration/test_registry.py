"""The registry client against a real CNCF distribution registry, skopeo, and fake servers.

Images are built here, in memory: a gzip'd tar layer, a config naming its diff id, an OCI or
Docker schema 2 manifest (indented, so keeping the exact bytes is tested), and indexes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from composer.runtime.images import platform as platform_mod
from composer.runtime.images.reference import Reference, parse
from composer.runtime.images.registry import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    Platform,
    RegistryClient,
    RegistryError,
    credentials_for,
)
from tests.integration.conftest import (
    PASSWORD,
    TOKEN_SERVICE,
    USER,
    FakeServer,
    RegistryServer,
    Reply,
    Seen,
    TokenRegistry,
    _free_port,
)
from tests.skopeo import run_skopeo

Serve = Callable[[Callable[[Seen], Reply]], FakeServer]

_TYPES = {
    "oci": (OCI_MANIFEST, "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip"),
    "docker": (DOCKER_MANIFEST, "application/vnd.docker.container.image.v1+json",
               "application/vnd.docker.image.rootfs.diff.tar.gzip"),
}


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


@dataclass
class Image:
    manifest: Manifest
    config: bytes
    layer: bytes

    @property
    def blobs(self) -> dict[str, bytes]:
        return {sha256(self.config): self.config, sha256(self.layer): self.layer}


def build_image(kind: str = "oci", architecture: str = "amd64", variant: str | None = None,
                payload: bytes | None = None) -> Image:
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in (("hello.txt", f"hello from {architecture}\n".encode()),
                              ("data.bin", payload or b"")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(content))
    tar_bytes = tar_buffer.getvalue()
    layer = gzip.compress(tar_bytes, mtime=0)
    platform = {"architecture": architecture, "os": "linux"}
    if variant:
        platform["variant"] = variant
    config = json.dumps({**platform, "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes)]}},
                        sort_keys=True).encode()
    manifest_type, config_type, layer_type = _TYPES[kind]
    data = json.dumps({"schemaVersion": 2, "mediaType": manifest_type,
                       "config": descriptor(config_type, config),
                       "layers": [descriptor(layer_type, layer)]}, indent=3).encode()
    return Image(Manifest.of(manifest_type, data), config, layer)


class RecordingClient(RegistryClient):
    """A client that logs each HTTP exchange: (method, URL, status)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log: list[tuple[str, str, int]] = []

    def _exchange(self, method: str, url: str, headers: dict[str, str], body: Any,
                  attempts: int) -> Any:
        response = super()._exchange(method, url, headers, body, attempts)
        self.log.append((method, url, response.status))
        return response

    def methods(self) -> list[str]:
        return [method for method, _, _ in self.log]


@pytest.fixture
def client() -> Iterator[RecordingClient]:
    with RecordingClient(credentials=lambda domain: None, backoff=0.0) as c:
        yield c


def push_image(client: RegistryClient, ref: Reference, image: Image,
               chunk_size: int | None = None) -> str:
    for digest, data in image.blobs.items():
        client.push_blob(ref, digest, len(data), lambda data=data: [data],  # type: ignore[misc]
                         chunk_size=chunk_size)
    return client.put_manifest(ref, image.manifest)


def pulled(client: RegistryClient, ref: Reference, digest: str) -> bytes:
    return b"".join(client.blob(ref, digest))


# --- push and pull against the real registry ------------------------------------------------

def test_oci_image_round_trip_monolithic(registry: RegistryServer,
                                         client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/round/oci:v1")
    image = build_image("oci")
    assert push_image(client, ref, image) == image.manifest.digest
    assert "PATCH" not in client.methods()  # one PUT per blob
    for fetched in (client.get_manifest(ref),
                    client.get_manifest(ref.with_digest(image.manifest.digest))):
        assert fetched == image.manifest  # same bytes, same digest, same media type
    for digest, data in image.blobs.items():
        assert client.has_blob(ref, digest)
        assert pulled(client, ref, digest) == data
    assert not client.has_blob(ref, sha256(b"never pushed"))
    client.put_manifest(ref.with_tag("v2"), image.manifest)
    assert sorted(client.tags(ref)) == ["v1", "v2"]


def test_docker_schema2_chunked_upload(registry: RegistryServer,
                                       client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/round/docker:latest")
    image = build_image("docker", payload=os.urandom(200_000))  # random: gzip cannot shrink it
    push_image(client, ref, image, chunk_size=64 * 1024)
    patches = [url for method, url, _ in client.log if method == "PATCH"]
    assert len(patches) == -(-len(image.layer) // (64 * 1024)) + 1  # the config is one chunk
    fetched = client.get_manifest(ref)
    assert (fetched.media_type, fetched.data) == (DOCKER_MANIFEST, image.manifest.data)
    assert pulled(client, ref, sha256(image.layer)) == image.layer


def test_blob_already_present_is_not_uploaded(registry: RegistryServer,
                                              client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/round/again")
    data = b"some blob"
    calls: list[int] = []

    def chunks() -> Iterable[bytes]:
        calls.append(1)
        return [data]

    client.push_blob(ref, sha256(data), len(data), chunks)
    client.push_blob(ref, sha256(data), len(data), chunks)
    assert len(calls) == 1
    assert client.methods()[-1] == "HEAD"


def test_wrong_blob_content_is_refused_before_the_registry_stores_it(
        registry: RegistryServer, client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/round/corrupt")
    with pytest.raises(RegistryError, match="not 4 bytes with that digest"):
        client.push_blob(ref, sha256(b"good"), 4, lambda: [b"evil"])
    with pytest.raises(RegistryError, match="not 4 bytes with that digest"):
        client.push_blob(ref, sha256(b"good"), 4, lambda: [b"goo"], chunk_size=2)
    assert not client.has_blob(ref, sha256(b"good"))
    assert not client.has_blob(ref, sha256(b"evil"))


def test_multi_arch_index(registry: RegistryServer, client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/multi/app:v1")
    images = {("amd64", None): build_image("oci", "amd64"),
              ("arm64", "v8"): build_image("oci", "arm64", "v8"),
              ("arm", "v7"): build_image("oci", "arm", "v7")}
    entries = []
    for (architecture, variant), image in images.items():
        push_image(client, ref.with_digest(image.manifest.digest), image)
        platform = {"os": "linux", "architecture": architecture}
        if variant:
            platform["variant"] = variant
        entries.append(descriptor(OCI_MANIFEST, image.manifest.data, platform=platform))
    # BuildKit's provenance entry: never a candidate, never listed.
    entries.append(descriptor(OCI_MANIFEST, images["amd64", None].manifest.data,
                              platform={"os": "unknown", "architecture": "unknown"},
                              annotations={"vnd.docker.reference.type": "attestation-manifest"}))
    index = Manifest.of(OCI_INDEX, json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode())
    assert client.put_manifest(ref, index) == index.digest
    fetched = client.get_manifest(ref)
    assert fetched == index
    for platform, key in ((Platform("linux", "amd64"), ("amd64", None)),
                          (Platform("linux", "arm64", "v8"), ("arm64", "v8")),
                          (Platform("linux", "arm64"), ("arm64", "v8")),  # v8 is arm64's default
                          (Platform("linux", "arm", "v7"), ("arm", "v7"))):
        assert client.resolve_platform(ref, fetched, platform) == images[key].manifest, platform
    # An image manifest is its own platform's answer.
    image = images["arm", "v7"].manifest
    assert client.resolve_platform(ref, image, Platform("linux", "amd64")) is image
    with pytest.raises(RegistryError) as missing:
        client.resolve_platform(ref, fetched, Platform("linux", "s390x"))
    message = str(missing.value)
    assert "linux/s390x" in message
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in message
    assert "unknown" not in message
    with pytest.raises(RegistryError, match="linux/arm/v7"):
        client.resolve_platform(ref, fetched, Platform("linux", "arm", "v6"))


def test_docker_manifest_list_prefers_the_exact_variant(registry: RegistryServer,
                                                        client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/multi/docker:v1")
    plain, exact = build_image("docker", "arm64"), build_image("docker", "arm64", "v8")
    for image in (plain, exact):
        push_image(client, ref.with_digest(image.manifest.digest), image)
    listing = Manifest.of(DOCKER_MANIFEST_LIST, json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": [
            descriptor(DOCKER_MANIFEST, plain.manifest.data,
                       platform={"os": "linux", "architecture": "arm64"}),
            descriptor(DOCKER_MANIFEST, exact.manifest.data,
                       platform={"os": "linux", "architecture": "arm64", "variant": "v8"})]
    }).encode())
    client.put_manifest(ref, listing)
    fetched = client.get_manifest(ref)
    assert fetched.media_type == DOCKER_MANIFEST_LIST
    chosen = client.resolve_platform(ref, fetched, Platform("linux", "arm64", "v8"))
    assert chosen == exact.manifest


@pytest.mark.parametrize(("machine", "expected"), [
    ("x86_64", Platform("linux", "amd64")),
    ("aarch64", Platform("linux", "arm64", "v8")),
    ("armv7l", Platform("linux", "arm", "v7")),
    ("riscv64", Platform("linux", "riscv64")),
])
def test_host_platform(monkeypatch: pytest.MonkeyPatch, machine: str,
                       expected: Platform) -> None:
    monkeypatch.setattr(platform_mod._platform, "machine", lambda: machine)
    assert Platform.host() == expected


def test_cross_repository_mount(registry: RegistryServer, client: RecordingClient) -> None:
    source, target = (parse(f"{registry.domain}/mount/{name}") for name in ("a", "b"))
    image = build_image("oci")
    push_image(client, source, image)
    uploads: list[str] = []

    def chunks(digest: str) -> Callable[[], Iterable[bytes]]:
        def open_blob() -> Iterable[bytes]:
            uploads.append(digest)
            return [image.blobs[digest]]
        return open_blob

    client.log.clear()
    for digest, data in image.blobs.items():
        client.push_blob(target, digest, len(data), chunks(digest), mount_from="mount/a")
    assert uploads == []  # no byte was read, let alone sent
    assert client.methods() == ["HEAD", "POST"] * 2
    posts = [url for method, url, status in client.log if method == "POST" and status == 201]
    assert len(posts) == 2 and all("from=mount%2Fa" in url for url in posts)
    client.put_manifest(target, image.manifest)
    assert all(client.has_blob(target, digest) for digest in image.blobs)
    assert client.get_manifest(target) == image.manifest

    # Mounting from a repository without the blob falls back to an upload.
    other = parse(f"{registry.domain}/mount/c")
    digest, data = sha256(image.layer), image.layer
    client.push_blob(other, digest, len(data), chunks(digest), mount_from="mount/nothing")
    assert uploads == [digest]
    assert pulled(client, other, digest) == data


def test_digest_mismatches_and_missing_content(registry: RegistryServer,
                                               client: RecordingClient) -> None:
    ref = parse(f"{registry.domain}/errors/app:v1")
    image, other = build_image("oci"), build_image("oci", "arm64")
    push_image(client, ref, image)
    client.log.clear()
    with pytest.raises(RegistryError, match="the manifest's digest is"):
        client.put_manifest(ref.with_digest(other.manifest.digest), image.manifest)
    forged = Manifest(OCI_MANIFEST, other.manifest.digest, image.manifest.data)
    with pytest.raises(RegistryError, match="hash to"):
        client.put_manifest(ref, forged)
    assert client.log == []  # refused before anything was sent
    with pytest.raises(RegistryError) as unknown:
        client.get_manifest(ref.with_digest(other.manifest.digest))
    assert unknown.value.status == 404 and unknown.value.code == "MANIFEST_UNKNOWN"
    assert f"registry {registry.domain}, repository errors/app" in str(unknown.value)
    assert "check the repository name" in str(unknown.value)
    assert len(client.log) == 1  # a 404 is not retried
    # The registry refuses a manifest whose blobs it does not have.
    with pytest.raises(RegistryError) as blobless:
        client.put_manifest(ref.with_tag("blobless"), other.manifest)
    assert blobless.value.status == 400 and blobless.value.code == "MANIFEST_BLOB_UNKNOWN"
    with pytest.raises(RegistryError, match="BLOB_UNKNOWN"):
        pulled(client, ref, sha256(b"absent"))
    with pytest.raises(RegistryError, match="NAME_UNKNOWN"):
        client.tags(parse(f"{registry.domain}/errors/nothing"))


# --- authentication ---------------------------------------------------------------------------

def test_basic_auth(auth_registry: RegistryServer) -> None:
    domain = auth_registry.domain
    ref = parse(f"{domain}/basic/app:v1")
    image = build_image("oci")
    with RecordingClient(credentials=lambda d: None) as anonymous, \
            pytest.raises(RegistryError) as refused:
        push_image(anonymous, ref, image)
    assert str(refused.value) == (f"authentication required for {domain}/basic/app: "
                                  f"run 'composer login {domain}'")
    with RecordingClient(credentials=lambda d: (USER, "wrong")) as wrong, \
            pytest.raises(RegistryError, match=f"access denied for {domain}/basic/app.*"
                                               f"composer login {domain}"):
        wrong.get_manifest(ref)
    asked: list[str] = []

    def credentials(d: str) -> tuple[str, str]:
        asked.append(d)
        return USER, PASSWORD

    with RecordingClient(credentials=credentials) as client:
        push_image(client, ref, image)
        assert client.get_manifest(ref) == image.manifest
        assert pulled(client, ref, sha256(image.layer)) == image.layer
        assert [status for _, _, status in client.log].count(401) == 1  # then Basic up front
    assert asked == [domain]


def test_bearer_tokens_from_a_real_token_registry(token_registry: TokenRegistry) -> None:
    domain = token_registry.domain
    private, public = parse(f"{domain}/private/app:v1"), parse(f"{domain}/public/app:v1")
    image = build_image("oci")
    with RegistryClient(credentials=lambda d: None) as anonymous, \
            pytest.raises(RegistryError, match=f"authentication required for {domain}/"
                                               f"private/app: run 'composer login {domain}'"):
        push_image(anonymous, private, image)
    with RegistryClient(credentials=lambda d: (USER, "wrong")) as wrong, \
            pytest.raises(RegistryError, match=f"access denied for {domain}/private/app"):
        wrong.get_manifest(private)
    token_registry.tokens.seen.clear()
    with RecordingClient(credentials=lambda d: (USER, PASSWORD)) as client:
        push_image(client, private, image)
        push_image(client, public, image)
        assert client.get_manifest(private) == image.manifest
    scopes = [seen.query["scope"] for seen in token_registry.tokens.seen]
    # One token per scope, reused for every request that needs it.
    assert scopes == [["repository:private/app:pull,push"], ["repository:public/app:pull,push"],
                      ["repository:private/app:pull"]]
    first = token_registry.tokens.seen[0]
    assert first.query["service"] == [TOKEN_SERVICE] and first.query["account"] == [USER]
    with RecordingClient(credentials=lambda d: None) as reader:
        assert reader.get_manifest(public) == image.manifest  # anonymous pull is granted
        assert pulled(reader, public, sha256(image.layer)) == image.layer
        with pytest.raises(RegistryError, match="authentication required"):
            reader.get_manifest(private)


def test_bearer_flow_against_a_fake_registry(serve: Serve) -> None:
    """What the real token registry cannot show: ``access_token``, the challenge's own scope,
    anonymous first, and no credentials for the storage a blob redirects to."""
    blob = b"layer bytes"
    manifest = Manifest.of(OCI_MANIFEST, json.dumps({"schemaVersion": 2}).encode())
    storage = serve(lambda seen: (200, {}, blob))

    def respond(seen: Seen) -> Reply:
        path = urllib.parse.urlsplit(seen.path).path
        if path == "/token":
            return 200, {}, json.dumps({"access_token": "tok-1"}).encode()
        if seen.headers.get("Authorization") != "Bearer tok-1":
            challenge = (f'Bearer realm="http://{fake.domain}/token",service="fake",'
                         'scope="repository:team/app:pull,extra"')
            return 401, {"WWW-Authenticate": challenge}, b""
        if path == "/v2/team/app/manifests/v1":
            return 200, {"Content-Type": OCI_MANIFEST,
                         "Docker-Content-Digest": manifest.digest}, manifest.data
        if path == f"/v2/team/app/blobs/{sha256(blob)}":
            return 307, {"Location": f"http://{storage.domain}/bucket/x?signature=s"}, b""
        return 404, {}, b""

    fake = serve(respond)
    ref = parse(f"{fake.domain}/team/app:v1")
    with RegistryClient(credentials=lambda d: ("alice", "secret")) as client:
        assert client.get_manifest(ref) == manifest
        assert client.get_manifest(ref) == manifest
        assert pulled(client, ref, sha256(blob)) == blob
    first, token, *rest = fake.seen
    assert "Authorization" not in first.headers  # anonymous first
    assert token.query == {"service": ["fake"], "account": ["alice"],
                           "scope": ["repository:team/app:pull,extra"]}
    assert token.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:secret").decode()
    assert [seen.path for seen in rest] == ["/v2/team/app/manifests/v1"] * 2 + [
        f"/v2/team/app/blobs/{sha256(blob)}"]  # one token, cached
    assert [seen.path for seen in storage.seen] == ["/bucket/x?signature=s"]
    assert "Authorization" not in storage.seen[0].headers


def test_bearer_token_refused(serve: Serve) -> None:
    def respond(seen: Seen) -> Reply:
        if seen.path.startswith("/token"):
            return 200, {}, b'{"token": "useless"}'
        return 401, {"WWW-Authenticate": f'Bearer realm="http://{fake.domain}/token"'}, b""

    fake = serve(respond)
    with RegistryClient(credentials=lambda d: None) as client, \
            pytest.raises(RegistryError) as refused:
        client.tags(parse(f"{fake.domain}/team/app"))
    assert str(refused.value) == (f"authentication required for {fake.domain}/team/app: "
                                  f"run 'composer login {fake.domain}'")
    assert [seen.path.partition("?")[0] for seen in fake.seen] == [
        "/v2/team/app/tags/list", "/token", "/v2/team/app/tags/list"]


# --- integrity, retries, transport ------------------------------------------------------------

def test_content_not_matching_its_digest(serve: Serve) -> None:
    real, served = b'{"schemaVersion": 2}', b'{"schemaVersion": 2, "evil": 1}'

    def respond(seen: Seen) -> Reply:
        if "/manifests/old" in seen.path:
            return 200, {"Content-Type": "application/vnd.docker.distribution.manifest.v1"
                                         "+prettyjws"}, b'{"schemaVersion": 1}'
        if "/manifests/lying" in seen.path:
            return 200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256(real)}, \
                served
        return 200, {"Content-Type": OCI_MANIFEST}, served

    fake = serve(respond)
    ref = parse(f"{fake.domain}/team/app")
    with RegistryClient(credentials=lambda d: None) as client:
        with pytest.raises(RegistryError, match="do not match the digest"):
            client.get_manifest(ref.with_digest(sha256(real)))
        with pytest.raises(RegistryError, match="says its digest is"):
            client.get_manifest(ref.with_tag("lying"))
        with pytest.raises(RegistryError, match="schema 1 manifests are not supported"):
            client.get_manifest(ref.with_tag("old"))
        with pytest.raises(RegistryError, match="does not match its digest"):
            pulled(client, ref, sha256(real))
        # Without a digest to check against, the bytes are taken and their digest computed.
        assert client.get_manifest(ref).digest == sha256(served)


def test_retries(serve: Serve) -> None:
    failures = {"flaky": 2, "down": 99}

    def respond(seen: Seen) -> Reply:
        name = seen.path.split("/")[2]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            return 503, {"Retry-After": "0"} if name == "flaky" else {}, b""
        if name == "denied":
            return 403, {}, b'{"errors": [{"code": "DENIED", "message": "no"}]}'
        return 200, {}, b'{"tags": ["a"]}'

    fake = serve(respond)
    with RegistryClient(credentials=lambda d: None, retries=3, backoff=0.25) as client:
        sleeps: list[float] = []
        client.sleep = sleeps.append
        assert client.tags(parse(f"{fake.domain}/flaky/app")) == ["a"]
        assert sleeps == [0.0, 0.0]  # Retry-After: 0 beats the backoff
        sleeps.clear()
        with pytest.raises(RegistryError) as down:
            client.tags(parse(f"{fake.domain}/down/app"))
        assert down.value.status == 503 and down.value.transient
        assert "try again later" in str(down.value)
        assert sleeps == [0.25, 0.5, 1.0]  # exponential backoff, then give up
        sleeps.clear()
        count = len(fake.seen)
        with pytest.raises(RegistryError, match="DENIED: no; run 'composer login"):
            client.tags(parse(f"{fake.domain}/denied/app"))
        assert len(fake.seen) == count + 1 and sleeps == []  # a 4xx is final

    with RegistryClient(credentials=lambda d: None, retries=2, backoff=0.1) as client:
        client.sleep = sleeps.append
        port = _free_port()  # nothing listens there
        with pytest.raises(RegistryError, match=f"cannot reach registry 127.0.0.1:{port}") as e:
            client.get_manifest(parse(f"127.0.0.1:{port}/app"))
        assert e.value.transient and sleeps == [0.1, 0.2]


def test_upload_failures(serve: Serve) -> None:
    """A transient failure restarts the upload from a new session; a refusal is final and
    keeps the registry's error code."""
    posts: list[int] = []

    def respond(seen: Seen) -> Reply:
        if seen.method == "HEAD":
            return 404, {}, b""
        if seen.method == "POST":
            posts.append(1)
            if len(posts) == 1:
                return 503, {}, b""
            return 202, {"Location": f"/v2/team/app/blobs/uploads/{len(posts)}?_state=x"}, b""
        return 400, {}, json.dumps({"errors": [
            {"code": "DIGEST_INVALID", "message": "digest did not match"}]}).encode()

    fake = serve(respond)
    ref = parse(f"{fake.domain}/team/app")
    with RegistryClient(credentials=lambda d: None, retries=2, backoff=0.125) as client:
        sleeps: list[float] = []
        client.sleep = sleeps.append
        with pytest.raises(RegistryError) as refused:
            client.push_blob(ref, sha256(b"x"), 1, lambda: [b"x"])
    assert refused.value.code == "DIGEST_INVALID" and not refused.value.transient
    assert "digest did not match" in str(refused.value)
    assert [(seen.method, seen.path) for seen in fake.seen] == [
        ("HEAD", f"/v2/team/app/blobs/{sha256(b'x')}"), ("POST", "/v2/team/app/blobs/uploads/"),
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("PUT", f"/v2/team/app/blobs/uploads/2?_state=x&digest={sha256(b'x')}".replace(
            ":", "%3A"))]
    assert fake.seen[-1].body == b"x" and sleeps == [0.125]


def test_connections_are_reused_and_stale_ones_replaced(serve: Serve) -> None:
    drop = {"now": False}

    def respond(seen: Seen) -> Reply:
        headers = {"X-Test-Close": "1"} if drop["now"] else {}
        return 200, headers, b'{"tags": ["a"]}'

    fake = serve(respond)
    ref = parse(f"{fake.domain}/team/app")
    with RecordingClient(credentials=lambda d: None, retries=0) as client:
        for _ in range(3):
            assert client.tags(ref) == ["a"]
        assert len({seen.peer for seen in fake.seen}) == 1  # one connection
        drop["now"] = True
        for _ in range(3):  # each time, the connection kept from before is gone: a new one
            assert client.tags(ref) == ["a"]
    assert len(fake.seen) == 6 and len(client.log) == 6
    assert len({seen.peer for seen in fake.seen[3:]}) == 3


def test_plain_http_only_for_loopback_and_insecure_registries() -> None:
    with RegistryClient(insecure=["registry.internal:5000"]) as client:
        def url(text: str) -> str:
            return client._url(parse(text), "tags/list")

        assert url("127.0.0.1:5000/a").startswith("http://127.0.0.1:5000/v2/a/")
        assert url("localhost:5000/a").startswith("http://")
        assert url("[::1]:5000/a").startswith("http://[::1]:5000/")
        assert url("registry.internal:5000/a").startswith("http://")
        assert url("registry.internal/a").startswith("https://")
        assert url("ghcr.io/org/a").startswith("https://ghcr.io/v2/org/a/")
        assert url("busybox") == "https://registry-1.docker.io/v2/library/busybox/tags/list"
        with pytest.raises(RegistryError, match="refusing to follow"):
            client._resolve("https://ghcr.io/v2/a/blobs/x", "http://storage.example/x")


# --- credentials ------------------------------------------------------------------------------

def _auth(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_credentials_from_config_auths(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = scratch / "config.json"
    config.write_text(json.dumps({"auths": {
        "127.0.0.1:5000": {"auth": _auth("local", "pa:ss")},
        "https://index.docker.io/v1/": {"auth": _auth("hubber", "hubpass")},
        "https://ghcr.io": {"username": "gh", "password": "ghpass"},
        "empty.example": {},
    }}))
    path = str(config)
    assert credentials_for("127.0.0.1:5000", config_path=path) == ("local", "pa:ss")
    assert credentials_for("docker.io", config_path=path) == ("hubber", "hubpass")
    assert credentials_for("ghcr.io", config_path=path) == ("gh", "ghpass")
    assert credentials_for("empty.example", config_path=path) is None
    assert credentials_for("quay.io", config_path=path) is None
    assert credentials_for("quay.io", config_path=str(scratch / "absent.json")) is None
    monkeypatch.setenv("DOCKER_CONFIG", str(scratch))
    assert credentials_for("ghcr.io") == ("gh", "ghpass")
    config.write_text("{not json")
    with pytest.raises(RegistryError, match="fix the file or remove it"):
        credentials_for("ghcr.io")


def test_credentials_from_a_helper(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(f"""#!/bin/sh
[ "$1" = get ] || exit 3
read -r server
echo "$server" >> {scratch}/asked
case "$server" in
  registry.example|https://index.docker.io/v1/)
    echo '{{"ServerURL": "'"$server"'", "Username": "helped", "Secret": "s3cret"}}';;
  *) echo "credentials not found in native keychain"; exit 1;;
esac
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    config = scratch / "config.json"
    config.write_text(json.dumps({
        "credHelpers": {"registry.example": "fake", "nothing.example": "fake",
                        "gone.example": "absent"},
        "credsStore": "fake",
        "auths": {"gone.example": {"auth": _auth("fallback", "pw")},
                  "nothing.example": {"auth": _auth("stored", "pw2")}},
    }))
    path = str(config)
    assert credentials_for("registry.example", config_path=path) == ("helped", "s3cret")
    assert credentials_for("docker.io", config_path=path) == ("helped", "s3cret")  # credsStore
    # The helper has nothing: the auths entry is used, as Docker does.
    assert credentials_for("nothing.example", config_path=path) == ("stored", "pw2")
    # A helper that is not installed is not run; the auths entry still counts.
    assert credentials_for("gone.example", config_path=path) == ("fallback", "pw")
    assert (scratch / "asked").read_text().split() == [
        "registry.example", "https://index.docker.io/v1/", "nothing.example"]


# --- interoperability with skopeo -------------------------------------------------------------

_NOBODY = 65534


def _skopeo(*args: str, home: Path) -> subprocess.CompletedProcess[bytes]:
    return run_skopeo(*args, home=home)


@pytest.fixture
def skopeo_home(scratch: Path) -> Path:
    return scratch


def test_skopeo_reads_what_the_client_pushed(registry: RegistryServer, client: RecordingClient,
                                             skopeo_home: Path) -> None:
    ref = parse(f"{registry.domain}/interop/ours:v1")
    image = build_image("oci")
    push_image(client, ref, image)
    target = f"docker://{registry.domain}/interop/ours:v1"
    raw = _skopeo("inspect", "--tls-verify=false", "--raw", target, home=skopeo_home).stdout
    assert raw == image.manifest.data
    info = json.loads(_skopeo("inspect", "--tls-verify=false", target, home=skopeo_home).stdout)
    assert info["Digest"] == image.manifest.digest
    assert info["Layers"] == [sha256(image.layer)]
    assert info["Architecture"] == "amd64"


def test_client_reads_what_skopeo_copied(registry: RegistryServer, client: RecordingClient,
                                         skopeo_home: Path) -> None:
    image = build_image("oci", payload=b"copied by skopeo")
    layout = skopeo_home / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for digest, data in {**image.blobs, image.manifest.digest: image.manifest.data}.items():
        (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        descriptor(OCI_MANIFEST, image.manifest.data,
                   annotations={"org.opencontainers.image.ref.name": "v1"})]}))
    digest_file = skopeo_home / "digest"
    _skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", "--digestfile",
            str(digest_file), f"oci:{layout}:v1", f"docker://{registry.domain}/interop/theirs:v1",
            home=skopeo_home)
    ref = parse(f"{registry.domain}/interop/theirs:v1")
    fetched = client.get_manifest(ref)
    assert fetched.digest == digest_file.read_text().strip() == image.manifest.digest
    assert fetched.data == image.manifest.data
    layers = json.loads(fetched.data)["layers"]
    assert [layer["digest"] for layer in layers] == [sha256(image.layer)]
    assert pulled(client, ref, layers[0]["digest"]) == image.layer
