"""Change detection: what a container, network or volume was created from, as hashes and labels.

A container records the hash of its service's configuration in a label; the planner recreates it
when today's hash differs. The hash covers an explicit allowlist of fields, never the whole model,
with :data:`HASH_VERSION` stored beside it: hashing the whole evolving model made every upgrade of
Docker Compose recreate every container (docker/compose #11335, #10077). A field added to the
model later is ignored until it is added here, on purpose, together with a new hash version if
existing hashes would change.

The labels keep Docker Compose's names, so that tools which read them understand composer's
containers too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from composer.__about__ import __version__

if TYPE_CHECKING:
    from composer.manifest.model import Project, Resource, Service

#: Written beside every hash: a hash made by another version of these rules is not comparable.
HASH_VERSION = "1"

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_CONFIG_HASH = "com.docker.compose.config-hash"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_IMAGE = "com.docker.compose.image"
LABEL_VERSION = "com.docker.compose.version"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"
LABEL_HASH_VERSION = "io.composer.hash-version"

#: Service attributes whose change needs a new container. Adding one here changes existing
#: hashes (only for services that set it): do it together with a new HASH_VERSION.
SERVICE_HASH_FIELDS: frozenset[str] = frozenset({
    "annotations", "blkio_config", "cap_add", "cap_drop", "cgroup", "cgroup_parent", "command",
    "configs", "container_name", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
    "cpu_rt_period", "cpu_rt_runtime", "cpu_shares", "cpus", "cpuset", "credential_spec",
    "deploy", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
    "entrypoint", "environment", "expose", "external_links", "extra_hosts", "gpus", "group_add",
    "healthcheck", "hostname", "image", "init", "ipc", "isolation", "labels", "links", "logging",
    "mac_address", "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "models",
    "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit",
    "platform", "ports", "post_start", "pre_start", "pre_stop", "privileged", "provider",
    "read_only", "restart", "runtime", "secrets", "security_opt", "shm_size", "stdin_open",
    "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "userns_mode", "uts", "volumes", "volumes_from", "working_dir",
})

#: Service attributes left out of the hash on purpose (the rest of the schema is in the
#: allowlist; a test keeps the two lists and the schema in step). Compose leaves out the first
#: five: a new build, pull policy, replica count, dependency or profile changes how composer gets
#: to the container, not the container. ``env_file`` and ``label_file`` are already read into
#: ``environment`` and ``labels``; the others never reach the container.
SERVICE_HASH_EXCLUDED: frozenset[str] = frozenset({
    "build", "pull_policy", "scale", "depends_on", "profiles",
    "pull_refresh_after", "develop", "extends", "attach", "env_file", "label_file",
})

NETWORK_HASH_FIELDS: frozenset[str] = frozenset({
    "driver", "driver_opts", "ipam", "internal", "enable_ipv4", "enable_ipv6", "attachable",
    "labels", "external", "name",
})

VOLUME_HASH_FIELDS: frozenset[str] = frozenset({
    "driver", "driver_opts", "labels", "external", "name",
})

# An empty command or entrypoint is not "none": it overrides the image's with nothing.
_EMPTY_IS_A_VALUE = frozenset({"command", "entrypoint"})

_REASON_WIDTH = 60

_SCALARS = frozenset({str, int, float, bool, type(None)})


def service_config(service: Service,
                   contents: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The hashed part of a service, as plain data: what its container is created from.

    ``contents`` (:func:`composer.manifest.contents.contents`) adds the digests of the
    secrets and configs the service uses, under ``contents``: a changed secret file means a
    new container although the model is the same. Left out when the service uses none, so
    that the hashes of other services do not change."""
    config = _allowed(service.spec, SERVICE_HASH_FIELDS)
    used = {f"{kind}.{ref['source']}" for kind in ("secrets", "configs")
            for ref in service.spec.get(kind) or () if isinstance(ref, Mapping)}
    digests = {key: digest for key, digest in (contents or {}).items() if key in used}
    if digests:
        config["contents"] = dict(sorted(digests.items()))
    return config


def service_hash(service: Service, contents: Mapping[str, str] | None = None) -> str:
    """The config hash a container of ``service`` is labelled with.

    The image is hashed by reference only: whether the reference now means another image is
    the planner's question (it compares image ids)."""
    return _digest(service_config(service, contents))


def network_hash(resource: Resource) -> str:
    """The hash of what a network is created with: a change means a new network."""
    return _digest(_allowed(resource.spec, NETWORK_HASH_FIELDS))


def volume_hash(resource: Resource) -> str:
    """The hash of what a volume is created with."""
    return _digest(_allowed(resource.spec, VOLUME_HASH_FIELDS))


