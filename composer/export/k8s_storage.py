"""Storage: named volumes as PersistentVolumeClaims, configs and secrets as ConfigMaps and
Secrets (file contents read from disk), and each service's pod volumes and mounts."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from composer.export.k8s_context import (
    DEFAULT_VOLUME_SIZE,
    DIRECTIVE_PREFIX,
    STORAGE_CLASS_LABEL,
    VOLUME_SIZE_LABEL,
    Context,
)
from composer.export.k8s_values import (
    config_key,
    dns_label,
    is_dns_subdomain,
    is_label_value,
    is_qualified_name,
    memory_quantity,
)
from composer.manifest.model import Resource, Service

_SECRET_LIMIT = 1 << 20  # the API server refuses larger Secrets and ConfigMaps


@dataclass
class PodStorage:
    """A service's pod volumes and its container's mounts."""

    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    #: whether a ReadWriteOnce claim is mounted (a rolling update would wait for it forever)
    exclusive_claim: bool = False
    _names: set[str] = field(default_factory=set)

    def add(self, wanted: str, source: dict[str, Any], mount: dict[str, Any]) -> None:
        name, n = dns_label(wanted), 2
        while name in self._names:
            name, n = dns_label(f"{wanted}-{n}"), n + 1
        if not any(v["name"] == name for v in self.volumes):
            self.volumes.append({"name": name, **source})
        self._names.add(name)
        self.mounts.append({"name": name, **mount})


def claim_name(volume: Resource) -> str:
    return volume.name if volume.external else dns_label(volume.name)


def object_name(resource: Resource) -> str:
    return resource.name if resource.external else dns_label(resource.name)


def claim_users(ctx: Context, key: str) -> list[Service]:
    return [s for s in ctx.project.services.values()
            if any(m.type == "volume" and m.source == key for m in s.volumes)]


def _access_mode(ctx: Context, key: str) -> str:
    users = claim_users(ctx, key)
    shared = len(users) > 1 or any(s.replicas > 1 for s in users)
    return "ReadWriteMany" if shared else "ReadWriteOnce"


def carried_labels(ctx: Context, scope: str, path: tuple[str, ...],
                   labels: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Compose labels as (Kubernetes labels, annotations): a label where its key and value are
    valid as one, an annotation where only the key is; a key valid as neither is reported."""
    kept: dict[str, str] = {}
    annotated: dict[str, str] = {}
    for key, value in labels.items():
        text = "" if value is None else str(value)
        if key.startswith(DIRECTIVE_PREFIX):
            continue
        if not is_qualified_name(key):
            ctx.report.dropped(scope, (*path, key),
                               f"label '{key}' is not a valid Kubernetes label or annotation "
                               "key ([prefix/]name, name at most 63 characters)")
        elif is_label_value(text):
            kept[key] = text
        else:
            annotated[key] = text
    return kept, annotated


def resource_objects(ctx: Context) -> list[dict[str, Any]]:
    """The claims, config maps and secrets of the project's top-level resources."""
    out: list[dict[str, Any]] = []
    for key, volume in sorted(ctx.project.volumes.items()):
        claim = _claim(ctx, key, volume)
        if claim:
            out.append(claim)
    for key, config in sorted(ctx.project.configs.items()):
        data = _content(ctx, "configs", key, config)
        if data is not None:
            out.append(_config_map(ctx, key, config, data))
    for key, secret in sorted(ctx.project.secrets.items()):
        data = _content(ctx, "secrets", key, secret)
        if data is not None:
            out.append(_secret(ctx, key, secret, data))
    return out


