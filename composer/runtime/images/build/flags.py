"""Instruction options: ``--flags``, ``RUN --mount`` specs, HEALTHCHECK, the JSON exec form.

The allowed flags are those of Dockerfile 1.x as BuildKit defines them; the ones composer's
builder does not implement are refused with a hint rather than reported as unknown.
"""

from __future__ import annotations

import csv
import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_STRING, _BOOL, _LIST = "string", "bool", "list"
_KINDS: dict[str, dict[str, str]] = {
    "FROM": {"platform": _STRING},
    "RUN": {"mount": _LIST, "network": _STRING, "security": _STRING},
    "COPY": {"from": _STRING, "chown": _STRING, "chmod": _STRING, "link": _BOOL},
    "ADD": {"chown": _STRING, "chmod": _STRING, "link": _BOOL, "checksum": _STRING},
    "HEALTHCHECK": {"interval": _STRING, "timeout": _STRING, "start-period": _STRING,
                    "start-interval": _STRING, "retries": _STRING},
}
_BUILDKIT_ONLY: dict[tuple[str, str], str] = {
    ("COPY", "parents"): "copy each directory with its own COPY",
    ("COPY", "exclude"): "list the sources to copy, or exclude files in .dockerignore",
    ("ADD", "exclude"): "list the sources to copy, or exclude files in .dockerignore",
    ("ADD", "keep-git-dir"): "clone the repository in a RUN step instead",
    ("ADD", "unpack"): "unpack the archive in a RUN step instead",
    ("RUN", "device"): "composer's builder does not pass devices to RUN",
}
_NETWORKS = ("default", "none", "host")
_MOUNT_TYPES = ("bind", "cache", "secret")
_SHARING = ("shared", "private", "locked")
_MOUNT_KEYS = {"type": "type", "from": "from", "source": "source", "src": "source",
               "target": "target", "dst": "target", "destination": "target", "id": "id",
               "sharing": "sharing", "mode": "mode", "uid": "uid", "gid": "gid", "env": "env",
               "readonly": "readonly", "ro": "readonly", "readwrite": "readwrite",
               "rw": "readwrite", "required": "required"}
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128}")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
                   "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")
_MIN_INTERVAL = 10**6  # Docker's container.MinimumDuration, 1ms


class Refused(Exception):
    """An argument is wrong or unsupported; the parser adds the file and line."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Mount:
    """One ``RUN --mount``, with BuildKit's defaults filled in. ``from_`` is a stage, image or
    build context name (None: the build context for bind, an empty directory for cache). In the
    model built at parse time, values holding ``$`` are raw and the numbers they would give are
    None; ``dockerfile.expand_mounts`` gives the expanded, checked mounts."""

    type: str
    target: str | None
    source: str | None = None
    from_: str | None = None
    id: str | None = None
    readonly: bool = False
    sharing: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    required: bool = False
    env: str | None = None


@dataclass(frozen=True)
class Healthcheck:
    """``HEALTHCHECK``: ``test`` is ``("NONE",)``, ``("CMD", *argv)`` or ``("CMD-SHELL", cmd)``;
    durations are nanoseconds and, with ``retries``, 0 means "the default", as in image
    configs."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


def parse_flags(keyword: str, words: list[str]) -> dict[str, tuple[str, ...]]:
    """Check ``--name[=value]`` words against what ``keyword`` accepts."""
    kinds = _KINDS.get(keyword, {})
    found: dict[str, list[str]] = {}
    for word in words:
        if not word.startswith("--"):
            raise Refused(f"flag {word!r} should start with --")
        name, eq, value = word[2:].partition("=")
        if (keyword, name) in _BUILDKIT_ONLY:
            raise Refused(f"{keyword} --{name} is BuildKit syntax composer's builder does not "
                          "support", _BUILDKIT_ONLY[keyword, name])
        kind = kinds.get(name)
        if kind is None:
            allowed = ", ".join(f"--{flag}" for flag in kinds) or "none"
            raise Refused(f"unknown flag --{name} for {keyword}",
                          f"{keyword} takes these flags: {allowed}")
        if kind == _BOOL:
            value = value.lower() if eq else "true"
            if value not in ("true", "false"):
                raise Refused(f"--{name} takes true or false, not {value!r}")
        elif not eq:
            raise Refused(f"--{name} needs a value (--{name}=...)")
        if kind != _LIST and name in found:
            raise Refused(f"--{name} is given twice")
        found.setdefault(name, []).append(value)
    flags = {name: tuple(values) for name, values in found.items()}
    _check_values(keyword, flags)
    return flags


