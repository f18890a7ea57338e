"""Volumes: named ones made on first use, filled from the image once, kept until removed;
anonymous ones (``-v /path``, an image's VOLUME) kept across restarts, removed with ``rm -v``;
driver options (bind, tmpfs), subpaths, binds and ``volumes_from``."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path
from typing import Any

from tests.e2e.conftest import IMAGE, Engine

ANONYMOUS = re.compile(r"[0-9a-f]{64}")
VOLUME_IMAGE = "local/withvolume:latest"


def _volumes(engine: Engine) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(engine.cli("volume", "ls", "--format", "json",
                                                         check=True).stdout)
    return listed


def _anonymous(engine: Engine) -> list[str]:
    return sorted(v["Name"] for v in _volumes(engine)
                  if "com.docker.volume.anonymous" in v["Labels"])


def _image_with_a_volume(engine: Engine) -> None:
    """busybox plus /srv/data/seed (uid 1000, mode 0640), VOLUME /srv/data and /cache."""
    from composer.runtime.images.archives import import_layers
    from composer.state.layout import open_images
    from tests.images import busybox_layer

    extra = io.BytesIO()
    with tarfile.open(fileobj=extra, mode="w") as tar:
        for name in ("srv", "srv/data"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("srv/data/seed")
        info.size, info.mode, info.uid, info.gid = 5, 0o640, 1000, 1000
        tar.addfile(info, io.BytesIO(b"seed\n"))
    extra.seek(0)
    with open_images(engine.root) as store:
        import_layers(store, [io.BytesIO(busybox_layer()), extra], ref=VOLUME_IMAGE,
                      config={"Cmd": ["sh"], "Volumes": {"/srv/data": {}, "/cache": {}}})


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


def test_anonymous_volumes_are_kept_across_restarts_and_go_with_rm_v(engine: Engine) -> None:
    engine.cli("container", "create", "--name", "a", "-v", "/data", IMAGE, "sh", "-c",
               "echo run >> /data/log; wc -l < /data/log", check=True)
    engine.cli("container", "start", "a", check=True)
    assert engine.cli("container", "wait", "a").stdout.strip() == "0"
    (made,) = _anonymous(engine)
    assert ANONYMOUS.fullmatch(made)
    engine.cli("container", "start", "a", check=True)
    engine.cli("container", "wait", "a", check=True)
    assert engine.cli("container", "logs", "a").stdout.split() == ["1", "2"]  # one volume
    assert _anonymous(engine) == [made]
    inspected = json.loads(engine.cli("volume", "inspect", made).stdout)[0]
    assert inspected["Labels"]["com.docker.volume.anonymous"] == ""
    # In use while the container exists; kept by a plain rm (dangling, as Docker's).
    refused = engine.cli("volume", "rm", made)
    assert refused.returncode == 1 and "volume is in use - [a]" in refused.stderr
    engine.cli("container", "rm", "a", check=True)
    assert _anonymous(engine) == [made]
    # rm -v removes the container's anonymous volumes, never a named one.
    engine.cli("container", "create", "--name", "b", "-v", "/data", "-v", "named:/n", IMAGE,
               "sh", "-c", "touch /data/x /n/x", check=True)
    engine.cli("container", "start", "b", check=True)
    engine.cli("container", "wait", "b", check=True)
    assert len(_anonymous(engine)) == 2
    engine.cli("container", "rm", "-v", "b", check=True)
    assert _anonymous(engine) == [made]
    assert [v["Name"] for v in _volumes(engine)] == sorted([made, "named"])
    # --rm removes them too, before `run` answers.
    ran = engine.cli("container", "run", "--rm", "-v", "/tmp/x", "--mount", "dst=/y", IMAGE,
                     "sh", "-c", "touch /tmp/x/f /y/f")
    assert ran.returncode == 0, ran.stderr
    assert _anonymous(engine) == [made]
    assert engine.cli("volume", "prune").stdout.splitlines() == ["Deleted Volumes:",
                                                                 *sorted([made, "named"])]


def test_image_volumes_become_anonymous_volumes_filled_from_the_image(engine: Engine) -> None:
    _image_with_a_volume(engine)
    engine.cli("container", "create", "--name", "v", VOLUME_IMAGE, "sh", "-c",
               "stat -c '%u %a' /srv/data/seed; cat /srv/data/seed; echo more >> "
               "/srv/data/seed; grep -c ' /srv/data \\| /cache ' /proc/mounts", check=True)
    engine.cli("container", "start", "v", check=True)
    engine.cli("container", "wait", "v", check=True)
    assert engine.cli("container", "logs", "v").stdout.split() == ["1000", "640", "seed", "2"]
    volumes = _anonymous(engine)
    assert len(volumes) == 2
    targets = {json.loads(engine.cli("volume", "inspect", n).stdout)[0]["Labels"]
               ["composer.target"] for n in volumes}
    assert targets == {"/srv/data", "/cache"}
    engine.cli("container", "start", "v", check=True)  # the same volumes, not copied again
    engine.cli("container", "wait", "v", check=True)
    assert engine.cli("container", "logs", "v").stdout.split()[4:7] == ["1000", "640", "seed"]
    assert _anonymous(engine) == volumes
    engine.cli("container", "rm", "-v", "v", check=True)
    assert _anonymous(engine) == []
    # A mount on the VOLUME path takes its place: no anonymous volume there.
    ran = engine.cli("container", "run", "--rm", "-v", "mine:/srv/data", VOLUME_IMAGE, "cat",
                     "/srv/data/seed")
    assert ran.stdout == "seed\n", ran.stderr
    assert _anonymous(engine) == [] and [v["Name"] for v in _volumes(engine)] == ["mine"]
    engine.cli("volume", "rm", "mine", check=True)


def test_data_survives_recreating_the_container(engine: Engine) -> None:
    engine.cli("container", "create", "--name", "c1", "-v", "keep:/d", IMAGE, "sh", "-c",
               "echo one > /d/f", check=True)
    engine.cli("container", "start", "c1", check=True)
    engine.cli("container", "wait", "c1", check=True)
    engine.cli("container", "rm", "-v", "c1", check=True)  # -v: never a named volume
    again = engine.cli("container", "run", "--rm", "--name", "c1", "-v", "keep:/d", IMAGE,
                       "cat", "/d/f")
    assert again.stdout == "one\n", again.stderr
    engine.cli("volume", "rm", "keep", check=True)


def test_driver_options_bind_and_tmpfs(engine: Engine, tmp_path: Path) -> None:
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "there").write_text("before\n")
    engine.cli("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
               f"device={host}", "hostvol", check=True)
    ran = engine.cli("container", "run", "--rm", "-v", "hostvol:/h", IMAGE, "sh", "-c",
                     "cat /h/there; echo from-container > /h/new")
    assert ran.stdout == "before\n", ran.stderr
    assert (host / "new").read_text() == "from-container\n"
    inspected = json.loads(engine.cli("volume", "inspect", "hostvol").stdout)[0]
    assert inspected["Options"] == {"type": "none", "o": "bind", "device": str(host)}
    engine.cli("volume", "rm", "hostvol", check=True)
    assert sorted(os.listdir(host)) == ["new", "there"]  # the host's directory stays whole
    missing = engine.cli("volume", "create", "-o", "type=none", "-o", "o=bind", "-o",
                         f"device={tmp_path / 'nope'}", "bad")
    assert missing.returncode != 0 and "is not an existing directory" in missing.stderr
    unknown = engine.cli("volume", "create", "-o", "type=nfs", "-o", "device=:/x", "bad")
    assert unknown.returncode != 0 and "driver option type=nfs is not supported" in \
        unknown.stderr
    engine.cli("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt",
               "o=size=8m,mode=1777", "mem", check=True)
    first = engine.cli("container", "run", "--rm", "-v", "mem:/m", IMAGE, "sh", "-c",
                       "echo kept > /m/f; stat -c %a /m; df -k /m | tail -n 1")
    lines = first.stdout.splitlines()
    assert lines[0] == "1777" and lines[1].split()[1] == str(8 * 1024), first
    data = engine.root / "volumes" / "mem" / "_data"
    assert any(line.split()[4] == str(data) and line.split(" - ")[1].startswith("tmpfs")
               for line in Path("/proc/self/mountinfo").read_text().splitlines())
    second = engine.cli("container", "run", "--rm", "-v", "mem:/m", IMAGE, "cat", "/m/f")
    assert second.stdout == "kept\n", second.stderr
    engine.cli("volume", "rm", "mem", check=True)  # unmounted: the fixture checks none left
    assert not (engine.root / "volumes" / "mem").exists()


def test_subpaths_stay_inside_their_volume(engine: Engine) -> None:
    engine.cli("container", "run", "--rm", "-v", "tree:/t", IMAGE, "sh", "-c",
               "mkdir -p /t/sub/deep && echo in-sub > /t/sub/f && echo top > /t/top && "
               "ln -s ../../../.. /t/up && ln -s /etc /t/etc", check=True)
    seen = engine.cli("container", "run", "--rm", "--mount",
                      "src=tree,dst=/x,volume-subpath=sub", IMAGE, "sh", "-c", "ls /x; cat /x/f")
    assert seen.stdout.split() == ["deep", "f", "in-sub"], seen.stderr
    # A symlink in the volume resolves inside it: `up` is the volume's top, not the host's /.
    up = engine.cli("container", "run", "--rm", "--mount", "src=tree,dst=/x,volume-subpath=up",
                    IMAGE, "cat", "/x/top")
    assert up.stdout == "top\n", up.stderr
    escaped = engine.cli("container", "run", "--rm", "--mount",
                         "src=tree,dst=/x,volume-subpath=etc", IMAGE, "ls", "/x")
    # /etc in there is the volume's own etc: the link itself, a loop, refused.
    assert escaped.returncode == 125 and escaped.stdout == ""
    assert "subpath 'etc' cannot be opened (Too many levels of symbolic links)" in \
        escaped.stderr
    missing = engine.cli("container", "run", "--rm", "--mount",
                         "src=tree,dst=/x,volume-subpath=nope", IMAGE, "true")
    assert missing.returncode == 125
    assert "volume tree: subpath 'nope' does not exist in it" in missing.stderr
    dotdot = engine.cli("container", "run", "--rm", "--mount",
                        "src=tree,dst=/x,volume-subpath=sub/../..", IMAGE, "true")
    assert dotdot.returncode == 125 and "must be a relative path inside it" in dotdot.stderr
    engine.cli("volume", "rm", "tree", check=True)


def test_bind_sources_made_or_refused(engine: Engine, tmp_path: Path) -> None:
    refused = engine.cli("container", "run", "--rm", "--mount",
                         f"type=bind,src={tmp_path / 'absent'},dst=/b", IMAGE, "true")
    assert refused.returncode == 125
    assert f"bind source path does not exist: {tmp_path / 'absent'}" in refused.stderr
    made = engine.cli("container", "run", "--rm", "-v", f"{tmp_path / 'made'}:/b", IMAGE,
                      "touch", "/b/f")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "made" / "f").is_file()
    (tmp_path / "made" / "sub").mkdir()
    (tmp_path / "made" / "sub" / "g").write_text("g\n")
    sub = engine.cli("container", "run", "--rm", "--mount",
                     f"type=bind,src={tmp_path / 'made'},dst=/b,volume-subpath=sub", IMAGE,
                     "true")
    assert sub.returncode == 125 and "cannot mix 'volume-*'" in sub.stderr


def test_volumes_from_takes_volumes_and_binds_read_only_when_asked(engine: Engine,
                                                                   tmp_path: Path) -> None:
    host = tmp_path / "b"
    host.mkdir()
    engine.cli("container", "create", "--name", "src", "-v", "shared:/s", "-v", "/anon",
               "-v", f"{host}:/b", "--tmpfs", "/t", IMAGE, "sh", "-c",
               "echo s > /s/f; echo a > /anon/f", check=True)
    engine.cli("container", "start", "src", check=True)
    engine.cli("container", "wait", "src", check=True)
    ro = engine.cli("container", "run", "--rm", "--volumes-from", "src:ro", IMAGE, "sh", "-c",
                    "cat /s/f /anon/f; ls -d /b; test -e /t && echo tmpfs-there; "
                    "touch /s/g 2>&1 | grep -c Read-only; touch /b/g 2>&1 | grep -c Read-only")
    assert ro.stdout.split() == ["s", "a", "/b", "1", "1"], (ro.stdout, ro.stderr)
    rw = engine.cli("container", "run", "--rm", "--volumes-from", "src", IMAGE, "sh", "-c",
                    "echo w > /s/g && echo w > /anon/g && echo w > /b/g")
    assert rw.returncode == 0, rw.stderr
    assert (host / "g").read_text() == "w\n"
    engine.cli("container", "create", "--name", "taker", "--volumes-from", "src", IMAGE,
               "true", check=True)
    refused = engine.cli("volume", "rm", "shared")
    assert "volume is in use - [src, taker]" in refused.stderr
    missing = engine.cli("container", "run", "--rm", "--volumes-from", "ghost", IMAGE, "true")
    assert missing.returncode == 125
    assert "volumes_from ghost: no such container: ghost" in missing.stderr
    engine.cli("container", "rm", "taker", check=True)
    engine.cli("container", "rm", "-v", "src", check=True)
    assert _anonymous(engine) == []
    engine.cli("volume", "rm", "shared", check=True)


def test_restarts_by_policy_redo_the_subpath_mounts(engine: Engine) -> None:
    engine.cli("container", "run", "--rm", "-v", "r:/r", IMAGE, "mkdir", "/r/sub", check=True)
    engine.run_detached("--name", "again", "--restart", "on-failure:2", "--mount",
                        "src=r,dst=/x,volume-subpath=sub", IMAGE, "sh", "-c",
                        "echo run >> /x/log; exit 3")
    engine.wait_for("again", lambda s: s["RestartCount"] == 2
                    and s["State"]["Status"] == "exited", what="two restarts")
    engine.cli("container", "stop", "again", check=True)  # after the exit's handling
    assert engine.cli("container", "logs", "again").stdout == ""
    seen = engine.cli("container", "run", "--rm", "-v", "r:/r", IMAGE, "cat", "/r/sub/log")
    assert seen.stdout == "run\nrun\nrun\n", seen.stderr
    points = engine.root / "containers" / engine.inspect("again")["Id"] / "subpaths"
    assert not points.exists()  # released once the last run ended
    engine.cli("container", "rm", "again", check=True)
    engine.cli("volume", "rm", "r", check=True)