def _claim(ctx: Context, key: str, volume: Resource) -> dict[str, Any] | None:
    path = ("volumes", key)
    if volume.external:
        ctx.report.changed("", path, f"external volume: the services mount the existing "
                           f"claim '{volume.name}' (not created)",
                           hint=None if is_dns_subdomain(volume.name) else
                           f"'{volume.name}' is not a valid claim name: rename the volume")
        return None
    spec = volume.spec
    if spec.get("driver") not in (None, "local") or spec.get("driver_opts"):
        ctx.report.dropped("", (*path, "driver_opts" if spec.get("driver_opts") else "driver"),
                           "volume drivers and their options have no claim equivalent: the "
                           "cluster's (or the label's) storage class provisions the claim")
    labels_in = dict(spec.get("labels") or {})
    size = str(labels_in.get(VOLUME_SIZE_LABEL) or DEFAULT_VOLUME_SIZE)
    storage_class = labels_in.get(STORAGE_CLASS_LABEL)
    mode = _access_mode(ctx, key)
    ctx.report.changed("", path, f"claim '{claim_name(volume)}' of {size}, {mode} (Compose "
                       "volumes have no size); a new claim starts empty, where Docker copies "
                       "the image's files at the mount path into a new volume",
                       hint=f"set the volume label {VOLUME_SIZE_LABEL} (and "
                       f"{STORAGE_CLASS_LABEL}) to choose")
    if mode == "ReadWriteMany":
        users = ", ".join(s.name for s in claim_users(ctx, key))
        ctx.report.changed("", path, f"mounted by several pods ({users}): ReadWriteMany "
                           "needs a storage class that supports it")
    labels, annotations = carried_labels(ctx, "", (*path, "labels"), labels_in)
    claim: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": ctx.metadata(claim_name(volume), labels, annotations),
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": size}}}}
    if storage_class:
        claim["spec"]["storageClassName"] = str(storage_class)
    return claim


def _content(ctx: Context, kind: str, key: str, resource: Resource) -> bytes | None:
    """The bytes of a config or secret, or None for an external one (not created)."""
    path = (kind, key)
    what = "Secret" if kind == "secrets" else "ConfigMap"
    spec = resource.spec
    if resource.external:
        ctx.report.changed("", path, f"external {kind[:-1]}: the services mount the existing "
                           f"{what} '{resource.name}', key '{config_key(key)}' (not created)")
        return None
    if spec.get("file") is not None:
        try:
            data = ctx.options.read_file(str(spec["file"]))
        except OSError as exc:
            ctx.report.dropped("", (*path, "file"), f"cannot read {spec['file']}: "
                               f"{exc.strerror or exc}; the {what} is created empty",
                               hint="create the file, or fill the object in before applying")
            return b""
    elif spec.get("content") is not None:
        data = str(spec["content"]).encode()
    elif spec.get("environment") is not None:
        variable = str(spec["environment"])
        value = ctx.project.environment.get(variable)
        if value is None:
            ctx.report.dropped("", (*path, "environment"), f"${variable} is not set here; the "
                               f"{what} is created empty")
        data = (value or "").encode()
    else:
        ctx.report.dropped("", path, f"no file, content or environment: the {what} is "
                           "created empty")
        data = b""
    if len(data) > _SECRET_LIMIT:
        ctx.report.dropped("", path, f"{len(data)} bytes: larger than the 1 MiB a {what} "
                           "may hold; the cluster refuses it")
    for extra in ("driver", "template_driver"):
        if spec.get(extra):
            ctx.report.dropped("", (*path, extra), f"'{extra}' has no Kubernetes equivalent")
    return data


def _config_map(ctx: Context, key: str, resource: Resource, data: bytes) -> dict[str, Any]:
    labels, annotations = carried_labels(ctx, "", ("configs", key, "labels"),
                                         resource.spec.get("labels") or {})
    item = config_key(key)
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": ctx.metadata(object_name(resource), labels, annotations)}
    try:
        obj["data"] = {item: data.decode("utf-8")}
    except UnicodeDecodeError:
        obj["binaryData"] = {item: base64.b64encode(data).decode()}
    return obj


def _secret(ctx: Context, key: str, resource: Resource, data: bytes) -> dict[str, Any]:
    labels, annotations = carried_labels(ctx, "", ("secrets", key, "labels"),
                                         resource.spec.get("labels") or {})
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": ctx.metadata(object_name(resource), labels, annotations),
            "type": "Opaque", "data": {config_key(key): base64.b64encode(data).decode()}}


