"""composer.pytest_plugin without an engine: its pure parts, the Stack's composer command
lines (through a recording runner), and whole pytest runs against a fake ``composer`` that
records what it was asked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from composer.pytest_plugin import (
    Settings,
    Stack,
    StackError,
    Stacks,
    parse_port,
    parse_ps,
    services_for_logs,
    settings_from_ini,
    unique_project_name,
    with_marker,
)

ROOT = Path(__file__).resolve().parents[2]
BASE = Settings(command=("composer",), directory="/src/app")


# --- settings ------------------------------------------------------------------------------


def test_ini_paths_are_relative_to_the_ini_file_and_the_command_defaults_to_this_python() -> None:
    settings = settings_from_ini({
        "composer_file": ["compose.yaml", "ci/override.yaml"], "composer_project": " ",
        "composer_profiles": ["debug"], "composer_env_files": ["ci.env"],
        "composer_root": "state", "composer_up_args": ["--build"], "composer_log_tail": "",
    }, "/src/app", "/src")
    assert settings.files == ("/src/app/compose.yaml", "/src/app/ci/override.yaml")
    assert settings.env_files == ("/src/app/ci.env",)
    assert settings.root == "/src/app/state" and settings.directory == "/src"
    assert settings.command == (sys.executable, "-m", "composer")
    assert (settings.project, settings.profiles, settings.up_args, settings.log_tail) == \
        ("", ("debug",), ("--build",), "200")


def test_global_args_name_the_project_its_files_profiles_env_files_and_root() -> None:
    settings = Settings(command=("composer",), directory="/src", files=("/src/a.yaml",),
                        profiles=("p1", "p2"), env_files=("/src/x.env",), root="/state")
    assert settings.global_args("app-1") == [
        "--root", "/state", "-f", "/src/a.yaml", "-p", "app-1", "--profile", "p1",
        "--profile", "p2", "--env-file", "/src/x.env"]
    assert BASE.global_args("app-1") == ["-p", "app-1"]


def test_a_marker_overrides_the_ini_with_paths_relative_to_the_rootdir() -> None:
    ini = Settings(command=("composer",), directory="/src", files=("/src/compose.yaml",),
                   env_files=("/src/a.env",), profiles=("x",))
    marked = with_marker(ini, {"file": "other/compose.yaml", "env_files": ["b.env"],
                               "profiles": [], "project": "mine", "scope": "module"}, "/src")
    assert marked.files == ("/src/other/compose.yaml",)
    assert marked.env_files == ("/src/b.env",) and marked.profiles == ()
    assert (marked.project, marked.scope) == ("mine", "module")
    assert with_marker(ini, {}, "/src") == ini  # equal settings: one shared stack


@pytest.mark.parametrize(("kwargs", "said"), [
    ({"files": "a.yaml"}, "unknown keyword(s) files"),
    ({"scope": "class"}, "scope must be 'session' or 'module'"),
    ({"profiles": [1]}, "profiles must be a string or a list of strings"),
])
def test_a_wrong_marker_is_an_error(kwargs: dict[str, object], said: str) -> None:
    with pytest.raises(ValueError, match=said.replace("(", r"\(").replace(")", r"\)")):
        with_marker(BASE, kwargs, "/src")


def test_the_default_project_name_is_the_folder_and_a_suffix() -> None:
    assert unique_project_name(BASE, "ab12") == "app-ab12"
    with_file = Settings(command=(), directory="/src", files=("/src/My Stack/compose.yaml",))
    assert unique_project_name(with_file, "ab12") == "mystack-ab12"
    assert unique_project_name(Settings(command=(), directory="/"), "ab12") == "stack-ab12"
    assert unique_project_name(Settings(command=(), directory="/", project="fixed"), "x") == \
        "fixed"


# --- composer's output ---------------------------------------------------------------------


@pytest.mark.parametrize(("output", "address"), [
    ("0.0.0.0:49153\n", ("127.0.0.1", 49153)),
    ("[::]:49153\n", ("::1", 49153)),
    ("127.0.0.2:8080\n[::]:8080\n", ("127.0.0.2", 8080)),
    ("[fd00::1]:80", ("fd00::1", 80)),
])
def test_port_output_becomes_an_address_to_connect_to(output: str,
                                                     address: tuple[str, int]) -> None:
    assert parse_port(output) == address


def test_port_output_that_is_no_address_is_an_error() -> None:
    with pytest.raises(StackError, match="not HOST:PORT"):
        parse_port("\n")


def test_ps_json_is_read_as_lines_or_as_one_array() -> None:
    rows = [{"Service": "web"}, {"Service": "db"}]
    assert parse_ps("".join(json.dumps(r) + "\n" for r in rows)) == rows
    assert parse_ps(json.dumps(rows)) == rows
    assert parse_ps("") == []


def test_services_in_trouble_come_first_in_the_logs() -> None:
    rows = [
        {"Service": "api", "State": "running", "Health": "healthy", "Status": "Up (healthy)"},
        {"Service": "web", "State": "running", "Health": "", "Status": "Up 1 second"},
        {"Service": "web", "State": "running", "Health": "unhealthy", "Status": "Up (unhealthy)"},
        {"Service": "job", "State": "exited", "ExitCode": 0, "Status": "Exited (0)"},
        {"Service": "migrate", "State": "exited", "ExitCode": 2, "Status": "Exited (2)"},
        {"Service": "cache", "State": "created", "Status": "Created"},
    ]
    assert services_for_logs(rows) == [
        ("cache", ["Created"]), ("migrate", ["Exited (2)"]),
        ("web", ["Up 1 second", "Up (unhealthy)"]),
        ("api", ["Up (healthy)"]), ("job", ["Exited (0)"])]


# --- the stack's command lines -------------------------------------------------------------


class Recorder:
    """A runner answering from a table of (command word -> (exit code, stdout))."""

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, command: Sequence[str], cwd: str, stdin: str | None,
                 merged: bool) -> subprocess.CompletedProcess[str]:
        self.calls.append((list(command), merged))
        verb = next(w for w in command[command.index("-p") + 2:] if not w.startswith("-")
                    and w != "plain")
        code, out = self.answers.get(verb, (0, ""))
        return subprocess.CompletedProcess(list(command), code, out, "" if code == 0 else
                                           f"error: {verb} failed")

    def commands(self) -> list[list[str]]:
        return [c[c.index("-p") + 2:] for c, _ in self.calls]


def _stack(recorder: Recorder) -> Stack:
    return Stack("app-1", Settings(command=("composer",), directory="/src", root="/state"),
                 recorder)


def test_port_url_exec_and_logs_are_composer_commands() -> None:
    recorder = Recorder({"port": (0, "0.0.0.0:49153\n"), "exec": (3, "out\n"),
                         "logs": (0, "web-1  | hi\n")})
    stack = _stack(recorder)
    assert stack.url("web", 8080, "health") == "http://127.0.0.1:49153/health"
    assert stack.port("web", 53, protocol="udp", index=2) == ("127.0.0.1", 49153)
    done = stack.exec("web", "sh", "-c", "exit 3", env={"A": "1"}, user="app", workdir="/w")
    assert done.returncode == 3 and done.stdout == "out\n"
    assert stack.logs("web", tail=5) == "web-1  | hi\n"
    assert recorder.calls[0][0][:5] == ["composer", "--root", "/state", "-p", "app-1"]
    assert recorder.commands() == [
        ["port", "--protocol", "tcp", "web", "8080"],
        ["port", "--protocol", "udp", "--index", "2", "web", "53"],
        ["exec", "-T", "-e", "A=1", "-u", "app", "-w", "/w", "web", "sh", "-c", "exit 3"],
        ["logs", "--no-color", "--tail", "5", "web"]]
    assert [merged for _, merged in recorder.calls] == [False, False, False, True]
    with pytest.raises(StackError, match="exited 3"):
        stack.exec("web", "false", check=True)


def test_a_port_not_published_is_an_error_naming_the_project() -> None:
    stack = _stack(Recorder({"port": (1, "")}))
    with pytest.raises(StackError, match=r"composer port --protocol tcp web 9 \(project app-1\)"
                                         r" exited 1: error: port failed"):
        stack.port("web", 9)


def test_report_sections_hold_each_services_logs_troubled_first() -> None:
    rows = [{"Service": "web", "State": "running", "Status": "Up"},
            {"Service": "db", "State": "exited", "ExitCode": 1, "Status": "Exited (1)"}]
    recorder = Recorder({"ps": (0, "".join(json.dumps(r) + "\n" for r in rows)),
                         "logs": (0, "some lines\n")})
    sections = _stack(recorder).report_sections()
    assert sections == [("composer logs: app-1 db (Exited (1))", "some lines\n"),
                        ("composer logs: app-1 web (Up)", "some lines\n")]
    assert recorder.commands()[1:] == [["logs", "--no-color", "--tail", "200", "db"],
                                       ["logs", "--no-color", "--tail", "200", "web"]]
    failing = _stack(Recorder({"ps": (1, "")})).report_sections()
    assert failing[0][0] == "composer ps: app-1" and "exited 1" in failing[0][1]


def test_the_down_command_is_one_to_paste() -> None:
    stack = Stack("app-1", Settings(command=("composer",), directory="/src dir",
                                    files=("/src dir/c.yaml",)), Recorder())
    assert stack.down_command() == \
        "composer -f '/src dir/c.yaml' -p app-1 down -v --remove-orphans"
    assert _stack(Recorder()).down_command() == \
        "cd /src && composer --root /state -p app-1 down -v --remove-orphans"


# --- bringing stacks up and down -----------------------------------------------------------


def _stacks(recorder: Recorder, keep: bool = False) -> Stacks:
    return Stacks(keep=keep, kept=[], runner=recorder, suffix=lambda: "s1")


def test_equal_settings_share_one_stack_and_close_takes_it_down() -> None:
    recorder = Recorder()
    stacks = _stacks(recorder)
    first = stacks.get(BASE)
    assert stacks.get(BASE) is first and first.project == "app-s1"
    stacks.close()
    assert recorder.commands() == [["--progress", "plain", "up", "-d", "--wait"],
                                   ["--progress", "plain", "down", "-v", "--remove-orphans"]]


def test_a_failed_up_is_taken_down_and_not_tried_again() -> None:
    recorder = Recorder({"up": (1, "✘ Container app-s1-db-1  Error\n"),
                         "ps": (0, json.dumps({"Service": "db", "State": "exited",
                                               "ExitCode": 1, "Status": "Exited (1)"})),
                         "logs": (0, "db-1  | no config\n")})
    stacks = _stacks(recorder)
    with pytest.raises(StackError) as failed:
        stacks.get(BASE)
    text = str(failed.value)
    assert "composer up -d --wait (project app-s1) exited 1" in text
    assert "Container app-s1-db-1  Error" in text and "error: up failed" in text
    assert "--- composer logs: app-s1 db (Exited (1)) ---\ndb-1  | no config" in text
    with pytest.raises(StackError, match="failed earlier"):
        stacks.get(BASE)
    stacks.close()
    assert [c[2] for c in recorder.commands()].count("up") == 1
    assert recorder.commands()[-1] == ["--progress", "plain", "down", "-v", "--remove-orphans"]


def test_keep_records_the_stacks_instead_of_taking_them_down() -> None:
    recorder = Recorder()
    stacks = _stacks(recorder, keep=True)
    stack = stacks.get(BASE)
    stacks.close()
    assert stacks.kept == [stack]
    assert "down" not in [w for c in recorder.commands() for w in c]


def test_close_tries_every_stack_and_raises_the_first_failure() -> None:
    recorder = Recorder({"down": (1, "")})
    stacks = _stacks(recorder)
    stacks.get(BASE)
    stacks.get(Settings(command=("composer",), directory="/src/other"))
    with pytest.raises(StackError, match="down"):
        stacks.close()
    assert [c[2] for c in recorder.commands()].count("down") == 2


# --- inside pytest ---------------------------------------------------------------------------


def test_importing_the_plugin_loads_no_part_of_composer_beyond_its_errors() -> None:
    code = ("import sys, composer.pytest_plugin; "
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('composer', 'yaml', 'jsonschema', 'networkx', 'pyroute2'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.split() == ["composer", "composer.__about__", "composer.errors",
                                   "composer.pytest_plugin"]


FAKE_COMPOSER = """\
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
verb = next(a for a in args[args.index("-p") + 2:] if not a.startswith("-") and a != "plain")
if verb == "port":
    print("0.0.0.0:40001")
