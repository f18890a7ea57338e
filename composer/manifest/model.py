"""Phase 12: the frozen, typed project model — the only thing later layers see.

Built last, from the normalized tree. The commonly used attributes are typed fields; every
attribute (typed or not) stays readable in ``spec``, a read-only copy of the service's
normalized mapping, so that nothing Compose defines is lost on the way to the runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from composer.errors import ManifestWarning

if TYPE_CHECKING:
    from composer.manifest.loader import Loaded


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable copy of a frozen value (for output and hashing)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def built_image_name(project: str, service: str) -> str:
    """The name Compose gives the image it builds for a service without ``image``."""
    return f"{project}-{service}"


@dataclass(frozen=True)
class Port:
    target: int
    published: str | None = None
    host_ip: str | None = None
    protocol: str = "tcp"
    mode: str = "ingress"
    name: str | None = None
    app_protocol: str | None = None


@dataclass(frozen=True)
class Mount:
    type: str
    target: str
    source: str | None = None
    read_only: bool = False
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Dependency:
    condition: str = "service_started"
    required: bool = True
    restart: bool = False


@dataclass(frozen=True)
class Build:
    context: str
    dockerfile: str | None = None
    dockerfile_inline: str | None = None
    args: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    target: str | None = None
    spec: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: Build | None
    command: tuple[str, ...] | None
    entrypoint: tuple[str, ...] | None
    environment: Mapping[str, str | None]
    ports: tuple[Port, ...]
    volumes: tuple[Mount, ...]
    networks: Mapping[str, Mapping[str, Any] | None]
    depends_on: Mapping[str, Dependency]
    profiles: tuple[str, ...]
    restart: str | None
    container_name: str | None
    labels: Mapping[str, str]
    healthcheck: Mapping[str, Any] | None
    network_mode: str | None
    replicas: int
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Resource:
    """A top-level network, volume, secret, config or model: its key, real name and spec."""

    key: str
    name: str
    external: bool
    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Project:
    name: str
    working_dir: str
    files: tuple[str, ...]
    services: Mapping[str, Service]
    networks: Mapping[str, Resource]
    volumes: Mapping[str, Resource]
    secrets: Mapping[str, Resource]
    configs: Mapping[str, Resource]
    environment: Mapping[str, str]
    profiles: tuple[str, ...]
    warnings: tuple[ManifestWarning, ...]
    spec: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The normalized project as plain data: what ``composer config`` prints."""
        result: dict[str, Any] = thaw(self.spec)
        return result


def build_project(loaded: Loaded) -> Project:
    from composer.manifest.tree import plain

    tree = plain(loaded.tree)
    services = {name: _service(name, spec) for name, spec in (tree.get("services") or {}).items()}
    return Project(
        name=loaded.name,
        working_dir=loaded.project_dir,
        files=loaded.files,
        services=MappingProxyType(services),
        networks=_resources(tree, "networks"),
        volumes=_resources(tree, "volumes"),
        secrets=_resources(tree, "secrets"),
        configs=_resources(tree, "configs"),
        environment=MappingProxyType(dict(loaded.env)),
        profiles=loaded.profiles,
        warnings=tuple(loaded.warnings),
        spec=_freeze(tree),
    )


def project_document(project: Project) -> dict[str, Any]:
    """The project as plain JSON-able data: what the CLI sends the engine for ``up``."""
    return {"name": project.name, "working_dir": project.working_dir,
            "files": list(project.files), "environment": dict(project.environment),
            "profiles": list(project.profiles), "tree": project.to_dict()}


def project_from_document(document: Mapping[str, Any]) -> Project:
    """The :class:`Project` of :func:`project_document`'s data (no warnings: the CLI that
    loaded the files has shown them)."""
    tree = dict(document["tree"])
    services = {name: _service(name, spec) for name, spec in (tree.get("services") or {}).items()}
    return Project(
        name=str(document["name"]), working_dir=str(document["working_dir"]),
        files=tuple(document.get("files") or ()), services=MappingProxyType(services),
        networks=_resources(tree, "networks"), volumes=_resources(tree, "volumes"),
        secrets=_resources(tree, "secrets"), configs=_resources(tree, "configs"),
        environment=MappingProxyType(dict(document.get("environment") or {})),
        profiles=tuple(document.get("profiles") or ()), warnings=(), spec=_freeze(tree))


def _resources(tree: dict[str, Any], key: str) -> Mapping[str, Resource]:
    out = {}
    for name, spec in (tree.get(key) or {}).items():
        spec = spec or {}
        out[name] = Resource(key=name, name=str(spec.get("name") or name),
                             external=bool(spec.get("external")), spec=_freeze(spec))
    return MappingProxyType(out)


def _service(name: str, spec: dict[str, Any]) -> Service:
    build = spec.get("build")
    deploy = spec.get("deploy") or {}
    replicas = deploy.get("replicas") if deploy.get("replicas") is not None else spec.get("scale")
    return Service(
        name=name,
        image=spec.get("image"),
        build=_build(build) if isinstance(build, dict) else None,
        command=_words(spec.get("command")),
        entrypoint=_words(spec.get("entrypoint")),
        environment=MappingProxyType(dict(spec.get("environment") or {})),
        ports=tuple(_port(p) for p in spec.get("ports") or () if isinstance(p, dict)),
        volumes=tuple(_mount(m) for m in spec.get("volumes") or () if isinstance(m, dict)),
        networks=_freeze(dict(spec.get("networks") or {})),
        depends_on=MappingProxyType({
            dep: Dependency(condition=str((d or {}).get("condition", "service_started")),
                            required=bool((d or {}).get("required", True)),
                            restart=bool((d or {}).get("restart", False)))
            for dep, d in (spec.get("depends_on") or {}).items()}),
        profiles=tuple(spec.get("profiles") or ()),
        restart=spec.get("restart"),
        container_name=spec.get("container_name"),
        labels=MappingProxyType({k: str(v) for k, v in (spec.get("labels") or {}).items()}),
        healthcheck=_freeze(spec["healthcheck"]) if spec.get("healthcheck") else None,
        network_mode=spec.get("network_mode"),
        replicas=int(replicas) if replicas is not None else 1,
        spec=_freeze(spec),
    )


def _words(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _build(spec: dict[str, Any]) -> Build:
    return Build(context=str(spec.get("context", ".")), dockerfile=spec.get("dockerfile"),
                 dockerfile_inline=spec.get("dockerfile_inline"),
                 args=MappingProxyType(dict(spec.get("args") or {})),
                 target=spec.get("target"), spec=_freeze(spec))


def _port(spec: dict[str, Any]) -> Port:
    published = spec.get("published")
    return Port(target=int(spec["target"]), published=str(published) if published else None,
                host_ip=spec.get("host_ip"), protocol=str(spec.get("protocol", "tcp")),
                mode=str(spec.get("mode", "ingress")), name=spec.get("name"),
                app_protocol=spec.get("app_protocol"))


def _mount(spec: dict[str, Any]) -> Mount:
    options = {k: v for k, v in spec.items()
               if k not in ("type", "target", "source", "read_only")}
    return Mount(type=str(spec.get("type", "volume")), target=str(spec.get("target", "")),
                 source=spec.get("source"), read_only=bool(spec.get("read_only", False)),
                 options=_freeze(options))
