"""The Dockerfile builder's executor, in the engine: each instruction a step, each step an image.

A step's result is looked up in the build cache first (:mod:`composer.state.build_cache`, keyed
by its parent image, the instruction as expanded, the args and env it sees and, for COPY, the
content of its sources); a miss runs it:

- ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK and
  ONBUILD change the config only (an ``empty_layer`` history entry, as Docker records them);
  ARG changes nothing in the image.
- COPY places its sources (or its heredocs) in a fresh upper directory (``build/context.py``)
  and commits it as a layer; ``--from`` reads an earlier stage's (or an image's) files through
  its layers. ADD is COPY that unpacks local tar archives (compressed or not) into the
  destination.
- RUN runs in a real container of the current image under the OCI runtime (the engine's own
  containers, on the build's network), and its overlay upper dir becomes the layer, through
  the same diff as ``container commit``.

``RUN --mount=type=cache`` (a directory of the state root's kept between builds) and
``type=bind`` (read-only, of the context, a stage or an image) are mounted into the RUN's
container; a base image's ONBUILD triggers run first. Not yet: ADD of URLs and git sources,
``RUN --mount=type=secret`` and ``--platform`` other than the host's; each is refused with
its line rather than half done.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.build_config import DEFAULT_SHELL, configure
from composer.errors import ComposerError
from composer.state import build_cache

if TYPE_CHECKING:
    # The builder's front-end (dockerfile-parse, pathspec) is imported at the first build,
    # not at every engine start.
    from composer.engine.containers import ContainerManager
    from composer.runtime.images.build import ArgScope, Dockerfile, IgnoreRules, Instruction
    from composer.runtime.images.store import Image

CONFIG_ONLY = frozenset({"ENV", "LABEL", "WORKDIR", "USER", "CMD", "ENTRYPOINT", "EXPOSE",
                         "VOLUME", "STOPSIGNAL", "SHELL", "HEALTHCHECK", "ONBUILD",
                         "MAINTAINER"})
_LAST_LINES = 20


class BuildError(ComposerError):
    """A build failed: the message names the Dockerfile's line and what went wrong."""


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path | None = None  # default: <context>/Dockerfile
    dockerfile_text: str | None = None  # compose's dockerfile_inline: this, not a file
    labels: Mapping[str, str] = field(default_factory=dict)  # added to the final image
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    no_cache: bool = False
    pull: bool = False
    network: str = "bridge"
    shm_size: int | None = None  # RUN containers' /dev/shm, bytes
    extra_hosts: tuple[str, ...] = ()  # RUN containers' /etc/hosts: NAME:IP (or host-gateway)


