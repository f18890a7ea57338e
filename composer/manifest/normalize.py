"""Phase 10: the merged project filled in the way Docker Compose's ``config`` prints it.

Resource names (``<project>_<key>`` unless named or external), the ``default`` network for
services that name none, ``env_file`` and ``label_file`` read into ``environment`` and
``labels``, variables without a value taken from the environment, defaults Compose always
prints (``command: null``, ``dockerfile: Dockerfile``, secret targets, ``ipam: {}`` ...),
implicit dependencies, and resources no service uses left out.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from composer.errors import ManifestError, ManifestWarning
from composer.manifest.tree import YMap, YSeq, dotted, locate, ymap, yseq

Warn = Callable[[ManifestWarning], None]

_RESOURCES = ("networks", "volumes", "secrets", "configs", "models")
_VERSION_WARNING = ("the attribute `version` is obsolete, it will be ignored, please remove it "
                    "to avoid potential confusion")
#: Keys Compose leaves out of its output when they hold an empty string.
_OMIT_EMPTY = frozenset((
    "image", "platform", "restart", "container_name", "hostname", "domainname", "user",
    "working_dir", "network_mode", "ipc", "pid", "pull_policy", "runtime", "stop_signal",
    "dockerfile", "target", "network", "isolation", "source", "name", "context",
    "dockerfile_inline"))


def normalize(root: YMap, *, project_name: str, project_dir: str, env: Mapping[str, str],
              warn: Warn, raw: bool = False) -> None:
    """Fill in ``root`` (merged, paths resolved, profiles applied) in place."""
    if "version" in root:
        warn(ManifestWarning(_VERSION_WARNING, loc=root.loc_of("version"), path="version"))
        del root["version"]
    services = root.get("services")
    if services is None:
        services = root["services"] = ymap(like=root)
    if isinstance(services, dict):
        for name, service in services.items():
            if isinstance(service, dict):
                normalize_service(root, name, service, project_dir=project_dir, env=env,
                                  warn=warn, raw=raw)
    _add_default_network(root)
    from composer.manifest.resources import check_resources

    check_resources(root)
    if not raw:  # Compose keeps every resource of a raw project, used or not
        _drop_unused(root)
    _name_resources(root, project_name)


#: Keys whose zero value (0, false, "0") Compose leaves out of its output; keys missing here
#: (init, attach, scale, retries, ...) are printed even when zero.
_OMIT_ZERO = frozenset((
    "privileged", "read_only", "tty", "stdin_open", "oom_kill_disable", "use_api_socket",
    "cpu_count", "cpu_percent", "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period",
    "cpu_rt_runtime", "cpus", "mem_limit", "mem_reservation", "memswap_limit",
    "mem_swappiness", "shm_size", "oom_score_adj", "pids_limit"))
_OMIT_ZERO_BUILD = frozenset(("no_cache", "pull", "privileged"))
_OMIT_ZERO_RESOURCES = frozenset(("cpus", "pids", "memory"))


def _drop_zero(node: Any, keys: frozenset[str]) -> None:
    if isinstance(node, dict):
        for key in [k for k in node if k in keys and node[k] in (0, False, "0", "")]:
            del node[key]


def _drop_zero_values(svc: dict[str, Any]) -> None:
    _drop_zero(svc, _OMIT_ZERO)
    _drop_zero(svc.get("build"), _OMIT_ZERO_BUILD)
    _drop_zero(svc.get("healthcheck"), frozenset(("disable",)))
    _drop_zero(svc.get("logging"), frozenset(("driver",)))
    _drop_zero(svc.get("blkio_config"), frozenset(("weight",)))
    for dep in (svc.get("depends_on") or {}).values():
        _drop_zero(dep, frozenset(("restart",)))
    for volume in svc.get("volumes") or ():
        _drop_zero(volume, frozenset(("read_only",)))
    deploy = svc.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    if isinstance(resources, dict):
        for part in ("limits", "reservations"):
            _drop_zero(resources.get(part), _OMIT_ZERO_RESOURCES)


def normalize_service(root: YMap, name: str, svc: dict[str, Any], *, project_dir: str,
                      env: Mapping[str, str], warn: Warn, raw: bool = False) -> None:
    """One service's defaults, files read in, and values looked up."""
    path = ("services", name)
    # Even an empty network_mode keeps Compose from adding the default network.
    own_network_mode = "network_mode" in svc
    if not raw:  # Compose prints a raw project's empty and zero values as written
        _drop_empty(svc)
        _drop_zero_values(svc)
    _check_resource_pairs(root, svc, path)
    for volume in svc.get("volumes") or ():
        if isinstance(volume, dict):
            _drop_empty(volume)
    if not raw:  # a raw project keeps its env_file and label_file: their values may interpolate
        _environment(root, svc, path, env, warn)
        _labels(root, svc, path, env, warn)
    svc.setdefault("command", None)
    svc.setdefault("entrypoint", None)
    if not own_network_mode and "provider" not in svc and not svc.get("networks"):
        svc["networks"] = ymap([("default", None)], like=svc)
    build = svc.get("build")
    if isinstance(build, dict):
        _build(build, project_dir, env)
        _drop_empty(build)
    for key, default_dir in (("secrets", "/run/secrets/"), ("configs", None)):
        for ref in svc.get(key) or ():
            if isinstance(ref, dict):
                _file_ref(ref, default_dir, raw)
    hosts = svc.get("extra_hosts")
    if isinstance(hosts, YSeq):
        # Compose prints extra hosts sorted; each keeps its place.
        pairs = sorted(zip(hosts, [hosts.loc_of(i) for i in range(len(hosts))], strict=True),
                       key=lambda pair: str(pair[0]))
        svc["extra_hosts"] = yseq([p[0] for p in pairs], like=hosts,
                                  item_locs=[p[1] for p in pairs])
    elif isinstance(hosts, list):
        hosts.sort(key=str)
    deploy = svc.get("deploy")
    if isinstance(deploy, dict):
        replicas = deploy.get("replicas")
        if "scale" in svc and replicas is not None and replicas != svc["scale"]:
            raise ManifestError(
                f"can't set distinct values on 'scale' ({svc['scale']}) and "
                f"'deploy.replicas' ({replicas})", loc=locate(root, (*path, "scale")),
                path=dotted((*path, "scale")), hint="keep one of them")
        if "scale" in svc:
            deploy["replicas"] = svc["scale"]
        deploy.setdefault("resources", ymap(like=deploy))
        deploy.setdefault("placement", ymap(like=deploy))
    develop = svc.get("develop")
    if isinstance(develop, dict) and isinstance(develop.get("watch"), list):
        for rule in develop["watch"]:
            if isinstance(rule, dict):
                exec_hook = rule.setdefault("exec", ymap(like=rule))
                if isinstance(exec_hook, dict):
                    exec_hook.setdefault("command", None)
    deps = svc.get("depends_on")
    if isinstance(deps, dict):
        for dep in deps.values():
            if isinstance(dep, dict):
                dep.setdefault("condition", "service_started")
                dep.setdefault("required", True)
    for port in svc.get("ports") or ():
        if isinstance(port, dict):
            port.setdefault("mode", "ingress")
            port.setdefault("protocol", "tcp")
    _implicit_dependencies(svc, raw)


