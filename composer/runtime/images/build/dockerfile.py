"""A Dockerfile, parsed into stages of typed instructions (nothing is expanded or run here).

Lines are joined by ``dockerfile_parse`` (continuations with the escape character, comment
lines inside continuations, case-insensitive keywords). Around it this module adds what that
library does not do as BuildKit does:

* parser directives are read here (``syntax``, ``escape``, ``check``; unknown ones end the
  directive block, as in BuildKit) and handed to the library normalised;
* whitespace-only lines inside a continuation are skipped (the library would end the
  instruction there), with a warning as Docker gives;
* heredocs (``RUN <<EOF``, ``COPY <<EOF /dst``, ``<<-EOF`` tab stripping, quoted delimiters that
  turn expansion off, several per line) are supported: the library cannot see them, so their
  bodies are cut out of its input and kept on the instruction (see ``Heredoc``);
* every instruction's flags, forms and arguments are checked as BuildKit checks them, and the
  BuildKit-only syntax composer's builder does not implement is refused with the line.

Refused: ``# syntax=`` frontends other than ``docker/dockerfile`` 1.x; ``COPY --parents``,
``--exclude``; ``ADD --keep-git-dir``, ``--exclude``, ``--unpack``; ``RUN --mount`` of type ssh
or tmpfs, ``--security=insecure``, ``--device``; ``--chmod`` that is not octal; ``$`` in
``COPY --from`` and ``--mount from=`` (as in BuildKit: define an alias stage instead).
Accepted and ignored, with a warning: ``COPY/ADD --link`` (the copied files are the same; only
BuildKit's layer reuse differs). ``RUN --security=sandbox`` is the default and changes nothing.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dockerfile_parse import DockerfileParser

from composer.errors import ComposerError
from composer.runtime.images.build import flags as _flags
from composer.runtime.images.build.flags import Healthcheck, Mount, Refused, json_array
from composer.runtime.images.build.substitute import (
    ExpansionError,
    expand,
    split_flags,
    split_whitespace,
    split_words,
)

KEYWORDS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"})
# The instructions whose arguments the builder expands (substitute.expand) before using them.
EXPANDS = frozenset({
    "ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME",
    "WORKDIR"})
_HEREDOC_KEYWORDS = frozenset({"RUN", "COPY", "ADD"})
_DIRECTIVE = re.compile(r"\s*#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*")
_DIRECTIVES = ("syntax", "escape", "check")
_SYNTAX = re.compile(r"(?:(?:index\.)?docker\.io/)?docker/dockerfile"
                     r"(?::(?:1(?:\.\d+){0,2}|latest))?(?:@sha256:[0-9a-f]{64})?")
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]+)")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*")
_INDEX = re.compile(r"[0-9]+")


class DockerfileError(ComposerError):
    """The Dockerfile is wrong or uses what composer's builder does not do.

    Rendered as ``PATH:LINE: message`` and, on the next line, ``hint: ...``."""

    def __init__(self, message: str, *, path: str = "Dockerfile", line: int | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        text = f"{where}: {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


@dataclass(frozen=True)
class Heredoc:
    """One here-document. ``content`` is the body as written (each line with its newline);
    ``text`` is what the file or script holds (leading tabs stripped for ``<<-``). With
    ``expand`` (an unquoted delimiter) COPY/ADD expand ``text`` with
    ``substitute.expand_heredoc``; for RUN the shell does."""

    name: str
    word: str
    content: str
    chomp: bool
    expand: bool
    fd: int | None = None

    @property
    def text(self) -> str:
        if not self.chomp:
            return self.content
        return "".join(line.lstrip("\t") for line in self.content.splitlines(keepends=True))


@dataclass(frozen=True)
class Instruction:
    """One instruction, unexpanded. ``value`` is the text after the keyword and flags (heredoc
    bodies not included; for ONBUILD it is the trigger as the image config stores it).

    ``words``: the arguments as Docker splits them: FROM, EXPOSE and non-JSON COPY/ADD/VOLUME on
    whitespace, the JSON array when there is one, ARG/ENV/LABEL by ``split_words``, else
    ``(value,)``. ``pairs``: ARG (name, default or None), ENV/LABEL (key, value), both raw.
    ``flags``: ``--from=x`` is ``{"from": ("x",)}``; a bare boolean flag has ``"true"``.
    ``json_form``: the exec form of RUN, CMD, ENTRYPOINT, SHELL (and COPY/ADD/VOLUME arrays).
    """

    keyword: str
    value: str
    line: int
    end_line: int
    original: str
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    json_form: tuple[str, ...] | None = None
    words: tuple[str, ...] = ()
    pairs: tuple[tuple[str, str | None], ...] = ()
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[Mount, ...] = ()
    healthcheck: Healthcheck | None = None
    trigger: Instruction | None = None

    def flag(self, name: str) -> str | None:
        """The last value given for ``--name``, or None."""
        values = self.flags.get(name)
        return values[-1] if values else None

    def heredoc(self, word: str) -> Heredoc | None:
        """The heredoc a COPY/ADD source word such as ``<<EOF`` stands for."""
        return next((doc for doc in self.heredocs if doc.word == word), None)


@dataclass(frozen=True)
class Stage:
    """``FROM [--platform=P] base [AS name]`` and the instructions up to the next FROM.
    ``name`` is lower-cased, as Docker matches stage names."""

    index: int
    name: str | None
    base: str
    platform: str | None
    line: int
    instructions: tuple[Instruction, ...]


@dataclass(frozen=True)
class Dockerfile:
    """The parsed file: ARGs before the first FROM, the stages, the directives, and warnings
    (``PATH:LINE: text``) the caller should show."""

    path: str
    stages: tuple[Stage, ...]
    global_args: tuple[Instruction, ...]
    directives: Mapping[str, str] = field(default_factory=dict, hash=False)
    escape: str = "\\"
    warnings: tuple[str, ...] = ()

    def stage(self, ref: str) -> Stage | None:
        """The stage a ``--target``, ``FROM`` or ``--from`` names: a stage name (any case) or
        an index; None when it is neither (then it is an image)."""
        lowered = ref.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if _INDEX.fullmatch(ref) and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None


@dataclass(frozen=True)
class RunScript:
    """What a shell-form RUN executes: ``SHELL + [text]``, or, when ``executable`` (a lone
    heredoc starting with ``#!``), ``text`` written to a file that is executed directly."""

    text: str
    executable: bool = False


def parse(text: str, *, path: str = "Dockerfile") -> Dockerfile:
    """Parse a Dockerfile's text. Raises DockerfileError naming the line."""
    lines = _split_lines(text)
    directives, block_end = _directives(lines, path)
    escape = directives.get("escape", "\\")
    warnings: list[str] = []
    parsed = [_instruction(raw, escape, path, warnings)
              for raw in _logical_lines(lines, block_end, escape, path, warnings)]
    if not parsed:
        raise DockerfileError("the file has no instructions", path=path,
                              hint="a Dockerfile needs at least a FROM line")
    return _stages(parsed, path, directives, escape, warnings)


def parse_trigger(text: str, *, path: str = "ONBUILD") -> Instruction:
    """Parse an ONBUILD trigger as a base image's config stores it (``RUN make``), so the
    builder can run the triggers of the image a FROM names."""
    lines = _split_lines(text)
    warnings: list[str] = []
    found = [_instruction(raw, "\\", path, warnings)
             for raw in _logical_lines(lines, 0, "\\", path, warnings)]
    if len(found) != 1:
        raise DockerfileError(f"an ONBUILD trigger must be one instruction: {text!r}", path=path)
    _check_trigger(found[0].keyword, path, found[0].line)
    return found[0]


def run_script(instruction: Instruction) -> RunScript:
    """The command a shell-form RUN gives its shell, heredocs included as BuildKit does: a lone
    heredoc is the script itself; otherwise each body follows the command line, ended by its
    delimiter, for the shell to read."""
    if instruction.keyword != "RUN" or instruction.json_form is not None:
        raise ValueError("run_script is for shell-form RUN instructions")
    docs = instruction.heredocs
    if len(docs) == 1 and instruction.value == docs[0].word:
        body = docs[0].text
        return RunScript(body, executable=body.startswith("#!"))
    return RunScript(instruction.value + "".join(f"\n{d.content}{d.name}" for d in docs))


def expand_mounts(instruction: Instruction, env: Mapping[str, str], *, escape: str = "\\",
                  path: str = "Dockerfile") -> tuple[Mount, ...]:
    """A RUN's ``--mount`` options with their values expanded in ``env`` and checked again, as
    the builder needs them when it runs the instruction."""
    def expander(word: str) -> str:
        return expand(word, env, escape=escape)

    try:
        return tuple(_flags.parse_mount(spec, expander)
                     for spec in instruction.flags.get("mount", ()))
    except (Refused, ExpansionError) as err:
        raise _error(err, path, instruction.line) from None


@dataclass(frozen=True)
class _Raw:
    keyword: str
    value: str
    start: int
    end: int
    original: str
    heredocs: tuple[Heredoc, ...]


def _split_lines(text: str) -> list[str]:
    return [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]


def _directives(lines: list[str], path: str) -> tuple[dict[str, str], int]:
    """The directive block at the top, and the index of the first line after it."""
    found: dict[str, str] = {}
    where: dict[str, int] = {}
    end = len(lines)
    for number, line in enumerate(lines):
        match = _DIRECTIVE.fullmatch(line)
        key = match.group(1).lower() if match else ""
        if not match or key not in _DIRECTIVES:
            end = number
            break
        if key in found:
            raise DockerfileError(f"only one {key} parser directive can be used", path=path,
                                  line=number + 1, hint="remove the repeated directive")
        found[key], where[key] = match.group(2), number + 1
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r}", path=path,
                              line=where["escape"], hint="the escape directive takes \\ or `")
    syntax = found.get("syntax")
    if syntax is not None and not _SYNTAX.fullmatch(syntax):
        raise DockerfileError(
            f"unsupported Dockerfile frontend {syntax!r}", path=path, line=where["syntax"],
            hint="composer builds with its own docker/dockerfile:1 front-end; use "
                 "'# syntax=docker/dockerfile:1' or remove the line")
    return found, end


