"""Property tests: whatever the input, loading ends in a project or a clean ManifestError."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import ManifestError
from composer.manifest.loader import LoadOptions, load

SERVICE_KEYS = [
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "expose",
    "volumes", "depends_on", "networks", "network_mode", "healthcheck", "restart", "labels",
    "profiles", "extends", "secrets", "configs", "deploy", "scale", "container_name",
    "extra_hosts", "ulimits", "tmpfs", "user", "working_dir", "privileged", "links",
    "volumes_from", "logging", "sysctls", "devices", "cap_add", "dns", "imgae", "x-meta",
]
TOP_KEYS = ["services", "networks", "volumes", "secrets", "configs", "name", "version",
            "include", "x-common", "servics"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-70000, 70000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["80:80", "8080", "a:b:c", "./data:/data", "busybox", "${X}", "${Y:-1}",
                     "$$", "${", "service_healthy", "always", "no", "1.5", "10s", "-1",
                     "host", "service:web", "web", "db", "1g", "[::1]:80:80", "/x:/y:ro",
                     "${Z:?required}", "~/x:/y", "tcp", "CMD", "NONE"]),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
)
FUZZ_KEYS = [*SERVICE_KEYS, "target", "source", "condition", "published", "context", "test"]
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FUZZ_KEYS),
                        inner, max_size=4)),
    max_leaves=12)
services = st.dictionaries(st.sampled_from(["web", "db", "api", "w-1"]),
                           st.one_of(st.dictionaries(st.sampled_from(SERVICE_KEYS), values,
                                                     max_size=6), scalars),
                           max_size=3)
manifests = st.fixed_dictionaries(
    {"services": services},
    optional={k: values for k in TOP_KEYS if k != "services"})


def _load_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "compose.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load(LoadOptions(files=[str(path)], cwd=directory,
                             environ={"HOME": directory, "PATH": os.defpath, "X": "1"}))
        except ManifestError as exc:
            assert str(exc)  # a message, never an empty error


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(manifests)
def test_random_manifests_load_or_fail_cleanly(manifest: dict[str, Any]) -> None:
    _load_text(yaml.safe_dump(manifest, sort_keys=False))


VALID = """\
name: demo
services:
  web:
    image: nginx:${TAG:-1}
    ports: ["8080:80", {target: 443, published: "8443"}]
    volumes: [./html:/usr/share/nginx/html:ro, data:/data]
    depends_on: {db: {condition: service_healthy}}
    environment: [A=1, B]
    networks: [front]
  db:
    image: postgres
    healthcheck: {test: [CMD, pg_isready], interval: 5s}
    networks: [front]
networks:
  front: {}
volumes:
  data:
"""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_valid_manifests_load_or_fail_cleanly(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(text) - 1))
        action = data.draw(st.sampled_from(["delete", "insert", "replace", "drop-line"]))
        if action == "delete":
            text = text[:position] + text[position + 1:]
        elif action == "insert":
            text = text[:position] + data.draw(st.sampled_from(list(":-[]{}\t #&*!\"'$ \n"))) \
                + text[position:]
        elif action == "replace":
            # No lone surrogates: no file can hold them, so they are not a manifest's text.
            char = data.draw(st.characters(exclude_categories=("Cs",)))
            text = text[:position] + char + text[position + 1:]
        else:
            lines = text.splitlines(keepends=True)
            del lines[data.draw(st.integers(0, len(lines) - 1))]
            text = "".join(lines)
    _load_text(text)
