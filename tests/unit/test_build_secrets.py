"""Build secrets before the engine sees them: ``image build --secret`` read as Docker's buildx
reads it, compose's ``build.secrets`` resolved against the top-level secrets, and the
engine's side of the wire (values never shown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from composer.cli.commands.project_build import build_body, compose_secrets, secret_flag
from composer.engine.build_mounts import BuildSecret
from composer.engine.build_routes import _secrets
from composer.errors import ComposerError, UsageError


def test_a_file_secret_is_sent_as_its_absolute_path(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.chdir(tmp_path)
    for text in ("id=tok,src=token", "id=tok,source=token", "type=file,id=tok,src=token",
                 "ID=tok,SRC=token"):
        assert secret_flag(text, {}) == {"id": "tok", "file": str(tmp_path / "token"),
                                         "origin": "the file token"}


def test_an_env_secret_is_sent_as_its_value_or_named_when_unset() -> None:
    environ = {"MY_KEY": "v1"}
    assert secret_flag("id=key,env=MY_KEY", environ) == {
        "id": "key", "value": "v1", "origin": "the environment variable MY_KEY"}
    # type=env takes src= as the variable's name, as buildx does.
    assert secret_flag("type=env,id=key,src=MY_KEY", environ)["value"] == "v1"
    assert secret_flag("id=key,env=UNSET_HERE", environ) == {
        "id": "key", "origin": "the environment variable UNSET_HERE"}


def test_without_a_source_the_id_names_a_variable_else_a_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert secret_flag("id=MY_KEY", {"MY_KEY": "v"})["value"] == "v"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "npmrc").write_text("x")
    assert secret_flag("id=npmrc", {})["file"] == str(tmp_path / "npmrc")


@pytest.mark.parametrize(("text", "message"), [
    ("src=/etc/hostname", "needs an id"),
    ("id=a,src=/no/such/file", "/no/such/file: no such file"),
    ("id=a,type=ssh", "unsupported secret type 'ssh'"),
    ("id=a,mode=0400", "unexpected key 'mode'"),
    ("id=a,src", "invalid field 'src'"),
])
def test_wrong_secret_flags_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        secret_flag(text, {})


def _project(tmp_path: Path, compose: str, environ: dict[str, str] | None = None) -> Any:
    from composer.manifest.loader import load_project

    (tmp_path / "compose.yaml").write_text(compose)
    return load_project([str(tmp_path / "compose.yaml")], environ=environ or {})


COMPOSE = """\
services:
  app:
    build:
      context: .
      secrets:
        - token
        - source: password
          target: pass
secrets:
  token:
    file: ./token.txt
  password:
    environment: BUILD_PASS_FOR_TEST
"""


def test_compose_build_secrets_name_files_and_variables(tmp_path: Path) -> None:
    project = _project(tmp_path, COMPOSE, {"BUILD_PASS_FOR_TEST": "pw"})
    found = compose_secrets(project, project.services["app"])
    assert found == [
        {"id": "token", "file": str(tmp_path / "token.txt"),
         "origin": f"the file {tmp_path / 'token.txt'} of secrets.token"},
        {"id": "pass", "value": "pw", "origin": "the environment variable BUILD_PASS_FOR_TEST"},
    ]
    import argparse

    body = build_body(project, project.services["app"],
                      argparse.Namespace(build_arg=[], no_cache=False, pull=False))
    assert body["secrets"] == found and body["platform"] is None


def test_compose_build_platforms_go_to_the_engine(tmp_path: Path) -> None:
    import argparse

    project = _project(tmp_path, "services:\n  app:\n    build:\n      context: .\n"
                       "      platforms: [linux/amd64, linux/arm64]\n")
    body = build_body(project, project.services["app"],
                      argparse.Namespace(build_arg=[], no_cache=False, pull=False))
    assert body["platform"] == "linux/amd64,linux/arm64"


def test_an_external_secret_cannot_be_a_build_secret(tmp_path: Path) -> None:
    project = _project(tmp_path, "services:\n  app:\n    build:\n      context: .\n"
                       "      secrets: [vault]\nsecrets:\n  vault:\n    external: true\n")
    with pytest.raises(ComposerError, match="only secrets with file: or environment:"):
        compose_secrets(project, project.services["app"])


def test_the_engine_reads_the_wire_form_and_never_shows_a_value() -> None:
    found = _secrets([{"id": "a", "file": "/run/a", "origin": "the file a"},
                      {"id": "b", "value": "hidden-value"},
                      {"id": "c", "origin": "the environment variable C"}])
    assert found["a"] == BuildSecret("a", Path("/run/a"), None, "the file a")
    assert found["b"].value == "hidden-value" and found["c"].value is None
    assert "hidden-value" not in repr(found)
    from composer.engine.build import BuildRequest

    assert "hidden-value" not in repr(BuildRequest(Path("/"), secrets=found))
    from composer.engine.server import ApiError

    with pytest.raises(ApiError, match="needs an id"):
        _secrets([{"file": "/x"}])
    with pytest.raises(ApiError, match="absolute path"):
        _secrets([{"id": "a", "file": "relative"}])
