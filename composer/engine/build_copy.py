"""The builder's COPY and ADD: sources from the context, a stage's or image's files, or
heredocs, placed in a fresh upper directory that becomes the step's layer.

A COPY's sources come in groups in the order written (``COPY <<EOF file1 /dest/`` mixes
heredocs and context files, as BuildKit allows): runs of files of one place and runs of
heredocs, each heredoc a file (0644, named by its delimiter, expanded unless the delimiter was
quoted). ADD is COPY that unpacks local tar archives (plain, gzip, bzip2, xz) into the
destination, their owners and modes kept, nothing let out of it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from composer.engine.build import Builder, BuildRequest, State
    from composer.runtime.images.build import Dockerfile, IgnoreRules, Instruction
    from composer.runtime.images.store import Image


def _error(message: str) -> Exception:
    from composer.engine.build import BuildError

    return BuildError(message)


@dataclass(frozen=True)
class CopyGroup:
    """Sources of a COPY that live in one place: the context, a stage's or image's files, or
    the step's heredoc files (which ADD never unpacks: ``archives`` is False)."""

    root: Path
    sources: tuple[Any, ...]
    excluded: Callable[[str], bool]
    archives: bool = True


def copy_inputs(builder: Builder, request: BuildRequest, dockerfile: Dockerfile,
                ignore: IgnoreRules, instruction: Instruction, env: dict[str, str],
                built: Mapping[int, State], where: str,
                held: contextlib.ExitStack) -> tuple[list[CopyGroup], str]:
    """COPY's sources in groups, in the order written: runs of context files (or of a
    stage's or image's, mounted read-only for as long as ``held``) and runs of heredocs
    (``COPY <<EOF file1 /dest/`` mixes them, as BuildKit allows); and the digest of all
    they bring."""
    from composer.runtime.images.build import expand
    from composer.runtime.images.build.context import (
        ContextError,
        content_digest,
        sources,
    )

    words = [w if instruction.heredoc(w) else expand(w, env, escape=dockerfile.escape)
             for w in instruction.words]
    if len(words) < 2:
        raise _error(f"{where}: COPY needs a source and a destination")
    names = words[:-1]
    remote = [n for n in names if "://" in n or n.startswith("git@")]
    if remote:
        raise _error(f"{where}: ADD {remote[0]}: remote sources (URLs, git) are not "
                     "supported by composer's builder yet; fetch it beforehand and ADD the "
                     "file")
    runs: list[list[str]] = []
    for name in names:
        if runs and bool(instruction.heredoc(runs[-1][0])) == bool(instruction.heredoc(name)):
            runs[-1].append(name)
        else:
            runs.append([name])
    groups: list[CopyGroup] = []
    files_root: Path | None = None
    excluded: Callable[[str], bool] = ignore.matches
    for run in runs:
        if instruction.heredoc(run[0]):
            groups.append(_heredoc_group(builder, instruction, run, env, held))
            continue
        if files_root is None:
            files_root = request.context
            origin = instruction.flag("from")
            if origin:
                files_root = held.enter_context(builder.files_from(
                    origin, dockerfile, built, instruction, f"{where}: COPY --from={origin}"))
                excluded = lambda _: False  # noqa: E731 (an image has no .dockerignore)
        try:
            groups.append(CopyGroup(files_root, tuple(sources(files_root, run,
                                                              excluded=excluded)),
                                    excluded))
        except ContextError as e:
            raise _error(f"{where}: COPY {e}") from e
    try:
        digest = "".join(
            f"{'files' if group.archives else 'heredoc'}:"
            f"{content_digest(group.root, group.sources, excluded=group.excluded)};"
            for group in groups)
    except ContextError as e:
        raise _error(f"{where}: COPY {e}") from e
    return groups, digest


