"""Phase 5: every short syntax of one compose file rewritten in the long form Compose prints.

Runs per file, before merging, so that two files merge entry by entry (a port written
``"80:80"`` in one file and as a mapping in the other is the same port). Places are kept:
a rewritten node is built with ``ymap``/``yseq(like=old)``. What Compose does with odd input
was checked against Docker Compose v2.40.3 (``config --format json``); the surprises are
noted where they are handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from composer.errors import ManifestError, ManifestWarning
from composer.manifest.shortsyntax import (
    bare_ip,
    clean_target,
    format_duration,
    go_float,
    parse_bytes,
    parse_device,
    parse_duration,
    parse_extra_host,
    parse_port,
    parse_volume,
    shell_split,
    volume_notes,
)
from composer.manifest.tree import Path, YMap, YSeq, dotted, locate, ymap, yseq

Warn = Callable[[ManifestWarning], None]

_RESOURCES = ("networks", "volumes", "secrets", "configs")
_DURATIONS = ("interval", "timeout", "start_period", "start_interval")
_HOOKS = ("post_start", "pre_stop", "pre_start")
_PULL_ALIASES = {"if_not_present": "missing"}


class _Ctx:
    """The file's root, for placing errors, the warning sink, and whether the file is raw.

    A raw file was not interpolated (``config --no-interpolate``). Compose then rewrites only
    the structural short forms (ports, volumes, depends_on, env_file, ...) and leaves values
    as written: command strings, ``KEY=VALUE`` lists, extra hosts, durations and sizes.
    """

    def __init__(self, root: YMap, warn: Warn, raw: bool = False) -> None:
        self.root = root
        self.warn = warn
        self.raw = raw

    def error(self, path: Path, message: str, hint: str | None = None) -> ManifestError:
        return ManifestError(message, loc=locate(self.root, path), path=dotted(path), hint=hint)


def canonicalize(root: YMap, *, warn: Warn, raw: bool = False) -> None:
    """Rewrite every short syntax under ``root`` (one parsed compose file) in place."""
    ctx = _Ctx(root, warn, raw)
    for kind in _RESOURCES:
        resources = root.get(kind)
        if isinstance(resources, dict):
            for name, spec in resources.items():
                if isinstance(spec, dict):
                    _resource(ctx, spec, (kind, name))
    services = root.get("services")
    if isinstance(services, dict):
        for name, service in services.items():
            if isinstance(service, dict):
                _service(ctx, service, ("services", name))


def _resource(ctx: _Ctx, spec: dict[str, Any], path: Path) -> None:
    external = spec.get("external")
    if isinstance(external, dict):
        # The old ``external: {name: x}`` form: Compose warns and rewrites it.
        if "name" in external:
            ctx.warn(ManifestWarning(
                "external.name is deprecated. Please set name and external: true",
                loc=locate(ctx.root, (*path, "external")), path=dotted(path)))
            spec["name"] = external["name"]
        spec["external"] = True
    for key in ("labels", "driver_opts"):
        if key in spec:
            spec[key] = _mapping(ctx, spec[key], (*path, key), empty="")
    ipam = spec.get("ipam")
    if isinstance(ipam, dict) and isinstance(ipam.get("options"), dict):
        ipam["options"] = _mapping(ctx, ipam["options"], (*path, "ipam", "options"), empty="")


def _service(ctx: _Ctx, svc: dict[str, Any], path: Path) -> None:
    """One service's short syntaxes."""
    if isinstance(svc.get("build"), str):
        svc["build"] = ymap([("context", svc["build"])], like=svc)
    if isinstance(svc.get("build"), dict):
        _build(ctx, svc["build"], (*path, "build"))
    if isinstance(svc.get("extends"), str):
        svc["extends"] = ymap([("service", svc["extends"])], like=svc)
    for key in ("command", "entrypoint"):
        if isinstance(svc.get(key), str) and not ctx.raw:
            svc[key] = _as_seq(_split_command(ctx, svc[key], (*path, key)), svc, key)
    if "ports" in svc and isinstance(svc["ports"], list):
        svc["ports"] = _ports(ctx, svc["ports"], (*path, "ports"))
    if isinstance(svc.get("expose"), list) and not ctx.raw:
        svc["expose"] = yseq([_scalar_text(v) for v in svc["expose"]], like=svc["expose"])
    if isinstance(svc.get("volumes"), list):
        svc["volumes"] = _volumes(ctx, svc["volumes"], (*path, "volumes"))
    if isinstance(svc.get("depends_on"), list):
        deps = svc["depends_on"]
        svc["depends_on"] = ymap(
            [(str(d), ymap([("condition", "service_started"), ("required", True)], like=deps))
             for d in deps], like=deps)
    if "environment" in svc:
        svc["environment"] = _mapping(ctx, svc["environment"], (*path, "environment"),
                                      empty=None, strict_keys=True)
    for key in ("labels", "annotations", "sysctls", "storage_opt"):
        if key in svc:
            svc[key] = _mapping(ctx, svc[key], (*path, key), empty="")
    if "extra_hosts" in svc:
        svc["extra_hosts"] = _extra_hosts(ctx, svc["extra_hosts"], (*path, "extra_hosts"))
    for key in ("secrets", "configs"):
        if isinstance(svc.get(key), list):
            svc[key] = _file_refs(svc[key])
    if isinstance(svc.get("networks"), list):
        nets = svc["networks"]
        svc["networks"] = ymap([(str(n), None) for n in nets], like=nets)
    elif isinstance(svc.get("networks"), dict):
        for net_name, net in svc["networks"].items():
            if isinstance(net, dict) and "driver_opts" in net:
                net["driver_opts"] = _mapping(ctx, net["driver_opts"],
                                              (*path, "networks", net_name, "driver_opts"),
                                              empty="")
    if svc.get("gpus") == "all":
        svc["gpus"] = _as_seq([ymap([("count", -1)])], svc, "gpus")
    for request in _device_requests(svc):
        if request.get("count") == "all":
            request["count"] = -1
    if isinstance(svc.get("blkio_config"), dict):
        _blkio(ctx, svc["blkio_config"], (*path, "blkio_config"))
    for key in ("dns", "dns_search", "dns_opt", "tmpfs", "label_file", "env_file"):
        if isinstance(svc.get(key), str):
            svc[key] = _as_seq([svc[key]], svc, key)
    if isinstance(svc.get("env_file"), list):
        svc["env_file"] = _env_files(svc["env_file"])
    if isinstance(svc.get("healthcheck"), dict):
        _healthcheck(ctx, svc["healthcheck"], (*path, "healthcheck"))
    for key in ("stop_grace_period",):
        if key in svc:
            svc[key] = duration(ctx, svc[key], (*path, key))
    # mem_swappiness is no size, but Compose's model types it as one and prints a string.
    for key in ("shm_size", "mem_limit", "mem_reservation", "memswap_limit", "mem_swappiness"):
        if key in svc:
            svc[key] = byte_size(ctx, svc[key], (*path, key))
    if isinstance(svc.get("ulimits"), dict):
        _ulimits(svc["ulimits"])
    if isinstance(svc.get("devices"), list):
        svc["devices"] = _devices(ctx, svc["devices"], (*path, "devices"))
    if isinstance(svc.get("group_add"), list):
        svc["group_add"] = yseq([_scalar_text(g) for g in svc["group_add"]], like=svc["group_add"])
    if isinstance(svc.get("pull_policy"), str):
        svc["pull_policy"] = _PULL_ALIASES.get(svc["pull_policy"], svc["pull_policy"])
    if isinstance(svc.get("deploy"), dict):
        _deploy(ctx, svc["deploy"], (*path, "deploy"))
    for key in ("cpus",):
        if isinstance(svc.get(key), str):
            svc[key] = _number(ctx, svc[key], (*path, key))
    for hook_key in _HOOKS:
        hooks = svc.get(hook_key)
        if isinstance(hooks, list):
            for i, hook in enumerate(hooks):
                if isinstance(hook, dict):
                    _hook(ctx, hook, (*path, hook_key, i))
    develop = svc.get("develop")
    if isinstance(develop, dict) and isinstance(develop.get("watch"), list):
        for i, rule in enumerate(develop["watch"]):
            if not isinstance(rule, dict):
                continue
            if isinstance(rule.get("exec"), dict):
                _hook(ctx, rule["exec"], (*path, "develop", "watch", i, "exec"))
            for key in ("include", "ignore"):
                if isinstance(rule.get(key), str):
                    rule[key] = _as_seq([rule[key]], rule, key)
    if isinstance(svc.get("models"), list):
        models = svc["models"]
        svc["models"] = ymap([(str(m), None) for m in models], like=models)
    provider = svc.get("provider")
    if isinstance(provider, dict) and isinstance(provider.get("options"), dict) and not ctx.raw:
        # Provider options are lists of strings in Compose's model.
        options = provider["options"]
        for key, value in options.items():
            values = value if isinstance(value, list) else [value]
            options[key] = _as_seq([_scalar_text(v) for v in values], options, key)
    logging = svc.get("logging")
    if isinstance(logging, dict) and "options" in logging:
        logging["options"] = _mapping(ctx, logging["options"], (*path, "logging", "options"),
                                      empty="")


