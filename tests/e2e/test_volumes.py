"""Named volumes: made on first use, filled from the image once, kept until removed."""

from __future__ import annotations

import json

from tests.e2e.conftest import IMAGE, Engine


def test_data_outlives_the_container_and_rm_refuses_a_volume_in_use(engine: Engine) -> None:
    first = engine.cli("container", "run", "--rm", "-v", "keep:/data", IMAGE, "sh", "-c",
                       "echo saved > /data/f; id -u > /data/who")
    assert first.returncode == 0, first.stderr
    again = engine.cli("container", "run", "--rm", "-v", "keep:/data:ro", IMAGE, "sh", "-c",
                       "cat /data/f; touch /data/g 2>&1 | grep -c Read-only")
    assert again.stdout.split() == ["saved", "1"], (again.stdout, again.stderr)
    listed = engine.cli("volume", "ls").stdout.splitlines()
    assert listed == ["DRIVER          VOLUME NAME", "local           keep"]
    inspected = json.loads(engine.cli("volume", "inspect", "keep").stdout)[0]
    assert inspected["Mountpoint"] == str(engine.root / "volumes" / "keep" / "_data")
    engine.cli("container", "create", "--name", "holder", "-v", "keep:/data", IMAGE, "true",
               check=True)
    refused = engine.cli("volume", "rm", "keep")
    assert refused.returncode == 1 and "volume is in use - [holder]" in refused.stderr
    assert engine.cli("volume", "prune").stdout == ""  # in use: kept
    engine.cli("container", "rm", "holder", check=True)
    assert engine.cli("volume", "rm", "keep").returncode == 0
    assert not (engine.root / "volumes" / "keep").exists()
    missing = engine.cli("volume", "rm", "keep")
    assert missing.returncode == 1 and "No such volume: keep" in missing.stderr


def test_an_empty_volume_is_filled_from_the_image_once(engine: Engine) -> None:
    # /etc of the image: its passwd lands in the new volume, owners and modes kept.
    engine.cli("container", "run", "--rm", "-v", "conf:/etc", IMAGE, "sh", "-c",
               "echo changed >> /etc/passwd", check=True)
    seen = engine.cli("container", "run", "--rm", "-v", "conf:/etc", IMAGE, "sh", "-c",
                      "grep -c root /etc/passwd; tail -n 1 /etc/passwd; stat -c %a /etc/passwd")
    assert seen.stdout.split() == ["1", "changed", "644"], (seen.stdout, seen.stderr)
    # nocopy: an empty volume stays empty.
    bare = engine.cli("container", "run", "--rm", "-v", "empty:/home:nocopy", IMAGE, "sh",
                      "-c", "ls /home | wc -l")
    assert bare.stdout.strip() == "0", (bare.stdout, bare.stderr)
    created = engine.cli("volume", "create", "-l", "team=a", "made")
    assert created.stdout.strip() == "made"
    assert json.loads(engine.cli("volume", "inspect", "made").stdout)[0]["Labels"] == \
        {"team": "a"}
    pruned = engine.cli("volume", "prune").stdout.splitlines()
    assert pruned == ["Deleted Volumes:", "conf", "empty", "made"]