def pod_storage(ctx: Context, service: Service) -> PodStorage:
    """The pod volumes and container mounts of a service: its volumes, tmpfs, shm_size,
    configs and secrets."""
    storage = PodStorage()
    name = service.name
    base = ("services", name)
    for index, mount in enumerate(service.volumes):
        path = (*base, "volumes", index)
        entry: dict[str, Any] = {"mountPath": mount.target}
        if mount.read_only:
            entry["readOnly"] = True
        options = mount.options.get(mount.type) or {}
        if mount.type == "volume" and mount.source:
            volume = ctx.project.volumes.get(mount.source)
            if volume is None:
                continue
            if options.get("subpath"):
                entry["subPath"] = str(options["subpath"])
            if options.get("nocopy"):
                ctx.report.changed(name, path, "'nocopy': a claim never gets the image's "
                                   "files copied in anyway")
            exclusive = _access_mode(ctx, mount.source) == "ReadWriteOnce"
            storage.exclusive_claim |= exclusive
            storage.add(f"vol-{mount.source}",
                        {"persistentVolumeClaim": {"claimName": claim_name(volume)}}, entry)
        elif mount.type == "volume":
            ctx.report.changed(name, path, f"anonymous volume at {mount.target}: an emptyDir, "
                               "which lives as long as the pod")
            storage.add(f"anon-{index}", {"emptyDir": {}}, entry)
        elif mount.type == "tmpfs":
            size = memory_quantity(options.get("size")) if options.get("size") else None
            storage.add(f"tmpfs-{index}", {"emptyDir": _memory(size)}, entry)
            if options.get("mode") is not None:
                ctx.report.dropped(name, (*path, "tmpfs", "mode"),
                                   "an emptyDir's mode cannot be set")
        elif mount.type == "bind":
            ctx.report.dropped(
                name, path, f"bind mount of the host path {mount.source} at {mount.target}: "
                "pods do not see the files of the machine composer runs on",
                hint="put the files in the image, or make them a 'configs:' entry (a "
                "ConfigMap); a hostPath volume, written by hand, mounts the node's own path")
        else:
            ctx.report.dropped(name, path, f"'{mount.type}' mounts have no Kubernetes "
                               "equivalent here")
    for index, spec in enumerate(service.spec.get("tmpfs") or ()):
        target, _, opts = str(spec).partition(":")
        size = None
        for opt in opts.split(","):
            if opt.startswith("size="):
                size = _size_text(opt[5:])
        storage.add(f"tmpfs-{len(service.volumes) + index}", {"emptyDir": _memory(size)},
                    {"mountPath": target})
    if service.spec.get("shm_size"):
        size = memory_quantity(service.spec["shm_size"])
        ctx.report.changed(name, (*base, "shm_size"), f"a memory emptyDir of {size} at "
                           "/dev/shm")
        storage.add("shm", {"emptyDir": _memory(size)}, {"mountPath": "/dev/shm"})
    _files(ctx, service, "configs", storage)
    _files(ctx, service, "secrets", storage)
    return storage


def _memory(size: str | None) -> dict[str, Any]:
    return {"medium": "Memory", **({"sizeLimit": size} if size else {})}


def _size_text(text: str) -> str | None:
    """A ``tmpfs`` option size (``64m``, ``1g``, bytes) as a quantity."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", text.strip().lower())
    if not match:
        return None
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]
    return memory_quantity(int(float(match.group(1)) * scale))


def _files(ctx: Context, service: Service, kind: str, storage: PodStorage) -> None:
    """Configs and secrets mounted at their targets, one file each (``subPath``)."""
    resources = ctx.project.configs if kind == "configs" else ctx.project.secrets
    for index, ref in enumerate(service.spec.get(kind) or ()):
        if not isinstance(ref, Mapping):
            continue
        path = ("services", service.name, kind, index)
        source = str(ref.get("source"))
        resource = resources.get(source)
        if resource is None:
            continue
        target = str(ref.get("target") or (f"/{source}" if kind == "configs" else
                                            f"/run/secrets/{source}"))
        if not target.startswith("/"):
            target = f"/run/secrets/{target}" if kind == "secrets" else f"/{target}"
        key = config_key(source)
        item: dict[str, Any] = {"key": key, "path": key}
        if ref.get("mode") is not None:
            item["mode"] = _mode(ref["mode"])
        for owner in ("uid", "gid"):
            if ref.get(owner) is not None:
                ctx.report.dropped(service.name, (*path, owner), f"'{owner}': the files of a "
                                   "mounted ConfigMap or Secret belong to root, or to the "
                                   "pod's fsGroup")
        if kind == "configs":
            source_spec: dict[str, Any] = {"configMap": {"name": object_name(resource),
                                                         "items": [item]}}
        else:
            source_spec = {"secret": {"secretName": object_name(resource), "items": [item]}}
        storage.add(f"{kind[:-1]}-{source}", source_spec,
                    {"mountPath": target, "subPath": key, "readOnly": True})


def _mode(value: Any) -> int:
    """Compose file modes are octal numbers read as written (``0440``) or as YAML ints."""
    if isinstance(value, str):
        return int(value, 8)
    return int(value)
