"""``composer convert kubernetes``: the loaded project as Kubernetes manifests, and a report.

The input is the loaded model (interpolated, profiles applied, files merged); the output is
plain data (one dict per object, in apply order) and a :class:`Report` of what did not map one
to one, each note placed at its file and line by the loader's position map. Rendering is kept
apart (:func:`to_yaml`, :func:`write_directory`) so that the builders stay pure.

Modules: ``k8s_workloads`` (Deployment, Job, DaemonSet and the pod), ``k8s_container``,
``k8s_storage`` (claims, ConfigMaps, Secrets, mounts), ``k8s_services``, ``k8s_attributes``
(the table of what is converted and why the rest is dropped), ``k8s_report``, ``k8s_values``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from composer.export.k8s_context import Context, Options
from composer.export.k8s_report import Locate, Report, nowhere

if TYPE_CHECKING:
    from composer.manifest.loader import Loaded
    from composer.manifest.model import Project

__all__ = ["Conversion", "Options", "convert", "convert_loaded", "to_yaml", "write_directory"]

#: The order objects are applied in: what pods mount and select before the pods.
_KIND_ORDER = ("Namespace", "ConfigMap", "Secret", "PersistentVolumeClaim", "Service",
               "Deployment", "DaemonSet", "Job")


@dataclass
class Conversion:
    objects: list[dict[str, Any]]
    report: Report
    #: service -> the image its pods run, for the services composer builds
    built_images: dict[str, str] = field(default_factory=dict)


def convert(project: Project, options: Options | None = None,
            where: Locate = nowhere) -> Conversion:
    """Convert a loaded project; ``where`` places report notes (see :func:`convert_loaded`)."""
    from composer.export.k8s_attributes import project_notes, unconverted
    from composer.export.k8s_container import image_of
    from composer.export.k8s_services import service_object
    from composer.export.k8s_storage import resource_objects
    from composer.export.k8s_workloads import unreachable, workload

    options = options or Options()
    ctx = Context(project, options, Report(where))
    objects: list[dict[str, Any]] = []
    if options.namespace:
        objects.append({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": options.namespace,
                                     "labels": ctx.common_labels()}})
    objects.extend(resource_objects(ctx))
    built: dict[str, str] = {}
    for name in sorted(project.services):
        service = project.services[name]
        exposed = service_object(ctx, service)
        if exposed:
            objects.append(exposed)
        objects.append(workload(ctx, service))
        unconverted(ctx, service)
        if service.spec.get("build") is not None:
            built[name] = image_of(ctx, service)
    unreachable(ctx)
    project_notes(ctx)
    if project.spec.get("models"):
        ctx.report.dropped("", ("models",), "AI models have no Kubernetes object")
    objects.sort(key=lambda o: _KIND_ORDER.index(o["kind"]))  # stable: names stay in order
    return Conversion(objects, ctx.report, built)


def convert_loaded(loaded: Loaded, options: Options | None = None) -> Conversion:
    """Convert what the loader returned: notes point at the user's files and lines."""
    from composer.manifest.model import build_project
    from composer.manifest.tree import locate

    tree = loaded.tree
    return convert(build_project(loaded), options, lambda path: locate(tree, path))


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """One YAML stream, ``---`` between objects, multi-line strings as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value and not any(
            line != line.rstrip() for line in value.split("\n")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return "---\n".join(yaml.dump(obj, Dumper=Dumper, sort_keys=False,
                                  default_flow_style=False, allow_unicode=True, width=100)
                        for obj in objects)


def to_json(objects: list[dict[str, Any]]) -> str:
    """A ``List`` of the objects, as ``kubectl get -o json`` prints several."""
    import json

    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"


def file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def write_directory(objects: list[dict[str, Any]], directory: str) -> list[str]:
    """One file per object (``deployment-web.yaml``); the paths written, in apply order."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for index, obj in enumerate(objects):
        # A numbered prefix keeps ``kubectl apply -f DIR`` (which reads files by name) in
        # the order the objects need.
        path = os.path.join(directory, f"{index:02d}-{file_name(obj)}")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(to_yaml([obj]))
        written.append(path)
    return written


def image_override(conversion: Conversion) -> dict[str, Any]:
    """A compose override naming the images composer builds as the pods run them, so that
    ``composer -f compose.yaml -f OVERRIDE build`` and ``... push`` push them there."""
    return {"services": {name: {"image": image}
                         for name, image in sorted(conversion.built_images.items())}}
