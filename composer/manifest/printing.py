"""How ``docker compose config`` prints a project, as JSON and as YAML.

Compose prints its typed model, so the order of keys is the order of the fields of its types,
and mappings keyed by the user (services, environment, labels, ...) come sorted. The table
:data:`FIELD_ORDER` says, for each place in the tree, the order Compose prints; it was read off
Docker Compose v2.40.3's output for a file that sets every attribute. A mapping at a place the
table does not name is keyed by the user and printed sorted.

The two formats differ where Compose's encoders do: JSON leaves out the ``x-*`` extensions
below the top level, keeps ``command: null`` and ``ipam: {}``, and writes block I/O devices
with capitalized keys; YAML keeps extensions (last), leaves out null fields of its types, and
quotes a string with double quotes when it would otherwise read back as another type (YAML
1.1 words such as ``yes`` and ``n`` included, as Compose's YAML library does).
"""

from __future__ import annotations

import json
import re
from typing import Any

from composer.manifest.tree import Path

_S = ("services", "*")
_WATCH_EXEC = ("command", "user", "privileged", "working_dir", "environment")

#: Place (``*`` is any one key or index) -> the order Compose prints that mapping's keys in.
FIELD_ORDER: dict[Path, tuple[str, ...]] = {
    _S: (
        "profiles", "annotations", "attach", "build", "develop", "blkio_config", "cap_add",
        "cap_drop", "cgroup_parent", "cgroup", "cpu_count", "cpu_percent", "cpu_period",
        "cpu_quota", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset", "cpu_shares",
        "command", "configs", "container_name", "credential_spec", "depends_on", "deploy",
        "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
        "entrypoint", "provider", "environment", "env_file", "expose", "extends",
        "external_links", "extra_hosts", "group_add", "gpus", "hostname", "healthcheck",
        "image", "init", "ipc", "isolation", "labels", "label_file", "links", "logging",
        "mem_limit", "mem_reservation", "memswap_limit", "mem_swappiness", "mac_address",
        "models", "network_mode", "networks", "oom_kill_disable", "oom_score_adj", "pid",
        "pids_limit", "platform", "ports", "privileged", "pull_policy", "pull_refresh_after",
        "read_only", "restart", "runtime", "scale", "secrets", "security_opt", "shm_size",
        "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs",
        "tty", "ulimits", "use_api_socket", "user", "userns_mode", "uts", "volumes",
        "volumes_from", "working_dir", "pre_start", "post_start", "pre_stop"),
    (*_S, "build"): (
        "context", "dockerfile", "dockerfile_inline", "entitlements", "args", "provenance",
        "sbom", "ssh", "labels", "cache_from", "cache_to", "no_cache", "additional_contexts",
        "pull", "extra_hosts", "isolation", "network", "target", "secrets", "shm_size",
        "tags", "ulimits", "platforms", "privileged"),
    (*_S, "build", "secrets", "*"): ("source", "target", "uid", "gid", "mode"),
    (*_S, "develop"): ("watch",),
    (*_S, "develop", "watch", "*"): (
        "path", "action", "target", "exec", "include", "ignore", "initial_sync"),
    (*_S, "develop", "watch", "*", "exec"): _WATCH_EXEC,
    (*_S, "blkio_config"): (
        "weight", "weight_device", "device_read_bps", "device_read_iops",
        "device_write_bps", "device_write_iops"),
    (*_S, "blkio_config", "*", "*"): ("path", "weight", "rate"),
    (*_S, "credential_spec"): ("config", "file", "registry"),
    (*_S, "configs", "*"): ("source", "target", "uid", "gid", "mode"),
    (*_S, "secrets", "*"): ("source", "target", "uid", "gid", "mode"),
    (*_S, "depends_on", "*"): ("condition", "restart", "required"),
    (*_S, "deploy"): (
        "mode", "replicas", "labels", "update_config", "rollback_config", "resources",
        "restart_policy", "placement", "endpoint_mode"),
    (*_S, "deploy", "update_config"): (
        "parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"),
    (*_S, "deploy", "rollback_config"): (
        "parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"),
    (*_S, "deploy", "resources"): ("limits", "reservations"),
    (*_S, "deploy", "resources", "limits"): ("cpus", "memory", "pids"),
    (*_S, "deploy", "resources", "reservations"): (
        "cpus", "memory", "pids", "devices", "generic_resources"),
    (*_S, "deploy", "resources", "reservations", "devices", "*"): (
        "capabilities", "driver", "count", "device_ids", "options"),
    (*_S, "deploy", "resources", "reservations", "generic_resources", "*"): (
        "discrete_resource_spec",),
    (*_S, "deploy", "resources", "reservations", "generic_resources", "*",
     "discrete_resource_spec"): ("kind", "value"),
    (*_S, "deploy", "restart_policy"): ("condition", "delay", "max_attempts", "window"),
    (*_S, "deploy", "placement"): ("constraints", "preferences", "max_replicas_per_node"),
    (*_S, "deploy", "placement", "preferences", "*"): ("spread",),
    (*_S, "devices", "*"): ("source", "target", "permissions"),
    (*_S, "extends"): ("service", "file"),
    (*_S, "gpus", "*"): ("capabilities", "driver", "count", "device_ids", "options"),
    (*_S, "healthcheck"): (
        "test", "timeout", "interval", "retries", "start_period", "start_interval",
        "disable"),
    (*_S, "logging"): ("driver", "options"),
    (*_S, "models", "*"): ("endpoint_var", "model_var"),
    (*_S, "networks", "*"): (
        "aliases", "driver_opts", "gw_priority", "interface_name", "ipv4_address",
        "ipv6_address", "link_local_ips", "mac_address", "priority"),
    (*_S, "ports", "*"): (
        "name", "mode", "host_ip", "target", "published", "protocol", "app_protocol"),
    (*_S, "provider"): ("type", "options"),
    (*_S, "pre_start", "*"): _WATCH_EXEC,
    (*_S, "post_start", "*"): _WATCH_EXEC,
    (*_S, "pre_stop", "*"): _WATCH_EXEC,
    (*_S, "ulimits", "*"): ("soft", "hard"),
    (*_S, "volumes", "*"): (
        "type", "source", "target", "read_only", "consistency", "bind", "volume", "tmpfs",
        "image"),
    (*_S, "volumes", "*", "bind"): ("selinux", "propagation", "create_host_path", "recursive"),
    (*_S, "volumes", "*", "volume"): ("labels", "nocopy", "subpath"),
    (*_S, "volumes", "*", "tmpfs"): ("size", "mode"),
    (*_S, "volumes", "*", "image"): ("subpath",),
    ("networks", "*"): (
        "name", "driver", "driver_opts", "ipam", "external", "internal", "attachable",
        "labels", "enable_ipv4", "enable_ipv6"),
    ("networks", "*", "ipam"): ("driver", "config", "options"),
    ("networks", "*", "ipam", "config", "*"): ("subnet", "gateway", "ip_range", "aux_addresses"),
    ("volumes", "*"): ("name", "driver", "driver_opts", "external", "labels"),
    ("secrets", "*"): (
        "name", "file", "environment", "content", "external", "labels", "driver",
        "driver_opts", "template_driver"),
    ("configs", "*"): (
        "name", "file", "environment", "content", "external", "labels", "driver",
        "driver_opts", "template_driver"),
    ("models", "*"): ("name", "model", "context_size", "runtime_flags"),
    ("include", "*"): ("path", "project_directory", "env_file"),
}

