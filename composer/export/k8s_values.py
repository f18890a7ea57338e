"""Pure value conversions: Kubernetes names, label syntax, quantities and durations.

The JSON schemas that ``kubectl`` and ``kubernetes-validate`` check do not carry the API
server's own rules for names and labels; these functions keep to those rules (DNS-1123 labels
and subdomains, qualified names, IANA service names) so that a real cluster accepts the output.
"""

from __future__ import annotations

import hashlib
import math
import re

_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def dns_label(name: str, limit: int = 63) -> str:
    """``name`` as a DNS-1123 label (lowercase letters, digits, ``-``; at most ``limit``).

    A name that had to be shortened keeps a short hash of the original, so two long names
    that share a prefix stay distinct."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text) or "x"
    if len(text) > limit or (text != name.lower() and len(text) > limit - 6):
        digest = hashlib.sha256(name.encode()).hexdigest()[:5]
        text = f"{text[:limit - 6].rstrip('-')}-{digest}"
    return text


def dns1035_label(name: str) -> str:
    """A DNS-1035 label (what Service names are): a DNS-1123 label starting with a letter."""
    text = dns_label(name)
    return text if text[0].isalpha() else dns_label(f"s-{text}")


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL.match(name))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def is_qualified_name(key: str) -> bool:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (prefix == "" and key.startswith("/")):
        return False
    if prefix and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= 63 and bool(_LABEL_NAME.match(value)))


def label_value(value: str) -> str:
    """``value`` made into a valid label value (selector labels are built from names)."""
    if is_label_value(value):
        return value
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")
    if len(text) > 63:
        digest = hashlib.sha256(value.encode()).hexdigest()[:5]
        text = f"{text[:57].rstrip('-_.')}-{digest}"
    return text


def is_port_name(name: str) -> bool:
    """An IANA service name: what container and Service port names must be."""
    return (len(name) <= 15 and bool(_DNS_LABEL.match(name)) and "--" not in name
            and any(c.isalpha() for c in name))


def config_key(name: str) -> str:
    """A ConfigMap or Secret data key (``[-._a-zA-Z0-9]+``)."""
    return re.sub(r"[^-._a-zA-Z0-9]+", "-", name).strip("-") or "data"


def duration_seconds(value: object) -> float | None:
    """A Compose duration (Go syntax, ``1m30s``, ``500ms``; or a number of seconds)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def whole_seconds(seconds: float, minimum: int = 1) -> int:
    """Seconds rounded up (probes count in whole seconds), at least ``minimum``."""
    return max(minimum, math.ceil(seconds - 1e-9))


def cpu_quantity(value: object) -> str | None:
    """Compose ``cpus`` (a float) as a Kubernetes CPU quantity (``2``, ``500m``)."""
    try:
        cpus = float(str(value))
    except ValueError:
        return None
    if cpus <= 0:
        return None
    millis = round(cpus * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(value: object) -> str | None:
    """A byte count (the loader has read ``512m`` into bytes) as a Kubernetes quantity."""
    try:
        count = int(str(value))
    except ValueError:
        return None
    if count <= 0:
        return None
    for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def escape_dollars(text: str) -> str:
    """Kubernetes expands ``$(VAR)`` and reduces ``$$`` to ``$`` in commands, arguments and
    env values, where Compose passes them through: such text gets every ``$`` doubled."""
    return text.replace("$", "$$") if "$(" in text or "$$" in text else text