def _library_structure(lines: list[str]) -> list[dict[str, object]]:
    data = ("\n".join(lines) + "\n").encode()
    structure: list[dict[str, object]] = DockerfileParser(fileobj=io.BytesIO(data)).structure
    return structure


def _logical_lines(lines: list[str], block_end: int, escape: str, path: str,
                   warnings: list[str]) -> list[_Raw]:
    # The library's input: the directive block as the library understands it, blank lines
    # as comments (so a blank line does not end a continuation), and a final empty line so an
    # unfinished continuation at the end of the file still ends.
    feed = ["#" if number < block_end or not line.strip() else line
            for number, line in enumerate(lines)]
    if escape != "\\":
        feed[0] = f"# escape={escape}"
    feed.append("")
    bodies: dict[int, tuple[tuple[Heredoc, ...], int]] = {}
    while True:
        entries = [entry for entry in _library_structure(feed)
                   if entry["instruction"] != "COMMENT"]
        for entry in entries:
            start = _int(entry["startline"])
            if start in bodies:
                continue
            markers = _heredoc_markers(str(entry["instruction"]), str(entry["value"]), escape)
            if markers:
                end = min(_int(entry["endline"]), len(lines) - 1)
                docs, last = _read_heredocs(lines, end + 1, markers, path, start + 1)
                bodies[start] = (docs, last)
                # Bodies are not Dockerfile lines: hide them and let the library run again.
                feed[end + 1:last + 1] = ["#"] * (last - end)
                break
        else:
            break
    found: list[_Raw] = []
    for entry in entries:
        start = _int(entry["startline"])
        end = min(_int(entry["endline"]), len(lines) - 1)
        if any(not lines[n].strip() for n in range(start + 1, end + 1)):
            warnings.append(f"{path}:{start + 1}: empty continuation line (Docker will make "
                            "this an error)")
        docs, last = bodies.get(start, ((), end))
        found.append(_Raw(str(entry["instruction"]), str(entry["value"]).strip(), start + 1,
                          last + 1, "\n".join(lines[start:last + 1]), docs))
    return found


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"dockerfile_parse gave a line number of {value!r}")
    return value


