"""What every part of the Kubernetes conversion shares: options, the report, names, labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from composer.export.k8s_dockerfile import ImageHints, dockerfile_text, image_hints
from composer.export.k8s_report import Report
from composer.export.k8s_values import dns1035_label, label_value
from composer.manifest.model import Project, Service

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
#: Compose labels in this namespace steer the conversion; they are not carried over.
DIRECTIVE_PREFIX = "composer.kubernetes/"
SERVICE_TYPE_LABEL = "composer.kubernetes/service-type"
VOLUME_SIZE_LABEL = "composer.kubernetes/size"
STORAGE_CLASS_LABEL = "composer.kubernetes/storage-class"
DEFAULT_VOLUME_SIZE = "1Gi"


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@dataclass(frozen=True)
class Options:
    """How to convert: what the command line says."""

    namespace: str | None = None
    #: ``HOST/PREFIX`` put before the names of the images composer builds.
    registry: str | None = None
    service_type: str = "ClusterIP"
    read_file: Callable[[str], bytes] = _read_bytes


@dataclass
class Context:
    project: Project
    options: Options
    report: Report
    #: compose service name -> Kubernetes object name (a DNS-1035 label: it is a host name).
    names: dict[str, str] = field(default_factory=dict)
    _hints: dict[str, ImageHints] = field(default_factory=dict)

    def __post_init__(self) -> None:
        taken: set[str] = set()
        for name in sorted(self.project.services):
            wanted = dns1035_label(name)
            unique, n = wanted, 2
            while unique in taken:
                unique, n = dns1035_label(f"{wanted}-{n}"), n + 1
            taken.add(unique)
            self.names[name] = unique
            if unique != name:
                self.report.changed(
                    name, ("services", name),
                    f"service '{name}' is named '{unique}' in Kubernetes (object and host "
                    "names are DNS labels)",
                    hint=f"containers that reach it as '{name}' must use '{unique}'")

    def image_hints(self, service: Service) -> ImageHints:
        """What the Dockerfile of a service composer builds declares (nothing otherwise)."""
        if service.name not in self._hints:
            hints = ImageHints()
            if service.build is not None:
                text = dockerfile_text(service.build, self.options.read_file)
                if text is not None:
                    hints = image_hints(text, service.build.target)
            self._hints[service.name] = hints
        return self._hints[service.name]

    def selector(self, service: Service) -> dict[str, str]:
        """The labels that tie a service's pods to its workload and Service."""
        return {"app.kubernetes.io/name": label_value(self.names[service.name]),
                "app.kubernetes.io/part-of": label_value(self.project.name)}

    def common_labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/part-of": label_value(self.project.name),
                "app.kubernetes.io/managed-by": "composer"}

    def metadata(self, name: str, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if self.options.namespace:
            meta["namespace"] = self.options.namespace
        meta["labels"] = {**(labels or {}), **self.common_labels()}
        if annotations:
            meta["annotations"] = annotations
        return meta
