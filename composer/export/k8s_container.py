"""A service's container: image, command, environment, ports, resources, probes, security."""

from __future__ import annotations

import re
from typing import Any

from composer.export.k8s_context import Context
from composer.export.k8s_values import (
    cpu_quantity,
    duration_seconds,
    escape_dollars,
    is_port_name,
    memory_quantity,
    whole_seconds,
)
from composer.manifest.model import Service, built_image_name

_PULL_POLICIES = {"always": "Always", "never": "Never", "missing": "IfNotPresent",
                  "if_not_present": "IfNotPresent"}
#: Docker's health check defaults, made explicit: Kubernetes' own are not the same.
_HEALTH_DEFAULTS = {"interval": 30.0, "timeout": 30.0, "retries": 3, "start_period": 0.0}


def image_of(ctx: Context, service: Service) -> str:
    """The image a pod runs: the service's, or the one composer builds (under --registry)."""
    if service.image:
        return service.image
    name = built_image_name(ctx.project.name, service.name)
    if ctx.options.registry:
        return f"{ctx.options.registry.rstrip('/')}/{name}"
    return name


def container(ctx: Context, service: Service) -> dict[str, Any]:
    name, spec = service.name, service.spec
    base = ("services", name)
    out: dict[str, Any] = {"name": ctx.names[name], "image": _image(ctx, service)}
    policy = _pull_policy(ctx, service)
    if policy:
        out["imagePullPolicy"] = policy
    if service.entrypoint is not None:
        if service.entrypoint:
            out["command"] = [escape_dollars(w) for w in service.entrypoint]
        else:
            ctx.report.changed(name, (*base, "entrypoint"), "an empty entrypoint (none at "
                               "all) cannot be said in Kubernetes: the image's entrypoint runs")
    if service.command is not None:
        if service.command:
            out["args"] = [escape_dollars(w) for w in service.command]
        elif service.entrypoint is None:
            ctx.report.changed(name, (*base, "command"), "an empty command: the image's "
                               "command runs")
    env = _environment(ctx, service)
    if env:
        out["env"] = env
    if spec.get("working_dir"):
        out["workingDir"] = str(spec["working_dir"])
    ports = container_ports(ctx, service)
    if ports:
        out["ports"] = ports
    resources = _resources(ctx, service)
    if resources:
        out["resources"] = resources
    probe = _probe(ctx, service)
    if probe:
        out["livenessProbe"] = probe
        out["readinessProbe"] = dict(probe)
    lifecycle = _lifecycle(ctx, service)
    if lifecycle:
        out["lifecycle"] = lifecycle
    security = _security(ctx, service)
    if security:
        out["securityContext"] = security
    if spec.get("tty"):
        out["tty"] = True
    if spec.get("stdin_open"):
        out["stdin"] = True
    return out


def _image(ctx: Context, service: Service) -> str:
    name = service.name
    image = image_of(ctx, service)
    built = service.spec.get("build") is not None
    if built and not service.image and not ctx.options.registry:
        ctx.report.dropped(
            name, ("services", name, "build"),
            f"a build section without an image name: the cluster cannot pull '{image}', "
            "which only composer's image store has",
            hint="give --registry HOST/PREFIX (then build and push the image there), or "
            "load the image into the cluster's nodes")
    elif built and not service.image:
        ctx.report.changed(
            name, ("services", name, "build"),
            f"built here: the pods run '{image}'",
            hint=f"push it first: composer build {name} && composer image tag "
            f"{built_image_name(ctx.project.name, name)} {image} && composer image push "
            f"{image} (or set 'image: {image}' so that 'composer push' pushes it)")
    elif built:
        ctx.report.changed(name, ("services", name, "build"),
                           f"built here: the pods run '{image}', which must be pushed first",
                           hint=f"composer build {name} && composer push {name}")
    return image


def _pull_policy(ctx: Context, service: Service) -> str | None:
    value = service.spec.get("pull_policy")
    if service.spec.get("build") is not None and not service.image and \
            not ctx.options.registry:
        return "IfNotPresent"  # a name only present where it was loaded by hand
    if value is None:
        return None
    text = str(value)
    if text in _PULL_POLICIES:
        return _PULL_POLICIES[text]
    path = ("services", service.name, "pull_policy")
    if text == "build":
        ctx.report.changed(service.name, path, "'build': the cluster never builds; it pulls "
                           "the image when it is missing (IfNotPresent)")
        return "IfNotPresent"
    ctx.report.changed(service.name, path, f"'{text}': Kubernetes has no pull schedule; the "
                       "image is pulled at every pod start (Always)")
    return "Always"


