"""What a compose service's container takes from the host, as ContainerSpec JSON fields (the
rest is :mod:`composer.engine.service_spec`'s): volumes and ``tmpfs`` as ``mounts``, secrets
and configs as ``files``, ``devices``, and its share of the host's resources (cgroup limits,
rlimits, sysctls, /dev/shm). Pure.

Mounts take the shape ``container run`` gives them (:mod:`composer.cli.commands.mount_flags`),
so the engine resolves a service's mounts exactly as a ``-v``/``--mount``/``--tmpfs`` one:
a named volume by its real name, an anonymous one with an empty source, ``nocopy`` and a bind
propagation as options, tmpfs size and mode as ``size=BYTES``/``mode=OCTAL``.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composer.engine.service_spec import ServiceContext

#: Reports what could not be carried over: (attribute path under the service, why).
Warn = Callable[[str, str], None]

PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")


def byte_size(value: Any) -> int | None:
    """Bytes of a Compose size (``"64m"``, ``"67108864"``, 67108864, ``"-1"``); None when
    unset or not a size."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    from composer.manifest.shortsyntax import parse_bytes

    return parse_bytes(str(value).strip())


def file_mode(value: Any) -> int | None:
    """Permission bits of a Compose mode: an int is the bits themselves (the loader already
    read ``0o440``/``0440`` as 288), a string is octal digits (how ``config`` prints them)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip().removeprefix("0o"), 8)
    except ValueError:
        return None


def resource_name(ctx: ServiceContext, kind: str, key: str) -> str:
    """The real name of a top-level network or volume (``name:``, external ones included);
    the one Compose would give when the tree lacks it."""
    entry = (ctx.tree.get(kind) or {}).get(key) or {}
    return str(entry.get("name") or f"{ctx.project}_{key}")


def _absolute(ctx: ServiceContext, path: str) -> str:
    # The loader makes host paths absolute; a hand-made tree may not have.
    return posixpath.normpath(posixpath.join(ctx.project_dir, path)) if path else path


def _mount(kind: str, target: str, *, source: str = "", read_only: bool = False,
           options: list[str] | None = None, subpath: str = "",
           create_host_path: bool = False) -> dict[str, Any]:
    return {"type": kind, "target": target, "source": source, "read_only": read_only,
            "options": options or [], "subpath": subpath, "create_host_path": create_host_path}


# -- volumes -------------------------------------------------------------------------------------


def _bind(ctx: ServiceContext, volume: Mapping[str, Any], where: str, warn: Warn) -> dict[str, Any]:
    bind = volume.get("bind")
    # Compose hands a bind without `bind:` options to Docker's Binds API, which makes a
    # missing host path; with options, to the Mount API, which makes it only when
    # create_host_path says so (the short syntax always says so).
    create = bind is None or bool(bind.get("create_host_path", False))
    bind = bind or {}
    options: list[str] = []
    propagation = bind.get("propagation")
    if propagation:
        if propagation in PROPAGATIONS:
            options.append(str(propagation))
        else:
            warn(f"{where}.bind.propagation", f"{propagation!r} is not a propagation "
                 f"({', '.join(PROPAGATIONS)}): the default (rprivate) is used")
    selinux = bind.get("selinux")
    if selinux in ("z", "Z"):
        options.append(str(selinux))  # as `-v ...:z` gives it; the bundle knows what it means
    elif selinux:
        warn(f"{where}.bind.selinux", f"{selinux!r} is neither z nor Z: not relabelled")
    recursive = bind.get("recursive")
    if recursive == "disabled":
        options.append("bind")  # what `--mount bind-nonrecursive` gives: a plain MS_BIND
    elif recursive not in (None, "enabled"):
        warn(f"{where}.bind.recursive", f"{recursive!r} is not supported by composer "
             "(enabled or disabled): the bind is recursive and as writable as read_only says")
    return _mount("bind", str(volume["target"]),
                  source=_absolute(ctx, str(volume.get("source") or "")),
                  read_only=bool(volume.get("read_only")), options=options,
                  create_host_path=create)


def _volume(ctx: ServiceContext, volume: Mapping[str, Any], where: str,
            warn: Warn) -> dict[str, Any]:
    settings = volume.get("volume") or {}
    source = str(volume.get("source") or "")
    if settings.get("labels"):
        warn(f"{where}.volume.labels", "labels of a volume made for one mount are not set")
    # No source: an anonymous volume, as `container run -v /path` asks for one.
    return _mount("volume", str(volume["target"]),
                  source=resource_name(ctx, "volumes", source) if source else "",
                  read_only=bool(volume.get("read_only")),
                  options=["nocopy"] if settings.get("nocopy") else [],
                  subpath=str(settings.get("subpath") or ""))


def _tmpfs(ctx: ServiceContext, volume: Mapping[str, Any], where: str,
           warn: Warn) -> dict[str, Any]:
    settings = volume.get("tmpfs") or {}
    options: list[str] = []
    if settings.get("size") is not None:
        size = byte_size(settings["size"])
        if size is None or size < 0:
            warn(f"{where}.tmpfs.size", f"{settings['size']!r} is not a size: no limit is set")
        elif size > 0:  # 0 is Compose's "unset"
            options.append(f"size={size}")
    if settings.get("mode") is not None:
        # An int is the bits, as Compose hands it to Docker: YAML's `mode: 1777` is decimal
        # 1777 there too (0o3361); `0o1777` (or `01777`) is what sticky 777 takes.
        mode = file_mode(settings["mode"])
        if mode is None or not 0 <= mode <= 0o7777:
            warn(f"{where}.tmpfs.mode", f"{settings['mode']!r} is not a file mode: the "
                 "default is used")
        else:
            options.append(f"mode={mode:o}")
    return _mount("tmpfs", str(volume["target"]), read_only=bool(volume.get("read_only")),
                  options=options)


_BUILDERS: dict[str, Callable[[ServiceContext, Mapping[str, Any], str, Warn], dict[str, Any]]] = {
    "bind": _bind, "volume": _volume, "tmpfs": _tmpfs}


def mounts(ctx: ServiceContext, config: Mapping[str, Any], warn: Warn) -> list[dict[str, Any]]:
    """``volumes`` (long syntax, as the loader normalizes them) then ``tmpfs``, as Mount JSON."""
    out = []
    for index, volume in enumerate(config.get("volumes") or ()):
        where = f"volumes[{index}]"
        if not isinstance(volume, Mapping) or not volume.get("target"):
            warn(where, f"{volume!r} is not a normalized volume with a target: not mounted")
            continue
        kind = str(volume.get("type") or "volume")
        builder = _BUILDERS.get(kind)
        if builder is None:
            warn(f"{where}.type", f"{kind} mounts are not supported by composer: "
                 f"{volume['target']} is not mounted")
            continue
        out.append(builder(ctx, volume, where, warn))
    return out + _tmpfs_attribute(config.get("tmpfs"))


def _tmpfs_attribute(value: Any) -> list[dict[str, Any]]:
    # `PATH[:OPTIONS]`, the options passed on as `container run --tmpfs` passes them.
    items = [value] if isinstance(value, str) else list(value or ())
    out = []
    for item in items:
        target, _, options = str(item).partition(":")
        out.append(_mount("tmpfs", target, options=[o for o in options.split(",") if o]))
    return out


# -- secrets and configs -------------------------------------------------------------------------


def files(ctx: ServiceContext, config: Mapping[str, Any], warn: Warn) -> list[dict[str, Any]]:
    """``secrets`` then ``configs`` as File JSON: each read from its host file, its
    ``environment`` variable or its ``content``, placed at its target."""
    out = []
    # Compose puts a secret without an absolute target under /run/secrets, a config under /.
    for kind, base in (("secrets", "/run/secrets/"), ("configs", "/")):
        for index, ref in enumerate(config.get(kind) or ()):
            ref = {"source": ref} if isinstance(ref, str) else ref
            file = _file(ctx, kind, base, ref, f"{kind}[{index}]", warn)
            if file is not None:
                out.append(file)
    return out


def _file(ctx: ServiceContext, kind: str, base: str, ref: Mapping[str, Any], where: str,
          warn: Warn) -> dict[str, Any] | None:
    what = kind[:-1]
    source = str(ref.get("source") or "")
    target = str(ref.get("target") or source)
    if not target.startswith("/"):
        target = base + target
    defined = (ctx.tree.get(kind) or {}).get(source)
    if not isinstance(defined, Mapping):
        warn(where, f"{what} {source!r} is not defined in the top-level {kind}: not placed")
        return None
    if defined.get("external"):
        warn(where, f"{what} {defined.get('name') or source} is external, which only a "
             "Swarm cluster provides: not placed")
        return None
    file: dict[str, Any] = {"target": target, "source": "", "content": None,
                            "uid": None if ref.get("uid") is None else str(ref["uid"]),
                            "gid": None if ref.get("gid") is None else str(ref["gid"]),
                            "mode": None}
    if ref.get("mode") is not None:
        file["mode"] = file_mode(ref["mode"])
        if file["mode"] is None:
            warn(f"{where}.mode", f"{ref['mode']!r} is not a file mode: 0444 is used")
    if defined.get("file"):
        file["source"] = _absolute(ctx, str(defined["file"]))
    elif defined.get("environment"):
        variable = str(defined["environment"])
        if variable not in ctx.environment:
            warn(where, f"{what} {source!r} is read from ${variable}, which is not set: "
                 "not placed")
            return None
        file["content"] = ctx.environment[variable]
    elif defined.get("content") is not None:
        file["content"] = str(defined["content"])
    else:
        warn(where, f"{what} {source!r} has no file, environment or content: not placed")
        return None
    return file


# -- resources, rlimits and sysctls ---------------------------------------------------------------


def ulimits(value: Any, warn: Warn) -> dict[str, list[int]]:
    """``{name: N}`` or ``{name: {soft, hard}}`` as ``{name: [soft, hard]}``."""
    out = {}
    for name, limit in (value or {}).items():
        try:
            if isinstance(limit, Mapping):
                soft = int(limit.get("soft", limit.get("hard")))
                hard = int(limit.get("hard", soft))
            else:
                soft = hard = int(limit)
        except (TypeError, ValueError):
            warn(f"ulimits.{name}", f"{limit!r} is not a limit: not set")
            continue
        out[str(name)] = [soft, hard]
    return out


def sysctls(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    pairs = (str(item).partition("=") for item in value or ())
    return {k: v for k, _, v in pairs}


def resources(config: Mapping[str, Any], warn: Warn) -> dict[str, Any]:
    """cgroup limits: the flat attributes, else ``deploy.resources`` (Compose requires the
    two to agree; a disagreement is reported, the flat one kept)."""
    deployed = (config.get("deploy") or {}).get("resources") or {}
    limits = deployed.get("limits") or {}
    reservations = deployed.get("reservations") or {}

    def pick(flat: str, deep: str, deep_value: Any, parse: Callable[[Any], Any]) -> Any:
        mine = _parsed(config.get(flat), flat, parse, warn)
        theirs = _parsed(deep_value, deep, parse, warn)
        if mine is not None and theirs is not None and mine != theirs:
            warn(flat, f"{mine} differs from {deep} ({theirs}): {flat} is used")
        return theirs if mine is None else mine

    return {
        "memory": pick("mem_limit", "deploy.resources.limits.memory", limits.get("memory"),
                       _memory),
        "memory_swap": _parsed(config.get("memswap_limit"), "memswap_limit", _memory, warn),
        "memory_reservation": pick("mem_reservation", "deploy.resources.reservations.memory",
                                   reservations.get("memory"), _memory),
        "cpus": pick("cpus", "deploy.resources.limits.cpus", limits.get("cpus"), _cpus),
        "cpu_shares": _parsed(config.get("cpu_shares"), "cpu_shares", _count, warn),
        "cpuset_cpus": str(config.get("cpuset") or "") or None, "cpuset_mems": None,
        "pids_limit": pick("pids_limit", "deploy.resources.limits.pids", limits.get("pids"),
                           _count),
    }


def shm_size(config: Mapping[str, Any], warn: Warn) -> int | None:
    """The size of /dev/shm; None (0, unset) leaves the bundle's 64 MiB."""
    size: int | None = _parsed(config.get("shm_size"), "shm_size", _memory, warn)
    return size