def _check_values(keyword: str, flags: Mapping[str, tuple[str, ...]]) -> None:
    network = flags.get("network", ("default",))[0]
    if network not in _NETWORKS:
        raise Refused(f"unsupported RUN --network={network}", "use default, none or host")
    security = flags.get("security", ("sandbox",))[0]
    if security != "sandbox":
        raise Refused(f"RUN --security={security} is not supported",
                      "composer's builder runs every step sandboxed")
    for chmod in flags.get("chmod", ()):
        # BuildKit does not expand --chmod either, so the value is checked as written.
        if not re.fullmatch(r"[0-7]{1,4}", chmod):
            raise Refused(f"{keyword} --chmod={chmod} is not an octal mode",
                          "write the mode in octal, such as --chmod=0755")
    for checksum in flags.get("checksum", ()):
        if "$" not in checksum and not _CHECKSUM.fullmatch(checksum):
            raise Refused(f"ADD --checksum={checksum} is not a digest",
                          "write it as sha256:<64 hex digits>")


def json_array(rest: str) -> tuple[str, ...] | None:
    """The JSON array (exec) form, or None for the shell form: whatever is not a JSON array
    is shell form, as in Docker; an array with anything but strings is an error."""
    if not rest.startswith("["):
        return None
    try:
        data = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    if not all(isinstance(item, str) for item in data):
        raise Refused("when using JSON array syntax, arrays must be comprised of strings only")
    return tuple(data)


