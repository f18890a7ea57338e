"""Every valid corpus file whose services all name an image converts to manifests that
validate offline against the Kubernetes schemas (``kubernetes-validate``, in-process).

Validity is Docker Compose's verdict (``index.tsv``'s ``compose_v2`` column is ``ok``); files
with a service that only builds are left out here (the examples cover ``--registry``).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest

from composer.errors import ManifestError
from composer.export.kubernetes import Options, convert_loaded, to_yaml
from composer.manifest.loader import LoadOptions, load
from composer.manifest.model import build_project
from tests.conftest import CORPUS
from tests.unit.test_kubernetes_schema import problems

pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
yaml = pytest.importorskip("yaml")


def _valid_paths() -> list[str]:
    index = CORPUS / "index.tsv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [r["path"] for r in rows if r["compose_v2"] == "ok"]


@pytest.mark.corpus
def test_every_valid_corpus_file_with_images_converts_to_valid_manifests(
        corpus: Path) -> None:
    started = time.monotonic()
    failures: dict[str, list[str]] = {}
    converted = objects = 0
    for path in _valid_paths():
        file = corpus / path
        try:
            loaded = load(LoadOptions(files=[str(file)], cwd=str(file.parent),
                                      environ={"HOME": "/home/composer-corpus-user",
                                               "PATH": os.defpath}))
        except ManifestError:
            continue  # composer's verdict differs: tests/corpus/test_corpus.py says why
        project = build_project(loaded)
        if not project.services or any(not s.image for s in project.services.values()):
            continue
        for service_type in ("ClusterIP", "NodePort"):
            conversion = convert_loaded(loaded, Options(namespace="corpus",
                                                        service_type=service_type))
            # What kubectl would read: the YAML text, parsed back.
            parsed = list(yaml.safe_load_all(to_yaml(conversion.objects)))
            assert parsed == conversion.objects, path
            found = problems(parsed)
            if found:
                failures[f"{path} ({service_type})"] = found
            objects += len(conversion.objects)
        converted += 1
    elapsed = time.monotonic() - started
    assert converted >= 150, f"only {converted} corpus files converted"
    assert not failures, "\n".join(f"{p}:\n  " + "\n  ".join(f) for p, f in failures.items())
    print(f"{converted} files, {objects} objects validated in {elapsed:.1f}s")
