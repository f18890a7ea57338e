"""composer's pytest plugin: a compose project brought up for the tests that ask for it, and
always taken down.

Registered as the ``composer`` pytest11 entry point, so it loads in every pytest run of an
environment where composer is installed. It is inert there unless a test uses its fixtures:
importing it loads only the standard library and what ``import composer`` loads (its errors),
it has no autouse fixture, and its hooks return at once for a test that holds no stack.

The stack is driven through the ``composer`` CLI in a subprocess, exactly the documented
contract a shell script in CI would use: ``up -d --wait``, ``port``, ``ps --format json``,
``exec -T``, ``logs --no-color``, ``down -v --remove-orphans``. See docs/pytest-plugin.md.

Fixtures:

- ``composer_session_stack`` (session scope): the project the ini options name.
- ``composer_stack`` (module scope): the project of the module's ``composer`` marker over the
  ini options. Modules that end up naming the same project share one stack for the session,
  the same one ``composer_session_stack`` gives; ``scope="module"`` in the marker gives the
  module a stack of its own, taken down after its last test.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import subprocess

    #: (command, cwd, stdin, merge stderr into stdout) -> the finished process
    Runner = Callable[[Sequence[str], str, "str | None", bool],
                      "subprocess.CompletedProcess[str]"]

INI_OPTIONS: dict[str, tuple[str, str]] = {
    # name: (pytest ini type, help)
    "composer_file": ("args", "compose file(s) of the stack (relative to the ini file)"),
    "composer_project": ("string", "project name (default: the folder's name and a random "
                         "suffix, unique per session)"),
    "composer_profiles": ("args", "profiles to enable"),
    "composer_env_files": ("args", "env files, as composer --env-file (relative to the ini "
                           "file)"),
    "composer_root": ("string", "composer state root (composer --root; default: composer's)"),
    "composer_command": ("args", "how to run composer (default: this Python's -m composer)"),
    "composer_up_args": ("args", "more arguments of 'composer up -d --wait' (e.g. --build)"),
    "composer_down_args": ("args", "more arguments of 'composer down -v --remove-orphans' "
                           "(e.g. --rmi local)"),
    "composer_log_tail": ("string", "lines of each service's log attached to a failing test's "
                          "report (default 200; 'all' for every line)"),
}
MARKER_KEYS = ("file", "project", "profiles", "env_files", "scope")
MARKER_HELP = ("composer(file=..., project=..., profiles=[...], env_files=[...], "
               "scope='session'|'module'): the compose project of the module's composer_stack "
               "(paths relative to the rootdir)")
DEFAULT_LOG_TAIL = "200"


class StackError(Exception):
    """A composer command of the stack failed (``up``, ``down``, or a lookup like ``port``)."""


# --- settings: pure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Which project to bring up, and how to call composer. Equal settings share a stack."""

    command: tuple[str, ...]
    directory: str                      # where composer runs (the rootdir); absolute
    files: tuple[str, ...] = ()         # absolute; none: composer finds one in ``directory``
    project: str = ""                   # "": unique per session (see unique_project_name)
    profiles: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()     # absolute
    root: str = ""                      # "": composer's default state root
    up_args: tuple[str, ...] = ()
    down_args: tuple[str, ...] = ()
    log_tail: str = DEFAULT_LOG_TAIL
    scope: str = "session"

    def global_args(self, project: str) -> list[str]:
        """composer's global options for this project, before the command."""
        args = ["--root", self.root] if self.root else []
        for path in self.files:
            args += ["-f", path]
        args += ["-p", project]
        for profile in self.profiles:
            args += ["--profile", profile]
        for path in self.env_files:
            args += ["--env-file", path]
        return args


def _absolute(base: str, paths: Sequence[str]) -> tuple[str, ...]:
    return tuple(os.path.normpath(os.path.join(base, os.path.expanduser(p))) for p in paths)


def settings_from_ini(ini: Mapping[str, Any], ini_dir: str, rootdir: str) -> Settings:
    """Settings from the ini options (values as ``config.getini`` returns them); paths are
    relative to the ini file's folder."""
    command = tuple(ini.get("composer_command") or ()) or (sys.executable, "-m", "composer")
    root = str(ini.get("composer_root") or "")
    return Settings(
        command=command, directory=rootdir,
        files=_absolute(ini_dir, ini.get("composer_file") or ()),
        project=str(ini.get("composer_project") or "").strip(),
        profiles=tuple(ini.get("composer_profiles") or ()),
        env_files=_absolute(ini_dir, ini.get("composer_env_files") or ()),
        root=os.path.abspath(os.path.join(ini_dir, root)) if root else "",
        up_args=tuple(ini.get("composer_up_args") or ()),
        down_args=tuple(ini.get("composer_down_args") or ()),
        log_tail=str(ini.get("composer_log_tail") or DEFAULT_LOG_TAIL).strip())


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str | os.PathLike):
        return (os.fspath(value),)
    if isinstance(value, Sequence) and all(isinstance(v, str | os.PathLike) for v in value):
        return tuple(os.fspath(v) for v in value)
    raise ValueError(f"composer marker: {key} must be a string or a list of strings, "
                     f"not {value!r}")