#: The top level in YAML; JSON sorts it like any mapping of a Go map.
_YAML_TOP = ("name", "include", "services", "networks", "volumes", "secrets", "configs",
             "models")

#: Fields that Compose's YAML leaves out when empty (JSON prints them as ``{}``).
_YAML_OMIT_EMPTY = frozenset((
    (*_S, "deploy", "resources"), (*_S, "deploy", "placement"),
    (*_S, "develop", "watch", "*", "exec"), ("networks", "*", "ipam")))

#: Block I/O device entries have no JSON names in Compose's types: Go prints the field names.
_BLKIO_JSON = {"path": "Path", "weight": "Weight", "rate": "Rate"}


def _matches(pattern: Path, path: Path) -> bool:
    return len(pattern) == len(path) and all(
        p == "*" or p == step for p, step in zip(pattern, path, strict=True))


def _matches_any(patterns: frozenset[Path], path: Path) -> bool:
    return any(_matches(pattern, path) for pattern in patterns)


def _omitted_when_empty(key: str, path: Path) -> bool:
    """Empty lists and user-keyed mappings of Compose's types are left out, in both formats.

    ``command: []`` and ``entrypoint: []`` stay (an empty command is not a missing one), and
    so do empty settings blocks such as ``deploy: {}`` (their place has a field order)."""
    if key.startswith("x-") or key in ("command", "entrypoint"):
        return False
    return _order_for(path) is None


