"""``image build``: real builds through the engine, RUN steps in real containers, and the
cache that rebuilds only what changed (asserted by layer digests)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Engine

MULTI_STAGE = """\
# syntax=docker/dockerfile:1
ARG BASE=local/busybox
FROM ${BASE} AS builder
ARG GREETING=hello
ENV WHO=world
WORKDIR /work
RUN echo "$GREETING $WHO" > message
RUN echo temporary > /work/gone
RUN rm /work/gone && touch kept
COPY app.txt ./
FROM ${BASE}
COPY --from=builder /work /out/
COPY --chmod=755 run.sh /usr/local/bin/run
COPY --chown=1000:1000 data/ /data/
LABEL org.example.built="by composer"
EXPOSE 8080
HEALTHCHECK --interval=5s --retries=2 CMD ["true"]
USER 1000
WORKDIR /out
CMD ["cat", "/out/message"]
"""


def _context(tmp_path: Path) -> Path:
    context = tmp_path / "ctx"
    (context / "data/sub").mkdir(parents=True)
    (context / "Dockerfile").write_text(MULTI_STAGE)
    (context / "app.txt").write_text("app 1\n")
    (context / "run.sh").write_text("#!/bin/sh\necho run\n")
    (context / "data/sub/file").write_text("data\n")
    (context / "data/secret.key").write_text("never in the image\n")
    (context / ".dockerignore").write_text("# keys stay out\ndata/*.key\n")
    return context


def _build(engine: Engine, context: Path, *args: str) -> list[str]:
    done = engine.cli("image", "build", "-t", "local/built:1", *args, str(context),
                      timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _image(engine: Engine, ref: str = "local/built:1") -> dict[str, Any]:
    found: dict[str, Any] = json.loads(engine.cli("image", "inspect", ref,
                                                  check=True).stdout)[0]
    return found


def _run(engine: Engine, *command: str) -> str:
    done = engine.cli("container", "run", "--rm", "--network", "none", "local/built:1",
                      *command)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_multi_stage_build_gives_what_the_dockerfile_says(engine: Engine,
                                                            tmp_path: Path) -> None:
    out = _build(engine, _context(tmp_path), "--build-arg", "GREETING=hi")
    assert out[-1].startswith("sha256:") and "naming to local/built:1 done" in out
    assert _run(engine) == "hi world\n"  # ARG and ENV substituted, CMD and WORKDIR kept
    shown = _run(engine, "sh", "-c", "id -u; pwd; ls /out; test ! -e /out/gone && echo gone; "
                 "stat -c '%a %u' /usr/local/bin/run; run; stat -c '%u:%g' /data/sub/file; "
                 "ls /data")
    assert shown.split("\n") == ["1000", "/out", "app.txt", "kept", "message", "gone",
                                 "755 0", "run", "1000:1000", "sub", ""], shown
    config = _image(engine)["Config"]["config"]
    assert config["User"] == "1000" and config["WorkingDir"] == "/out"
    assert config["Labels"] == {"org.example.built": "by composer"}
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 5_000_000_000,
                                     "Retries": 2}
    assert "WHO=world" not in config.get("Env", [])  # the builder stage's ENV stays there
    history = _image(engine)["Config"]["history"]
    assert [h.get("created_by", "").split()[0] for h in history[-9:]] == [
        "COPY", "COPY", "COPY", "LABEL", "EXPOSE", "HEALTHCHECK", "USER", "WORKDIR", "CMD"]
    assert all(h.get("empty_layer") for h in history[-6:])


def test_a_deleted_file_is_a_whiteout_in_its_layer(engine: Engine, tmp_path: Path) -> None:
    import gzip
    import tarfile

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM local/busybox\nRUN rm /bin/true\n")
    _build(engine, context)
    assert engine.cli("container", "run", "--rm", "--network", "none", "local/built:1",
                      "test", "-e", "/bin/true").returncode == 1
    from composer.state.layout import open_images

    with open_images(engine.root) as store:
        image = store.get("local/built:1")
        assert image is not None and image.manifest_digest is not None
        with store.blobs.open(image.manifest_digest) as f:
            top = json.loads(f.read())["layers"][-1]["digest"]
        with store.blobs.open(top) as blob, gzip.open(blob) as raw, \
                tarfile.open(fileobj=raw) as tar:
            names = tar.getnames()
    assert "bin/.wh.true" in names, names
    # The runtime's mount points for the /etc files are not part of the step's layer.
    assert not {"etc/hosts", "etc/hostname", "etc/resolv.conf"} & set(names), names


def test_a_rebuild_reuses_every_step_and_a_change_rebuilds_from_there(
        engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    _build(engine, context)
    first = _image(engine)["Layers"]
    again = _build(engine, context)
    steps = [line for line in again if line.startswith("#") and "] " in line]
    assert steps and all(line.endswith("CACHED") for line in steps), again
    assert _image(engine)["Layers"] == first
    (context / "run.sh").write_text("#!/bin/sh\necho changed\n")
    changed = _build(engine, context)
    status = {line.split("] ", 1)[1].rsplit("  ", 1)[0]: line.rsplit("  ", 1)[1]
              for line in changed if line.startswith("#") and "] " in line}
    assert status["COPY --from=builder /work /out/"] == "CACHED"
    assert status["RUN rm /work/gone && touch kept"] == "CACHED"
    assert status["COPY --chmod=755 run.sh /usr/local/bin/run"] != "CACHED"
    assert status["USER 1000"] != "CACHED"  # after a changed step, nothing is reused
    now = _image(engine)["Layers"]
    assert now[:-2] == first[:-2] and now[-2] != first[-2], (first, now)
    assert _run(engine, "run") == "changed\n"
    rebuilt = _build(engine, context, "--no-cache")
    assert not any(line.endswith("CACHED") for line in rebuilt), rebuilt


def test_a_failing_run_names_its_line_exit_code_and_output(engine: Engine,
                                                           tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nRUN echo before\nRUN echo about to fail; exit 3\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0
    assert "Dockerfile:3" in done.stderr and "code 3" in done.stderr, done.stderr
    assert "about to fail" in done.stderr, done.stderr
    assert engine.cli("container", "ls", "-aq").stdout == ""  # its container is gone
    refused = context / "Dockerfile"
    refused.write_text("FROM local/busybox\nCOPY --parents a b\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "Dockerfile:2" in done.stderr, done.stderr
    os.remove(refused)
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "Dockerfile" in done.stderr, done.stderr


def test_add_unpacks_local_archives_and_copies_other_files(engine: Engine,
                                                          tmp_path: Path) -> None:
    import io
    import tarfile

    context = tmp_path / "ctx"
    context.mkdir()
    with tarfile.open(context / "bundle.tar.gz", "w:gz") as tar:
        for name, data, mode in (("app/run", b"#!/bin/sh\necho unpacked\n", 0o4755),
                                 ("app/conf/settings", b"a=1\n", 0o640)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 123, 456
            tar.addfile(info, io.BytesIO(data))
    (context / "notes.txt").write_text("plain\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nADD bundle.tar.gz /opt/\nADD notes.txt /opt/notes.txt\n"
        'CMD ["/opt/app/run"]\n')
    _build(engine, context)
    assert _run(engine) == "unpacked\n"
    shown = _run(engine, "sh", "-c", "stat -c '%a %u:%g' /opt/app/run /opt/app/conf/settings; "
                 "cat /opt/notes.txt; test -e /opt/bundle.tar.gz || echo no-archive")
    assert shown.split("\n") == ["4755 123:456", "640 123:456", "plain", "no-archive", ""], \
        shown
    (context / "Dockerfile").write_text("FROM local/busybox\nADD https://example.com/x /x\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "Dockerfile:2" in done.stderr and "remote" in done.stderr


def test_run_mounts_a_cache_kept_between_builds_and_read_only_binds(engine: Engine,
                                                                    tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    (context / "src/input").write_text("from the context\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox AS tools\nRUN echo tool > /tool\n"
        "FROM local/busybox\n"
        "RUN --mount=type=cache,target=/cache,id=counter "
        "echo run >> /cache/runs && wc -l < /cache/runs > /count\n"
        "RUN --mount=type=bind,source=src,target=/in "
        "cat /in/input > /copied && (touch /in/x 2>/dev/null && echo writable || echo ro)"
        " > /mode\n"
        "RUN --mount=type=bind,from=tools,source=/tool,target=/t cat /t > /from-tools\n")
    _build(engine, context)
    # Neither the cache's content nor its mount point (not in the image before) is kept.
    assert _run(engine, "sh", "-c", "cat /count /copied /mode /from-tools; "
                "test -e /cache || echo no-cache") == \
        "1\nfrom the context\nro\ntool\nno-cache\n"
    _build(engine, context, "--no-cache")
    assert _run(engine, "cat", "/count") == "2\n"  # the cache outlived the first build
    again = _build(engine, context)
    assert all(line.endswith("CACHED") for line in again if line.startswith("#") and
               "] " in line), again
    (context / "src/input").write_text("changed\n")
    changed = _build(engine, context)
    bind_step = next(line for line in changed if "type=bind,source=src" in line)
    assert not bind_step.endswith("CACHED"), changed  # a bound source is part of the key
    assert _run(engine, "cat", "/copied") == "changed\n"
    assert not (context / "src/x").exists()


def test_composer_build_builds_the_services_of_a_project(engine: Engine,
                                                         tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "api").mkdir(parents=True)
    (project / "api/Dockerfile").write_text(
        "FROM local/busybox AS base\nARG FLAVOUR=plain\nRUN echo $FLAVOUR > /flavour\n"
        "FROM base AS test\nRUN echo test > /stage\n"
        "FROM base AS prod\nRUN echo prod > /stage\n"
        "RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && grep db /etc/hosts > /hosts\n")
    (project / "compose.yaml").write_text("""\
