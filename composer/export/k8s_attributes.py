"""Which service attributes the conversion maps, and why each of the others is dropped.

Every attribute a service sets is either converted by the workload, container, storage and
Service builders (``CONVERTED``), meaningless outside composer's own command line
(``IRRELEVANT``), or reported as dropped: with its reason from ``DROPPED`` or, for an
attribute this table does not know yet, a generic one. So nothing is left out silently.
"""

from __future__ import annotations

from composer.export.k8s_context import Context
from composer.manifest.model import Service

CONVERTED = frozenset((
    "annotations", "build", "cap_add", "cap_drop", "command", "configs", "cpus",
    "depends_on", "deploy", "dns", "dns_opt", "dns_search", "entrypoint", "environment",
    "expose", "extra_hosts", "group_add", "healthcheck", "hostname", "image", "ipc", "labels",
    "mem_limit", "mem_reservation", "network_mode", "networks", "pid", "platform", "ports",
    "post_start", "pre_stop", "privileged", "pull_policy", "read_only", "restart", "scale",
    "secrets", "security_opt", "shm_size", "stdin_open", "stop_grace_period", "sysctls",
    "tmpfs", "tty", "user", "volumes", "working_dir"))
#: Read into other attributes by the loader (env_file, label_file), or only steering
#: composer's own commands (profiles, attach, develop's file watching is reported apart).
IRRELEVANT = frozenset(("env_file", "label_file", "profiles", "attach", "extends"))

_TUNE = "a container runtime knob the pod spec does not have"
DROPPED: dict[str, str] = {
    "blkio_config": "pods have no block I/O weights or limits",
    "cgroup": _TUNE, "cgroup_parent": _TUNE, "cpu_count": _TUNE, "cpu_percent": _TUNE,
    "cpu_period": _TUNE, "cpu_quota": f"{_TUNE} (use deploy.resources.limits.cpus)",
    "cpu_rt_period": _TUNE, "cpu_rt_runtime": _TUNE, "cpuset": _TUNE,
    "cpu_shares": f"{_TUNE} (CPU requests set the shares: deploy.resources.reservations.cpus)",
    "credential_spec": "Windows containers only", "isolation": "Windows containers only",
    "container_name": "pods are named by their workload (and scale)",
    "develop": "composer watch's file syncing; a cluster has no such step",
    "device_cgroup_rules": "pods reach devices through device plugins only",
    "devices": "pods reach host devices through device plugins only",
    "domainname": "pods take the cluster's DNS domain",
    "external_links": "reach other workloads by their Service names",
    "links": "every Service is reachable by its name; link aliases are not",
    "gpus": "request GPUs as device plugin resources (nvidia.com/gpu) by hand",
    "init": "a pod has no init process option: put tini (or similar) in the image",
    "logging": "the cluster collects container output; log drivers do not exist",
    "mac_address": "pod addresses belong to the cluster network",
    "memswap_limit": _TUNE, "mem_swappiness": _TUNE, "oom_kill_disable": _TUNE,
    "oom_score_adj": "the kubelet sets OOM scores from the pod's QoS class",
    "pids_limit": "a pod has no per-container process limit (podPidsLimit is node-wide)",
    "models": "AI models have no Kubernetes object", "provider": "provider services run "
    "outside the project's containers",
    "pre_start": "write pre_start hooks as initContainers by hand",
    "pull_refresh_after": "Kubernetes has no pull schedule",
    "runtime": "choose a RuntimeClass by hand", "stop_signal": "the kubelet sends SIGTERM",
    "storage_opt": _TUNE, "ulimits": "pods inherit the node's resource limits",
    "use_api_socket": "pods have no Docker API socket", "userns_mode": "use "
    "spec.hostUsers by hand", "uts": "pods have their own UTS namespace",
    "volumes_from": "share a volume (a claim) between the services instead",
}


def unconverted(ctx: Context, service: Service) -> None:
    """Report every attribute of ``service`` no builder converts."""
    for key, value in service.spec.items():
        if key in CONVERTED or key in IRRELEVANT or key.startswith("x-"):
            continue
        if value is None or value == {} or value == () or value is False:
            continue
        reason = DROPPED.get(key, "composer knows no Kubernetes mapping for it")
        ctx.report.dropped(service.name, ("services", service.name, key),
                           f"'{key}' has no Kubernetes equivalent: {reason}")
    _networks(ctx, service)
    _deploy(ctx, service)


def _networks(ctx: Context, service: Service) -> None:
    for network, options in service.networks.items():
        for key, value in (options or {}).items():
            if value in (None, (), {}):
                continue
            ctx.report.dropped(service.name, ("services", service.name, "networks", network,
                                              key),
                               f"'{key}': pod addresses and names belong to the cluster "
                               "network (only the service name resolves)")


_SWARM = ("update_config", "rollback_config")


def _deploy(ctx: Context, service: Service) -> None:
    deploy = service.spec.get("deploy") or {}
    for key in _SWARM:
        if deploy.get(key):
            ctx.report.dropped(service.name, ("services", service.name, "deploy", key),
                               "Swarm's update settings: set the Deployment's strategy by hand")
    if deploy.get("mode") == "global-job":
        ctx.report.changed(service.name, ("services", service.name, "deploy", "mode"),
                           "a Job of one pod: a Job cannot run once per node")


def project_notes(ctx: Context) -> None:
    """The top-level networks: no segmentation is converted."""
    for key, network in sorted(ctx.project.networks.items()):
        if key == "default" and not network.spec.get("internal"):
            continue
        used = [s for s in ctx.project.services.values() if key in s.networks]
        if not used:
            continue
        extra = " (internal: no way out of the cluster either)" if \
            network.spec.get("internal") else ""
        ctx.report.dropped("", ("networks", key), f"network '{key}'{extra}: every pod can "
                           "reach every Service of the cluster",
                           hint="write NetworkPolicy objects to isolate the services again")