def _order_for(path: Path) -> tuple[str, ...] | None:
    for pattern, order in FIELD_ORDER.items():
        if _matches(pattern, path):
            return order
    return None


def _arrange(node: Any, path: Path, *, yaml: bool, raw: bool = False) -> Any:
    """A copy of ``node`` in Compose's order, with what the format leaves out left out.

    ``raw``: a project that was not interpolated. Compose then prints its untyped form in
    both formats: every mapping sorted, what the types would leave out left out, extensions
    kept."""
    if isinstance(node, list):
        return [_arrange(v, (*path, "*"), yaml=yaml, raw=raw) for v in node]
    if not isinstance(node, dict):
        return node
    order = _order_for(path) if path else None
    if order is None or raw:
        keys = sorted(node, key=str)
        if not path and yaml and not raw:
            keys = [k for k in _YAML_TOP if k in node] + [k for k in keys if k not in _YAML_TOP]
    else:
        rank = {key: i for i, key in enumerate(order)}
        keys = sorted(node, key=lambda k: (k not in rank, rank.get(k, 0), str(k)))
    untyped = yaml or raw
    out: dict[Any, Any] = {}
    for key in keys:
        value = node[key]
        if order is not None and isinstance(key, str) and key.startswith("x-") and not untyped:
            continue  # JSON has no place for extensions inside Compose's types
        if untyped and order is not None and value is None:
            continue  # "omitempty" fields of Compose's types
        child = (*path, key) if order is not None or not path else (*path, "*")
        if order is not None and value in ([], {}) and _omitted_when_empty(str(key), child):
            continue
        arranged = _arrange(value, child, yaml=yaml, raw=raw)
        if untyped and arranged == {} and _matches_any(_YAML_OMIT_EMPTY, child):
            continue
        out[key] = arranged
    if not untyped and len(path) == 5 and path[0] == "services" and path[2] == "blkio_config":
        out = {_BLKIO_JSON.get(k, k): v for k, v in out.items()}
    return out


def to_json(project: dict[str, Any], *, raw: bool = False) -> str:
    """``docker compose config --format json``: two-space indent, Go's HTML-safe escapes."""
    text = json.dumps(_arrange(project, (), yaml=False, raw=raw), indent=2, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def to_yaml(project: dict[str, Any], *, raw: bool = False) -> str:
    """``docker compose config``: the YAML form."""
    import yaml

    class Dumper(yaml.SafeDumper):
        # Sequences indented under their key, as Compose prints them.
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

        def check_simple_key(self) -> bool:
            # An empty key is written "": like Compose, not as a complex "? ''" key.
            event = self.event
            if isinstance(event, yaml.ScalarEvent) and event.value == "":
                return True
            return bool(super().check_simple_key())

    Dumper.yaml_implicit_resolvers = {}
    for tag, pattern, first in _GO_RESOLVERS:
        Dumper.add_implicit_resolver(tag, pattern, list(first))

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = None
        if "\n" in value:
            style = "|"
        elif _reads_as_another_type(value):
            style = '"'
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    def represent_float(dumper: yaml.SafeDumper, value: float) -> yaml.ScalarNode:
        text = str(int(value)) if value.is_integer() else repr(value)
        return dumper.represent_scalar("tag:yaml.org,2002:float", text)

    def represent_none(dumper: yaml.SafeDumper, value: None) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:null", "null")

    Dumper.add_representer(str, represent_str)
    Dumper.add_representer(float, represent_float)
    Dumper.add_representer(type(None), represent_none)
    text: str = yaml.dump(_arrange(project, (), yaml=True, raw=raw), Dumper=Dumper, sort_keys=False,
                          default_flow_style=False, allow_unicode=True, width=1 << 16)
    return text


# What a plain scalar means to Compose's YAML library when it reads the output back: a
# string that would mean something else is double-quoted.
_GO_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN"),
    ("tag:yaml.org,2002:int", re.compile(
        r"^[-+]?(?:[0-9][0-9_]*|0[bB][01_]+|0[oO][0-7_]+|0[xX][0-9a-fA-F_]+)$"),
     "-+0123456789"),
    ("tag:yaml.org,2002:float", re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), "-+0123456789."),
]
_OLD_BOOLS = frozenset((
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
    "on", "On", "ON", "off", "Off", "OFF"))
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?$")


def _reads_as_another_type(value: str) -> bool:
    if value in _OLD_BOOLS or _BASE60.match(value) or _TIMESTAMP.match(value):
        return True
    return any(pattern.match(value) for _, pattern, _ in _GO_RESOLVERS)