services:
  api:
    build:
      context: ./api
      target: prod
      args: {FLAVOUR: spicy}
      labels: {org.example.team: core}
      tags: [local/api:extra]
      shm_size: 64m
      extra_hosts: ["db:10.9.8.7"]
      cache_from: [local/api:cache]
  web:
    image: local/web:1
    build:
      context: .
      dockerfile_inline: |
        FROM local/busybox
        CMD ["echo", "inline"]
  db:
    image: local/busybox
""")
    done = engine.cli("-f", str(project / "compose.yaml"), "build", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "services.api.build.cache_from is ignored: not implemented yet" in done.stderr
    assert "shm_size" not in done.stderr and "extra_hosts" not in done.stderr
    assert "Built api" in done.stdout and "Built web" in done.stdout
    assert "Building db" not in done.stdout  # an image, nothing to build
    api = _image(engine, "proj-api")
    assert _image(engine, "local/api:extra")["Id"] == api["Id"]
    assert api["Config"]["config"]["Labels"] == {"org.example.team": "core"}
    shown = engine.cli("container", "run", "--rm", "--network", "none", "proj-api", "cat",
                       "/flavour", "/stage", "/shm", "/hosts")
    assert shown.stdout.split("\n")[:4] == ["spicy", "prod", "65536", "10.9.8.7\tdb"], \
        shown.stdout
    web = engine.cli("container", "run", "--rm", "--network", "none", "local/web:1")
    assert web.stdout == "inline\n", web.stderr
    again = engine.cli("-f", str(project / "compose.yaml"), "build", "api", timeout=300)
    steps = [line for line in again.stdout.splitlines() if line.startswith("#")]
    assert steps and all(line.endswith("CACHED") for line in steps), again.stdout


def test_run_output_comes_before_its_step_line(engine: Engine, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM local/busybox\nRUN echo first; echo second\n")
    lines = [line for line in _build(engine, context) if line.startswith("#1")]
    assert lines[:2] == ["#1 first", "#1 second"], lines
    assert lines[2].startswith("#1 [0] RUN echo first; echo second  "), lines


def test_chown_takes_names_from_the_images_own_files(engine: Engine, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "f").write_text("f\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN echo 'maker:x:4242:4343::/home/maker:/bin/sh' >> /etc/passwd && "
        "echo 'crew:x:5151:' >> /etc/group\n"
        "COPY --chown=maker:crew f /by-names\nCOPY --chown=maker f /user-only\n"
        "COPY --chown=7:8 f /numbers\n")
    _build(engine, context)
    assert _run(engine, "stat", "-c", "%u:%g", "/by-names", "/user-only", "/numbers") == \
        "4242:5151\n4242:4242\n7:8\n"
    (context / "Dockerfile").write_text("FROM local/busybox\nCOPY --chown=nobody-here f /f\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "no user nobody-here" in done.stderr, done.stderr


def test_onbuild_triggers_run_in_the_child_and_entrypoint_resets_cmd(engine: Engine,
                                                                     tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "Dockerfile").write_text(
        "FROM local/busybox\nONBUILD COPY payload /payload\n"
        "ONBUILD RUN cat /payload > /seen\n")
    engine.cli("image", "build", "-q", "-t", "local/onbuild:1", str(base), check=True)
    assert _image(engine, "local/onbuild:1")["Config"]["config"]["OnBuild"] == [
        "COPY payload /payload", "RUN cat /payload > /seen"]
    child = tmp_path / "child"
    child.mkdir()
    (child / "payload").write_text("from the child's context\n")
    (child / "Dockerfile").write_text(
        'FROM local/onbuild:1\nENTRYPOINT ["cat"]\n')  # the base's CMD ["sh"] is reset
    _build(engine, child)
    config = _image(engine)["Config"]["config"]
    assert "OnBuild" not in config and "Cmd" not in config, config
    shown = engine.cli("container", "run", "--rm", "--network", "none", "local/built:1",
                       "/seen")
    assert shown.stdout == "from the child's context\n", shown.stderr


def test_copy_heredocs_become_files(engine: Engine, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nARG NAME=world\n"
        "COPY <<EOF /etc/greeting\nhello $NAME\nEOF\n"
        "COPY <<'RAW' <<two /notes/\nliteral $NAME\nRAW\nsecond\ntwo\n")
    _build(engine, context, "--build-arg", "NAME=builder")
    shown = _run(engine, "sh", "-c", "cat /etc/greeting /notes/RAW /notes/two; "
                 "stat -c %a /etc/greeting")
    assert shown == "hello builder\nliteral $NAME\nsecond\n644\n", shown


def _layers(engine: Engine, ref: str = "local/built:1") -> list[dict[str, bytes | None]]:
    """Each layer of ``ref``, bottom first, as {name: file bytes (None for a non-file)}."""
    import tarfile

    from composer.state.layout import open_images

    found = []
    with open_images(engine.root) as store:
        image = store.get(ref)
        assert image is not None and image.manifest_digest is not None
        with store.blobs.open(image.manifest_digest) as f:
            digests = [layer["digest"] for layer in json.loads(f.read())["layers"]]
        for digest in digests:
            with store.blobs.open(digest) as blob, \
                    tarfile.open(fileobj=blob, mode="r:*") as tar:
                files: dict[str, bytes | None] = {}
                for member in tar:
                    handle = tar.extractfile(member) if member.isfile() else None
                    files[member.name] = handle.read() if handle else None
                found.append(files)
    return found


def _files_holding(root: Path, needle: bytes) -> list[str]:
    """The files under ``root`` whose bytes hold ``needle`` (the store's database and its
    journal included)."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                pass
    return found


