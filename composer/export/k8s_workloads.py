"""Workloads: a Deployment per service, a Job for one-shot services, a DaemonSet for
``deploy.mode: global``; the pod spec they share."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from composer.export.k8s_container import container, port_entries
from composer.export.k8s_context import Context
from composer.export.k8s_storage import carried_labels, pod_storage
from composer.export.k8s_values import (
    duration_seconds,
    is_dns_label,
    is_qualified_name,
    whole_seconds,
)
from composer.manifest.model import Service

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "arm": "arm", "386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


def workload_kind(ctx: Context, service: Service) -> str:
    """``Deployment``, ``Job`` (one-shot: restart "no" or on-failure, and a dependent waits
    for it to complete) or ``DaemonSet`` (``deploy.mode: global``)."""
    mode = str((service.spec.get("deploy") or {}).get("mode") or "replicated")
    if mode in ("replicated-job", "global-job"):
        return "Job"
    if mode == "global":
        return "DaemonSet"
    awaited = any(dep == service.name and d.condition == "service_completed_successfully"
                  for other in ctx.project.services.values()
                  for dep, d in other.depends_on.items())
    return "Job" if awaited and _restart(service)[0] in ("no", "on-failure") else "Deployment"


def _restart(service: Service) -> tuple[str, int | None, tuple[str, ...]]:
    """(``no`` | ``on-failure`` | ``always``, max attempts, path of the setting)."""
    base = ("services", service.name)
    policy = (service.spec.get("deploy") or {}).get("restart_policy") or {}
    if policy.get("condition"):
        condition = {"none": "no", "on-failure": "on-failure", "any": "always"}.get(
            str(policy["condition"]), "always")
        attempts = policy.get("max_attempts")
        return condition, int(attempts) if attempts is not None else None, \
            (*base, "deploy", "restart_policy")
    text = str(service.restart or "no")
    if text.startswith("on-failure"):
        _, _, count = text.partition(":")
        return "on-failure", int(count) if count.isdigit() else None, (*base, "restart")
    return ("no" if text == "no" else "always"), None, (*base, "restart")


def workload(ctx: Context, service: Service) -> dict[str, Any]:
    name = service.name
    base = ("services", name)
    kind = workload_kind(ctx, service)
    storage = pod_storage(ctx, service)
    pod = _pod_spec(ctx, service, storage.volumes)
    pod["containers"][0]["volumeMounts"] = storage.mounts
    if not storage.mounts:
        del pod["containers"][0]["volumeMounts"]
    condition, attempts, restart_path = _restart(service)
    if kind == "Job":
        pod["restartPolicy"] = "Never" if condition == "no" else "OnFailure"
        if condition == "always":
            ctx.report.changed(name, restart_path, "a Job restarts a failed pod only "
                               "(OnFailure), not one that completed")
    else:
        pod["restartPolicy"] = "Always"
        explicit = service.restart is not None or restart_path[-1] == "restart_policy"
        if condition != "always" and explicit:
            ctx.report.changed(name, restart_path, f"restart '{condition}': the pods of a "
                               f"{kind} are always restarted")
    _restart_extras(ctx, service)
    pod_labels, pod_annotations = carried_labels(ctx, name, (*base, "labels"), service.labels)
    pod_annotations.update(_annotations(ctx, service))
    template: dict[str, Any] = {"metadata": {"labels": {**pod_labels, **ctx.selector(service)}},
                                "spec": pod}
    if pod_annotations:
        template["metadata"]["annotations"] = pod_annotations
    deploy_labels = (service.spec.get("deploy") or {}).get("labels") or {}
    labels, annotations = carried_labels(ctx, name, (*base, "deploy", "labels"), deploy_labels)
    meta = ctx.metadata(ctx.names[name], {**pod_labels, **labels, **ctx.selector(service)},
                        annotations)
    if kind == "Job":
        spec: dict[str, Any] = {"backoffLimit": 0 if condition == "no" else
                                (attempts if attempts is not None else 6),
                                "template": template}
        if service.replicas != 1:
            spec["completions"] = spec["parallelism"] = service.replicas
        api = "batch/v1"
    elif kind == "DaemonSet":
        spec = {"selector": {"matchLabels": ctx.selector(service)}, "template": template}
        api = "apps/v1"
    else:
        spec = {"replicas": service.replicas,
                "selector": {"matchLabels": ctx.selector(service)}}
        if storage.exclusive_claim:
            # A rolling update starts the new pod before the old one stops: on a
            # ReadWriteOnce claim it would wait for the volume forever.
            spec["strategy"] = {"type": "Recreate"}
        spec["template"] = template
        api = "apps/v1"
    _dependencies(ctx, service)
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _restart_extras(ctx: Context, service: Service) -> None:
    policy = (service.spec.get("deploy") or {}).get("restart_policy") or {}
    for key in ("delay", "window"):
        if policy.get(key) is not None:
            ctx.report.dropped(service.name, ("services", service.name, "deploy",
                                              "restart_policy", key),
                               f"'{key}': the kubelet backs off restarts by itself")
    if policy.get("max_attempts") is not None and workload_kind(ctx, service) != "Job":
        ctx.report.dropped(service.name, ("services", service.name, "deploy",
                                          "restart_policy", "max_attempts"),
                           "a Deployment's pods restart without limit")


def _annotations(ctx: Context, service: Service) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (service.spec.get("annotations") or {}).items():
        if is_qualified_name(str(key)):
            out[str(key)] = "" if value is None else str(value)
        else:
            ctx.report.dropped(service.name, ("services", service.name, "annotations", key),
                               f"'{key}' is not a valid Kubernetes annotation key")
    return out


def _dependencies(ctx: Context, service: Service) -> None:
    for dep, condition in service.depends_on.items():
        path = ("services", service.name, "depends_on", dep)
        what = {"service_healthy": "healthy", "service_completed_successfully":
                "completed"}.get(condition.condition, "started")
        hint = "make the service retry until it is reachable, or add an initContainer " \
               "that waits for it"
        if condition.condition == "service_completed_successfully":
            hint = f"apply and wait for the Job first: kubectl wait --for=condition=complete " \
                   f"job/{ctx.names.get(dep, dep)}"
        ctx.report.dropped(service.name, path, f"start-up order (wait for {dep} to be "
                           f"{what}): Kubernetes starts every pod at once", hint=hint)


def unreachable(ctx: Context) -> None:
    """Services others depend on that get no Service: their name resolves to nothing."""
    for name, service in sorted(ctx.project.services.items()):
        dependents = sorted(o.name for o in ctx.project.services.values()
                            if name in o.depends_on)
        if dependents and not port_entries(ctx, service) and \
                workload_kind(ctx, service) != "Job":
            ctx.report.changed(name, ("services", name),
                               f"no ports nor expose: no Service, so {', '.join(dependents)} "
                               f"cannot reach it as '{ctx.names[name]}'",
                               hint="list the ports it listens on under 'expose'")


def _pod_spec(ctx: Context, service: Service, volumes: list[dict[str, Any]]
              ) -> dict[str, Any]:
    spec, name = service.spec, service.name
    base = ("services", name)
    pod: dict[str, Any] = {"containers": [container(ctx, service)],
                           # Compose's networks inject no variables; Kubernetes' service links
                           # would (WEB_PORT=tcp://...), clashing with the application's own.
                           "enableServiceLinks": False}
    if volumes:
        pod["volumes"] = volumes
    grace = duration_seconds(spec.get("stop_grace_period"))
    if grace is not None:
        pod["terminationGracePeriodSeconds"] = whole_seconds(grace, minimum=0)
    hostname = spec.get("hostname")
    if hostname:
        if is_dns_label(str(hostname)):
            pod["hostname"] = str(hostname)
        else:
            ctx.report.dropped(name, (*base, "hostname"), f"'{hostname}' is not a DNS label")
    aliases = _host_aliases(ctx, service)
    if aliases:
        pod["hostAliases"] = aliases
    dns = _dns(spec)
    if dns:
        pod["dnsConfig"] = dns
    security = _pod_security(ctx, service)
    if security:
        pod["securityContext"] = security
    selector = _node_selector(ctx, service)
    if selector:
        pod["nodeSelector"] = selector
    for key, field in (("ipc", "hostIPC"), ("pid", "hostPID")):
        value = spec.get(key)
        if value == "host":
            pod[field] = True
            ctx.report.changed(name, (*base, key), f"the node's {key} namespace ({field})")
        elif value and value not in ("private", "shareable"):
            ctx.report.dropped(name, (*base, key), f"'{value}': pods share {key} namespaces "
                               "only between their own containers")
    mode = service.network_mode
    if mode and mode not in ("bridge", "default"):
        hint = None
        if mode.startswith(("service:", "container:")):
            hint = "run the two as containers of one pod (they share its network) by hand"
        elif mode == "host":
            hint = "spec.hostNetwork: true puts a pod on its node's network, written by hand"
        ctx.report.dropped(name, (*base, "network_mode"), f"network_mode '{mode}': every pod "
                           "gets its own address on the cluster network", hint=hint)
    return pod


def _host_aliases(ctx: Context, service: Service) -> list[dict[str, Any]]:
    by_ip: dict[str, list[str]] = {}
    for index, entry in enumerate(service.spec.get("extra_hosts") or ()):
        text = str(entry)
        host, sep, ip = text.partition("=")
        if not sep:
            host, _, ip = text.partition(":")
        ip = ip.strip("[]")
        if ip == "host-gateway" or not ip:
            ctx.report.dropped(service.name, ("services", service.name, "extra_hosts", index),
                               f"'{text}': a pod has no Docker host gateway")
            continue
        by_ip.setdefault(ip, []).append(host)
    return [{"ip": ip, "hostnames": hosts} for ip, hosts in by_ip.items()]


def _dns(spec: Any) -> dict[str, Any]:
    def words(value: Any) -> list[str]:
        if value is None:
            return []
        return [str(value)] if isinstance(value, str) else [str(v) for v in value]

    out: dict[str, Any] = {}
    if words(spec.get("dns")):
        out["nameservers"] = words(spec.get("dns"))
    if words(spec.get("dns_search")):
        out["searches"] = words(spec.get("dns_search"))
    options = []
    for option in words(spec.get("dns_opt")):
        key, sep, value = option.partition(":")
        options.append({"name": key, **({"value": value} if sep else {})})
    if options:
        out["options"] = options
    return out


def _pod_security(ctx: Context, service: Service) -> dict[str, Any]:
    spec, name = service.spec, service.name
    out: dict[str, Any] = {}
    groups = []
    for index, group in enumerate(spec.get("group_add") or ()):
        if str(group).isdigit():
            groups.append(int(group))
        else:
            ctx.report.dropped(name, ("services", name, "group_add", index),
                               f"group name '{group}': Kubernetes takes numeric ids only")
    if groups:
        out["supplementalGroups"] = groups
    sysctls = spec.get("sysctls") or {}
    if isinstance(sysctls, Mapping):
        items = [{"name": str(k), "value": str(v)} for k, v in sysctls.items()]
    else:
        items = [dict(zip(("name", "value"), str(s).split("=", 1), strict=False))
                 for s in sysctls]
    if items:
        out["sysctls"] = items
        ctx.report.changed(name, ("services", name, "sysctls"), "pod sysctls: the kubelet "
                           "refuses unsafe ones unless the node allows them")
    return out


def _node_selector(ctx: Context, service: Service) -> dict[str, str]:
    spec, name = service.spec, service.name
    out: dict[str, str] = {}
    platform = spec.get("platform")
    if platform:
        parts = str(platform).split("/")
        out["kubernetes.io/os"] = parts[0]
        if len(parts) > 1:
            out["kubernetes.io/arch"] = _ARCH.get(parts[1], parts[1])
        if len(parts) > 2:
            ctx.report.dropped(name, ("services", name, "platform"), f"variant '{parts[2]}':"
                               " nodes are selected by os and architecture only")
    placement = (spec.get("deploy") or {}).get("placement") or {}
    for index, constraint in enumerate(placement.get("constraints") or ()):
        path = ("services", name, "deploy", "placement", "constraints", index)
        match = re.fullmatch(r"\s*([\w.\-/]+)\s*==\s*(\S+)\s*", str(constraint))
        key = match and {"node.hostname": "kubernetes.io/hostname",
                         "node.platform.os": "kubernetes.io/os",
                         "node.platform.arch": "kubernetes.io/arch"}.get(match.group(1))
        if match and not key and match.group(1).startswith("node.labels."):
            key = match.group(1).removeprefix("node.labels.")
        if match and key and is_qualified_name(key):
            value = match.group(2)
            out[key] = _ARCH.get(value, value) if key == "kubernetes.io/arch" else value
        else:
            ctx.report.dropped(name, path, f"placement constraint '{constraint}': only "
                               "'node.labels.KEY==VALUE' (and hostname, os, arch) become a "
                               "node selector")
    for key in ("preferences", "max_replicas_per_node"):
        if placement.get(key):
            ctx.report.dropped(name, ("services", name, "deploy", "placement", key),
                               "write pod affinity or topology spread constraints by hand")
    return out