def _heredoc_markers(keyword: str, value: str, escape: str) -> list[Heredoc]:
    """The heredoc words of a RUN/COPY/ADD line (or an ONBUILD of one), bodies still empty."""
    _, rest = split_flags(value)
    if keyword == "ONBUILD":
        head, *tail = re.split(r"\s+", rest.strip(), maxsplit=1)
        if head.upper() not in _HEREDOC_KEYWORDS or not tail:
            return []
        _, rest = split_flags(tail[0])
    elif keyword not in _HEREDOC_KEYWORDS:
        return []
    if "<<" not in rest:
        return []
    markers: list[Heredoc] = []
    for word in split_words(rest, escape=escape):
        match = _HEREDOC.fullmatch(word)
        name = _unquote(match.group(3), escape) if match else None
        if match and name:
            fd = int(match.group(1)) if match.group(1) else None
            markers.append(Heredoc(name[0], word, "", match.group(2) == "-", not name[1], fd))
    return markers


def _unquote(word: str, escape: str) -> tuple[str, bool] | None:
    """A heredoc delimiter without its quotes and escapes, and whether it had quotes; None when
    it is not one word."""
    out: list[str] = []
    quote = ""
    quoted = False
    chars = iter(word)
    for ch in chars:
        if quote:
            if ch == quote:
                quote = ""
            else:
                out.append(ch)
        elif ch in "'\"":
            quote, quoted = ch, True
        elif ch == escape:
            out.append(next(chars, ""))
        elif ch.isspace():
            return None
        else:
            out.append(ch)
    name = "".join(out)
    return (name, quoted) if name and not quote else None