#: Service keys that say the same as a key under deploy.resources: both may be set only alike.
_RESOURCE_PAIRS = (("cpus", "limits", "cpus"), ("mem_limit", "limits", "memory"),
                   ("pids_limit", "limits", "pids"), ("mem_reservation", "reservations", "memory"))


def _check_resource_pairs(root: YMap, svc: dict[str, Any], path: tuple[str, ...]) -> None:
    deploy = svc.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, dict) else None
    if not isinstance(resources, dict):
        return
    for key, part, deploy_key in _RESOURCE_PAIRS:
        spec = resources.get(part)
        if key not in svc or not isinstance(spec, dict) or deploy_key not in spec:
            continue
        if svc[key] != spec[deploy_key]:
            other = f"deploy.resources.{part}.{deploy_key}"
            raise ManifestError(f"can't set distinct values on '{key}' and '{other}'",
                                loc=locate(root, (*path, key)), path=dotted((*path, key)),
                                hint="keep one of them, or give both the same value")


def _drop_empty(node: dict[str, Any]) -> None:
    for key in [k for k in node if k in _OMIT_EMPTY and node[k] == ""]:
        del node[key]


# --- environment and labels -----------------------------------------------------------------

def _environment(root: YMap, svc: dict[str, Any], path: tuple[str, ...],
                 env: Mapping[str, str], warn: Warn) -> None:
    files = svc.get("env_file")
    declared = svc.get("environment")
    result = ymap(like=declared)
    for i, entry in enumerate(files if isinstance(files, list) else ()):
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            result.update(_read_file(
                root, (*path, "env_file", i), entry["path"], env, warn, fmt=entry.get("format"),
                required=bool(entry.get("required", True)), what="env file"))
    svc.pop("env_file", None)
    if isinstance(declared, dict):
        for key, value in declared.items():
            # A key without a value comes from the environment; unset there, it stays
            # (printed as null) even over an env_file value, as in Compose.
            result[key] = env.get(key) if value is None else value
    if result:
        svc["environment"] = result
    else:
        svc.pop("environment", None)


