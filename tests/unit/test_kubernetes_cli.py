"""The ``composer convert`` command: Compose's alias of ``config``, and ``convert kubernetes``
with its outputs, options, report and ``--apply`` (against a stand-in kubectl)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from composer.cli.main import main

yaml = pytest.importorskip("yaml")
DATA = Path(__file__).parent / "data" / "kubernetes"
JOBS = str(DATA / "jobs" / "compose.yaml")
ODD = str(DATA / "unconvertible" / "compose.yaml")


def test_plain_convert_is_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", JOBS, "config", "--services"]) == 0
    config = capsys.readouterr().out
    assert main(["-f", JOBS, "convert", "--services"]) == 0
    assert capsys.readouterr().out == config
    assert main(["-f", JOBS, "config", "app", "--format", "json"]) == 0
    config = capsys.readouterr().out
    assert main(["-f", JOBS, "convert", "app", "--format", "json"]) == 0
    assert capsys.readouterr().out == config


def test_kubernetes_to_stdout_with_the_report_on_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", JOBS, "convert", "kubernetes", "--namespace", "ci"]) == 0
    captured = capsys.readouterr()
    objects = list(yaml.safe_load_all(captured.out))
    assert [o["kind"] for o in objects] == ["Namespace", "Service", "Deployment", "Job",
                                            "Job", "Job"]
    assert f"{JOBS}:15:7: services.app.depends_on.migrate: dropped:" in captured.err


def test_selected_services_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["-f", JOBS, "convert", "kubernetes", "--format", "json", "migrate"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["kind"] == "List"
    assert [(o["kind"], o["metadata"]["name"]) for o in listing["items"]] == [
        ("Deployment", "migrate")]  # nothing waits for it here: not a Job


def test_output_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.yaml"
    assert main(["-f", JOBS, "convert", "kubernetes", "-o", str(out)]) == 0
    assert capsys.readouterr().out == ""
    assert len(list(yaml.safe_load_all(out.read_text()))) == 5
    folder = tmp_path / "manifests"
    assert main(["-f", JOBS, "convert", "kubernetes", "--output-dir", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [
        "00-service-app.yaml", "01-deployment-app.yaml", "02-job-migrate.yaml",
        "03-job-report.yaml", "04-job-seed.yaml"]


def test_registry_and_image_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    override = tmp_path / "images.yaml"
    build = str(DATA / "build" / "compose.yaml")
    assert main(["-f", build, "convert", "kubernetes", "--registry", "reg.example:5000/t",
                 "--image-override", str(override)]) == 0
    images = [c["image"] for o in yaml.safe_load_all(capsys.readouterr().out)
              if o["kind"] == "Deployment" for c in o["spec"]["template"]["spec"]["containers"]]
    assert images == ["reg.example:5000/t/built-app", "registry.example.com/team/tagged:1.0"]
    assert yaml.safe_load(override.read_text()) == {"services": {
        "app": {"image": "reg.example:5000/t/built-app"},
        "tagged": {"image": "registry.example.com/team/tagged:1.0"}}}


@pytest.mark.parametrize("argv, message", [
    (["convert", "--namespace", "x"], "--namespace: only for 'composer convert kubernetes'"),
    (["convert", "kubernetes", "--hash", "*"], "--hash: not an option of"),
    (["convert", "kubernetes", "--namespace", "Bad_NS"], "a namespace is a DNS label"),
    (["convert", "kubernetes", "--registry", "https://r.example/x"], "no scheme"),
])
def test_usage_errors(argv: list[str], message: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", JOBS, *argv]) == 2
    assert message in capsys.readouterr().err


def test_strict_fails_when_something_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-f", ODD, "convert", "kubernetes", "-q", "--strict"]) == 1
    err = capsys.readouterr().err
    assert "--strict: 21 attributes could not be converted" in err
    assert f"{ODD}:7:5: services.app.network_mode: dropped: network_mode 'host'" in err
    assert f"{ODD}:13:9: services.app.volumes[0]: dropped: bind mount of the host path " \
        "/var/run/docker.sock" in err


def _kubectl(folder: Path, context_ok: bool) -> Path:
    script = folder / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1 $2" = "config current-context" ]; then\n'
        + ('  echo kind-test; exit 0\n' if context_ok else
           '  echo "error: current-context is not set" >&2; exit 1\n')
        + "fi\n"
        f'cat > "{folder}/applied.yaml"; echo "$@" > "{folder}/args"; echo applied\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_apply_hands_the_manifests_to_kubectl(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    _kubectl(tmp_path, context_ok=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["-f", JOBS, "--dry-run", "convert", "kubernetes", "--apply"]) == 0
    assert "applying to context kind-test" in capfd.readouterr().err
    assert len(list(yaml.safe_load_all((tmp_path / "applied.yaml").read_text()))) == 5
    assert (tmp_path / "args").read_text().split() == ["apply", "-f", "-", "--dry-run=client"]


def test_apply_explains_without_a_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _kubectl(tmp_path, context_ok=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["-f", JOBS, "convert", "kubernetes", "--apply"]) == 1
    err = capsys.readouterr().err
    assert "kubectl has no cluster to talk to (error: current-context is not set)" in err
    assert "kubectl config use-context NAME" in err


def test_apply_explains_without_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["-f", JOBS, "convert", "kubernetes", "--apply"]) == 1
    assert "kubectl is not installed" in capsys.readouterr().err