def with_marker(settings: Settings, kwargs: Mapping[str, Any], base: str) -> Settings:
    """``settings`` with a ``composer`` marker's keywords over them; paths relative to
    ``base`` (the rootdir). A key the marker does not know is an error, not ignored."""
    unknown = sorted(set(kwargs) - set(MARKER_KEYS))
    if unknown:
        raise ValueError(f"composer marker: unknown keyword(s) {', '.join(unknown)} "
                         f"(known: {', '.join(MARKER_KEYS)})")
    changes: dict[str, Any] = {}
    if "file" in kwargs:
        changes["files"] = _absolute(base, _strings("file", kwargs["file"]))
    if "project" in kwargs:
        changes["project"] = str(kwargs["project"] or "")
    if "profiles" in kwargs:
        changes["profiles"] = _strings("profiles", kwargs["profiles"])
    if "env_files" in kwargs:
        changes["env_files"] = _absolute(base, _strings("env_files", kwargs["env_files"]))
    if "scope" in kwargs:
        if kwargs["scope"] not in ("session", "module"):
            raise ValueError(f"composer marker: scope must be 'session' or 'module', "
                             f"not {kwargs['scope']!r}")
        changes["scope"] = kwargs["scope"]
    return replace(settings, **changes)


def normalize_project_name(name: str) -> str:
    """Compose's rule for a name taken from a folder: lowercase letters, digits, ``-``, ``_``,
    starting with a letter or digit (composer.manifest.source has it too, behind YAML)."""
    kept = "".join(c for c in name.lower() if c.isascii() and (c.isalnum() or c in "-_"))
    return kept.lstrip("-_")


def unique_project_name(settings: Settings, suffix: str) -> str:
    """The configured name, else the compose file's folder (or the rootdir) and ``suffix``:
    parallel CI jobs on one host, and sessions side by side, never share a project."""
    if settings.project:
        return settings.project
    folder = os.path.dirname(settings.files[0]) if settings.files else settings.directory
    base = normalize_project_name(os.path.basename(folder)) or "stack"
    return f"{base}-{suffix}"


def parse_port(output: str) -> tuple[str, int]:
    """``composer port`` output (``0.0.0.0:49153``, ``[::]:49153``) as an address to connect
    to: an unspecified address becomes the loopback one of its family."""
    line = next((s.strip() for s in output.splitlines() if s.strip()), "")
    host, sep, port = line.rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"composer port printed {output!r}, not HOST:PORT")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return host, int(port)


def _troubled(row: Mapping[str, Any]) -> bool:
    state = str(row.get("State", ""))
    exit_code = row.get("ExitCode") or 0
    return (row.get("Health") == "unhealthy" or state in ("dead", "restarting", "created")
            or (state == "exited" and exit_code != 0))


