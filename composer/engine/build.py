"""The Dockerfile builder's executor, in the engine: each instruction a step, each step an image.

A step's result is looked up in the build cache first (:mod:`composer.state.build_cache`, keyed
by its parent image, the instruction as expanded, the args and env it sees and, for COPY, the
content of its sources); a miss runs it:

- ENV, LABEL, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK and
  ONBUILD change the config only (an ``empty_layer`` history entry, as Docker records them);
  ARG changes nothing in the image.
- COPY places its sources (context files, heredocs, or both) in a fresh upper directory
  (``build_copy``, ``build/context.py``) and commits it as a layer; ``--from`` reads an
  earlier stage's (or an image's) files through its layers. ADD is COPY that unpacks local
  tar archives (compressed or not) into the destination.
- RUN runs in a real container of the current image under the OCI runtime (the engine's own
  containers, on the build's network), and its overlay upper dir becomes the layer, through
  the same diff as ``container commit``.

``RUN --mount`` (cache, bind read-only or with throwaway writes, secrets the build was given:
``build_mounts``) and ``#!`` heredocs (a script run by its interpreter) are set up for the
RUN's container; a base image's ONBUILD triggers run first. Only the host's platform is built
for (``FROM --platform``, the request's ``platform``); another is refused. Not yet: ADD of
URLs and git sources, refused with its line rather than half done.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from composer.engine.build_config import DEFAULT_SHELL, configure
from composer.engine.build_copy import CopyGroup, copy_inputs, copy_layer
from composer.engine.build_mounts import BuildSecret
from composer.errors import ComposerError
from composer.state import build_cache

if TYPE_CHECKING:
    # The builder's front-end (dockerfile-parse, pathspec) is imported at the first build,
    # not at every engine start.
    from composer.engine.build_mounts import RunMounts
    from composer.engine.containers import ContainerManager
    from composer.runtime.images.build import ArgScope, Dockerfile, IgnoreRules, Instruction
    from composer.runtime.images.platform import Platform
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
    # By id: what RUN --mount=type=secret mounts (the values never in a repr or a log).
    secrets: Mapping[str, BuildSecret] = field(default_factory=dict, repr=False)
    platform: str | None = None  # --platform: accepted when it is this host's


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
        host = _host_platform(request.platform, "--platform", None)
        planned = plan(dockerfile, target=request.target, build_args=request.build_args,
                       target_platform=host, build_platform=host)
        for stage_plan in planned.stages:  # all refused before any is built
            _host_platform(stage_plan.platform, "FROM --platform",
                           f"{dockerfile.path}:{stage_plan.stage.line}")
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
            image = commit_config(self.m.images, base=image, config_changes=changes(final),
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
        copies: list[CopyGroup] = []
        with contextlib.ExitStack() as held:
            if keyword in ("COPY", "ADD"):
                copies, content = copy_inputs(self, request, dockerfile, ignore, instruction,
                                              env, built, where, held)
            mounts: RunMounts | None = None
            if keyword == "RUN" and instruction.mounts:
                from composer.engine.build_mounts import resolve_mounts

                mounts = resolve_mounts(self, request, dockerfile, ignore, instruction, env,
                                        built, where, state.config.get("WorkingDir") or "/",
                                        held)
                content = mounts.content
            self._finish(request, dockerfile, state, instruction, env, step, shown, where,
                         content, copies, mounts, held)
        step.seconds = time.monotonic() - began
        self.emit(step)

    def _finish(self, request: BuildRequest, dockerfile: Dockerfile, state: State,
                instruction: Instruction, env: dict[str, str], step: Step, shown: str,
                where: str, content: str, copies: Sequence[CopyGroup],
                mounts: RunMounts | None, held: contextlib.ExitStack) -> None:
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
                state.image = self._run(request, state, instruction, step, where, mounts, held)
            elif keyword in ("COPY", "ADD"):
                state.image = copy_layer(self, state, instruction, env, dockerfile, copies,
                                         shown)
            else:
                from composer.runtime.images.diff import commit_config

                state.image = commit_config(self.m.images, base=state.image,
                                            config_changes=changes(state), created_by=shown)
            build_cache.record(self.m.db, key, state.image.id)

    # -- files of stages and images -----------------------------------------------------------

    def files_from(self, origin: str, dockerfile: Dockerfile, built: Mapping[int, State],
                   instruction: Instruction, what: str) -> contextlib.AbstractContextManager[Path]:
        """The files of ``origin`` (``--from``): a stage built before (by name or index), or
        else an image (pulled when missing)."""
        stage = dockerfile.stage(origin) if not origin.isdigit() or \
            int(origin) < len(dockerfile.stages) else None
        image = built[stage.index].image if stage is not None and stage.index in built \
            else self._base(origin, False, dockerfile, instruction.line)
        if image is None:
            raise BuildError(f"{what}: that stage has no files (FROM scratch, nothing added)")
        return self.files_of(image)

    @contextlib.contextmanager
    def files_of(self, image: Image) -> Iterator[Path]:
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

    # -- RUN -----------------------------------------------------------------------------------

    def _run(self, request: BuildRequest, state: State, instruction: Instruction,
             step: Step, where: str, resolved: RunMounts | None,
             held: contextlib.ExitStack) -> Image:
        from composer.engine.build_mounts import (
            MadeMounts,
            drop_stubs,
            make_mounts,
            plan_stubs,
            script_mount,
        )
        from composer.engine.etcfiles import drop_mount_points
        from composer.runtime.images.build import run_script
        from composer.runtime.images.diff import commit_layer
        from composer.runtime.spec import ContainerSpec

        if state.image is None:
            raise BuildError(f"{where}: RUN in a stage FROM scratch has nothing to run")
        made = make_mounts(self, request, resolved, where, held) if resolved else MadeMounts()
        mounts = list(made.mounts)
        if instruction.json_form is not None:
            command = list(instruction.json_form)
        else:
            script = run_script(instruction)
            if script.executable:
                # BuildKit's rule: a lone heredoc starting with #! is a script file run by
                # its interpreter, not text for the shell.
                mount = script_mount(self, instruction.heredocs[0].name, script.text, held)
                mounts.append(mount)
                command = [mount.target]
            else:
                command = [*(state.config.get("Shell") or DEFAULT_SHELL), script.text]
        stubs = None
        if made.targets:
            with self.files_of(state.image) as files:
                stubs = plan_stubs(files, made.targets)
        network = instruction.flag("network") or request.network
        spec = ContainerSpec(
            image=state.image.id, entrypoint=(), command=tuple(command),
            # Secrets with env= are in the RUN's environment only, never in the step's key
            # (that is state.scope.env) or the image's config.
            env={**state.scope.run_env(), **made.env}, user=state.config.get("User") or None,
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
            if stubs is not None:
                drop_stubs(upper, stubs)
            return commit_layer(self.m.images, upper, base=state.image, ref=None,
                                config_changes=changes(state),
                                created_by=instruction.original.strip())
        finally:
            self.m.remove(row.id, force=True)


def _host_platform(text: str | None, what: str, where: str | None) -> Platform:
    """This host's platform, once ``text`` (a platform asked for, if any) is found to be it:
    the builder runs RUN steps natively and emulates nothing."""
    from composer.runtime.images.build.flags import Refused
    from composer.runtime.images.build.platforms import check_host_platforms
    from composer.runtime.images.platform import Platform

    if not text:
        return Platform.host()
    try:
        return check_host_platforms(text, what=what)
    except Refused as e:
        raise BuildError(f"{where + ': ' if where else ''}{e.message}"
                         + (f"\n  hint: {e.hint}" if e.hint else "")) from None


def changes(state: State) -> dict[str, Any]:
    """The stage's config as changes to its image's: what it set, and None for what it took
    away (an inherited CMD a new ENTRYPOINT resets, the ONBUILD triggers a child runs)."""
    base = (state.image.config.get("config") or {}) if state.image is not None else {}
    return {**{key: None for key in base if key not in state.config}, **state.config}