def _read_heredocs(lines: list[str], first: int, markers: list[Heredoc], path: str,
                   line: int) -> tuple[tuple[Heredoc, ...], int]:
    """Fill each heredoc's body from the lines after its instruction, one after the other."""
    docs: list[Heredoc] = []
    number = first
    for marker in markers:
        body: list[str] = []
        while True:
            if number >= len(lines):
                raise DockerfileError(f"unterminated heredoc {marker.word}", path=path, line=line,
                                      hint=f"end it with a line holding only {marker.name}")
            candidate = lines[number].lstrip("\t") if marker.chomp else lines[number]
            number += 1
            if candidate == marker.name:
                break
            body.append(lines[number - 1] + "\n")
        docs.append(Heredoc(marker.name, marker.word, "".join(body), marker.chomp,
                            marker.expand, marker.fd))
    return tuple(docs), number - 1


def _error(err: Exception, path: str, line: int) -> DockerfileError:
    hint = err.hint if isinstance(err, Refused) else None
    message = err.message if isinstance(err, Refused) else str(err)
    return DockerfileError(message, path=path, line=line, hint=hint)


def _instruction(raw: _Raw, escape: str, path: str, warnings: list[str]) -> Instruction:
    try:
        return _build(raw.keyword, raw.value, raw, escape, path, warnings)
    except (Refused, ExpansionError) as err:
        raise _error(err, path, raw.start) from None