@dataclass
class Step:
    """One step as the output shows it: ``[stage n/m] INSTRUCTION``, cached or not, its time."""

    stage: str
    instruction: str
    cached: bool = False
    seconds: float = 0.0
    output: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The step as the stream reports it when done (its output went out line by line)."""
        return {"stage": self.stage, "instruction": self.instruction, "cached": self.cached,
                "seconds": round(self.seconds, 3)}


@dataclass
class State:
    """A stage while it is built: its image so far (None: scratch with nothing yet), its
    container config and its variables."""

    image: Image | None
    config: dict[str, Any]
    scope: ArgScope
    cmd_set: bool = False  # a CMD in this stage (then ENTRYPOINT keeps it)


class Builder:
    """``emit`` gets each step when it is done, ``output`` each line a RUN prints, as it
    prints it (the streamed build output)."""

    def __init__(self, manager: ContainerManager,
                 emit: Callable[[Step], None] = lambda step: None,
                 output: Callable[[Step, str], None] = lambda step, line: None) -> None:
        self.m = manager
        self.emit = emit
        self.output = output

    def build(self, request: BuildRequest) -> Image:
        from composer.runtime.images.build import (
            ArgScope,
            IgnoreRules,
            parse,
            parse_trigger,
            plan,
        )

        dockerfile_path = request.dockerfile or request.context / "Dockerfile"
        if request.dockerfile_text is not None:
            text, shown_path = request.dockerfile_text, "dockerfile_inline"
        else:
            try:
                text = dockerfile_path.read_text()
            except OSError as e:
                raise BuildError(f"cannot read {dockerfile_path}: {e.strerror}") from e
            shown_path = dockerfile_path.name
        dockerfile = parse(text, path=shown_path)
        ignore = IgnoreRules.load(request.context, dockerfile_path)
        planned = plan(dockerfile, target=request.target, build_args=request.build_args)
        built: dict[int, State] = {}
        for stage_plan in planned.stages:
            stage = stage_plan.stage
            label = stage.name or str(stage.index)
            if stage_plan.base_stage is not None:
                parent = built[stage_plan.base_stage]
                state = State(parent.image, dict(parent.config), parent.scope.fork())
            else:
                image = self._base(stage_plan.base, request.pull, dockerfile, stage.line)
                config = dict(image.config.get("config") or {}) if image else {}
                env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
                state = State(image, config, ArgScope(dockerfile, planned.global_args,
                                                       request.build_args, env))
                # The base image's ONBUILD triggers run first, and the child has none of
                # its own unless it declares them (Docker's rule).
                for trigger in config.pop("OnBuild", None) or ():
                    self._step(request, dockerfile, ignore, label, state,
                               parse_trigger(str(trigger), path=f"ONBUILD of {image.refs[0]}"
                                             if image and image.refs else "ONBUILD"), built)
            for instruction in stage.instructions:
                self._step(request, dockerfile, ignore, label, state, instruction, built)
            built[stage.index] = state
        final = built[planned.target]
        image = final.image
        if image is None or request.labels:
            from composer.runtime.images.diff import commit_config

            if request.labels:
                final.config["Labels"] = {**(final.config.get("Labels") or {}),
                                          **request.labels}
            image = commit_config(self.m.images, base=image, config_changes=_changes(final),
                                  created_by="LABEL " + " ".join(
                                      f"{k}={v}" for k, v in sorted(request.labels.items()))
                                  if request.labels else "")
        for tag in request.tags:
            self.m.images.tag(image.id, tag)
        return image

    # -- bases -------------------------------------------------------------------------------

    def _base(self, ref: str, pull: bool, dockerfile: Dockerfile, line: int) -> Image | None:
        if ref == "scratch":
            return None
        image = None if pull else self.m.images.get(ref)
        if image is None:
            try:
                image = self.m.pull_image(ref)
            except ComposerError as e:
                raise BuildError(f"{dockerfile.path}:{line}: FROM {ref}: {e}") from e
        return image

    # -- one step ----------------------------------------------------------------------------

    def _step(self, request: BuildRequest, dockerfile: Dockerfile, ignore: IgnoreRules,
              label: str, state: State, instruction: Instruction,
              built: Mapping[int, State]) -> None:
        from composer.runtime.images.build import expand

        keyword = instruction.keyword
        where = f"{dockerfile.path}:{instruction.line}"
        if keyword == "ARG":
            state.scope.declare(instruction)
            return
        if keyword not in CONFIG_ONLY | {"COPY", "ADD", "RUN"}:
            raise BuildError(f"{where}: {keyword} is not supported by composer's builder yet")
        env = dict(state.scope.env)
        # What the output shows and the cache key holds: the instruction as it runs, its
        # flags (--chmod, --from, ...) included.
        flags = "".join(f"--{name}={value} " for name, values in
                        sorted(instruction.flags.items()) for value in values)
        shown = f"{keyword} {flags}{expand(instruction.value, env, escape=dockerfile.escape)}" \
            if keyword in ("ENV", "LABEL", "WORKDIR", "USER", "EXPOSE", "VOLUME",
                           "STOPSIGNAL", "COPY", "ADD") else instruction.original.strip()
        step = Step(label, shown)
        began = time.monotonic()
        content = ""
        copy_sources: list[Any] = []
        source_root = request.context
        with contextlib.ExitStack() as held:
            if keyword in ("COPY", "ADD"):
                source_root, copy_sources, content = self._copy_inputs(
                    request, dockerfile, ignore, instruction, env, built, where, held)
            run_mounts: list[Any] = []
            if keyword == "RUN" and instruction.mounts:
                run_mounts, content = self._run_mounts(request, dockerfile, ignore,
                                                       instruction, env, built, where, held)
            self._finish(request, dockerfile, ignore, state, instruction, env, step, shown,
                         where, content, source_root, copy_sources, run_mounts)
        step.seconds = time.monotonic() - began
        self.emit(step)

    def _finish(self, request: BuildRequest, dockerfile: Dockerfile, ignore: IgnoreRules,
                state: State, instruction: Instruction, env: dict[str, str], step: Step,
                shown: str, where: str, content: str, source_root: Path,
                copy_sources: list[Any], run_mounts: list[Any]) -> None:
        """The step's cache lookup, and its work on a miss."""
        keyword = instruction.keyword
        # From scratch there is no parent image yet: the config so far stands for it.
        parent = state.image.id if state.image else \
            "scratch " + json.dumps(state.config, sort_keys=True)
        key = build_cache.step_key(parent, shown, env=env if keyword == "RUN" else None,
                                   args=dict(a.split("=", 1) for a in
                                             state.scope.history_args()),
                                   content=content)
        cached = None if request.no_cache else build_cache.lookup(self.m.db, key)
        hit = self.m.images.get(cached) if cached else None
        if keyword in CONFIG_ONLY:
            configure(state, instruction, env, dockerfile)
        if hit is not None:
            state.image = hit
            state.config = dict(hit.config.get("config") or {})
            step.cached = True
        else:
            if keyword == "RUN":
                state.image = self._run(request, state, instruction, step, where, run_mounts)
            elif keyword in ("COPY", "ADD"):
                state.image = self._copy(state, instruction, env, dockerfile, source_root,
                                         copy_sources, ignore if source_root ==
                                         request.context else None, shown)
            else:
                from composer.runtime.images.diff import commit_config

                state.image = commit_config(self.m.images, base=state.image,
                                            config_changes=_changes(state), created_by=shown)
            build_cache.record(self.m.db, key, state.image.id)

    # -- COPY ----------------------------------------------------------------------------------

    def _copy_inputs(self, request: BuildRequest, dockerfile: Dockerfile, ignore: IgnoreRules,
                     instruction: Instruction, env: dict[str, str],
                     built: Mapping[int, State], where: str,
                     held: contextlib.ExitStack) -> tuple[Path, list[Any], str]:
        """Where COPY's sources are (the context, or a stage's or image's files, mounted
        read-only for as long as ``held``), the sources and their content digest."""
        from composer.runtime.images.build import expand
        from composer.runtime.images.build.context import (
            ContextError,
            content_digest,
            sources,
        )

        if instruction.heredocs:
            return self._heredoc_inputs(instruction, env, held, where)
        words = [expand(w, env, escape=dockerfile.escape) for w in instruction.words]
        if len(words) < 2:
            raise BuildError(f"{where}: COPY needs a source and a destination")
        names = words[:-1]
        remote = [n for n in names if "://" in n or n.startswith("git@")]
        if remote:
            raise BuildError(f"{where}: ADD {remote[0]}: remote sources (URLs, git) are not "
                             "supported by composer's builder yet; fetch it beforehand and "
                             "ADD the file")
        origin = instruction.flag("from")
        root = request.context
        excluded: Callable[[str], bool] = ignore.matches
        if origin:
            root = held.enter_context(self._files_from(origin, dockerfile, built, instruction,
                                                       f"{where}: COPY --from={origin}"))
            excluded = lambda _: False  # noqa: E731 (an image has no .dockerignore)
        try:
            chosen = sources(root, names, excluded=excluded)
            return root, chosen, content_digest(root, chosen, excluded=excluded)
        except ContextError as e:
            raise BuildError(f"{where}: COPY {e}") from e

    def _heredoc_inputs(self, instruction: Instruction, env: dict[str, str],
                        held: contextlib.ExitStack, where: str) -> tuple[Path, list[Any], str]:
        """``COPY <<EOF /path``: each heredoc a file (0644, named by its delimiter) in a
        folder of its own, copied as a context file would be; its text expanded unless the
        delimiter was quoted."""
        from composer.runtime.images.build import expand_heredoc
        from composer.runtime.images.build.context import content_digest, sources

        folder = Path(held.enter_context(tempfile.TemporaryDirectory(
            dir=self.m.images.root / "tmp", prefix="heredoc-")))
        by_word = {doc.word: doc for doc in instruction.heredocs}
        names = []
        for word in instruction.words[:-1]:
            doc = by_word.get(word)
            if doc is None:
                raise BuildError(f"{where}: {instruction.keyword} cannot mix heredocs and "
                                 f"context files yet ({word}): give each its own line")
            path = folder / doc.name
            path.write_text(expand_heredoc(doc.text, env) if doc.expand else doc.text)
            path.chmod(0o644)
            names.append(doc.name)
        chosen = sources(folder, names)
        return folder, chosen, content_digest(folder, chosen)

    def _owner(self, image: Image | None, text: str) -> tuple[int, int]:
        """``--chown``'s ``user[:group]`` as numbers: names from the image's /etc/passwd and
        /etc/group; a user alone means its uid as the gid too, as Docker has it."""
        from composer.runtime.inroot import read_text
        from composer.runtime.users import parse_group, parse_passwd

        user, _, group = text.partition(":")
        passwd: list[Any] = []
        groups: list[Any] = []
        if not (user.isdigit() and (not group or group.isdigit())) and image is not None:
            with self._files_of(image) as files:
                passwd = parse_passwd(read_text(files, "/etc/passwd"))
                groups = parse_group(read_text(files, "/etc/group"))
        uid = _id_of(user, passwd, "user", text)
        return uid, _id_of(group, groups, "group", text) if group else uid

    def _files_from(self, origin: str, dockerfile: Dockerfile, built: Mapping[int, State],
                    instruction: Instruction, what: str) -> contextlib.AbstractContextManager[Path]:
        """The files of ``origin`` (``--from``): a stage built before (by name or index), or
        else an image (pulled when missing)."""
        stage = dockerfile.stage(origin) if not origin.isdigit() or \
            int(origin) < len(dockerfile.stages) else None
        image = built[stage.index].image if stage is not None and stage.index in built \
            else self._base(origin, False, dockerfile, instruction.line)
        if image is None:
            raise BuildError(f"{what}: that stage has no files (FROM scratch, nothing added)")
        return self._files_of(image)

    @contextlib.contextmanager
    def _files_of(self, image: Image) -> Iterator[Path]:
        """An image's files, as one read-only overlay of its layers."""
        from composer.runtime import rootfs

        layers = self.m.images.lower_dirs(image)
        if len(layers) == 1:
            yield layers[0]
            return
        with tempfile.TemporaryDirectory(dir=self.m.images.root / "tmp", prefix="from-") as d:
            place = Path(d)
            merged = rootfs.mount(place, layers, read_only=True)
            try:
                yield merged
            finally:
                rootfs.unmount(place, keep_upper=False)
                rootfs.remove(place)

    def _copy(self, state: State, instruction: Instruction, env: dict[str, str],
              dockerfile: Dockerfile, root: Path, chosen: Sequence[Any],
              ignore: IgnoreRules | None, shown: str) -> Image:
        from composer.runtime.images.build import expand
        from composer.runtime.images.build.context import destination, stage_copy
        from composer.runtime.images.diff import commit_layer

        dest = destination(expand(instruction.words[-1], env, escape=dockerfile.escape),
                           state.config.get("WorkingDir") or "/")
        uid, gid = self._owner(state.image, expand(instruction.flag("chown") or "0", env))
        chmod = instruction.flag("chmod")
        mode = int(chmod, 8) if chmod else None
        tmp = self.m.images.root / "tmp"
        with tempfile.TemporaryDirectory(dir=tmp, prefix="copy-") as work:
            upper = Path(work) / "upper"
            upper.mkdir()
            # ADD unpacks the local tar archives it is given (compressed or not) into the
            # destination, their owners and modes kept; everything else is copied as COPY.
            archives = [s for s in chosen if instruction.keyword == "ADD" and not s.is_dir
                        and _is_archive(root / s.relative)]
            plain = [s for s in chosen if s not in archives]
            if plain:
                stage_copy(root, plain, dest if not archives or dest.endswith("/")
                           else dest + "/", upper, uid=uid, gid=gid, mode=mode,
                           excluded=ignore.matches if ignore is not None else
                           (lambda _: False))
            for archive in archives:
                _unpack(root / archive.relative, upper / dest.strip("/"))
            return commit_layer(self.m.images, upper, base=state.image, ref=None,
                                config_changes=_changes(state), created_by=shown)

    # -- RUN -----------------------------------------------------------------------------------

    def _run_mounts(self, request: BuildRequest, dockerfile: Dockerfile, ignore: IgnoreRules,
                    instruction: Instruction, env: dict[str, str],
                    built: Mapping[int, State], where: str,
                    held: contextlib.ExitStack) -> tuple[list[Any], str]:
        """RUN ``--mount``s as container mounts, and the digest of what bind mounts bring
        (part of the step's key; a cache mount's content never is, as in BuildKit).

        - ``type=cache``: a directory of the state root's, ``build-cache/<id>``, kept between
          builds (``id`` defaults to the target), made with its ``mode``/``uid``/``gid``.
        - ``type=bind``: read-only, of the context (``.dockerignore`` applies to the key) or
          of ``from=`` a stage or an image; ``rw`` is refused (BuildKit discards its writes).
        - ``type=secret`` is refused until builds take secrets (``--secret``)."""
        import hashlib

        from composer.runtime.images.build import expand_mounts
        from composer.runtime.images.build.context import (
            ContextError,
            content_digest,
            sources,
        )
        from composer.runtime.spec import Mount

        mounts: list[Any] = []
        digests: list[str] = []
        for mount in expand_mounts(instruction, env, escape=dockerfile.escape,
                                   path=dockerfile.path):
            target = mount.target or ""
            if mount.type == "cache":
                name = hashlib.sha256((mount.id or target).encode()).hexdigest()[:32]
                place = self.m.layout.root / "build-cache" / name
                if not place.is_dir():
                    place.mkdir(parents=True)
                    place.chmod(mount.mode if mount.mode is not None else 0o755)
                    os.chown(place, mount.uid or 0, mount.gid or 0)
                mounts.append(Mount("bind", target, str(place), read_only=mount.readonly))
            elif mount.type == "bind":
                if not mount.readonly:
                    raise BuildError(f"{where}: RUN --mount=type=bind,rw is not supported "
                                     "yet: bind mounts are read-only here")
                root = request.context
                excluded: Callable[[str], bool] = ignore.matches
                if mount.from_:
                    root = held.enter_context(self._files_from(
                        mount.from_, dockerfile, built, instruction,
                        f"{where}: --mount from={mount.from_}"))
                    excluded = lambda _: False  # noqa: E731 (an image has no .dockerignore)
                try:
                    chosen = sources(root, [mount.source or "."], excluded=excluded)
                    digests.append(content_digest(root, chosen, excluded=excluded))
                except ContextError as e:
                    raise BuildError(f"{where}: --mount source {e}") from e
                mounts.append(Mount("bind", target, str(root / chosen[0].relative),
                                    read_only=True))
            else:
                raise BuildError(f"{where}: RUN --mount=type={mount.type} is not supported "
                                 "by composer's builder yet")
        return mounts, "".join(digests)

    def _run(self, request: BuildRequest, state: State, instruction: Instruction,
             step: Step, where: str, mounts: Sequence[Any] = ()) -> Image:
        from composer.engine.etcfiles import drop_mount_points
        from composer.runtime.images.build import run_script
        from composer.runtime.images.diff import commit_layer
        from composer.runtime.spec import ContainerSpec

        if state.image is None:
            raise BuildError(f"{where}: RUN in a stage FROM scratch has nothing to run")
        if instruction.json_form is not None:
            command = list(instruction.json_form)
        else:
            script = run_script(instruction)
            if script.executable:
                raise BuildError(f"{where}: a RUN heredoc with #! is not supported yet")
            command = [*(state.config.get("Shell") or DEFAULT_SHELL), script.text]
        network = instruction.flag("network") or request.network
        spec = ContainerSpec(
            image=state.image.id, entrypoint=(), command=tuple(command),
            env={**state.scope.run_env()}, user=state.config.get("User") or None,
            working_dir=state.config.get("WorkingDir") or None,
            network={"default": request.network}.get(network, network),
            mounts=tuple(mounts), shm_size=request.shm_size,
            extra_hosts=request.extra_hosts, labels={"io.composer.build": "true"})
        row = self.m.create(spec)
        try:
            self.m.start(row.id)
            for line in self.m.log_lines(row.id, follow=True):  # until it exits
                text = line.data.decode(errors="replace")
                step.output.append(text)
                self.output(step, text)
            code = self.m.wait(row.id)
            if code != 0:
                last = "\n".join(step.output[-_LAST_LINES:])
                raise BuildError(f"{where}: RUN {instruction.value!r} exited with code {code}"
                                 + (f"; its last output:\n{last}" if last else ""))
            upper = self.m.layout.container_dir(row.id) / "upper"
            drop_mount_points(upper)
            return commit_layer(self.m.images, upper, base=state.image, ref=None,
                                config_changes=_changes(state),
                                created_by=instruction.original.strip())
        finally:
            self.m.remove(row.id, force=True)