SECRET = "s3cr3t-value-7f1c"


def test_a_secret_is_there_during_its_run_only(engine: Engine, tmp_path: Path) -> None:
    import hashlib

    context = tmp_path / "ctx"
    context.mkdir()
    token = tmp_path / "token.txt"
    token.write_text(SECRET)
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN --mount=type=secret,id=tok test \"$(md5sum < /run/secrets/tok)\" = "
        f"'{hashlib.md5(SECRET.encode()).hexdigest()}  -' && "
        "stat -c '%a %u' /run/secrets/tok > /default-mode && "
        "(echo x > /run/secrets/tok 2>/dev/null && echo writable || echo ro) > /written\n"
        "RUN --mount=type=secret,id=tok,target=/etc/tok.txt,mode=0440,uid=1000 "
        "stat -c '%a %u' /etc/tok.txt > /own-mode\n"
        "RUN --mount=type=secret,id=absent ls /run > /without\n")
    out = _build(engine, context, "--secret", f"id=tok,src={token}")
    assert SECRET not in "\n".join(out)
    shown = _run(engine, "sh", "-c", "cat /default-mode /written /own-mode /without; "
                 "ls /run /etc/tok.txt 2>&1; true")
    assert shown.startswith("400 0\nro\n440 1000\n"), shown
    assert "No such file" in shown and "secrets" not in shown, shown
    layers = _layers(engine)[1:]  # above the base image's
    names = {name for layer in layers for name in layer}
    assert not any(SECRET.encode() in (data or b"") for layer in layers
                   for data in layer.values())
    # The mount points were not there before: they (and /run, /etc copied up only for them)
    # stay out of the layers.
    assert not {n for n in names if n.startswith(("run", "etc"))}, names
    # Not in the image's config or history, nor anywhere in the state root (its database,
    # journal, layers): the secret lived in a tmpfs.
    assert SECRET not in json.dumps(_image(engine))
    assert _files_holding(engine.root, SECRET.encode()) == []
    token.write_text("another value")
    again = _build(engine, context, "--secret", f"id=tok,src={token}")
    steps = [line for line in again if line.startswith("#") and "] " in line]
    assert steps and all(line.endswith("CACHED") for line in steps), again


