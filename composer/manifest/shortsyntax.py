"""Parsers for Compose's short strings: ports, volumes, command lines, durations, sizes.

Pure functions on strings; :mod:`composer.manifest.canonical` calls them while it walks a
file and turns their ``ValueError`` into a placed :class:`~composer.errors.ManifestError`.
Each follows what Docker Compose v2.40.3 does, odd corners included (noted where met).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from typing import Any

_PROTOCOLS = ("tcp", "udp", "sctp")
_BIND_PROPAGATION = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
_SHELL_STOP = frozenset(";&|<>")
_SHELL_SPACE = frozenset(" \t\r\n")


def go_float(value: float) -> str:
    """``value`` formatted like Go's ``%v`` (shortest digits, exponent outside 1e-4..1e21)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").rjust(2, "0")
        return f"{mantissa.removesuffix('.0')}e{sign}{digits}"
    return text


_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
            "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}


def parse_duration(text: str) -> int | None:
    """Nanoseconds of a Go duration string, or None when it is not one."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    if not body:
        return None
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        pos = match.end()
    return sign * round(total)


def format_duration(nanos: int) -> str:
    """Go's ``time.Duration.String()``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _fraction(n, size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _fraction(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


_BYTES = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BYTE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(text: str) -> int | None:
    """Bytes of a size like ``512m`` or ``1.5gb`` (binary units), or None when it is not one."""
    match = _BYTES.match(text)
    if not match:
        return int(text) if text.lstrip("-").isdigit() else None
    unit = _BYTE_UNITS.get((match.group(2) or "").lower(), 1)
    return int(float(match.group(1)) * unit)


# --- command lines ---------------------------------------------------------------------------

def shell_split(text: str) -> list[str]:
    """Split a command line into words the way Compose does (raises ValueError when invalid).

    Quotes and backslashes work as in a POSIX shell, except that inside double quotes a
    backslash escapes any character. Backquoted text and ``$(...)`` stay inside one word,
    unexpanded; any other unquoted parenthesis is an error. An unquoted ``;``, ``&``, ``|``,
    ``<`` or ``>`` ends the command: Compose drops the rest (and a descriptor number before
    ``>``).
    """
    split = _Splitter()
    for ch in text:
        if not split.feed(ch):
            break
    else:
        if split.escaped or split.quote or split.backquote or split.dollar:
            raise ValueError("invalid command line string")
    split.end_word()
    return split.words


class _Splitter:
    """The state of :func:`shell_split` between two characters."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.buf = ""
        self.have_word = False
        self.quote = ""
        self.escaped = False
        self.backquote = False
        self.dollar = False

    def end_word(self) -> None:
        if self.have_word:
            self.words.append(self.buf)
        self.buf, self.have_word = "", False

    def add(self, ch: str) -> None:
        self.buf += ch
        self.have_word = True

    def feed(self, ch: str) -> bool:
        """Take one character; False when the command ends here."""
        if self.escaped:
            self.escaped = False
            self.add(ch)
        elif ch == "\\" and self.quote != "'":
            self.escaped = True
        elif ch in "'\"" and self.quote in ("", ch):
            self.quote = "" if self.quote else ch
            self.have_word = True
        elif self.quote:
            self.buf += ch
        elif ch in _SHELL_SPACE:
            if self.backquote or self.dollar:
                self.buf += ch
            else:
                self.end_word()
        elif ch == "`":
            self.backquote = not self.backquote
            self.add(ch)
        elif ch in "()" and not self.backquote:
            self._paren(ch)
        elif ch in _SHELL_STOP and not (self.backquote or self.dollar):
            if ch == ">" and self.buf.isdigit():
                self.buf, self.have_word = "", False
            return False
        else:
            self.add(ch)
        return True

    def _paren(self, ch: str) -> None:
        if ch == "(" and self.buf.endswith("$") and not self.dollar:
            self.dollar = True
        elif ch == ")" and self.dollar:
            self.dollar = False
        else:
            raise ValueError("invalid command line string")
        self.add(ch)


# --- hosts and devices -------------------------------------------------------------------------

def bare_ip(ip: str) -> str:
    """An address without the brackets Compose accepts around IPv6 ones (``[::1]``)."""
    return ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip


def parse_extra_host(text: str) -> str:
    """``host:ip`` or ``host=ip`` as the ``host=ip`` Compose prints."""
    if "=" in text:
        host, _, ip = text.partition("=")
    elif ":" in text:
        host, _, ip = text.partition(":")
    else:
        raise ValueError(f"invalid additional host, missing IP: {text}")
    return f"{host}={bare_ip(ip)}"


def parse_device(text: str) -> dict[str, str]:
    """``HOST[:CONTAINER[:PERMISSIONS]]`` as Compose's long form."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ValueError(f"confusing device mapping, please use long syntax: {text}")
    target = parts[1] if len(parts) > 1 and parts[1] else parts[0]
    return {"source": parts[0], "target": target,
            "permissions": parts[2] if len(parts) > 2 else "rwm"}


# --- ports ------------------------------------------------------------------------------------

def _port_range(text: str) -> tuple[int, int] | None:
    start, sep, end = text.partition("-")
    if not start.isdigit() or (sep and not end.isdigit()):
        return None
    low, high = int(start), int(end) if sep else int(start)
    if high < low or high > 65535:
        return None
    return low, high