def _changes(state: State) -> dict[str, Any]:
    """The stage's config as changes to its image's: what it set, and None for what it took
    away (an inherited CMD a new ENTRYPOINT resets, the ONBUILD triggers a child runs)."""
    base = (state.image.config.get("config") or {}) if state.image is not None else {}
    return {**{key: None for key in base if key not in state.config}, **state.config}


def _is_archive(path: Path) -> bool:
    import tarfile

    try:
        return path.is_file() and not path.is_symlink() and tarfile.is_tarfile(path)
    except OSError:
        return False


def _unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` (inside a layer's upper dir): nothing may land
    outside it (absolute names, ``..``, links out are refused), owners and modes as the
    archive has them, setuid bits included, as Docker's ADD keeps them."""
    import tarfile

    def keep_modes(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        checked = tarfile.tar_filter(member, dest)  # raises for what would leave ``dest``
        return checked.replace(mode=member.mode, deep=False)

    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(target, numeric_owner=True, filter=keep_modes)
    except (tarfile.TarError, OSError) as e:
        raise BuildError(f"ADD {archive.name}: cannot unpack it: {e}") from e


def _id_of(name: str, entries: Sequence[Any], what: str, text: str) -> int:
    if name.isdigit():
        return int(name)
    for entry in entries:
        if entry.name == name:
            return int(entry.uid if what == "user" else entry.gid)
    raise BuildError(f"--chown={text}: no {what} {name} in the image's "
                     f"/etc/{'passwd' if what == 'user' else 'group'}")
