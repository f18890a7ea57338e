"""Inputs for the golden plan tests: small projects, observed states made from them, edits.

``running(project)`` is what the host holds after a clean ``up`` of ``project``: every
container running with its current config hash, every network and volume made, every image
present. The cases start from there and change one thing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from composer import load_project
from composer.manifest.model import Project
from composer.plan.reconcile import container_name, image_ref
from composer.state.labels import network_hash, service_config, service_hash, volume_hash
from composer.state.observed import Observed, ObservedContainer, ObservedResource

WEB_DB = """
services:
  web:
    image: nginx:1.27
    environment: {DEBUG: "0"}
    ports: ["8080:80"]
    depends_on:
      db: {condition: service_healthy}
  db:
    image: postgres:16
    volumes: [data:/var/lib/postgresql/data]
    healthcheck: {test: [CMD, pg_isready]}
volumes:
  data: {}
"""


def project(tmp: Path, text: str, name: str = "p", **kwargs: Any) -> Project:
    (tmp / "compose.yaml").write_text(text, encoding="utf-8")
    return load_project([str(tmp / "compose.yaml")], project_name=name,
                        environ={"PATH": "/bin"}, **kwargs)


def running(desired: Project, *, state: str = "running") -> Observed:
    containers = []
    for name in sorted(desired.services):
        service = desired.services[name]
        for number in range(1, service.replicas + 1):
            containers.append(ObservedContainer(
                id=f"{name}{number}".ljust(16, "0"), name=container_name(desired, service, number),
                service=name, number=number, config_hash=service_hash(service), state=state,
                image=image_ref(desired, service), image_id=image_id(image_ref(desired, service)),
                networks=tuple(sorted(service.networks)),
                volumes=tuple(sorted(m.source for m in service.volumes
                                     if m.type == "volume" and m.source)),
                config=service_config(service)))
    networks = tuple(ObservedResource(key=k, name=r.name, config_hash=network_hash(r))
                     for k, r in sorted(desired.networks.items()) if not r.external)
    volumes = tuple(ObservedResource(key=k, name=r.name, config_hash=volume_hash(r))
                    for k, r in sorted(desired.volumes.items()) if not r.external)
    images = {image_ref(desired, s): image_id(image_ref(desired, s))
              for s in desired.services.values()}
    return Observed(project=desired.name, containers=tuple(containers), networks=networks,
                    volumes=volumes, images=images)


def image_id(ref: str) -> str:
    """A made-up image id, the same for the same reference."""
    return "sha256:" + hashlib.sha256(ref.encode()).hexdigest()


def edit(observed: Observed, service: str,
         change: Callable[[ObservedContainer], ObservedContainer | None]) -> Observed:
    """``observed`` with every container of ``service`` changed (or dropped, for None)."""
    containers = []
    for container in observed.containers:
        if container.service == service:
            changed = change(container)
            if changed is not None:
                containers.append(changed)
        else:
            containers.append(container)
    return dataclasses.replace(observed, containers=tuple(containers))


def with_state(state: str, exit_code: int | None = None) -> Callable[
        [ObservedContainer], ObservedContainer]:
    return lambda c: dataclasses.replace(c, state=state, exit_code=exit_code)