def test_a_secret_from_the_environment_and_a_missing_required_one(engine: Engine,
                                                                   tmp_path: Path) -> None:
    import hashlib

    context = tmp_path / "ctx"
    context.mkdir()
    value = "from-env-41d9"
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN --mount=type=secret,id=api,env=API_KEY,required "
        "test \"$(printf %s \"$API_KEY\" | md5sum)\" = "
        f"'{hashlib.md5(value.encode()).hexdigest()}  -' && test ! -e /run/secrets/api && "
        "echo ok > /env\n")
    env_engine = Engine(engine.root, engine.cgroup_root, engine.ids)
    base_env = env_engine.env()
    env_engine.env = lambda: {**base_env, "MY_API_KEY": value}  # type: ignore[method-assign]
    done = env_engine.cli("image", "build", "-t", "local/built:1", "--secret",
                          "id=api,env=MY_API_KEY", str(context), timeout=300)
    assert done.returncode == 0, done.stderr
    assert _run(engine, "cat", "/env") == "ok\n"
    assert "API_KEY" not in json.dumps(_image(engine)["Config"]["config"])
    assert value not in json.dumps(_image(engine))
    assert not any(value.encode() in (data or b"") for layer in _layers(engine)
                   for data in layer.values())
    # A RUN that fails with secrets and a writable bind mounted leaves no mount behind (the
    # teardown checks it).
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nRUN --mount=type=secret,id=api,env=API_KEY "
        "--mount=type=bind,target=/c,rw --mount=type=secret,id=api,target=/k exit 4\n")
    done = env_engine.cli("image", "build", "--secret", "id=api,env=MY_API_KEY", str(context))
    assert done.returncode != 0 and "code 4" in done.stderr, done.stderr
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN --mount=type=secret,id=api,env=API_KEY,required true\n")
    done = engine.cli("image", "build", "--no-cache", "--secret", "id=api,env=MY_API_KEY",
                      str(context))
    assert done.returncode != 0
    assert "Dockerfile:2" in done.stderr and "'api' is required" in done.stderr, done.stderr
    assert "MY_API_KEY" in done.stderr, done.stderr  # the unset variable is named
    done = engine.cli("image", "build", "--no-cache", str(context))
    assert done.returncode != 0 and "--secret id=api,src=FILE" in done.stderr, done.stderr
    done = engine.cli("image", "build", "--secret", f"id=api,src={tmp_path}/nowhere",
                      str(context))
    assert done.returncode != 0 and "no such file" in done.stderr, done.stderr
    assert engine.cli("container", "ls", "-aq").stdout == ""