def _environment(ctx: Context, service: Service) -> list[dict[str, str]]:
    out = []
    for key, value in sorted(service.environment.items()):
        if value is None:
            ctx.report.dropped(service.name, ("services", service.name, "environment", key),
                               f"'{key}' has no value here (Compose would take it from the "
                               "shell at 'up')", hint="set it, or give it a value in the file")
            continue
        out.append({"name": key, "value": escape_dollars(str(value))})
    return out


def port_entries(ctx: Context, service: Service) -> list[tuple[int, str]]:
    """(container port, protocol) of ``ports``, ``expose`` and, for an image built here, its
    Dockerfile's ``EXPOSE``: each once, in that order."""
    seen: list[tuple[int, str]] = []
    for port in service.ports:
        item = (port.target, port.protocol.lower())
        if item not in seen:
            seen.append(item)
    for entry in service.spec.get("expose") or ():
        text, _, proto = str(entry).partition("/")
        first, _, last = text.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            continue
        for number in range(low, min(high, low + 99) + 1):
            item = (number, (proto or "tcp").lower())
            if item not in seen:
                seen.append(item)
    exposed = [p for p in ctx.image_hints(service).ports if p not in seen]
    if exposed:
        words = " ".join(f"{n}/{p}" for n, p in exposed)
        ctx.report.changed(service.name, ("services", service.name, "build"),
                           f"ports {words} from the Dockerfile's EXPOSE: the pod and its "
                           "Service list them")
        seen.extend(exposed)
    return seen


def port_name(number: int, protocol: str) -> str:
    return f"{protocol}-{number}"


def container_ports(ctx: Context, service: Service) -> list[dict[str, Any]]:
    out = []
    for number, protocol in port_entries(ctx, service):
        entry: dict[str, Any] = {"containerPort": number, "protocol": protocol.upper()}
        name = port_name(number, protocol)
        if is_port_name(name):
            entry["name"] = name
        out.append(entry)
    return out


def _resources(ctx: Context, service: Service) -> dict[str, Any]:
    spec = service.spec
    name = service.name
    resources = (spec.get("deploy") or {}).get("resources") or {}
    path = ("services", name, "deploy", "resources")
    out: dict[str, Any] = {}
    for side, target, legacy in (("limits", "limits", {"cpus": "cpus", "memory": "mem_limit"}),
                                 ("reservations", "requests",
                                  {"memory": "mem_reservation"})):
        section = resources.get(side) or {}
        values: dict[str, str] = {}
        for key, kind in (("cpus", "cpu"), ("memory", "memory")):
            raw = section.get(key)
            if raw is None and key in legacy:
                raw = spec.get(legacy[key])
            if raw is None:
                continue
            quantity = cpu_quantity(raw) if kind == "cpu" else memory_quantity(raw)
            if quantity:
                values[kind] = quantity
        if values:
            out[target] = values
        if section.get("pids"):
            ctx.report.dropped(name, (*path, side, "pids"), "a pod has no per-container "
                               "process limit (the kubelet's podPidsLimit is node-wide)")
        for extra in ("devices", "generic_resources"):
            if section.get(extra):
                ctx.report.dropped(name, (*path, side, extra),
                                   f"'{extra}': request devices through the cluster's device "
                                   "plugin resources (nvidia.com/gpu, ...) by hand")
    return out


