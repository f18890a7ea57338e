"""The ci-sample stack, tested through composer's pytest plugin.

``composer_stack`` is the project pytest.ini names (compose.yaml with sample.env), brought up
once with ``composer up -d --wait`` under a project name of its own (``ci-sample-XXXXXXXX``)
and taken down with ``composer down -v --remove-orphans`` after the last test.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from composer.pytest_plugin import Stack


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_web_serves_the_seeded_greeting(composer_stack: Stack) -> None:
    status, body = _get(composer_stack.url("web", 8080, "/cgi-bin/greeting"))
    assert (status, body) == (200, "hello from ci-sample\n")


def test_web_is_healthy_and_the_seed_job_exited_0(composer_stack: Stack) -> None:
    states = {row["Service"]: row for row in composer_stack.ps()}
    assert states["web"]["State"] == "running" and states["web"]["Health"] == "healthy"
    assert states["seed"]["State"] == "exited" and states["seed"]["ExitCode"] == 0


def test_the_published_port_is_a_random_free_one(composer_stack: Stack) -> None:
    host, port = composer_stack.port("web", 8080)
    assert host == "127.0.0.1" and 0 < port < 65536
    assert composer_stack.url("web", 8080) == f"http://127.0.0.1:{port}"


def test_exec_gives_the_exit_code_and_both_streams(composer_stack: Stack) -> None:
    done = composer_stack.exec("web", "sh", "-c", "cat /data/greeting; echo oops >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr) == (3, "hello from ci-sample\n", "oops\n")


def test_the_volume_is_read_only_in_web(composer_stack: Stack) -> None:
    done = composer_stack.exec("web", "sh", "-c", "echo x >/data/greeting")
    assert done.returncode != 0


def test_logs_show_each_service(composer_stack: Stack) -> None:
    assert "seed: wrote greeting 'hello from ci-sample'" in composer_stack.logs("seed")
    assert "web: serving on :8080" in composer_stack.logs("web")


@pytest.mark.parametrize("name", ["seed", "web"])
def test_the_project_name_is_unique_to_this_session(composer_stack: Stack, name: str) -> None:
    assert composer_stack.project.startswith("ci-sample-")
    assert any(row["Name"] == f"{composer_stack.project}-{name}-1"
               for row in composer_stack.ps(name))