def _allowed(spec: Mapping[str, Any], fields: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in fields.intersection(spec):
        value = _plain(spec[key])
        if key == "deploy" and isinstance(value, dict):
            # Compose never recreates for a new replica count: scaling adds or removes
            # containers. Once replicas is gone, the defaults the normalizer writes
            # (resources: {}, placement: {}) must not make "deploy" differ from none.
            value.pop("replicas", None)
            value = _pruned(value)
        # environment: {} and no environment are the same container; so are the other empties.
        if value is None or (value in ("", {}, []) and key not in _EMPTY_IS_A_VALUE):
            continue
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """Plain data, with an empty mapping or list inside a mapping written as None.

    ``networks: {front: {}}`` and ``networks: {front: }`` attach alike; dropping such entries
    instead would lose the key, which is the whole value there (and in ``environment``)."""
    kind = type(value)
    # Exact type checks first: the ABC check is most of the time of hashing otherwise.
    if kind in _SCALARS:
        return value
    if kind is MappingProxyType or kind is dict or isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            v = _plain(v)
            out[k] = None if v == {} or v == [] else v
        return out
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    return value


def _pruned(value: Any) -> Any:
    """``value`` without None or empty entries at any depth: for mappings of settings only."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _pruned(v)
            if v is not None and v != {} and v != []:
                out[k] = v
        return out
    return value


def _digest(config: Mapping[str, Any]) -> str:
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- differences, for people ----------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    """One field that differs between two configurations; None stands for "not set"."""

    path: str
    old: Any
    new: Any

    def reason(self) -> str:
        if self.old is None:
            return f"{self.path} added: {_show(self.new)}"
        if self.new is None:
            return f"{self.path} removed (was {_show(self.old)})"
        return f"{self.path} changed: {_show(self.old)} -> {_show(self.new)}"


def diff_configs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[FieldChange]:
    """The fields that differ, by dotted path, sorted by path.

    Mappings are compared key by key; anything else, lists included, as a whole: a list of
    ports that differs is one change, as a person would read it."""
    changes: list[FieldChange] = []
    _diff(old, new, "", changes)
    return sorted(changes, key=lambda change: change.path)


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str,
          changes: list[FieldChange]) -> None:
    for key in old.keys() | new.keys():
        path = f"{prefix}{key}"
        before, after = old.get(key), new.get(key)
        if isinstance(before, Mapping) and isinstance(after, Mapping) \
                and not _hides_presence(before, after):
            _diff(before, after, f"{path}.", changes)
        elif key not in old or key not in new or _plain(before) != _plain(after):
            changes.append(FieldChange(path, before, after))


def _hides_presence(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether a key set to None is on one side only (``networks: {default: }`` becoming
    ``{front: }``): field by field, None would read as "not set" on both sides, so such a
    mapping is shown as one change."""
    return any(old[k] is None for k in old.keys() - new.keys()) or \
        any(new[k] is None for k in new.keys() - old.keys())


def _show(value: Any) -> str:
    text = json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)
    if len(text) > _REASON_WIDTH:
        return text[:_REASON_WIDTH - 1] + "…"
    return text


# --- labels ---------------------------------------------------------------------------------


def container_labels(project: Project, service: Service, number: int, *, oneoff: bool = False,
                     image_id: str | None = None,
                     config_hash: str | None = None) -> dict[str, str]:
    """Every label of a container of ``service``: the service's own, then Compose's.

    Compose's labels win over a service label of the same name: they are how composer finds
    its containers again. ``image_id`` (``sha256:...``) is the image the container is created
    from, as Compose records it; without it that label is left out rather than guessed."""
    labels = dict(service.labels)
    labels.update({
        LABEL_PROJECT: project.name,
        LABEL_SERVICE: service.name,
        LABEL_NUMBER: str(number),
        LABEL_ONEOFF: "True" if oneoff else "False",
        LABEL_CONFIG_HASH: config_hash or service_hash(service),  # the caller's, if known
        LABEL_HASH_VERSION: HASH_VERSION,
        LABEL_VERSION: __version__,
        LABEL_WORKING_DIR: project.working_dir,
        LABEL_CONFIG_FILES: ",".join(project.files),
        # As Compose writes it (name:condition:restart); sorted, where Go's map order is not.
        LABEL_DEPENDS_ON: ",".join(
            f"{name}:{dep.condition}:{str(dep.restart).lower()}"
            for name, dep in sorted(service.depends_on.items())),
    })
    if image_id:
        labels[LABEL_IMAGE] = image_id
    return labels
