"""composer's pytest plugin, used as a project uses it: pytest runs examples/ci-sample's tests
(and tests written here beside them) in a subprocess against the test engine's state root.

The runs read only the sample's pytest.ini (``-c``), never this suite's pyproject.toml or
conftest.py, and write no cache or bytecode into examples/.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Engine

pytestmark = [pytest.mark.root, pytest.mark.runc, pytest.mark.slow]
SAMPLE = ROOT / "examples" / "ci-sample"


def _pytest(engine: Engine, rootdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-c", str(SAMPLE / "pytest.ini"),
               "--rootdir", str(rootdir), "-p", "no:cacheprovider",
               "-o", f"composer_root={engine.root}", *args]
    return subprocess.run(command, cwd=rootdir, capture_output=True, text=True,
                          env={**engine.env(), "PYTHONDONTWRITEBYTECODE": "1"}, timeout=600)


def _left(engine: Engine) -> dict[str, list[str]]:
    """The containers, volumes and networks in the engine's root."""
    return {
        "containers": engine.cli("container", "ls", "-aq", check=True).stdout.split(),
        "volumes": engine.cli("volume", "ls", "-q", check=True).stdout.split(),
        "networks": [line for line in engine.cli("network", "ls", check=True).stdout
                     .splitlines()[1:] if line.strip()],
    }


NOTHING: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": []}


def test_the_sample_passes_against_a_real_stack_and_leaves_nothing(engine: Engine) -> None:
    run = _pytest(engine, SAMPLE, str(SAMPLE / "tests"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert " 8 passed" in run.stdout, run.stdout
    assert _left(engine) == NOTHING


def test_a_failing_test_gets_the_service_logs_and_a_failed_up_is_torn_down(
        engine: Engine, tmp_path: Path) -> None:
    # One module on the sample's stack with a test that fails; one whose stack cannot come up
    # (an empty GREETING fails the seed job, so web never starts).
    (tmp_path / "test_wrong_greeting.py").write_text(textwrap.dedent("""
        def test_expects_another_greeting(composer_stack):
            done = composer_stack.exec("web", "cat", "/data/greeting")
            assert done.stdout == "good evening\\n"

        def test_passes(composer_stack):
            assert composer_stack.project.startswith("ci-sample-")
        """))
    (tmp_path / "empty.env").write_text("GREETING=\n")
    (tmp_path / "test_seed_fails.py").write_text(textwrap.dedent("""
        import pytest

        pytestmark = pytest.mark.composer(env_files=["empty.env"], scope="module")

        def test_never_runs(composer_stack):
            raise AssertionError("the stack came up")
        """))
    run = _pytest(engine, tmp_path, str(tmp_path))
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "1 failed, 1 passed, 1 error" in out, out
    failure = out[out.index("_ test_expects_another_greeting _"):]
    # The report of the failing test has a section per service, with that service's logs.
    assert "- composer logs: ci-sample-" in failure, failure
    assert " web (Up " in failure and "web-1  | web: serving on :8080" in failure, failure
    assert " seed (Exited (0) " in failure, failure
    assert "seed-1  | seed: wrote greeting 'hello from ci-sample'" in failure, failure
    # The failed up says what happened, the failed job's logs first.
    error = out[out.index("ERROR at setup of test_never_runs"):]
    assert "composer up -d --wait (project " in error, error
    assert "seed: GREETING is empty" in error, error
    assert " seed (Exited (1) " in error, error
    assert "the stack came up" not in out
    # Both stacks, the one that came up and the one that did not, are gone.
    assert _left(engine) == NOTHING


def test_composer_keep_leaves_the_stack_and_says_how_to_remove_it(engine: Engine) -> None:
    run = _pytest(engine, SAMPLE, "--composer-keep", str(SAMPLE / "tests"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "composer: stacks kept (--composer-keep)" in run.stdout, run.stdout
    lines = run.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("kept project "))
    project = lines[at].split()[2].rstrip(";")
    left = _left(engine)
    assert len(left["containers"]) == 2, left
    assert engine.inspect(f"{project}-web-1")["State"]["Status"] == "running"
    assert engine.inspect(f"{project}-seed-1")["State"]["ExitCode"] == 0
    assert left["volumes"] == [f"{project}_data"]
    # The command it printed removes the stack.
    remove = subprocess.run(shlex.split(lines[at + 1]), capture_output=True, text=True,
                            env=engine.env(), cwd=ROOT, timeout=300)
    assert remove.returncode == 0, remove.stderr
    assert _left(engine) == NOTHING
