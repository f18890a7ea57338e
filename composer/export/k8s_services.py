"""Services: one per compose service that exposes or publishes ports.

The Service keeps the container ports, so that ``http://api:8000`` keeps working inside the
cluster as it did on the compose network. Published ports are the host's: a ClusterIP Service
has no host, so they are reported (``kubectl port-forward`` reaches them); a NodePort or
LoadBalancer Service adds them as ports of their own (the published number, to the target).
"""

from __future__ import annotations

from typing import Any

from composer.export.k8s_container import port_entries, port_name
from composer.export.k8s_context import SERVICE_TYPE_LABEL, SERVICE_TYPES, Context
from composer.export.k8s_storage import carried_labels
from composer.manifest.model import Service

_NODE_PORTS = range(30000, 32768)


def service_type(ctx: Context, service: Service) -> str:
    """The option's type, or the one the service's ``composer.kubernetes/service-type``
    label names."""
    wanted = service.labels.get(SERVICE_TYPE_LABEL)
    if wanted is None:
        return ctx.options.service_type
    for known in SERVICE_TYPES:
        if known.lower() == wanted.lower():
            return known
    ctx.report.dropped(service.name, ("services", service.name, "labels", SERVICE_TYPE_LABEL),
                       f"'{wanted}' is not one of {', '.join(SERVICE_TYPES)}: "
                       f"{ctx.options.service_type} is used")
    return ctx.options.service_type


def service_object(ctx: Context, service: Service) -> dict[str, Any] | None:
    name = service.name
    base = ("services", name)
    entries = port_entries(ctx, service)
    if not entries:
        return None
    kind = service_type(ctx, service)
    ports: list[dict[str, Any]] = []
    taken: set[tuple[int, str]] = set()
    for number, protocol in entries:
        ports.append({"name": port_name(number, protocol), "port": number,
                      "targetPort": number, "protocol": protocol.upper()})
        taken.add((number, protocol))
    node_ports: set[int] = set()
    for index, port in enumerate(service.ports):
        path = (*base, "ports", index)
        protocol = port.protocol.lower()
        if port.host_ip and port.host_ip not in ("0.0.0.0", "::"):
            ctx.report.dropped(name, (*path, "host_ip"), f"host address {port.host_ip}: a "
                               "Service listens on every address of its cluster IP or nodes")
        if not port.published:
            continue
        published = _single(port.published)
        if kind == "ClusterIP" or published is None:
            how = f"outside it: kubectl port-forward svc/{ctx.names[name]} " \
                  f"{port.published.split('-')[0]}:{port.target}"
            ctx.report.changed(name, path, f"published on the host as {port.published}: in "
                               f"the cluster it is {ctx.names[name]}:{port.target}; {how}",
                               hint="--service-type NodePort or LoadBalancer (or the label "
                               f"{SERVICE_TYPE_LABEL}) publishes it")
            continue
        entry = next(p for p in ports if p["port"] == port.target and
                     p["protocol"] == protocol.upper())
        if published != port.target:
            if (published, protocol) in taken:
                ctx.report.dropped(name, path, f"published port {published}/{protocol} is "
                                   "also a container port of the service: it is not added twice")
                continue
            entry = {"name": port_name(published, protocol), "port": published,
                     "targetPort": port.target, "protocol": protocol.upper()}
            ports.append(entry)
            taken.add((published, protocol))
        if kind == "NodePort":
            if published in _NODE_PORTS and published not in node_ports:
                entry["nodePort"] = published
                node_ports.add(published)
            else:
                ctx.report.changed(name, path, f"published port {published} is outside the "
                                   "node port range 30000-32767: the cluster picks the node "
                                   f"port (kubectl get svc {ctx.names[name]})")
    spec: dict[str, Any] = {"type": kind, "selector": ctx.selector(service), "ports": ports}
    endpoint_mode = (service.spec.get("deploy") or {}).get("endpoint_mode")
    if endpoint_mode == "dnsrr":
        if kind == "ClusterIP":
            spec["clusterIP"] = "None"
        else:
            ctx.report.dropped(name, (*base, "deploy", "endpoint_mode"),
                               f"a headless Service (dnsrr) cannot be a {kind} one")
    deploy_labels = (service.spec.get("deploy") or {}).get("labels") or {}
    labels, annotations = carried_labels(ctx, name, (*base, "deploy", "labels"), deploy_labels)
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": ctx.metadata(ctx.names[name], {**labels, **ctx.selector(service)},
                                     annotations),
            "spec": spec}


def _single(published: str) -> int | None:
    try:
        return int(published)
    except ValueError:
        return None