def test_compose_build_secrets_come_from_files_and_the_environment(engine: Engine,
                                                                   tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "token.txt").write_text("from-file\n")
    (project / ".env").write_text("BUILD_PASS=from-dotenv\n")
    (project / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN --mount=type=secret,id=token,required --mount=type=secret,id=pass,env=PASS "
        "test \"$(cat /run/secrets/token)\" = from-file && test \"$PASS\" = from-dotenv && "
        "test ! -e /run/secrets/pass && printf %s \"$PASS\" | wc -c > /pass-size\n")
    (project / "compose.yaml").write_text("""\
services:
  app:
    image: local/built:1
    build:
      context: .
      platforms: [linux/amd64]
      secrets:
        - token
        - source: password
          target: pass
secrets:
  token:
    file: ./token.txt
  password:
    environment: BUILD_PASS
""".replace("linux/amd64", _host()))
    done = engine.cli("-f", str(project / "compose.yaml"), "build", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "build.secrets is ignored" not in done.stderr, done.stderr
    assert _run(engine, "cat", "/pass-size").strip() == "11"


def _host() -> str:
    from composer.runtime.images.platform import Platform

    return str(Platform.host())


def test_from_platform_takes_the_hosts_and_refuses_another(engine: Engine,
                                                          tmp_path: Path) -> None:
    from composer.runtime.images.platform import Platform

    host = Platform.host()
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM --platform=$BUILDPLATFORM local/busybox AS tools\n"
        "FROM --platform=$TARGETPLATFORM local/busybox\n"
        "ARG TARGETPLATFORM TARGETOS TARGETARCH BUILDPLATFORM BUILDOS BUILDARCH\n"
        "RUN echo $TARGETPLATFORM $TARGETOS $TARGETARCH $BUILDPLATFORM $BUILDOS $BUILDARCH"
        " > /platform\n")
    _build(engine, context, "--platform", str(host))
    expected = f"{host.os}/{host.architecture} {host.os} {host.architecture}"
    assert _run(engine, "cat", "/platform") == f"{expected} {expected}\n"
    other = "linux/s390x" if host.architecture != "s390x" else "linux/riscv64"
    done = engine.cli("image", "build", "--platform", other, str(context))
    assert done.returncode != 0 and f"--platform={other}" in done.stderr, done.stderr
    assert "this host's platform" in done.stderr, done.stderr
    (context / "Dockerfile").write_text(f"FROM local/busybox\nFROM --platform={other} "
                                        "local/busybox\nRUN true\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "Dockerfile:2" in done.stderr, done.stderr
    assert f"FROM --platform={other}" in done.stderr, done.stderr


def test_a_writable_bind_takes_writes_and_forgets_them(engine: Engine,
                                                       tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    (context / "src/input").write_text("original\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox AS tools\nRUN mkdir /tools && echo tool > /tools/t\n"
        "FROM local/busybox\n"
        "RUN --mount=type=bind,source=src,target=/in,rw "
        "echo changed > /in/input && echo new > /in/extra && cat /in/input /in/extra > /seen\n"
        "RUN --mount=type=bind,source=src,target=/in cat /in/input > /after && ls /in > /ls\n"
        "RUN --mount=type=bind,source=src/input,target=/one,rw echo more >> /one && "
        "cat /one > /file-seen\n"
        "RUN --mount=type=bind,from=tools,source=/tools,target=/t,rw "
        "echo tool2 > /t/t && cat /t/t > /from-seen\n"
        "RUN --mount=type=bind,from=tools,source=/tools,target=/t cat /t/t > /from-after\n")
    _build(engine, context)
    shown = _run(engine, "sh", "-c", "cat /seen /after /ls /file-seen /from-seen /from-after;"
                 " ls /in /one /t 2>&1 | grep -c 'No such file'")
    assert shown.split("\n") == ["changed", "new", "original", "input", "original", "more",
                                 "tool2", "tool", "3", ""], shown
    assert (context / "src/input").read_text() == "original\n"
    assert sorted(os.listdir(context / "src")) == ["input"]
    names = {name for layer in _layers(engine)[1:] for name in layer}
    assert not {n for n in names if n.split("/")[0] in ("in", "one", "t")}, names
    os.symlink("/etc", context / "out")
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nRUN --mount=type=bind,source=out,target=/x,rw true\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "leading out of the build context" in done.stderr, \
        done.stderr


def test_run_heredocs_a_shebang_is_a_script_else_the_shell_runs_it(engine: Engine,
                                                                  tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM local/busybox\nENV WHO=builder\n"
        "RUN <<EOF\n#!/bin/sh -e\necho \"script $0 $WHO\" > /script\nEOF\n"
        "RUN <<EOF\necho \"shell $0\" > /shell\nEOF\n"
        "RUN <<'EOT' sh\necho \"fed $WHO\" > /fed\nEOT\n"
        "RUN <<EOF\n#!/bin/sh -e\nfalse\necho not reached > /reached\nEOF\n")
    done = engine.cli("image", "build", "-t", "local/built:1", str(context), timeout=300)
    assert done.returncode != 0 and "Dockerfile:13" in done.stderr, done.stderr  # -e kept
    text = (context / "Dockerfile").read_text()
    (context / "Dockerfile").write_text(text[:text.rindex("RUN <<EOF")])
    _build(engine, context)
    assert _run(engine, "cat", "/script", "/fed") == \
        "script /dev/pipes/EOF builder\nfed builder\n"
    assert not _run(engine, "cat", "/shell").startswith("shell /dev/pipes")
    names = {name for layer in _layers(engine)[1:] for name in layer}
    assert not {n for n in names if n.startswith("dev")}, names


def test_copy_mixes_heredocs_and_context_files(engine: Engine, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "app.txt").write_text("from the context\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "COPY <<EOF app.txt <<two /dest/\nfirst heredoc\nEOF\nsecond\ntwo\n"
        "COPY app.txt <<EOF /single\nnot alone\nEOF\n")
    done = engine.cli("image", "build", str(context))
    assert done.returncode != 0 and "must be a directory" in done.stderr, done.stderr
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "COPY <<EOF app.txt <<two /dest/\nfirst heredoc\nEOF\nsecond\ntwo\n")
    _build(engine, context)
    assert _run(engine, "cat", "/dest/EOF", "/dest/app.txt", "/dest/two") == \
        "first heredoc\nfrom the context\nsecond\n"
    (context / "app.txt").write_text("changed\n")
    again = _build(engine, context)
    assert not next(line for line in again if "COPY" in line).endswith("CACHED"), again


def test_mount_points_made_for_run_mounts_stay_out_of_the_layer(engine: Engine,
                                                               tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "src").mkdir(parents=True)
    (context / "src/f").write_text("f\n")
    (context / "Dockerfile").write_text(
        "FROM local/busybox\n"
        "RUN --mount=type=cache,target=/new/cache/deep "
        "--mount=type=bind,source=src,target=/var/lib/in "
        "--mount=type=bind,source=src/f,target=/etc/one mkdir -p /new/kept && touch /tmp/x\n")
    _build(engine, context)
    top = _layers(engine)[-1]
    assert sorted(top) == ["new", "new/kept", "tmp", "tmp/x"], sorted(top)