def _read_file(root: YMap, where: tuple[str | int, ...], file: str, env: Mapping[str, str],
               warn: Warn, *, fmt: str | None, required: bool, what: str) -> dict[str, str]:
    """An env_file or label_file read as Compose reads it, errors placed at ``where``."""
    from composer.manifest.dotenv import read_env_file

    loc = locate(root, where)
    if required and not os.path.exists(file):
        raise ManifestError(f"{what} {file} not found", loc=loc, path=dotted(where),
                            hint="create the file or fix the path" + (
                                "" if what != "env file" else ", or mark it 'required: false'"))
    try:
        return read_env_file(file, fmt=fmt, lookup=env.get, required=required, warn=warn)
    except ManifestError as exc:
        if exc.loc is None:
            exc.loc = loc
            exc.path = exc.path or dotted(where)
        raise


def _labels(root: YMap, svc: dict[str, Any], path: tuple[str, ...],
            env: Mapping[str, str], warn: Warn) -> None:
    files = svc.get("label_file")
    if not files:
        svc.pop("label_file", None)
        return
    result: dict[str, Any] = {}
    for i, file in enumerate(files if isinstance(files, list) else [files]):
        if isinstance(file, str):
            result.update(_read_file(root, (*path, "label_file", i), file, env, warn, fmt=None,
                                     required=True, what="label file"))
    svc.pop("label_file", None)
    declared = svc.get("labels")
    if isinstance(declared, dict):
        result.update(declared)
    svc["labels"] = ymap(result.items(), like=declared if declared is not None else svc)


# --- build, secrets, dependencies ------------------------------------------------------------

def _build(build: dict[str, Any], project_dir: str, env: Mapping[str, str]) -> None:
    build.setdefault("context", project_dir)
    # An explicit empty dockerfile stays unset (and is then left out), as in Compose.
    if "dockerfile_inline" not in build:
        build.setdefault("dockerfile", "Dockerfile")
    args = build.get("args")
    if isinstance(args, dict):
        for key in list(args):
            if args[key] is None:
                # A build arg without a value comes from the environment, or is left out.
                if key in env:
                    args[key] = env[key]
                else:
                    del args[key]
        if not args:
            del build["args"]


def _file_ref(ref: dict[str, Any], default_dir: str | None, raw: bool = False) -> None:
    if ref.get("target") == "":
        del ref["target"]  # Compose then prints no target, and gives none by default
    elif default_dir is not None and "target" not in ref and isinstance(ref.get("source"), str):
        ref["target"] = default_dir + ref["source"]
    for key in ("uid", "gid"):
        if isinstance(ref.get(key), int) and not isinstance(ref[key], bool):
            ref[key] = str(ref[key])
    mode = ref.get("mode")
    if raw:
        return  # printed as written
    if isinstance(mode, str) and re.fullmatch(r"(?:0o)?[0-7]+", mode):
        ref["mode"] = f"0{int(mode.removeprefix('0o'), 8):o}"
    elif isinstance(mode, int) and not isinstance(mode, bool):
        ref["mode"] = f"0{mode:o}"