def parse_port(text: str) -> list[dict[str, Any]]:
    """The long-form ports of one short port string (a range gives one entry per port)."""
    raw, slash, proto = text.partition("/")
    proto = proto.lower() if slash and proto else "tcp"
    if proto not in _PROTOCOLS:
        raise ValueError(f"invalid proto: {proto}")
    parts = raw.split(":")
    container = parts[-1]
    host = parts[-2] if len(parts) >= 2 else ""
    ip = ":".join(parts[:-2]) if len(parts) >= 3 else ""
    if ip:
        bare = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
        try:
            if "%" in bare:
                raise ValueError(bare)  # Go's parser takes no IPv6 zone
            ipaddress.ip_address(bare)
        except ValueError:
            raise ValueError(f"invalid IP address: {bare}") from None
        ip = bare
    if not container:
        raise ValueError(f"no port specified: {text}<empty>")
    ports = _port_range(container)
    if ports is None:
        raise ValueError(f"invalid containerPort: {container}")
    host_range = None
    if host:
        host_range = _port_range(host)
        if host_range is None:
            raise ValueError(f"invalid hostPort: {host}")
        if (ports[1] - ports[0] != host_range[1] - host_range[0]) and ports[1] != ports[0]:
            raise ValueError("invalid ranges specified for container and host Ports: "
                             f"{container} and {host}")
    out = []
    for offset in range(ports[1] - ports[0] + 1):
        entry: dict[str, Any] = {"mode": "ingress"}
        if ip:
            entry["host_ip"] = ip
        entry["target"] = ports[0] + offset
        if host_range is not None:
            same = host_range[1] - host_range[0] == ports[1] - ports[0]
            entry["published"] = str(host_range[0] + offset) if same else host
        entry["protocol"] = proto
        out.append(entry)
    return out


# --- volumes ----------------------------------------------------------------------------------

def _split_volume(spec: str) -> list[str]:
    """Split on ``:``; a colon right after a lone letter is a Windows drive and stays.

    Compose splits this way on every platform, so ``a:b:c:d`` has the source ``a:b``.
    """
    parts: list[str] = []
    buf = ""
    depth = 0  # inside ${...} (a file read without interpolation), a colon does not split
    for i, ch in enumerate(spec):
        if ch == "{" and spec[i - 1:i] == "$":
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
        if ch == ":" and not depth and not (len(buf) == 1 and buf.isalpha()):
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    if any(not part for part in parts):
        raise ValueError(f"invalid spec: {spec}: empty section between colons")
    if len(parts) > 3:
        raise ValueError(f"invalid spec: {spec}: too many colons")
    return parts


_KNOWN_OPTIONS = frozenset(("ro", "rw", "nocopy", "z", "Z", *_BIND_PROPAGATION))
_CONSISTENCY = frozenset(("cached", "delegated", "consistent", "default"))


def volume_notes(spec: str) -> list[str]:
    """What a user should hear about a short volume string that Compose reads quietly."""
    notes: list[str] = []
    try:
        parts = _split_volume(spec) if len(spec) > 2 else [spec]
    except ValueError:
        return notes
    if len(parts) > 1 and len(parts[0]) > 2 and parts[0][1] == ":" and parts[0][0].isalpha():
        notes.append(f"'{parts[0]}' is read as a Windows path on drive {parts[0][:2]}, as "
                     "Compose reads it: to mount a volume with a one-letter name, use the "
                     "long syntax (type: volume, source: ..., target: ...)")
    for option in (parts[2].split(",") if len(parts) == 3 else []):
        if option in _CONSISTENCY:
            notes.append(f"option '{option}' is ignored: it only matters on Docker Desktop")
        elif option and option not in _KNOWN_OPTIONS:
            notes.append(f"unknown option '{option}' is ignored (known: ro, rw, nocopy, z, Z, "
                         "and the propagation modes)")
    return notes


def clean_target(target: str) -> str:
    """A container path cleaned as Compose cleans it (Go's ``path.Clean``).

    ``/data/`` -> ``/data``, ``./rel`` -> ``rel``, ``a/../b`` -> ``b``; POSIX keeps a leading
    ``//`` where Go does not."""
    if not target:
        return target
    cleaned = posixpath.normpath(target)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def is_file_path(source: str) -> bool:
    """Whether a short volume source names a host path (else it names a volume)."""
    return source[:1] in (".", "/", "~") or source.startswith("\\\\") or \
        (len(source) > 1 and source[0].isalpha() and source[1] == ":")


def parse_volume(spec: str) -> dict[str, Any]:
    """One short volume string as Compose's long form."""
    if not spec:
        raise ValueError("invalid empty volume spec")
    if len(spec) <= 2:
        # Compose reads any one- or two-character spec as an anonymous volume's target.
        return {"type": "volume", "target": spec}
    parts = _split_volume(spec)
    if len(parts) == 1:
        return {"type": "volume", "target": clean_target(parts[0]), "volume": {}}
    source, target = parts[0], parts[1]
    options = [o for o in parts[2].split(",") if o] if len(parts) == 3 else []
    bind = is_file_path(source)
    entry: dict[str, Any] = {"type": "bind" if bind else "volume"}
    if source:
        entry["source"] = source
    entry["target"] = clean_target(target)
    bind_opts: dict[str, Any] = {}
    volume_opts: dict[str, Any] = {}
    for option in options:
        if option == "ro":
            entry["read_only"] = True
        elif option == "rw":
            entry.pop("read_only", None)
        elif option == "nocopy":
            volume_opts["nocopy"] = True
        elif option in ("z", "Z"):
            bind_opts["selinux"] = option
        elif option in _BIND_PROPAGATION:
            bind_opts["propagation"] = option
        # Anything else (consistency flags, typos) Compose ignores without a word;
        # volume_notes() says so.
    # Compose fills both sub-mappings from the options, whatever the type.
    if bind:
        bind_opts["create_host_path"] = True
    if bind_opts:
        entry["bind"] = bind_opts
    if volume_opts or not bind:
        entry["volume"] = volume_opts
    return entry