elif verb == "ps":
    print(json.dumps({"Service": "web", "State": "running", "Status": "Up 2 seconds"}))
elif verb == "logs":
    print("web-1  | listening")
    print("web-1  | warning on stderr", file=sys.stderr)
"""


def _run_pytest(tmp_path: Path, tests: str, *args: str) -> tuple[subprocess.CompletedProcess[str],
                                                                  list[list[str]]]:
    (tmp_path / "fake_composer.py").write_text(FAKE_COMPOSER)
    (tmp_path / "pytest.ini").write_text(textwrap.dedent(f"""\
        [pytest]
        composer_command = {sys.executable} fake_composer.py
        composer_file = compose.yaml
        """))
    (tmp_path / "test_it.py").write_text(textwrap.dedent(tests))
    log = tmp_path / "calls.log"
    log.touch()
    env = {**os.environ, "FAKE_LOG": str(log), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-c", str(tmp_path / "pytest.ini"),
                           "--rootdir", str(tmp_path), "-p", "no:cacheprovider", *args,
                           str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return done, [c[c.index("-p") + 2:] for c in calls]


def test_tests_that_use_no_stack_never_call_composer(tmp_path: Path) -> None:
    done, calls = _run_pytest(tmp_path, """
        def test_plain():
            assert True

        def test_failing():
            assert False
        """)
    assert done.returncode == 1 and "1 failed, 1 passed" in done.stdout, done.stdout
    assert calls == [] and "composer logs" not in done.stdout


def test_a_failing_test_gets_the_logs_and_the_stack_is_taken_down(tmp_path: Path) -> None:
    done, calls = _run_pytest(tmp_path, """
        def test_url(composer_stack):
            assert composer_stack.url("web", 80) == "http://127.0.0.1:40001"

        def test_failing(composer_stack, composer_session_stack):
            assert composer_stack is composer_session_stack
            assert False, "on purpose"
        """)
    assert done.returncode == 1 and "1 failed, 1 passed" in done.stdout, done.stdout
    section = done.stdout[done.stdout.index(" composer logs: "):]
    assert " web (Up 2 seconds) " in section.splitlines()[0], section
    assert "web-1  | listening\nweb-1  | warning on stderr" in section, section
    assert [c[2] for c in calls if c[0] == "--progress"] == ["up", "down"]


def test_keep_prints_how_to_remove_the_stack(tmp_path: Path) -> None:
    done, calls = _run_pytest(tmp_path, """
        def test_it(composer_stack):
            pass
        """, "--composer-keep")
    assert done.returncode == 0, done.stdout
    assert "composer: stacks kept (--composer-keep)" in done.stdout
    kept = done.stdout[done.stdout.index("kept project "):]
    assert "down -v --remove-orphans" in kept.splitlines()[1], kept
    assert "down" not in [w for c in calls for w in c]