def _as_seq(items: list[Any], parent: Any, key: str | None = None) -> YSeq:
    """A new sequence standing where ``parent[key]`` was written (or where ``parent`` is)."""
    loc = parent.loc_of(key) if key is not None and isinstance(parent, YMap) else \
        getattr(parent, "loc", None)
    return YSeq(items, loc=loc, item_locs=[loc] * len(items))


def _scalar_text(value: Any) -> Any:
    """A scalar as the string Go's fmt prints; containers and None are left alone."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return value


def _mapping(ctx: _Ctx, node: Any, path: Path, *, empty: str | None,
             strict_keys: bool = False) -> Any:
    """A ``KEY=VALUE`` list or a mapping as a mapping of strings (``empty`` for ``KEY``)."""
    if ctx.raw:
        return node
    if isinstance(node, list):
        out = ymap(like=node)
        for i, item in enumerate(node):
            text = _scalar_text(item)
            if not isinstance(text, str):
                raise ctx.error((*path, i), "must be a string like KEY=VALUE",
                                hint="write each entry as KEY=VALUE")
            key, sep, value = text.partition("=")
            if strict_keys and key != key.rstrip():
                raise ctx.error((*path, i),
                                f"environment variable {key} is declared with a trailing space",
                                hint="remove the space before '='")
            out[key] = value if sep else empty
            loc = node.loc_of(i) if isinstance(node, YSeq) else None
            if loc is not None:
                out.key_locs[key] = loc
        return out
    if isinstance(node, dict):
        for key, value in node.items():
            node[key] = empty if value is None else _scalar_text(value)
    return node


def _extra_hosts(ctx: _Ctx, node: Any, path: Path) -> Any:
    """``host:ip``, ``host=ip`` or a mapping -> ``host=ip`` strings (Compose prints them so)."""
    if ctx.raw:
        return node
    if isinstance(node, dict):
        items = [f"{host}={bare_ip(str(_scalar_text(ip)))}" for host, value in node.items()
                 for ip in (value if isinstance(value, list) else [value])]
        return _as_seq(items, node)
    if isinstance(node, list):
        out = []
        for i, item in enumerate(node):
            try:
                out.append(parse_extra_host(str(_scalar_text(item))))
            except ValueError as exc:
                raise ctx.error((*path, i), str(exc), hint="write HOST:IP or HOST=IP") from None
        return yseq(out, like=node)
    return node


def _file_refs(node: list[Any]) -> YSeq:
    return yseq([ymap([("source", item)], like=node) if isinstance(item, str) else item
                 for item in node], like=node)


def _env_files(node: list[Any]) -> YSeq:
    out = []
    for item in node:
        if isinstance(item, str):
            out.append(ymap([("path", item), ("required", True)], like=node))
        else:
            if isinstance(item, dict):
                item.setdefault("required", True)
            out.append(item)
    return yseq(out, like=node)


def _build(ctx: _Ctx, build: dict[str, Any], path: Path) -> None:
    for key in ("args",):
        if key in build:
            build[key] = _mapping(ctx, build[key], (*path, key), empty=None)
    for key in ("labels", "additional_contexts"):
        if key in build:
            build[key] = _mapping(ctx, build[key], (*path, key), empty="")
    if "extra_hosts" in build:
        build["extra_hosts"] = _extra_hosts(ctx, build["extra_hosts"], (*path, "extra_hosts"))
    if isinstance(build.get("secrets"), list):
        build["secrets"] = _file_refs(build["secrets"])
    if "shm_size" in build:
        build["shm_size"] = byte_size(ctx, build["shm_size"], (*path, "shm_size"))
    if isinstance(build.get("ulimits"), dict):
        _ulimits(build["ulimits"])
    ssh = build.get("ssh")
    if isinstance(ssh, dict):
        build["ssh"] = _as_seq([k if v is None else f"{k}={v}" for k, v in ssh.items()], ssh)
    for key in ("cache_from", "cache_to", "tags", "platforms", "ssh"):
        if isinstance(build.get(key), str):
            build[key] = _as_seq([build[key]], build, key)


_HEALTHCHECK_KINDS = ("CMD", "CMD-SHELL", "NONE")


def _healthcheck(ctx: _Ctx, check: dict[str, Any], path: Path) -> None:
    test = check.get("test")
    if isinstance(test, str) and not ctx.raw:
        check["test"] = _as_seq(["CMD-SHELL", test], check, "test")
    elif isinstance(test, list) and not test:
        del check["test"]  # an empty test means the image's own, as Compose reads it
    elif isinstance(test, list) and test[0] not in _HEALTHCHECK_KINDS:
        raise ctx.error((*path, "test", 0),
                        f"healthcheck.test must start with CMD, CMD-SHELL or NONE, "
                        f"not {test[0]!r}",
                        hint=f"write [CMD, {test[0]}, ...] to run a program, or a string "
                        "to run a shell command")
    for key in _DURATIONS:
        if key in check:
            check[key] = duration(ctx, check[key], (*path, key))


def _hook(ctx: _Ctx, hook: dict[str, Any], path: Path) -> None:
    if isinstance(hook.get("command"), str) and not ctx.raw:
        hook["command"] = _as_seq(_split_command(ctx, hook["command"], (*path, "command")),
                                  hook, "command")
    if "environment" in hook:
        hook["environment"] = _mapping(ctx, hook["environment"], (*path, "environment"),
                                       empty=None, strict_keys=True)


def _device_requests(svc: dict[str, Any]) -> list[dict[str, Any]]:
    """The GPU/device requests of ``gpus`` and of ``deploy.resources.reservations.devices``."""
    found = [g for g in svc.get("gpus") or () if isinstance(g, dict)]
    deploy = svc.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    reservations = resources.get("reservations") if isinstance(resources, dict) else None
    if isinstance(reservations, dict):
        found += [d for d in reservations.get("devices") or () if isinstance(d, dict)]
    return found


def _blkio(ctx: _Ctx, blkio: dict[str, Any], path: Path) -> None:
    for key in ("device_read_bps", "device_write_bps", "device_read_iops", "device_write_iops"):
        for i, entry in enumerate(blkio.get(key) or ()):
            if isinstance(entry, dict) and "rate" in entry:
                rate_path = (*path, key, i, "rate")
                entry["rate"] = byte_size(ctx, entry["rate"], rate_path) if key.endswith("bps") \
                    else _scalar_text(entry["rate"])


def _split_command(ctx: _Ctx, text: str, path: Path) -> list[str]:
    try:
        return shell_split(text)
    except ValueError:
        raise ctx.error(path, "invalid command line string",
                        hint="close every quote and $( ), quote other parentheses, or write "
                             "the command as a sequence of words") from None


def _ulimits(limits: dict[str, Any]) -> None:
    for name, value in limits.items():
        if isinstance(value, str) and value.lstrip("-").isdigit():
            limits[name] = int(value)
        elif isinstance(value, dict):
            for key in ("soft", "hard"):
                if isinstance(value.get(key), str) and value[key].lstrip("-").isdigit():
                    value[key] = int(value[key])


def _devices(ctx: _Ctx, node: list[Any], path: Path) -> YSeq:
    out = []
    for i, item in enumerate(node):
        if isinstance(item, str):
            try:
                item = ymap(parse_device(item).items(), like=node)
            except ValueError as exc:
                raise ctx.error((*path, i), str(exc),
                                hint="write HOST_PATH[:CONTAINER_PATH[:PERMISSIONS]] or a "
                                     "mapping with source, target and permissions") from None
        out.append(item)
    return yseq(out, like=node)


def _deploy(ctx: _Ctx, deploy: dict[str, Any], path: Path) -> None:
    resources = deploy.get("resources")
    if isinstance(resources, dict):
        for part in ("limits", "reservations"):
            spec = resources.get(part)
            if not isinstance(spec, dict):
                continue
            if "memory" in spec:
                spec["memory"] = byte_size(ctx, spec["memory"], (*path, "resources", part,
                                                                  "memory"))
            if isinstance(spec.get("cpus"), str):
                spec["cpus"] = _number(ctx, spec["cpus"], (*path, "resources", part, "cpus"))
    for part, keys in (("restart_policy", ("delay", "window")),
                       ("update_config", ("delay", "monitor")),
                       ("rollback_config", ("delay", "monitor"))):
        spec = deploy.get(part)
        if isinstance(spec, dict):
            for key in keys:
                if key in spec:
                    spec[key] = duration(ctx, spec[key], (*path, part, key))
    if "labels" in deploy:
        deploy["labels"] = _mapping(ctx, deploy["labels"], (*path, "labels"), empty="")


def _number(ctx: _Ctx, text: str, path: Path) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise ctx.error(path, f"must be a number, got '{text}'",
                        hint="write a number like 0.5") from None
    return int(value) if value == int(value) and "." not in text else value


# --- durations and byte sizes --------------------------------------------------------------

def duration(ctx: _Ctx, value: Any, path: Path) -> Any:
    """A Go duration (``90s``, ``1m30s``, a number of seconds) as Go prints it: ``1m30s``."""
    if value is None or ctx.raw:
        return value
    if isinstance(value, bool):
        raise ctx.error(path, "must be a duration like 10s or 1m30s", hint="write e.g. 30s")
    if isinstance(value, (int, float)):
        return format_duration(int(value * 1_000_000_000))
    text = str(value).strip()
    nanos = parse_duration(text)
    if nanos is None:
        raise ctx.error(path, f'invalid duration "{text}"',
                        hint="write a duration like 10s, 1m30s or 500ms "
                             "(units: ns, us, ms, s, m, h)")
    return format_duration(nanos)


def byte_size(ctx: _Ctx, value: Any, path: Path) -> Any:
    """A byte size (``64m``, ``1gb``, a number) as the decimal string Compose prints."""
    if value is None or isinstance(value, bool) or ctx.raw:
        return value
    if isinstance(value, (int, float)):
        return str(int(value))
    text = str(value).strip()
    size = parse_bytes(text)
    if size is None:
        raise ctx.error(path, f"invalid size '{text}'",
                        hint="write a size like 512m, 1g or a number of bytes "
                             "(suffixes b, k, m, g, t, p)")
    return str(size)


# --- ports ------------------------------------------------------------------------------------

def _ports(ctx: _Ctx, node: list[Any], path: Path) -> Any:
    if ctx.raw and any(isinstance(item, str) and "$" in item for item in node):
        return node  # Compose leaves a list with a variable in it as written
    out: list[Any] = []
    locs = []
    for i, item in enumerate(node):
        loc = node.loc_of(i) if isinstance(node, YSeq) else None
        if isinstance(item, dict):
            _long_port(ctx, item, (*path, i))
            out.append(item)
            locs.append(loc)
            continue
        try:
            specs = parse_port(str(_scalar_text(item)))
        except ValueError as exc:
            raise ctx.error((*path, i), str(exc),
                            hint="write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], "
                                 "e.g. 8080:80 or 127.0.0.1:53:53/udp") from None
        for spec in specs:
            if spec["target"] == 0:
                raise _no_target(ctx, (*path, i))
            entry = ymap(spec.items())
            entry.loc = loc
            out.append(entry)
            locs.append(loc)
    return yseq(out, like=node, item_locs=locs)


def _long_port(ctx: _Ctx, port: dict[str, Any], path: Path) -> None:
    # Only the types here: the defaults (mode, protocol) come after merging, as in Compose,
    # where a long-form port without a protocol does not merge with a short "80:80".
    if isinstance(port.get("published"), int) and not isinstance(port["published"], bool) \
            and not ctx.raw:
        port["published"] = str(port["published"])
    target = port.get("target")
    if isinstance(target, str):
        if not target.isdigit():
            raise ctx.error((*path, "target"), f"invalid containerPort: {target}",
                            hint="the target must be a port number")
        port["target"] = target = int(target)
    if not target:
        raise _no_target(ctx, path)


def _no_target(ctx: _Ctx, path: Path) -> ManifestError:
    return ctx.error(path, "is missing a target port",
                     hint="give the container port, e.g. 8080:80 or 'target: 80'")


# --- volumes ----------------------------------------------------------------------------------

def _volumes(ctx: _Ctx, node: list[Any], path: Path) -> YSeq:
    out: list[Any] = []
    for i, item in enumerate(node):
        if isinstance(item, str):
            for note in volume_notes(item):
                ctx.warn(ManifestWarning(note, loc=locate(ctx.root, (*path, i)),
                                         path=dotted((*path, i))))
            try:
                entry = ymap(parse_volume(item).items())
            except ValueError as exc:
                if ctx.raw and "$" in item:
                    out.append(item)  # a variable may hold what is missing: keep it as written
                    continue
                raise ctx.error((*path, i), str(exc),
                                hint="write SOURCE:TARGET[:MODE], e.g. ./data:/data:ro") from None
            entry.loc = node.loc_of(i) if isinstance(node, YSeq) else None
            out.append(entry)
        else:
            if isinstance(item, dict):
                _long_volume(ctx, item, (*path, i))
            out.append(item)
    return yseq(out, like=node)


def _long_volume(ctx: _Ctx, volume: dict[str, Any], path: Path) -> None:
    if isinstance(volume.get("target"), str):
        volume["target"] = clean_target(volume["target"])
    if isinstance(volume.get("bind"), dict) and volume["bind"].get("create_host_path") is False:
        del volume["bind"]["create_host_path"]
    tmpfs = volume.get("tmpfs")
    if isinstance(tmpfs, dict) and "size" in tmpfs:
        tmpfs["size"] = byte_size(ctx, tmpfs["size"], (*path, "tmpfs", "size"))
