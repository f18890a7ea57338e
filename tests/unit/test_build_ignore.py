""".dockerignore: Docker's pattern rules (not gitignore's), the file's location, the walk."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.runtime.images.build import IgnoreError, IgnoreRules

# (patterns, path, excluded), by Docker's patternmatcher rules.
CASES: list[tuple[list[str], str, bool]] = [
    (["*.log"], "a.log", True),
    (["*.log"], "sub/a.log", False),
    (["**/*.log"], "sub/a.log", True),
    (["**/*.log"], "a.log", True),
    (["**/*.log"], "a/b/c.log", True),
    (["*.log", "!keep.log"], "keep.log", False),
    (["*.log", "!keep.log"], "other.log", True),
    (["!keep.log", "*.log"], "keep.log", True),
    (["build"], "build", True),
    (["build"], "build/x/y", True),
    (["build"], "builds", False),
    (["build/"], "build/x", True),
    (["/abs"], "abs", True),
    (["/abs"], "x/abs", False),
    (["./x"], "x", True),
    (["a/../b"], "b", True),
    (["a//b"], "a/b", True),
    (["  spaced  "], "spaced", True),
    (["#comment"], "#comment", False),
    ([" #notcomment"], "#notcomment", True),
    (["?.txt"], "a.txt", True),
    (["?.txt"], "ab.txt", False),
    (["?.txt"], "a/b.txt", False),
    (["[ab].txt"], "b.txt", True),
    (["[ab].txt"], "c.txt", False),
    (["[^ab].txt"], "c.txt", True),
    (["[a-c]x"], "bx", True),
    (["[a\\-]x"], "-x", True),
    (["a/*/c"], "a/b/c", True),
    (["a/*/c"], "a/b/d/c", False),
    (["a/**/c"], "a/c", True),
    (["a/**/c"], "a/b/d/c", True),
    (["a/**"], "a", False),
    (["a/**"], "a/b", True),
    (["**"], "anything/deep", True),
    (["**foo"], "afoo", True),
    (["**/foo"], "afoo", False),
    (["**/foo"], "foo", True),
    (["foo**"], "foobar/x", True),
    (["*"], "x/y", True),
    (["*.x"], "dir.x/inner", True),
    (["\\*.txt"], "*.txt", True),
    (["\\*.txt"], "a.txt", False),
    (["dir", "!dir/keep"], "dir/keep", False),
    (["dir", "!dir/keep"], "dir/keep/inner", False),
    (["dir", "!dir/keep"], "dir/other", True),
    (["dir/*", "!dir/keep*"], "dir/keep.txt", False),
    (["dir/sub", "!dir"], "dir/sub/x", False),
    (["!dir", "dir/sub"], "dir/sub/x", True),
    (["**/node_modules"], "a/node_modules/x/y", True),
    (["sub/*.log"], "sub/a.log", True),
    (["sub/*.log"], "sub/x/a.log", False),
    (["Dockerfile*"], "Dockerfile.dev", True),
    (["*.MD"], "a.md", False),
    (["", "   "], "anything", False),
    ([], "anything", False),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_matches(patterns: list[str], path: str, excluded: bool) -> None:
    assert IgnoreRules(patterns).matches(path) is excluded


@pytest.mark.parametrize("path", ["./a.log", "/a.log", "a.log/", "x/../a.log"])
def test_paths_are_cleaned_before_matching(path: str) -> None:
    assert IgnoreRules(["*.log"]).matches(path)


def test_the_root_is_never_excluded() -> None:
    rules = IgnoreRules(["*", "**", "."])
    assert not rules.matches(".") and not rules.matches("")


def test_patterns_as_docker_reads_them() -> None:
    rules = IgnoreRules.parse("\ufeff# comment\n*.log\r\n  !  keep.log \n/abs/\n./x\n\n")
    assert rules.patterns == ("*.log", "!keep.log", "abs", "x")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("ok\n!\n", 2, 'illegal exclusion pattern "!"'),
    ("[a\n", 1, "an unclosed ["),
    ("a\\\n", 1, "a trailing backslash"),
    ("[]a]\n", 1, "malformed"),
    ("[a-]\n", 1, "malformed"),
])
def test_bad_patterns(text: str, line: int, message: str) -> None:
    with pytest.raises(IgnoreError, match=message.replace("[", "\\[")) as err:
        IgnoreRules.parse(text, source=Path("ctx/.dockerignore"))
    assert str(err.value).startswith(f"ctx/.dockerignore:{line}: ")


# --- which file -------------------------------------------------------------------------

def test_load_prefers_the_dockerfile_specific_file(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / ".dockerignore").write_text("general\n")
    (tmp_path / "docker" / "app.Dockerfile").write_text("FROM a\n")
    specific = tmp_path / "docker" / "app.Dockerfile.dockerignore"
    specific.write_text("specific\n")
    rules = IgnoreRules.load(tmp_path, Path("docker/app.Dockerfile"))
    assert (rules.source, rules.patterns) == (specific, ("specific",))
    other = IgnoreRules.load(tmp_path, tmp_path / "Dockerfile")
    assert (other.source, other.patterns) == (tmp_path / ".dockerignore", ("general",))


def test_load_without_an_ignore_file(tmp_path: Path) -> None:
    rules = IgnoreRules.load(tmp_path, tmp_path / "Dockerfile")
    assert (rules.source, rules.patterns) == (None, ())


# --- the walk ---------------------------------------------------------------------------

def tree(root: Path, *files: str) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def test_walk_lists_what_the_context_holds(tmp_path: Path) -> None:
    tree(tmp_path, "a.log", "keep.log", "src/main.py", "src/x.log", "build/out",
         "build/keep/k", "node_modules/p/i.js", "Dockerfile", ".dockerignore")
    rules = IgnoreRules.parse("*.log\n!keep.log\nbuild\n!build/keep\n**/node_modules\n")
    assert list(rules.walk(tmp_path)) == [
        ".dockerignore", "Dockerfile", "build/keep", "build/keep/k", "keep.log", "src",
        "src/main.py", "src/x.log"]


def test_walk_skips_excluded_directories_without_reading_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, "node_modules/deep/x.js", "app/main.js", "app/node_modules/y.js")
    read: list[str] = []
    real = os.scandir

    def spy(path: str | os.PathLike[str]) -> Iterator[os.DirEntry[str]]:
        read.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    rules = IgnoreRules(["**/node_modules"])
    assert list(rules.walk(tmp_path)) == ["app", "app/main.js"]
    assert sorted(read) == [".", "app"]


def test_wildcard_exceptions_do_not_open_an_excluded_directory(tmp_path: Path) -> None:
    # Docker only looks inside an excluded directory for exceptions written as paths in it.
    tree(tmp_path, "build/keep", "build/drop")
    rules = IgnoreRules(["build", "!**/keep"])
    assert not rules.matches("build/keep")
    assert list(rules.walk(tmp_path)) == []
    assert list(IgnoreRules(["build", "!build/keep"]).walk(tmp_path)) == ["build/keep"]


def test_walk_does_not_follow_symlinks(tmp_path: Path) -> None:
    tree(tmp_path, "src/a")
    (tmp_path / "link").symlink_to(tmp_path / "src")
    assert list(IgnoreRules([]).walk(tmp_path)) == ["link", "src", "src/a"]


def test_an_ignored_dockerfile_is_not_in_the_context(tmp_path: Path) -> None:
    tree(tmp_path, "Dockerfile", ".dockerignore", "app.py")
    rules = IgnoreRules(["Dockerfile", ".dockerignore"])
    assert list(rules.walk(tmp_path)) == ["app.py"]