def services_for_logs(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    """The services of ``ps --format json`` rows with their containers' statuses: those with a
    container in trouble (unhealthy, exited non-zero, restarting, dead, never started) first,
    then the others, each group by name."""
    statuses: dict[str, list[str]] = {}
    troubled: set[str] = set()
    for row in rows:
        service = str(row.get("Service", ""))
        statuses.setdefault(service, []).append(str(row.get("Status", "")))
        if _troubled(row):
            troubled.add(service)
    return sorted(statuses.items(), key=lambda item: (item[0] not in troubled, item[0]))


def parse_ps(output: str) -> list[dict[str, Any]]:
    """``ps --format json``: one object a line (or one array, as some Compose versions)."""
    import json

    text = output.strip()
    if text.startswith("["):
        return list(json.loads(text))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the stack -----------------------------------------------------------------------------


def run_composer(command: Sequence[str], cwd: str, stdin: str | None,
                 merged: bool) -> subprocess.CompletedProcess[str]:
    import subprocess

    return subprocess.run(list(command), cwd=cwd, input=stdin, text=True, errors="replace",
                          check=False, stdin=None if stdin is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merged else subprocess.PIPE)


@dataclass(eq=False)
class Stack:
    """A compose project brought up for tests, reached through the ``composer`` CLI."""

    project: str
    settings: Settings = field(repr=False)
    runner: Runner = field(default=run_composer, repr=False)

    def composer(self, *args: str, input: str | None = None, check: bool = False,
                 merged: bool = False) -> subprocess.CompletedProcess[str]:
        """``composer [global options of this project] ARGS...``; ``merged``: its stderr in
        its stdout, in the order written."""
        command = [*self.settings.command, *self.settings.global_args(self.project), *args]
        done = self.runner(command, self.settings.directory, input, merged)
        if check and done.returncode != 0:
            said = (done.stdout if merged else done.stderr or "").strip()
            raise StackError(f"{shlex.join(['composer', *args])} (project {self.project}) "
                             f"exited {done.returncode}: {said}")
        return done

    def port(self, service: str, private_port: int, *, protocol: str = "tcp",
             index: int | None = None) -> tuple[str, int]:
        """(host, port) to connect to for ``private_port`` of the service's container."""
        more = ["--index", str(index)] if index is not None else []
        done = self.composer("port", "--protocol", protocol, *more, service, str(private_port),
                             check=True)
        return parse_port(done.stdout)

    def url(self, service: str, private_port: int, path: str = "", *, scheme: str = "http",
            index: int | None = None) -> str:
        """``http://127.0.0.1:PORT`` (and ``path``) for ``private_port`` of the service."""
        host, port = self.port(service, private_port, index=index)
        if ":" in host:
            host = f"[{host}]"
        if path and not path.startswith("/"):
            path = "/" + path
        return f"{scheme}://{host}:{port}{path}"

    def exec(self, service: str, *command: str, env: Mapping[str, str] | None = None,
             user: str | None = None, workdir: str | None = None, index: int | None = None,
             input: str | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
        """``composer exec -T SERVICE COMMAND...``: its exit code, stdout and stderr (its own
        exit code passes through; ``check`` raises StackError on a non-zero one)."""
        options: list[str] = []
        for key, value in (env or {}).items():
            options += ["-e", f"{key}={value}"]
        if user is not None:
            options += ["-u", user]
        if workdir is not None:
            options += ["-w", workdir]
        if index is not None:
            options += ["--index", str(index)]
        return self.composer("exec", "-T", *options, service, *command, input=input,
                             check=check)

    def logs(self, *services: str, tail: int | str | None = None) -> str:
        """``composer logs --no-color [SERVICE...]``: the output of the services' containers,
        stdout and stderr in one text (composer logs writes a container's stderr to its own)."""
        more = ["--tail", str(tail)] if tail is not None else []
        return self.composer("logs", "--no-color", *more, *services, check=True,
                             merged=True).stdout

    def ps(self, *services: str) -> list[dict[str, Any]]:
        """``composer ps -a --format json``: one dict per container, stopped ones too."""
        return parse_ps(self.composer("ps", "-a", "--format", "json", *services,
                                      check=True).stdout)

    def down_command(self) -> str:
        """The shell command that removes the stack, for people (``--composer-keep``)."""
        words = [*self.settings.command, *self.settings.global_args(self.project),
                 "down", "-v", "--remove-orphans", *self.settings.down_args]
        line = shlex.join(words)
        return line if self.settings.files else f"cd {shlex.quote(self.settings.directory)} " \
            f"&& {line}"

    def report_sections(self) -> list[tuple[str, str]]:
        """The logs of the stack's services for a failing test's report: those in trouble
        first. Never raises: what could not be read is said in the section instead."""
        try:
            rows = self.ps()
        except (StackError, ValueError) as failed:
            return [(f"composer ps: {self.project}", str(failed))]
        if not rows:
            return [(f"composer logs: {self.project}", "(the project has no containers)")]
        tail = None if self.settings.log_tail == "all" else self.settings.log_tail
        sections = []
        for service, statuses in services_for_logs(rows):
            try:
                text = self.logs(service, tail=tail) or "(no output)"
            except StackError as failed:
                text = str(failed)
            sections.append((f"composer logs: {self.project} {service} "
                             f"({'; '.join(statuses)})", text))
        return sections


# --- bringing stacks up and down -----------------------------------------------------------


@dataclass
class Stacks:
    """The session's stacks: those shared by equal settings, each brought up once, and every
    one that was started (fully or not) so that teardown takes it down."""

    keep: bool
    kept: list[Stack]
    runner: Runner = run_composer
    suffix: Callable[[], str] = field(default=lambda: _token())
    shared: dict[Settings, Stack | StackError] = field(default_factory=dict)
    started: list[Stack] = field(default_factory=list)

    def get(self, settings: Settings) -> Stack:
        """The shared stack for ``settings``, brought up the first time; an ``up`` that failed
        fails every later request too, without trying again."""
        found = self.shared.get(settings)
        if isinstance(found, StackError):
            raise StackError(f"composer up failed earlier for project "
                             f"{unique_project_name(settings, '*')} (see the first error)")
        if found is None:
            found = self.new(settings)
            try:
                self.bring_up(found)
            except StackError as failed:
                self.shared[settings] = failed
                raise
            self.shared[settings] = found
        return found

    def new(self, settings: Settings) -> Stack:
        """A stack not brought up yet, recorded already: teardown takes down whatever a failed
        or half-done ``up`` created."""
        stack = Stack(unique_project_name(settings, self.suffix()), settings, self.runner)
        self.started.append(stack)
        return stack

    def bring_up(self, stack: Stack) -> None:
        """``up -d --wait``; a failure says what up printed and what the services logged."""
        done = stack.composer("--progress", "plain", "up", "-d", "--wait",
                              *stack.settings.up_args)
        if done.returncode != 0:
            logs = "\n".join(f"--- {title} ---\n{text}"
                             for title, text in stack.report_sections())
            raise StackError(f"composer up -d --wait (project {stack.project}) exited "
                             f"{done.returncode}:\n{done.stdout}{done.stderr}\n{logs}")

    def down(self, stack: Stack) -> None:
        """``down -v --remove-orphans``, or with --composer-keep only a note of how to."""
        if stack in self.started:
            self.started.remove(stack)
        if self.keep:
            self.kept.append(stack)
            return
        stack.composer("--progress", "plain", "down", "-v", "--remove-orphans",
                       *stack.settings.down_args, check=True)

    def close(self) -> None:
        """Takes every started stack down, newest first; the first failure is raised after
        all were tried."""
        failures: list[StackError] = []
        for stack in reversed(list(self.started)):
            try:
                self.down(stack)
            except StackError as failed:
                failures.append(failed)
        if failures:
            raise failures[0]


def _token() -> str:
    import secrets

    return secrets.token_hex(4)


# --- pytest --------------------------------------------------------------------------------

_KEPT = pytest.StashKey[list[Stack]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("composer", "compose stacks for tests (composer.pytest_plugin)")
    group.addoption("--composer-keep", action="store_true", default=False,
                    help="leave the stacks up after the tests, and print how to remove them")
    for name, (kind, text) in INI_OPTIONS.items():
        parser.addini(name, text, type=kind)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    config.stash[_KEPT] = []


def _ini_settings(config: pytest.Config) -> Settings:
    ini = {name: config.getini(name) for name in INI_OPTIONS}
    ini_dir = str(config.inipath.parent) if config.inipath else str(config.rootpath)
    return settings_from_ini(ini, ini_dir, str(config.rootpath))


@pytest.fixture(scope="session")
def _composer_stacks(pytestconfig: pytest.Config) -> Iterator[Stacks]:
    stacks = Stacks(keep=bool(pytestconfig.getoption("composer_keep")),
                    kept=pytestconfig.stash[_KEPT])
    try:
        yield stacks
    finally:
        stacks.close()


@contextlib.contextmanager
def _as_test_failure() -> Iterator[None]:
    """A stack that cannot come up, or a wrong marker, fails the test with composer's words,
    not a traceback of this plugin."""
    try:
        yield
    except (StackError, ValueError) as failed:
        pytest.fail(str(failed), pytrace=False)


@pytest.fixture(scope="session")
def composer_session_stack(pytestconfig: pytest.Config, _composer_stacks: Stacks) -> Stack:
    """The stack of the ini options (composer_file, ...), up for the whole session."""
    with _as_test_failure():
        return _composer_stacks.get(_ini_settings(pytestconfig))


@pytest.fixture(scope="module")
def composer_stack(request: pytest.FixtureRequest, _composer_stacks: Stacks) -> Iterator[Stack]:
    """The stack of the module's ``composer`` marker over the ini options: shared for the
    session with every module naming the same one, or the module's own with
    ``scope="module"``."""
    config = request.config
    marker = request.node.get_closest_marker("composer")
    with _as_test_failure():
        settings = with_marker(_ini_settings(config), marker.kwargs if marker else {},
                               str(config.rootpath))
    if settings.scope == "session":
        with _as_test_failure():
            shared = _composer_stacks.get(settings)
        yield shared
        return
    stack = _composer_stacks.new(settings)
    try:
        with _as_test_failure():
            _composer_stacks.bring_up(stack)
        yield stack
    finally:
        _composer_stacks.down(stack)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
        item: pytest.Item,
        call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        values = getattr(item, "funcargs", {}).values()
        for stack in dict.fromkeys(v for v in values if isinstance(v, Stack)):
            report.sections.extend(stack.report_sections())
    return report


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    kept = config.stash.get(_KEPT, [])
    if not kept:
        return
    terminalreporter.section("composer: stacks kept (--composer-keep)")
    for stack in kept:
        terminalreporter.write_line(f"kept project {stack.project}; remove it with:")
        terminalreporter.write_line(f"  {stack.down_command()}")