def _parsed(value: Any, attribute: str, parse: Callable[[Any], Any], warn: Warn) -> Any:
    if value is None:
        return None
    try:
        return parse(value)
    except (TypeError, ValueError):
        warn(attribute, f"{value!r} is not a valid value: not set")
        return None


# The parsers: ValueError for what is not a value; None for 0, Compose's "unset" (the -1 of
# "unlimited" stays).


def _memory(value: Any) -> int | None:
    size = byte_size(value)
    if size is None:
        raise ValueError(value)
    return size or None


def _cpus(value: Any) -> float | None:
    return float(value) or None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        raise ValueError(value)
    return int(value) or None


# -- devices -------------------------------------------------------------------------------------


def devices(value: Any, warn: Warn) -> list[dict[str, str]]:
    """Long (``{source, target, permissions}``) or short (``HOST[:CONTAINER][:PERMS]``)."""
    out = []
    for index, device in enumerate(value or ()):
        if isinstance(device, Mapping):
            host = str(device.get("source") or "")
            inside = str(device.get("target") or host)
            perms = str(device.get("permissions") or "rwm")
        else:
            host, inside, perms = _short_device(str(device))
        if not host.startswith("/"):
            # A CDI name (vendor.com/class=name): composer has no CDI registry to ask.
            warn(f"devices[{index}]", f"{host!r} is not a device path (CDI devices are not "
                 "supported): not added")
            continue
        out.append({"host": host, "container": inside, "permissions": perms})
    return out


def _short_device(text: str) -> tuple[str, str, str]:
    # Docker's parseDevice: a second field that is only r, w and m is the permissions.
    parts = text.split(":")
    if len(parts) == 2 and parts[1] and set(parts[1]) <= set("rwm"):
        return parts[0], parts[0], parts[1]
    host = parts[0]
    inside = parts[1] if len(parts) > 1 and parts[1] else host
    return host, inside, parts[2] if len(parts) > 2 and parts[2] else "rwm"
