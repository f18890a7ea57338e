"""``COPY``/``ADD`` from the build context: which files a step takes, the digest of their
content (for the cache key), and the layer's upper directory they make.

Docker's rules, as its classic builder and BuildKit apply them:

- Sources are relative to the context root, whatever the ``WORKDIR``; a leading ``/`` means
  the root, and no source can lead out of it (``../x`` is refused, symlinks inside the context
  are copied as symlinks, never followed out). Sources may hold ``*``, ``?`` and ``[...]``
  wildcards, matched per path segment (Go's ``filepath.Match``); a pattern matching nothing
  is an error, as Docker's.
- A source directory copies its contents, not itself. The destination is a directory when it
  ends in ``/``, when there are several sources, or when a source is a directory; otherwise it
  is the file's new name. A relative destination is under the stage's ``WORKDIR``.
- Files excluded by ``.dockerignore`` are not there at all.
- Owners become ``--chown`` (numeric here; names are resolved by the caller against the image)
  or root; modes are kept unless ``--chmod``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError

_MAGIC = frozenset("*?[")


class ContextError(ComposerError):
    """A source is missing, outside the context, or cannot be read."""


@dataclass(frozen=True)
class Source:
    """One path of the context a step copies: ``relative`` to the context root, and whether
    it was named as a directory (its contents are copied)."""

    relative: str
    is_dir: bool


def _clean(text: str) -> str:
    """A context path, cleaned: no leading ``/``, no ``.`` or empty segments; "" is the root.
    A path that climbs out of the context (``../x``) is refused."""
    relative = posixpath.normpath(text.lstrip("/")) if text.strip("/") else "."
    if relative == ".." or relative.startswith("../"):
        raise ContextError(f"{text}: outside the build context (a source cannot climb out "
                           "of it with ..)")
    return "" if relative == "." else relative


def _match_segments(root: Path, pattern: str, excluded: Callable[[str], bool]) -> list[str]:
    """Context paths matching ``pattern`` segment by segment (Go's filepath.Match rules)."""
    found = [""]
    for segment in [s for s in pattern.split("/") if s]:
        nxt: list[str] = []
        for base in found:
            here = root / base if base else root
            if not _MAGIC & set(segment):
                candidate = f"{base}/{segment}" if base else segment
                if os.path.lexists(root / candidate) and not excluded(candidate):
                    nxt.append(candidate)
                continue
            try:
                names = sorted(os.listdir(here))
            except OSError:
                continue
            for name in names:
                candidate = f"{base}/{name}" if base else name
                if fnmatch.fnmatchcase(name, segment) and not excluded(candidate):
                    nxt.append(candidate)
        found = nxt
    return found


def sources(root: Path, names: Sequence[str], *,
            excluded: Callable[[str], bool] = lambda _: False) -> list[Source]:
    """The context paths ``names`` (COPY's sources, wildcards allowed) stand for, in order,
    each once."""
    out: dict[str, Source] = {}
    for name in names:
        pattern = _clean(name)
        matched = _match_segments(root, pattern, excluded) if pattern else [""]
        if not matched:
            raise ContextError(f"{name}: no such file or directory in the build context"
                               + (" (or every match is excluded by .dockerignore)"
                                  if _MAGIC & set(name) or os.path.lexists(root / pattern)
                                  else ""))
        for relative in matched:
            path = root / relative if relative else root
            out.setdefault(relative, Source(relative, stat.S_ISDIR(os.lstat(path).st_mode)))
    return list(out.values())


def _walk(root: Path, source: Source, excluded: Callable[[str], bool]) -> Iterator[str]:
    """Every context path under ``source`` (itself included), sorted, minus excluded ones."""
    yield source.relative
    if not source.is_dir:
        return
    base = root / source.relative if source.relative else root
    for entry in sorted(os.scandir(base), key=lambda e: e.name):
        relative = f"{source.relative}/{entry.name}" if source.relative else entry.name
        if excluded(relative):
            continue
        yield from _walk(root, Source(relative, entry.is_dir(follow_symlinks=False)), excluded)


def content_digest(root: Path, chosen: Sequence[Source], *,
                   excluded: Callable[[str], bool] = lambda _: False) -> str:
    """The digest of everything the sources bring: names, types, modes, link targets and
    file bytes (not times, not owners: COPY sets those), in a fixed order."""
    digest = hashlib.sha256()
    for source in chosen:
        for relative in _walk(root, source, excluded):
            path = root / relative if relative else root
            info = os.lstat(path)
            digest.update(f"{relative}\0{stat.S_IFMT(info.st_mode)}\0"
                          f"{stat.S_IMODE(info.st_mode)}\0".encode())
            if stat.S_ISLNK(info.st_mode):
                digest.update(os.readlink(path).encode() + b"\0")
            elif stat.S_ISREG(info.st_mode):
                try:
                    with open(path, "rb") as handle:
                        for chunk in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(chunk)
                except OSError as e:
                    raise ContextError(f"{relative}: cannot read it: {e.strerror}") from e
            digest.update(b"\1")
    return "sha256:" + digest.hexdigest()


def destination(dest: str, workdir: str) -> str:
    """COPY's destination as an absolute path in the image (relative: under WORKDIR)."""
    joined = dest if dest.startswith("/") else posixpath.join(workdir or "/", dest)
    normal = posixpath.normpath(joined)
    return ("/" + normal.lstrip("/")) + ("/" if dest.endswith("/") and normal != "/" else "")


def stage_copy(root: Path, chosen: Sequence[Source], dest: str, upper: Path, *,
               uid: int = 0, gid: int = 0, mode: int | None = None,
               excluded: Callable[[str], bool] = lambda _: False) -> list[str]:
    """Place the sources under ``upper`` (the new layer's upper directory) at ``dest`` (an
    absolute image path, from :func:`destination`), as Docker's COPY does; returns the image
    paths written. Parent directories made on the way are root-owned, 0755."""
    into_dir = dest.endswith("/") or len(chosen) > 1 or any(s.is_dir for s in chosen)
    if len(chosen) > 1 and not dest.endswith("/"):
        raise ContextError(f"COPY of several sources to {dest}: the destination must be a "
                           "directory and end with /")
    written = []
    for source in chosen:
        for relative in _walk(root, source, excluded):
            inner = relative[len(source.relative):].lstrip("/") if source.is_dir else \
                posixpath.basename(relative)
            if into_dir:
                target = posixpath.join(dest, inner) if inner else dest.rstrip("/") or "/"
            else:
                target = dest
            host = upper / target.lstrip("/")
            _parents(upper, host.parent)
            _place(root / relative if relative else root, host, uid, gid, mode)
            written.append(target)
    return written


def _parents(upper: Path, directory: Path) -> None:
    missing = []
    while directory != upper and not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755)
        os.chmod(path, 0o755)


def _place(source: Path, target: Path, uid: int, gid: int, mode: int | None) -> None:
    info = os.lstat(source)
    if stat.S_ISDIR(info.st_mode):
        if not target.is_dir():
            target.mkdir()
        os.chmod(target, mode if mode is not None else stat.S_IMODE(info.st_mode))
    elif stat.S_ISLNK(info.st_mode):
        if os.path.lexists(target):
            target.unlink()
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(info.st_mode):
        if os.path.lexists(target) and not target.is_file():
            raise ContextError(f"cannot copy {source.name} onto {target.name}: not a file")
        shutil.copyfile(source, target, follow_symlinks=False)
        os.chmod(target, mode if mode is not None else stat.S_IMODE(info.st_mode))
    else:
        raise ContextError(f"{source}: only files, directories and symlinks can be copied")
    os.lchown(target, uid, gid)