def _build(keyword: str, value: str, raw: _Raw, escape: str, path: str,
           warnings: list[str]) -> Instruction:
    if keyword not in KEYWORDS:
        close = difflib.get_close_matches(keyword, sorted(KEYWORDS), n=1)
        raise Refused(f"unknown instruction: {keyword}",
                      f"did you mean {close[0]}?" if close else None)
    flag_words, rest = split_flags(value)
    rest = rest.strip()
    flags = _flags.parse_flags(keyword, flag_words)
    if not rest:
        raise Refused(f"{keyword} requires at least one argument")
    if "link" in flags:
        warnings.append(f"{path}:{raw.start}: {keyword} --link is accepted and ignored: the "
                        "files copied are the same")
    if keyword == "MAINTAINER":
        warnings.append(f"{path}:{raw.start}: MAINTAINER is deprecated; use "
                        "LABEL org.opencontainers.image.authors=...")
    trigger: Instruction | None = None
    if keyword == "ONBUILD":
        trigger = _trigger(rest, raw, escape, path, warnings)
        rest += "".join(f"\n{doc.content}{doc.name}" for doc in raw.heredocs)
    words, json_form, pairs = _arguments(keyword, rest, escape, warnings, path, raw.start)
    if keyword in ("COPY", "ADD"):
        _check_copy(keyword, words, flags)
    mounts = tuple(_flags.parse_mount(spec, None) for spec in flags.get("mount", ()))
    return Instruction(
        keyword=keyword, value=rest, line=raw.start, end_line=raw.end, original=raw.original,
        flags=MappingProxyType(flags), json_form=json_form, words=words, pairs=pairs,
        heredocs=raw.heredocs if keyword in _HEREDOC_KEYWORDS else (), mounts=mounts,
        healthcheck=_flags.healthcheck(rest, flags) if keyword == "HEALTHCHECK" else None,
        trigger=trigger)


def _arguments(keyword: str, rest: str, escape: str, warnings: list[str], path: str,
               line: int) -> tuple[tuple[str, ...], tuple[str, ...] | None,
                                   tuple[tuple[str, str | None], ...]]:
    """(words, json_form, pairs) for one instruction, by Docker's per-instruction rules."""
    if keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        json_form = json_array(rest)
        if keyword == "SHELL" and not json_form:
            raise Refused("SHELL requires the arguments to be in JSON form (and not empty)",
                          'write it as SHELL ["/bin/bash", "-c"]')
        if keyword == "RUN" and json_form == ():
            raise Refused("RUN requires a command")
        return (json_form if json_form is not None else (rest,)), json_form, ()
    if keyword in ("COPY", "ADD", "VOLUME"):
        json_form = json_array(rest)
        words = json_form if json_form is not None else tuple(split_whitespace(rest))
        if keyword == "VOLUME" and (not words or any(not w.strip() for w in words)):
            raise Refused("VOLUME specified can not be an empty string")
        return words, json_form, ()
    if keyword in ("FROM", "EXPOSE"):
        words = tuple(split_whitespace(rest))
        if keyword == "FROM" and not (len(words) == 1 or (len(words) == 3
                                                          and words[1].lower() == "as")):
            raise Refused("FROM requires either one or three arguments",
                          "write FROM image or FROM image AS name")
        return words, None, ()
    if keyword == "ARG":
        words = tuple(split_words(rest, escape=escape))
        pairs: list[tuple[str, str | None]] = []
        for word in words:
            name, eq, default = word.partition("=")
            if not name:
                raise Refused("ARG names can not be blank")
            pairs.append((name, default if eq else None))
        return words, None, tuple(pairs)
    if keyword in ("ENV", "LABEL"):
        return _name_values(keyword, rest, escape, warnings, path, line)
    return (rest,), None, ()