def _heredoc_group(builder: Builder, instruction: Instruction, words: Sequence[str],
                   env: dict[str, str], held: contextlib.ExitStack) -> CopyGroup:
    """``COPY <<EOF /path``: each heredoc a file (0644, named by its delimiter) in a
    folder of its own, copied as a context file would be; its text expanded unless the
    delimiter was quoted."""
    from composer.runtime.images.build import expand_heredoc
    from composer.runtime.images.build.context import sources

    folder = Path(held.enter_context(tempfile.TemporaryDirectory(
        dir=builder.m.images.root / "tmp", prefix="heredoc-")))
    names = []
    for word in words:
        doc = instruction.heredoc(word)
        assert doc is not None
        path = folder / doc.name
        path.write_text(expand_heredoc(doc.text, env) if doc.expand else doc.text)
        path.chmod(0o644)
        names.append(doc.name)
    return CopyGroup(folder, tuple(sources(folder, names)), lambda _: False, archives=False)


def _owner(builder: Builder, image: Image | None, text: str) -> tuple[int, int]:
    """``--chown``'s ``user[:group]`` as numbers: names from the image's /etc/passwd and
    /etc/group; a user alone means its uid as the gid too, as Docker has it."""
    from composer.runtime.inroot import read_text
    from composer.runtime.users import parse_group, parse_passwd

    user, _, group = text.partition(":")
    passwd: list[Any] = []
    groups: list[Any] = []
    if not (user.isdigit() and (not group or group.isdigit())) and image is not None:
        with builder.files_of(image) as files:
            passwd = parse_passwd(read_text(files, "/etc/passwd"))
            groups = parse_group(read_text(files, "/etc/group"))
    uid = _id_of(user, passwd, "user", text)
    return uid, _id_of(group, groups, "group", text) if group else uid


def copy_layer(builder: Builder, state: State, instruction: Instruction, env: dict[str, str],
               dockerfile: Dockerfile, groups: Sequence[CopyGroup], shown: str) -> Image:
    """The COPY/ADD step's layer: ``groups`` placed at the destination, owned by
    ``--chown`` (names from the image's own files) and with ``--chmod``'s mode."""
    from composer.engine.build import changes
    from composer.runtime.images.build import expand
    from composer.runtime.images.build.context import ContextError, destination, stage_copy
    from composer.runtime.images.diff import commit_layer

    dest = destination(expand(instruction.words[-1], env, escape=dockerfile.escape),
                       state.config.get("WorkingDir") or "/")
    uid, gid = _owner(builder, state.image, expand(instruction.flag("chown") or "0", env))
    chmod = instruction.flag("chmod")
    mode = int(chmod, 8) if chmod else None
    if sum(len(g.sources) for g in groups) > 1 and not dest.endswith("/"):
        where = f"{dockerfile.path}:{instruction.line}"
        raise _error(f"{where}: COPY of several sources to {dest}: the destination must "
                     "be a directory and end with /")
    tmp = builder.m.images.root / "tmp"
    with tempfile.TemporaryDirectory(dir=tmp, prefix="copy-") as work:
        upper = Path(work) / "upper"
        upper.mkdir()
        for group in groups:
            # ADD unpacks the local tar archives it is given (compressed or not) into the
            # destination, their owners and modes kept; everything else is copied as COPY.
            archives = [s for s in group.sources if instruction.keyword == "ADD"
                        and group.archives and not s.is_dir
                        and _is_archive(group.root / s.relative)]
            plain = [s for s in group.sources if s not in archives]
            if plain:
                try:
                    stage_copy(group.root, plain, dest if not archives or
                               dest.endswith("/") else dest + "/", upper, uid=uid,
                               gid=gid, mode=mode, excluded=group.excluded)
                except ContextError as e:
                    raise _error(f"{dockerfile.path}:{instruction.line}: COPY {e}") from e
            for archive in archives:
                _unpack(group.root / archive.relative, upper / dest.strip("/"))
        return commit_layer(builder.m.images, upper, base=state.image, ref=None,
                            config_changes=changes(state), created_by=shown)


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
        raise _error(f"ADD {archive.name}: cannot unpack it: {e}") from e


def _id_of(name: str, entries: Sequence[Any], what: str, text: str) -> int:
    if name.isdigit():
        return int(name)
    for entry in entries:
        if entry.name == name:
            return int(entry.uid if what == "user" else entry.gid)
    raise _error(f"--chown={text}: no {what} {name} in the image's "
                     f"/etc/{'passwd' if what == 'user' else 'group'}")
