"""An image composer built, pushed to a real registry, as skopeo reads it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Engine, engine  # noqa: F401 (the fixture)
from tests.integration.conftest import RegistryServer
from tests.skopeo import run_skopeo


def test_skopeo_reads_a_built_image_composer_pushed(engine: Engine,  # noqa: F811
                                                     registry: RegistryServer,
                                                     scratch: Path) -> None:
    context = scratch / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nRUN echo built > /built\nCOPY note /note\n"
        'LABEL stage=test\nCMD ["cat", "/built"]\n')
    (context / "note").write_text("a note\n")
    ref = f"{registry.domain}/built/app:1"
    engine.cli("image", "build", "-q", "-t", ref, str(context), check=True)
    engine.cli("image", "push", ref, check=True)
    info = json.loads(run_skopeo("inspect", "--tls-verify=false", f"docker://{ref}",
                                 home=scratch).stdout)
    ours = json.loads(engine.cli("image", "inspect", ref, check=True).stdout)[0]
    assert info["Digest"] == ours["ManifestDigest"]
    assert info["Labels"] == {"stage": "test"} and len(info["Layers"]) == 3
    config = json.loads(run_skopeo("inspect", "--config", "--tls-verify=false",
                                   f"docker://{ref}", home=scratch).stdout)
    assert config["config"]["Cmd"] == ["cat", "/built"]
    assert [h["created_by"].split()[0] for h in config["history"][-4:]] == [
        "RUN", "COPY", "LABEL", "CMD"]
