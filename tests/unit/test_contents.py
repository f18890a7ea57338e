"""A changed secret or config recreates the services that use it, and only those."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from composer.manifest.contents import UNREADABLE, contents
from composer.plan.reconcile import Options, reconcile
from composer.plan.render import to_text
from composer.state.labels import service_config, service_hash
from tests.unit.plan_cases import project, running

SECRETS = """
services:
  web:
    image: web:1
    secrets: [token, {source: from_env, target: /x}]
    configs: [inline]
  db:
    image: db:1
secrets:
  token: {file: ./token.txt}
  from_env: {environment: SECRET_VALUE}
  outside: {external: true}
configs:
  inline: {content: "hello"}
"""


def test_contents_digest_each_source(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("one\n")
    p = project(tmp_path, SECRETS)
    found = contents(p)
    assert sorted(found) == ["configs.inline", "secrets.from_env", "secrets.token"]
    assert all(d.startswith("sha256:") for d in found.values())
    (tmp_path / "token.txt").write_text("two\n")
    assert contents(p)["secrets.token"] != found["secrets.token"]
    (tmp_path / "token.txt").unlink()
    assert contents(p)["secrets.token"] == UNREADABLE


def test_only_the_services_that_use_a_changed_secret_are_recreated(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("one\n")
    p = project(tmp_path, SECRETS)
    before = contents(p)
    observed = running(p)
    web = p.services["web"]
    observed = dataclasses.replace(observed, containers=tuple(
        dataclasses.replace(c, config_hash=service_hash(web, before),
                            config=service_config(web, before)) if c.service == "web" else c
        for c in observed.containers))
    assert not reconcile(p, observed, Options(contents=before)).changes  # nothing changed
    (tmp_path / "token.txt").write_text("two\n")
    text = to_text(reconcile(p, observed, Options(contents=contents(p))))
    assert "web" in text and "contents.secrets.token" in text, text
    assert "db" not in text, text


def test_a_service_without_secrets_keeps_its_hash(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("one\n")
    p = project(tmp_path, SECRETS)
    db = p.services["db"]
    assert service_hash(db, contents(p)) == service_hash(db)
    assert "contents" not in service_config(db, contents(p))