def _dependency_names(svc: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """Services this one needs without saying so, and whether a restart of one restarts it."""
    for link in svc.get("links") or ():
        if isinstance(link, str):
            yield link.split(":", 1)[0], True
    for key in ("network_mode", "ipc", "pid"):
        value = svc.get(key)
        if isinstance(value, str) and value.startswith("service:"):
            yield value.removeprefix("service:"), True
    for source in svc.get("volumes_from") or ():
        if isinstance(source, str) and not source.startswith("container:"):
            yield source.split(":", 1)[0], False


def _implicit_dependencies(svc: dict[str, Any], raw: bool = False) -> None:
    # Sharing a namespace or volumes with a service, or linking to it, depends on it. (A
    # raw project prints "restart: false" too: Compose prints its untyped form then.)
    names = [(n, r) for n, r in _dependency_names(svc) if n]
    if not names:
        return
    deps = svc.get("depends_on")
    if not isinstance(deps, dict):
        deps = svc["depends_on"] = ymap(like=svc)
    for name, restart in names:
        if name not in deps:
            entries: list[tuple[str, Any]] = [("condition", "service_started"),
                                              ("restart", restart), ("required", True)]
            deps[name] = ymap([e for e in entries if e[1] is not False or raw], like=deps)


# --- resources ---------------------------------------------------------------------------------

def _services(root: YMap) -> list[dict[str, Any]]:
    services = root.get("services")
    if not isinstance(services, dict):
        return []
    return [s for s in services.values() if isinstance(s, dict)]


def _add_default_network(root: YMap) -> None:
    if not any(isinstance(s.get("networks"), dict) and "default" in s["networks"]
               for s in _services(root)):
        return
    networks = root.get("networks")
    if not isinstance(networks, dict):
        networks = root["networks"] = ymap(like=root)
    if networks.get("default") is None:
        networks["default"] = ymap(like=networks)


def _used(root: YMap) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {kind: set() for kind in _RESOURCES}
    for svc in _services(root):
        for name in svc.get("networks") or ():
            used["networks"].add(name)
        for volume in svc.get("volumes") or ():
            if isinstance(volume, dict) and volume.get("type") == "volume" and volume.get("source"):
                used["volumes"].add(volume["source"])
        for key in ("secrets", "configs"):
            for ref in svc.get(key) or ():
                if isinstance(ref, dict) and isinstance(ref.get("source"), str):
                    used[key].add(ref["source"])
        build = svc.get("build")
        if isinstance(build, dict):
            for ref in build.get("secrets") or ():
                if isinstance(ref, dict) and isinstance(ref.get("source"), str):
                    used["secrets"].add(ref["source"])
        models = svc.get("models")
        if isinstance(models, dict | list):
            used["models"].update(m for m in models if isinstance(m, str))
    return used


def _drop_unused(root: YMap) -> None:
    # Compose's config prints only the networks, volumes, secrets, configs and models that
    # the (enabled) services use.
    used = _used(root)
    for kind in _RESOURCES:
        resources = root.get(kind)
        if not isinstance(resources, dict):
            continue
        for name in [n for n in resources if n not in used[kind]]:
            del resources[name]
        if not resources:
            del root[kind]


def _name_resources(root: YMap, project: str) -> None:
    for kind in ("networks", "volumes", "secrets", "configs"):
        resources = root.get(kind)
        if not isinstance(resources, dict):
            continue
        for key in list(resources):
            spec = resources[key]
            if spec is None:
                spec = resources[key] = ymap(like=resources)
            if not isinstance(spec, dict):
                continue
            if spec.get("external") is False:
                del spec["external"]
            if "name" not in spec:
                spec["name"] = key if spec.get("external") else f"{project}_{key}"
            elif spec["name"] == "":
                del spec["name"]
            if kind == "networks":
                spec.setdefault("ipam", ymap(like=spec))
                if isinstance(spec["ipam"], dict):
                    # Compose has no place for ipam options: it drops them.
                    spec["ipam"].pop("options", None)