def _probe(ctx: Context, service: Service) -> dict[str, Any] | None:
    check: Any = service.healthcheck
    name = service.name
    path: tuple[str, ...] = ("services", name, "healthcheck")
    if not check:
        check = ctx.image_hints(service).healthcheck
        if not check:
            return None
        path = ("services", name, "build")
        ctx.report.changed(name, path, "the Dockerfile's HEALTHCHECK becomes the probes "
                           "(Kubernetes ignores an image's own health check)")
    elif not check.get("test") and not check.get("disable"):
        check = {**(ctx.image_hints(service).healthcheck or {}), **check}
    test = [str(w) for w in check.get("test") or ()]
    if check.get("disable") or not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        command = test[1:]
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        command = ["/bin/sh", "-c", " ".join(test)]
    if not command:
        return None
    probe: dict[str, Any] = {"exec": {"command": command}}
    values: dict[str, float] = {}
    for key, default in _HEALTH_DEFAULTS.items():
        raw = check.get(key)
        seconds = float(raw) if key == "retries" and raw is not None else \
            duration_seconds(raw)
        values[key] = default if seconds is None else seconds
        if seconds is not None and key != "retries" and seconds != int(seconds) and \
                (key != "start_period" or seconds > 0):
            ctx.report.changed(name, (*path, key), f"{raw} rounded up to "
                               f"{whole_seconds(seconds)}s: probes count whole seconds")
    probe["periodSeconds"] = whole_seconds(values["interval"])
    probe["timeoutSeconds"] = whole_seconds(values["timeout"])
    probe["failureThreshold"] = max(1, int(values["retries"]))
    if values["start_period"] > 0:
        probe["initialDelaySeconds"] = whole_seconds(values["start_period"])
    if check.get("start_interval") is not None:
        ctx.report.dropped(name, (*path, "start_interval"), "probes have one period; the "
                           "start period is an initial delay instead")
    ctx.report.changed(name, path, "a liveness and a readiness probe: an unhealthy pod is "
                       "restarted and taken out of its Service, where Docker only marks it")
    return probe


def _lifecycle(ctx: Context, service: Service) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, hook in (("post_start", "postStart"), ("pre_stop", "preStop")):
        hooks = service.spec.get(key) or ()
        for index, item in enumerate(hooks):
            path = ("services", service.name, key, index)
            if index > 0:
                ctx.report.dropped(service.name, path, f"a container has one {hook} hook: "
                                   "only the first is kept")
                continue
            words = item.get("command")
            command = [str(words)] if isinstance(words, str) else [str(w) for w in words or ()]
            out[hook] = {"exec": {"command": [escape_dollars(w) for w in command]}}
            extra = [k for k in ("user", "privileged", "working_dir", "environment")
                     if item.get(k)]
            if extra:
                ctx.report.dropped(service.name, path, f"{', '.join(extra)} of the hook: a "
                                   "hook runs as the container does")
    return out


def _security(ctx: Context, service: Service) -> dict[str, Any]:
    spec, name = service.spec, service.name
    base = ("services", name)
    out: dict[str, Any] = {}
    user = spec.get("user")
    if user:
        uid, _, gid = str(user).partition(":")
        if uid.isdigit():
            out["runAsUser"] = int(uid)
        else:
            ctx.report.dropped(name, (*base, "user"), f"user name '{uid}': Kubernetes takes "
                               "numeric ids only", hint="use the numeric uid (and gid)")
        if gid.isdigit():
            out["runAsGroup"] = int(gid)
        elif gid:
            ctx.report.dropped(name, (*base, "user"), f"group name '{gid}': Kubernetes takes "
                               "numeric ids only")
    if spec.get("privileged"):
        out["privileged"] = True
        ctx.report.changed(name, (*base, "privileged"), "privileged: true in the security "
                           "context; clusters that enforce Pod Security standards refuse it")
    caps: dict[str, list[str]] = {}
    for key, side in (("cap_add", "add"), ("cap_drop", "drop")):
        values = [re.sub(r"^CAP_", "", str(c).upper()) for c in spec.get(key) or ()]
        if values:
            caps[side] = values
    if caps:
        out["capabilities"] = caps
        if caps.get("add"):
            ctx.report.changed(name, (*base, "cap_add"), "capabilities added in the security "
                               "context; restricted Pod Security refuses most of them")
    if spec.get("read_only"):
        out["readOnlyRootFilesystem"] = True
    for index, option in enumerate(spec.get("security_opt") or ()):
        text = str(option)
        if text in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            out["allowPrivilegeEscalation"] = False
        elif text in ("seccomp:unconfined", "seccomp=unconfined"):
            out["seccompProfile"] = {"type": "Unconfined"}
        elif text in ("apparmor:unconfined", "apparmor=unconfined"):
            out["appArmorProfile"] = {"type": "Unconfined"}
        else:
            ctx.report.dropped(name, (*base, "security_opt", index),
                               f"'{text}' has no security context equivalent here")
    return out

