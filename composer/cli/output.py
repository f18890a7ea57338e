"""Rendering plain data as Compose prints it: canonical key order, YAML or JSON."""

from __future__ import annotations

import json
from typing import Any

# Top-level order of ``docker compose config`` in YAML; extension keys come last.
_YAML_TOP = ("name", "include", "services", "networks", "volumes", "secrets", "configs",
             "models")


def ordered(project: dict[str, Any], *, fmt: str) -> dict[str, Any]:
    """Compose's order: JSON sorts keys (name first); YAML follows the file format's order."""
    if fmt == "json":
        keys = ["name", *sorted(k for k in project if k != "name")]
    else:
        keys = [k for k in _YAML_TOP if k in project]
        keys += sorted(k for k in project if k not in _YAML_TOP)
    out = {k: project[k] for k in keys if k in project}
    services = out.get("services")
    if isinstance(services, dict):
        out["services"] = {name: _sorted_keys(spec) for name, spec in services.items()}
    return out


def _sorted_keys(spec: Any) -> Any:
    if isinstance(spec, dict):
        return {k: spec[k] for k in sorted(spec)}
    return spec


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_yaml(data: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        # Indent sequences under their key, as Compose (and most people) write them.
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value and value.strip() == value.rstrip("\n").strip() else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    text: str = yaml.dump(data, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                          allow_unicode=True, width=1 << 16)
    return text