def _name_values(keyword: str, rest: str, escape: str, warnings: list[str], path: str,
                 line: int) -> tuple[tuple[str, ...], None, tuple[tuple[str, str | None], ...]]:
    words = split_words(rest, escape=escape)
    if words and "=" not in words[0]:
        # The legacy "ENV key value" form: everything after the first blank is the value.
        parts = re.split(r"[\t\v\f\r ]+", rest, maxsplit=1)
        if len(parts) < 2:
            raise Refused(f"{keyword} must have two arguments", f"write {keyword} key=value")
        warnings.append(f"{path}:{line}: '{keyword} key value' is a legacy form; write "
                        f"{keyword} key=value")
        return tuple(parts), None, ((parts[0], parts[1]),)
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise Refused(f"can't find = in {word!r}", f"write {keyword} name=value")
        if not key:
            raise Refused(f"{keyword} names can not be blank")
        pairs.append((key, value))
    return tuple(words), None, tuple(pairs)


def _check_copy(keyword: str, words: tuple[str, ...],
                flags: Mapping[str, tuple[str, ...]]) -> None:
    if len(words) < 2:
        raise Refused(f"{keyword} requires at least two arguments: a source and a destination")
    if _HEREDOC.fullmatch(words[-1]):
        raise Refused(f"{keyword} cannot take a heredoc as its destination")
    for source in flags.get("from", ()):
        if re.search(r"\$.", source):
            raise Refused("COPY --from does not support variable expansion",
                          "name the image in a stage (FROM ${IMAGE} AS src) and use "
                          "COPY --from=src")


def _check_trigger(keyword: str, path: str, line: int) -> None:
    if keyword == "ONBUILD":
        raise DockerfileError("chaining ONBUILD via ONBUILD ONBUILD isn't allowed", path=path,
                              line=line)
    if keyword in ("FROM", "MAINTAINER"):
        raise DockerfileError(f"{keyword} isn't allowed as an ONBUILD trigger", path=path,
                              line=line)


def _trigger(rest: str, raw: _Raw, escape: str, path: str,
             warnings: list[str]) -> Instruction:
    head, *tail = re.split(r"\s+", rest, maxsplit=1)
    keyword = head.upper()
    _check_trigger(keyword, path, raw.start)
    return _build(keyword, tail[0] if tail else "", raw, escape, path, warnings)


def _stages(parsed: list[Instruction], path: str, directives: dict[str, str], escape: str,
            warnings: list[str]) -> Dockerfile:
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    header: Instruction | None = None
    names: set[str] = set()

    def close() -> None:
        if header is not None:
            stages.append(_stage(len(stages), header, current, names, path))

    for instruction in parsed:
        if instruction.keyword == "FROM":
            close()
            header, current = instruction, []
        elif header is not None:
            current.append(instruction)
        elif instruction.keyword == "ARG":
            global_args.append(instruction)
        else:
            raise DockerfileError(f"{instruction.keyword} before the first FROM", path=path,
                                  line=instruction.line,
                                  hint="only ARG may come before the first FROM")
    close()
    if not stages:
        raise DockerfileError("the file has no FROM instruction", path=path,
                              hint="start the build stage with FROM image")
    return Dockerfile(path=path, stages=tuple(stages), global_args=tuple(global_args),
                      directives=MappingProxyType(dict(directives)), escape=escape,
                      warnings=tuple(warnings))


def _stage(index: int, header: Instruction, body: list[Instruction], names: set[str],
           path: str) -> Stage:
    name: str | None = None
    if len(header.words) == 3:
        name = header.words[2].lower()
        if not _STAGE_NAME.fullmatch(name) or name == "scratch":
            raise DockerfileError(f"invalid name for build stage: {header.words[2]!r}", path=path,
                                  line=header.line,
                                  hint="a stage name starts with a letter and holds letters, "
                                       "digits, '-', '_' and '.' (and is not 'scratch')")
        if name in names:
            raise DockerfileError(f"duplicate stage name {name!r}", path=path, line=header.line,
                                  hint="give each stage its own name")
        names.add(name)
    return Stage(index=index, name=name, base=header.words[0], platform=header.flag("platform"),
                 line=header.line, instructions=tuple(body))