def _go_bool(key: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise Refused(f"invalid value for {key}: {value!r}", "use true or false")


def _number(key: str, value: str | None, base: int) -> int | None:
    if value is None or "$" in value:
        return None
    try:
        number = int(value, base)
    except ValueError:
        number = -1
    if not 0 <= number < 2**32:
        raise Refused(f"invalid value {value!r} for {key}")
    return number


def parse_mount(spec: str, expander: Callable[[str], str] | None) -> Mount:
    """One ``--mount`` value (comma-separated, CSV quoting). Without ``expander`` (parse time)
    values are kept as written; with it every value but ``type`` and ``from`` is expanded."""
    fields = next(csv.reader([spec]), [])
    raw: dict[str, str] = {}
    switches: dict[str, bool] = {}
    for item in fields:
        key, eq, value = item.partition("=")
        canonical = _MOUNT_KEYS.get(key.lower())
        if canonical is None:
            raise Refused(f"unexpected key {key!r} in --mount={spec}",
                          "a mount takes " + ", ".join(sorted(set(_MOUNT_KEYS))))
        if canonical in ("readonly", "readwrite", "required"):
            flag = _go_bool(key, value) if eq else True
            switches["readonly" if canonical != "required" else "required"] = (
                not flag if canonical == "readwrite" else flag)
            continue
        if not eq:
            raise Refused(f"invalid field {item!r} in --mount: it must be key=value")
        if canonical in ("type", "from") and re.search(r"\$.", value):
            raise Refused(f"--mount {canonical}= does not support variable expansion",
                          "name the image in a stage (FROM ${IMAGE} AS src) and use from=src")
        if expander is not None and canonical not in ("type", "from"):
            value = expander(value)
        raw[canonical] = value
    return _mount(raw, switches, spec)


def _mount(raw: dict[str, str], switches: dict[str, bool], spec: str) -> Mount:
    kind = raw.get("type", "bind").lower()
    if kind in ("ssh", "tmpfs"):
        raise Refused(f"RUN --mount=type={kind} is not supported by composer's builder",
                      "use type=bind, type=cache or type=secret")
    if kind not in _MOUNT_TYPES:
        raise Refused(f"unsupported mount type {kind!r}", "use bind, cache or secret")
    for key in ("mode", "uid", "gid"):
        if key in raw and kind == "bind":
            raise Refused(f"{key} is not allowed for bind mounts")
    if "sharing" in raw and kind != "cache":
        raise Refused(f"sharing is only for cache mounts, not {kind}")
    if "required" in switches and kind != "secret":
        raise Refused(f"required is only for secret mounts, not {kind}")
    if "env" in raw and kind != "secret":
        raise Refused(f"env is only for secret mounts, not {kind}")
    target = raw.get("target")
    mode = _number("mode", raw.get("mode"), 8)
    uid, gid = _number("uid", raw.get("uid"), 10), _number("gid", raw.get("gid"), 10)
    if kind == "secret":
        return _secret(raw, switches, target, mode, uid, gid)
    if not target:
        raise Refused(f"--mount={spec} needs a target", "add target=/path/in/the/container")
    if kind == "bind":
        return Mount("bind", target, raw.get("source"), raw.get("from"),
                     readonly=switches.get("readonly", True))
    sharing = raw.get("sharing", "shared").lower()
    if sharing not in _SHARING and "$" not in sharing:
        raise Refused(f"unsupported sharing value {sharing!r}", "use shared, private or locked")
    return Mount("cache", target, raw.get("source"), raw.get("from"), raw.get("id") or target,
                 switches.get("readonly", False), sharing,
                 0o755 if mode is None and "mode" not in raw else mode,
                 0 if "uid" not in raw else uid, 0 if "gid" not in raw else gid)


def _secret(raw: dict[str, str], switches: dict[str, bool], target: str | None,
            mode: int | None, uid: int | None, gid: int | None) -> Mount:
    if "from" in raw:
        raise Refused("a secret mount cannot have from=")
    if "source" in raw and "id" in raw:
        raise Refused("a secret mount takes id= or source=, not both")
    secret_id = raw.get("id") or raw.get("source") or (
        posixpath.basename(target) if target else None)
    env = raw.get("env")
    if not secret_id:
        raise Refused("a secret mount needs id= (or a target= to name it after)")
    if target is None and env is None:
        target = f"/run/secrets/{secret_id}"
    return Mount("secret", target, None, None, secret_id, True, None,
                 0o400 if "mode" not in raw else mode, 0 if "uid" not in raw else uid,
                 0 if "gid" not in raw else gid, switches.get("required", False), env)


def duration_ns(flag: str, text: str) -> int:
    """A Go duration (``1m30s``, ``1.5s``, ``0``) in nanoseconds; 0 or at least 1ms."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    total, pos = 0, 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match or not (match.group(1) or match.group(2)):
            raise Refused(f"--{flag}={text} is not a duration", "write it as 30s, 1m30s or 500ms")
        whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3)
        scale = _DURATION_UNITS[unit]
        total += int(whole or "0") * scale + int(fraction or "0") * scale // 10 ** len(fraction)
        pos = match.end()
    if not body:
        raise Refused(f"--{flag}= needs a duration")
    total *= sign
    if total != 0 and total < _MIN_INTERVAL:
        raise Refused(f"--{flag}={text} cannot be less than 1ms")
    return total


def healthcheck(rest: str, flags: Mapping[str, tuple[str, ...]]) -> Healthcheck:
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [options] CMD command`` (shell or exec form)."""
    parts = re.split(r"\s+", rest, maxsplit=1)
    kind, command = parts[0].upper(), (parts[1].strip() if len(parts) > 1 else "")
    if kind == "NONE":
        if command or flags:
            raise Refused("HEALTHCHECK NONE takes no arguments or options")
        return Healthcheck(("NONE",))
    if kind != "CMD":
        raise Refused(f"unknown type {parts[0]!r} in HEALTHCHECK", "use HEALTHCHECK CMD ... "
                      "or HEALTHCHECK NONE")
    argv = json_array(command)
    if not command or argv == ():
        raise Refused("missing command after HEALTHCHECK CMD")
    test = ("CMD", *argv) if argv is not None else ("CMD-SHELL", command)
    durations = {name: duration_ns(name, flags[name][0]) if name in flags else 0
                 for name in ("interval", "timeout", "start-period", "start-interval")}
    retries = 0
    if "retries" in flags:
        try:
            retries = int(flags["retries"][0], 10)
        except ValueError:
            raise Refused(f"--retries={flags['retries'][0]} is not a number") from None
        if retries < 0:
            raise Refused(f"--retries cannot be negative ({retries})")
    return Healthcheck(test, durations["interval"], durations["timeout"],
                       durations["start-period"], durations["start-interval"], retries)
