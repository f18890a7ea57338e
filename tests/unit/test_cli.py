"""``composer`` as a user runs it: output, exit codes (0 ok, 1 invalid project, 2 usage)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from composer import __version__

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "webapp" / "compose.yaml"


def composer(*args: str, cwd: Path | None = None, stdin: str | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent",
               "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "composer", *args], cwd=cwd or ROOT,
                          input=stdin, capture_output=True, text=True, env=environ, timeout=60)


def test_version() -> None:
    result = composer("--version")
    assert (result.returncode, result.stdout) == (0, f"composer version {__version__}\n")
    assert composer("version", "--short").stdout == f"{__version__}\n"


def test_config_json_of_the_example() -> None:
    result = composer("-f", str(EXAMPLE), "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)
    assert project["name"] == "webapp"
    assert sorted(project["services"]) == ["api", "store", "web"]
    web = project["services"]["web"]
    assert web["ports"] == [{"mode": "ingress", "target": 8080, "published": "8080",
                             "protocol": "tcp"}]
    assert web["depends_on"]["api"] == {"condition": "service_healthy", "required": True}
    assert project["services"]["api"]["build"]["context"] == str(EXAMPLE.parent / "api")
    assert project["volumes"]["store-data"]["name"] == "webapp_store-data"


def test_config_yaml_is_the_default_and_reads_back(tmp_path: Path) -> None:
    import yaml

    result = composer("-f", str(EXAMPLE), "config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("name: webapp\nservices:\n")
    as_json = json.loads(composer("-f", str(EXAMPLE), "config", "--format", "json").stdout)
    # Compose's YAML leaves out what is null or empty in its types; nothing else.
    for service in as_json["services"].values():
        for key in ("command", "entrypoint"):
            if service[key] is None:
                del service[key]
    for network in as_json["networks"].values():
        if network.get("ipam") == {}:
            del network["ipam"]
    assert yaml.safe_load(result.stdout) == as_json
    # The YAML loads again to the same project.
    (tmp_path / "compose.yaml").write_text(result.stdout)
    again = composer("-f", str(tmp_path / "compose.yaml"), "config")
    assert again.stdout == result.stdout


def test_interpolation_from_the_shell_environment() -> None:
    result = composer("-f", str(EXAMPLE), "config", "--format", "json",
                      env={"WEB_PORT": "9999"})
    ports = json.loads(result.stdout)["services"]["web"]["ports"]
    assert ports[0]["published"] == "9999"


@pytest.mark.parametrize(("flag", "lines"), [
    ("--services", ["store", "api", "web"]),
    ("--volumes", ["store-data"]),
    # One image per service, by service name (api, store, web), as Compose lists them.
    ("--images", ["webapp-api", "localhost/busybox:latest", "localhost/busybox:latest"]),
])
def test_config_listings(flag: str, lines: list[str]) -> None:
    result = composer("-f", str(EXAMPLE), "config", flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == lines


def test_config_networks_lists_the_networks() -> None:
    result = composer("-f", str(EXAMPLE), "config", "--networks")
    assert sorted(result.stdout.split()) == ["back", "front"]


def test_config_variables() -> None:
    result = composer("-f", str(EXAMPLE), "config", "--variables")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "REQUIRED", "DEFAULT", "VALUE", "ALTERNATE", "VALUE"]
    assert ["WEB_PORT", "false", "8080"] in rows


def test_config_variables_of_extended_and_included_files_as_compose_lays_them_out(
        tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("services:\n  base:\n    image: ${BASE_IMAGE:-x}\n")
    (tmp_path / "inc.yaml").write_text("services:\n  inc:\n    image: i\n"
                                       "    user: ${A_VERY_LONG_VARIABLE_NAME?needed}\n")
    (tmp_path / "compose.yaml").write_text(
        "include: [inc.yaml]\nservices:\n  web:\n    extends: {file: base.yaml, service: base}"
        "\n    command: ${CMD:+run}\n")
    result = composer("config", "--variables", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "NAME                        REQUIRED            DEFAULT VALUE       ALTERNATE VALUE",
        "A_VERY_LONG_VARIABLE_NAME   true                                    ",
        "BASE_IMAGE                  false               x                   ",
        "CMD                         false                                   run",
    ]
    listed = json.loads(composer("config", "--variables", "--format", "json",
                                 cwd=tmp_path).stdout)
    assert listed["CMD"] == {"Name": "CMD", "DefaultValue": "", "PresenceValue": "run",
                             "Required": False}


def test_quiet_prints_nothing_and_output_file(tmp_path: Path) -> None:
    quiet = composer("-f", str(EXAMPLE), "config", "-q")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    target = tmp_path / "out.yaml"
    written = composer("-f", str(EXAMPLE), "config", "-o", str(target))
    assert written.returncode == 0 and written.stdout == ""
    assert target.read_text().startswith("name: webapp\n")


def test_stdin_file(tmp_path: Path) -> None:
    result = composer("-f", "-", "config", "--format", "json", cwd=tmp_path,
                      stdin="services:\n  a:\n    image: busybox\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == tmp_path.name.lower().replace(".", "")


def test_invalid_project_exits_1_with_a_located_message(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    imgae: nginx\n")
    result = composer("config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{tmp_path / 'compose.yaml'}:3:5" in result.stderr
    assert "imgae" in result.stderr and "did you mean 'image'?" in result.stderr


def test_usage_error_exits_2() -> None:
    result = composer("config", "--format", "toml")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_commands_not_implemented_yet_say_so() -> None:
    result = composer("-f", str(EXAMPLE), "scale")
    assert result.returncode == 1
    assert "'composer scale' is not implemented yet" in result.stderr


def test_unimplemented_attributes_warn_with_their_place(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "services:\n  web:\n    image: nginx\n    gpus: all\n")
    result = composer("config", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (f"warning: {tmp_path / 'compose.yaml'}:4:5: services.web.gpus: 'gpus' is ignored"
            in result.stderr)


def test_literal_dollars_are_printed_escaped_and_reload_unchanged(tmp_path: Path) -> None:
    # Compose prints every literal "$" as "$$" after interpolation, so its output loads again.
    (tmp_path / "compose.yaml").write_text(
        "services:\n  a:\n    image: busybox\n    command: echo $$HOME $(date)\n"
        "    environment:\n      A: \"$$B\"\n")
    first = composer("config", "--format", "json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    service = json.loads(first.stdout)["services"]["a"]
    assert service["command"] == ["echo", "$$HOME", "$$(date)"]
    assert service["environment"] == {"A": "$$B"}
    (tmp_path / "compose.yaml").write_text(composer("config", cwd=tmp_path).stdout)
    again = composer("config", "--format", "json", cwd=tmp_path)
    assert json.loads(again.stdout) == json.loads(first.stdout)
    raw = composer("config", "--no-interpolate", "--format", "json", cwd=tmp_path)
    assert json.loads(raw.stdout)["services"]["a"]["environment"] == {"A": "$$B"}


def test_an_empty_file_is_refused_at_its_first_line(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("# nothing here\n")
    result = composer("config", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'compose.yaml'}:1:1: empty compose file\n")


def test_config_profiles_reads_stdin_and_included_files(tmp_path: Path) -> None:
    (tmp_path / "inc.yaml").write_text("services:\n  inc:\n    image: i\n    profiles: [extra]\n")
    text = (f"include: [{tmp_path / 'inc.yaml'}]\nservices:\n  a:\n    image: x\n"
            "    profiles: [dev]\n  b:\n    image: y\n")
    result = composer("-f", "-", "config", "--profiles", stdin=text, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "dev\nextra\n"), result.stderr
