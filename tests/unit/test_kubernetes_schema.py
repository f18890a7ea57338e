"""The manifests validate against the Kubernetes schemas (``kubernetes-validate``, offline).

The JSON schemas leave out the API server's own rules for names, label values and port
names: :func:`check_objects` adds those, so that what passes here a real cluster accepts too.
The examples are converted with ``--registry`` (their services build their images).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from composer.export.k8s_values import (
    is_dns_label,
    is_dns_subdomain,
    is_label_value,
    is_port_name,
    is_qualified_name,
)
from composer.export.kubernetes import Options, convert_loaded, to_yaml
from composer.manifest.loader import LoadOptions, load

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="pip install kubernetes-validate (the 'test' extra)")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.parent.name for p in (ROOT / "examples").glob("*/compose.yaml"))
#: the newest Kubernetes whose schemas kubernetes-validate ships
VERSION = kubernetes_validate.utils.latest_version()
# validate() reads the schema files (1.8 MB of definitions) at every call: read each once.
if not hasattr(kubernetes_validate.utils.schema_contents, "cache_info"):
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
        kubernetes_validate.utils.schema_contents)


def problems(objects: Iterable[dict[str, Any]]) -> list[str]:
    """What a cluster would refuse: schema errors (strict: no unknown fields) and names."""
    out = []
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(obj, VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            out.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            out.append(f"{where}: {exc.message}")
        out.extend(f"{where}: {p}" for p in _names(obj))
    return out


def _names(obj: dict[str, Any]) -> Iterable[str]:
    meta = obj["metadata"]
    name = meta["name"]
    if obj["kind"] == "Namespace" and not is_dns_label(name):
        yield f"name {name!r} is not a DNS-1123 label"
    elif obj["kind"] == "Service" and not (is_dns_label(name) and name[0].isalpha()):
        yield f"name {name!r} is not a DNS-1035 label"
    elif not is_dns_subdomain(name):
        yield f"name {name!r} is not a DNS-1123 subdomain"
    labels: dict[str, str] = dict(meta.get("labels") or {})
    template = obj.get("spec", {}).get("template")
    if template:
        labels.update(template["metadata"].get("labels") or {})
    for key, value in labels.items():
        if not is_qualified_name(key) or not is_label_value(value):
            yield f"label {key}={value!r} is not valid"
    for key in (meta.get("annotations") or {}):
        if not is_qualified_name(key):
            yield f"annotation key {key!r} is not valid"
    ports = obj["spec"].get("ports") if obj["kind"] == "Service" else None
    if ports:
        names = [p.get("name") for p in ports]
        if len(ports) > 1 and (None in names or len(set(names)) != len(names)):
            yield f"Service ports need distinct names: {names}"
        for port in ports:
            if port.get("name") and not is_port_name(port["name"]):
                yield f"port name {port['name']!r} is not an IANA service name"
        if len({(p["port"], p["protocol"]) for p in ports}) != len(ports):
            yield "Service ports repeat"
    if template:
        pod = template["spec"]
        volumes = [v["name"] for v in pod.get("volumes") or ()]
        if len(set(volumes)) != len(volumes) or not all(map(is_dns_label, volumes)):
            yield f"pod volume names: {volumes}"
        for container in pod["containers"]:
            if not is_dns_label(container["name"]):
                yield f"container name {container['name']!r}"
            for mount in container.get("volumeMounts") or ():
                if mount["name"] not in volumes:
                    yield f"mount of a missing volume {mount['name']}"
            paths = [m["mountPath"] for m in container.get("volumeMounts") or ()]
            if len(set(paths)) != len(paths):
                yield f"mount paths repeat: {paths}"
        if obj["kind"] != "Job" and pod.get("restartPolicy") != "Always":
            yield "a Deployment's pods must restart Always"
        selector = obj["spec"].get("selector", {}).get("matchLabels", {})
        if any(template["metadata"]["labels"].get(k) != v for k, v in selector.items()):
            yield "the selector does not select the template"


def convert_file(path: Path, **options: Any) -> list[dict[str, Any]]:
    loaded = load(LoadOptions(files=[str(path)], cwd=str(path.parent),
                              environ={"HOME": "/home/composer-test", "PATH": os.defpath}))
    return convert_loaded(loaded, Options(**options)).objects


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_examples_validate(example: str) -> None:
    objects = convert_file(ROOT / "examples" / example / "compose.yaml",
                           registry="registry.example.com/team", namespace="demo")
    assert objects
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects
    assert problems(objects) == []


def test_a_bad_object_is_caught() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "Bad_Name"},
           "spec": {"selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "x", "image": "y",
                                                          "bogus": 1}]}}}}
    found = problems([bad])
    assert any("bogus" in p for p in found)
    assert any("DNS-1123" in p for p in found)


GOLDEN = Path(__file__).parent / "data" / "kubernetes"


@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir()
                                        if (p / "compose.yaml").is_file()))
@pytest.mark.parametrize("service_type", ["ClusterIP", "NodePort", "LoadBalancer"])
def test_the_golden_cases_validate(case: str, service_type: str) -> None:
    objects = convert_file(GOLDEN / case / "compose.yaml", service_type=service_type,
                           registry="registry.example.com/team")
    assert problems(objects) == []
