"""The CI jobs of docs/ci.md, run as written: the GitHub Actions steps and the GitLab CI
scripts, in order, with their ``if: always()`` / ``after_script`` teardown, against the
test's own state root. Only the set-up step is left out (the test machine is set up)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import ROOT, Engine

DOC = ROOT / "docs" / "ci.md"


def _yaml_blocks() -> dict[str, Any]:
    """The page's YAML blocks, by the file name their first comment line gives."""
    blocks = {}
    for body in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S):
        first = body.splitlines()[0]
        blocks[first.lstrip("# ").strip()] = yaml.safe_load(body)
    return blocks


def _run(step: str, env: dict[str, str], cwd: Path) -> int:
    command = step.replace("sudo -E ", "").replace("sudo ", "")
    return subprocess.run(["bash", "-ec", command], env=env, cwd=cwd, timeout=600).returncode


def _env(engine: Engine, variables: dict[str, str]) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the composer of this checkout
    env = {**engine.env(), "COMPOSER_ROOT": str(engine.root), "CI": "true",
           "PATH": f"{bin_dir}:{engine.env()['PATH']}"}
    for key, value in variables.items():
        value = re.sub(r"\$\{\{[^}]*\}\}|\$CI_JOB_ID", "7", str(value))
        env[key] = str(ROOT / value) if key == "COMPOSE_FILE" else value
    return env


def _assert_clean(engine: Engine) -> None:
    assert engine.cli("container", "ls", "-a", "-q", check=True).stdout.strip() == ""
    assert engine.cli("volume", "ls", "-q", check=True).stdout.strip() == ""


def test_the_github_actions_job(engine: Engine, tmp_path: Path) -> None:
    workflow = _yaml_blocks()[".github/workflows/integration.yml"]
    job = workflow["jobs"]["integration"]
    env = _env(engine, job["env"])
    failed = False
    ran = []
    for step in job["steps"]:
        if "run" not in step or step.get("name") == "Set up composer":
            continue
        if failed and step.get("if") != "always()":
            continue
        ran.append(step["name"])
        failed = _run(step["run"], env, tmp_path) != 0 or failed
    assert not failed and ran == ["Bring the stack up", "Smoke test", "Collect the logs",
                                  "Tear down"]
    assert "web-1" in (tmp_path / "stack.log").read_text()
    _assert_clean(engine)


def test_the_gitlab_ci_job(engine: Engine, tmp_path: Path) -> None:
    job = _yaml_blocks()[".gitlab-ci.yml"]["integration"]
    env = _env(engine, job["variables"])
    assert job["before_script"] == ["bash scripts/setup.sh"]
    outcome = [_run(line, env, tmp_path) for line in job["script"]]
    teardown = [_run(line, env, tmp_path) for line in job["after_script"]]
    assert outcome == [0, 0] and teardown == [0, 0]
    assert "web-1" in (tmp_path / "stack.log").read_text()
    _assert_clean(engine)


@pytest.fixture(autouse=True)
def _needs_the_sample() -> None:
    if not (ROOT / "examples" / "ci-sample" / "compose.yaml").exists():
        pytest.skip("examples/ci-sample is not in this checkout")
