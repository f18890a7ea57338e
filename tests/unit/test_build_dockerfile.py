"""Dockerfile parsing: lines, directives, forms, flags, mounts, heredocs, errors with lines."""

from __future__ import annotations

import pytest

from composer.errors import ComposerError
from composer.runtime.images.build import (
    DockerfileError,
    Healthcheck,
    Instruction,
    Mount,
    RunScript,
    expand_mounts,
    parse,
    parse_trigger,
    run_script,
)


def first(text: str) -> Instruction:
    """The first instruction after ``FROM a``."""
    return parse("FROM a\n" + text).stages[0].instructions[0]


def error(text: str) -> DockerfileError:
    with pytest.raises(DockerfileError) as caught:
        parse(text)
    return caught.value


# --- lines ------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "value"), [
    ("RUN echo a \\\n  b\n", "echo a   b"),
    ("RUN echo a \\\n# a comment line is dropped\n b\n", "echo a  b"),
    ("RUN echo a \\\n\n   \n b\n", "echo a  b"),
    ("RUN echo a \\", "echo a"),
    ("   RUN    echo   a   \n", "echo   a"),
    ("run echo a\n", "echo a"),
    ("RUN echo 'we run # of things'\n", "echo 'we run # of things'"),
    ("RUN echo \"\\\n     hello\\\n     world\"\n", 'echo "     hello     world"'),
])
def test_line_joining(body: str, value: str) -> None:
    instruction = first(body)
    assert instruction.keyword == "RUN"
    assert instruction.value == value


def test_blank_continuation_lines_warn() -> None:
    dockerfile = parse("FROM a\nRUN echo a \\\n\n b\n")
    assert dockerfile.warnings == ("Dockerfile:2: empty continuation line (Docker will make this "
                                   "an error)",)


def test_lines_and_original_text() -> None:
    dockerfile = parse("# comment\n\nFROM a\n  # indented comment\nRUN a \\\n  b\nCMD c\r\n")
    run, cmd = dockerfile.stages[0].instructions
    assert (run.line, run.end_line, run.original) == (5, 6, "RUN a \\\n  b")
    assert (cmd.line, cmd.value) == (7, "c")
    assert dockerfile.stages[0].line == 3


def test_byte_order_mark_is_ignored() -> None:
    assert parse("\ufeffFROM a\n").stages[0].base == "a"


def test_backtick_escape_directive_windows_paths() -> None:
    dockerfile = parse("# escape=`\n\nFROM nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n")
    copy, run = dockerfile.stages[0].instructions
    assert dockerfile.escape == "`"
    assert copy.words == ("testfile.txt", "c:\\")
    assert run.value == "dir c:\\"


def test_backtick_continues_lines() -> None:
    assert parse("# escape=`\nFROM a\nRUN a `\n  b\n").stages[0].instructions[0].value == "a   b"


def test_default_escape_joins_the_windows_example() -> None:
    # The Dockerfile reference's example of why the escape directive exists.
    instruction = first("COPY testfile.txt c:\\\\\nRUN dir c:\\\n")
    assert instruction.keyword == "COPY"
    assert instruction.words == ("testfile.txt", "c:\\RUN", "dir", "c:")


# --- directives -------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "directives"), [
    ("# syntax=docker/dockerfile:1\n", {"syntax": "docker/dockerfile:1"}),
    ("#syntax = docker/dockerfile:1.7\n#\tcheck=error=true\n",
     {"syntax": "docker/dockerfile:1.7", "check": "error=true"}),
    ("# SYNTAX=docker.io/docker/dockerfile:1.7.1\n",
     {"syntax": "docker.io/docker/dockerfile:1.7.1"}),
    ("# syntax=docker/dockerfile\n", {"syntax": "docker/dockerfile"}),
    ("# syntax=docker/dockerfile:1@sha256:" + "a" * 64 + "\n",
     {"syntax": "docker/dockerfile:1@sha256:" + "a" * 64}),
    ("# hello\n# escape=`\n", {}),
    ("# unknown=1\n# escape=`\n", {}),
    ("\n# escape=`\n", {}),
])
def test_directives(header: str, directives: dict[str, str]) -> None:
    dockerfile = parse(header + "FROM a\n")
    assert dict(dockerfile.directives) == directives
    assert dockerfile.escape == directives.get("escape", "\\")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("# escape=`\n# escape=\\\nFROM a\n", 2, "only one escape parser directive"),
    ("# escape=x\nFROM a\n", 1, "invalid escape token"),
    ("# syntax=docker/dockerfile:1.7-labs\nFROM a\n", 1, "unsupported Dockerfile frontend"),
    ("# syntax=docker/dockerfile-upstream:master\nFROM a\n", 1, "unsupported"),
    ("# escape=`\n# syntax=example.com/my/frontend\nFROM a\n", 2, "unsupported"),
])
def test_directive_errors(text: str, line: int, message: str) -> None:
    err = error(text)
    assert err.line == line
    assert message in err.message


# --- forms ------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "json_form"), [
    ('RUN ["a", "b c"]', ("a", "b c")),
    ('RUN [ "a" ]', ("a",)),
    ("RUN ['a']", None),
    ('RUN ["a"', None),
    ('CMD ["a", "-c"] extra', None),
    ("CMD []", ()),
    ('ENTRYPOINT ["/bin/x", "--flag"]', ("/bin/x", "--flag")),
    ("CMD echo $HOME", None),
    ('SHELL ["powershell", "-command"]', ("powershell", "-command")),
    ('COPY ["a b", "/c d/"]', ("a b", "/c d/")),
    ('VOLUME ["/data", "/logs"]', ("/data", "/logs")),
])
def test_exec_and_shell_forms(body: str, json_form: tuple[str, ...] | None) -> None:
    instruction = first(body)
    assert instruction.json_form == json_form
    if json_form is None:
        assert instruction.value == body.split(" ", 1)[1]


@pytest.mark.parametrize(("body", "message"), [
    ('RUN ["a", 1]', "arrays must be comprised of strings only"),
    ("RUN []", "RUN requires a command"),
    ("SHELL []", "SHELL requires the arguments to be in JSON form"),
    ("SHELL /bin/bash -c", "SHELL requires the arguments to be in JSON form"),
])
def test_form_errors(body: str, message: str) -> None:
    err = error("FROM a\n" + body)
    assert (err.line, message in err.message) == (2, True)


# --- arguments --------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "pairs"), [
    ("ARG a", (("a", None),)),
    ("ARG a b=2 c=", (("a", None), ("b", "2"), ("c", ""))),
    ('ARG a="x y"', (("a", '"x y"'),)),
    ("ENV a=1 b=2", (("a", "1"), ("b", "2"))),
    ('ENV a="x y" b=\'$z\'', (("a", '"x y"'), ("b", "'$z'"))),
    ("ENV a=b=c", (("a", "b=c"),)),
    ("ENV key value with  spaces", (("key", "value with  spaces"),)),
    ('LABEL "com.example.vendor"="ACME Inc"', (('"com.example.vendor"', '"ACME Inc"'),)),
    ("LABEL a=1 \\\n      b=2", (("a", "1"), ("b", "2"))),
])
def test_key_value_instructions(body: str, pairs: tuple[tuple[str, str | None], ...]) -> None:
    assert first(body).pairs == pairs


def test_legacy_env_form_warns() -> None:
    assert "legacy form" in parse("FROM a\nENV k v\n").warnings[0]


@pytest.mark.parametrize(("body", "words"), [
    ("EXPOSE 80 443/tcp  53/udp", ("80", "443/tcp", "53/udp")),
    ("VOLUME /a /b", ("/a", "/b")),
    ("COPY a b /dst/", ("a", "b", "/dst/")),
    ("WORKDIR /path with space", ("/path with space",)),
    ("USER app:app", ("app:app",)),
    ("STOPSIGNAL SIGKILL", ("SIGKILL",)),
    ("MAINTAINER someone <a@b>", ("someone <a@b>",)),
])
def test_argument_words(body: str, words: tuple[str, ...]) -> None:
    assert first(body).words == words


@pytest.mark.parametrize(("body", "message"), [
    ("ARG =x", "ARG names can not be blank"),
    ("ENV a=1 b", "can't find = in 'b'"),
    ("ENV =x", "ENV names can not be blank"),
    ("ENV lonely", "ENV must have two arguments"),
    ("LABEL", "LABEL requires at least one argument"),
    ("RUN", "RUN requires at least one argument"),
    ("CMD", "CMD requires at least one argument"),
    ("COPY onlyone", "COPY requires at least two arguments"),
    ("ADD x <<EOF\nbody\nEOF", "cannot take a heredoc as its destination"),
    ('VOLUME [""]', "VOLUME specified can not be an empty string"),
    ("FOO bar", "unknown instruction: FOO"),
])
def test_argument_errors(body: str, message: str) -> None:
    err = error("FROM a\n" + body + "\n")
    assert err.line == 2
    assert message in err.message


def test_unknown_instruction_suggests_a_close_one() -> None:
    assert error("FROM a\nRUNN x\n").hint == "did you mean RUN?"


# --- FROM and stages --------------------------------------------------------------------

def test_stages() -> None:
    dockerfile = parse("ARG V=1\nFROM --platform=$BUILDPLATFORM golang:$V AS Build\nRUN make\n"
                       "FROM scratch\nCOPY --from=build /out /\n")
    build, final = dockerfile.stages
    assert [arg.pairs for arg in dockerfile.global_args] == [(("V", "1"),)]
    assert (build.index, build.name, build.base, build.platform) == (
        0, "build", "golang:$V", "$BUILDPLATFORM")
    assert [i.keyword for i in build.instructions] == ["RUN"]
    assert (final.index, final.name, final.base, final.platform, final.line) == (
        1, None, "scratch", None, 4)
    assert dockerfile.stage("BUILD") is build
    assert dockerfile.stage("1") is final
    assert dockerfile.stage("2") is None
    assert dockerfile.stage("alpine") is None


@pytest.mark.parametrize(("text", "line", "message"), [
    ("FROM a b\n", 1, "FROM requires either one or three arguments"),
    ("FROM a AS b c\n", 1, "FROM requires either one or three arguments"),
    ("FROM a AS 1st\n", 1, "invalid name for build stage: '1st'"),
    ("FROM a AS b$c\n", 1, "invalid name for build stage"),
    ("FROM a AS scratch\n", 1, "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", 2, "duplicate stage name 'x'"),
    ("ARG a\nRUN x\nFROM a\n", 2, "RUN before the first FROM"),
    ("ARG a\n", None, "no FROM instruction"),
    ("# only a comment\n\n", None, "no instructions"),
    ("", None, "no instructions"),
])
def test_stage_errors(text: str, line: int | None, message: str) -> None:
    err = error(text)
    assert err.line == line
    assert message in err.message


def test_stage_names_keep_dots_dashes_and_underscores() -> None:
    assert parse("FROM a as my-stage_1.0\n").stages[0].name == "my-stage_1.0"


# --- flags ------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "flags"), [
    ("COPY --from=build --chown=1000:1000 --chmod=0644 a b",
     {"from": ("build",), "chown": ("1000:1000",), "chmod": ("0644",)}),
    ("COPY --link a b", {"link": ("true",)}),
    ("COPY --link=FALSE a b", {"link": ("false",)}),
    ("ADD --chown=app a.tar.gz /", {"chown": ("app",)}),
    ("ADD --checksum=sha256:" + "0" * 64 + " https://x/y /z",
     {"checksum": ("sha256:" + "0" * 64,)}),
    ("RUN --network=none make", {"network": ("none",)}),
    ("RUN --network=host --security=sandbox make",
     {"network": ("host",), "security": ("sandbox",)}),
    ("RUN --mount=type=cache,target=/a --mount=target=/b make",
     {"mount": ("type=cache,target=/a", "target=/b")}),
    ('COPY --chown="a b" x y', {"chown": ("a b",)}),
])
def test_accepted_flags(body: str, flags: dict[str, tuple[str, ...]]) -> None:
    instruction = first(body)
    assert dict(instruction.flags) == flags
    assert instruction.flag(next(iter(flags))) == next(iter(flags.values()))[-1]


def test_link_is_accepted_with_a_warning() -> None:
    warning = parse("FROM a\nCOPY --link a b\n").warnings[0]
    assert warning.startswith("Dockerfile:2: COPY --link is accepted and ignored")


def test_from_platform_flag() -> None:
    assert parse("FROM --platform=linux/arm64 a\n").stages[0].platform == "linux/arm64"


@pytest.mark.parametrize(("body", "message"), [
    ("COPY --parents a b", "COPY --parents is BuildKit syntax"),
    ("COPY --exclude=*.md a b", "COPY --exclude is BuildKit syntax"),
    ("ADD --keep-git-dir=true https://x/y.git /", "ADD --keep-git-dir is BuildKit syntax"),
    ("RUN --device=gpu x", "RUN --device is BuildKit syntax"),
    ("COPY --foo a b", "unknown flag --foo for COPY"),
    ("ENV --x=1 a=b", "unknown flag --x for ENV"),
    ("CMD --help", "unknown flag --help for CMD"),
    ("RUN --security=insecure x", "--security=insecure is not supported"),
    ("RUN --network=bridge x", "unsupported RUN --network=bridge"),
    ("COPY --chmod=u+x a b", "not an octal mode"),
    ("COPY --from=a --from=b x y", "--from is given twice"),
    ("COPY --link=maybe a b", "--link takes true or false"),
    ("COPY --from a b", "--from needs a value"),
    ("ADD --checksum=md5:abc a b", "is not a digest"),
    ("COPY --from=$STAGE a b", "COPY --from does not support variable expansion"),
])
def test_refused_flags(body: str, message: str) -> None:
    err = error("FROM a\n\n" + body + "\n")
    assert err.line == 3
    assert message in err.message


def test_refused_flags_explain_what_to_do() -> None:
    err = error("FROM a\nCOPY --foo a b\n")
    assert err.hint == "COPY takes these flags: --from, --chown, --chmod, --link"
    assert str(err) == ("Dockerfile:2: unknown flag --foo for COPY\n"
                        "  hint: COPY takes these flags: --from, --chown, --chmod, --link")
    assert isinstance(err, ComposerError)


def test_error_names_the_given_path() -> None:
    with pytest.raises(DockerfileError, match=r"^web/Dockerfile.dev:1: "):
        parse("FROM a b\n", path="web/Dockerfile.dev")


def test_unknown_flag_for_from() -> None:
    assert "unknown flag --foo for FROM" in error("FROM --foo=x a\n").message


# --- RUN --mount ------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "mount"), [
    ("type=cache,target=/root/.cache",
     Mount("cache", "/root/.cache", id="/root/.cache", sharing="shared", mode=0o755, uid=0,
           gid=0)),
    ("type=cache,id=go,target=/go,sharing=locked,mode=0700,uid=1000,gid=1000,ro",
     Mount("cache", "/go", id="go", readonly=True, sharing="locked", mode=0o700, uid=1000,
           gid=1000)),
    ("target=/src", Mount("bind", "/src", readonly=True)),
    ("type=bind,source=/a,from=build,target=/b,rw",
     Mount("bind", "/b", source="/a", from_="build", readonly=False)),
    ("type=bind,dst=/b,src=x,readonly=false", Mount("bind", "/b", source="x")),
    ("TYPE=Bind,Target=/b", Mount("bind", "/b", readonly=True)),
    ("type=secret,id=aws,target=/root/.aws/credentials",
     Mount("secret", "/root/.aws/credentials", id="aws", readonly=True, mode=0o400, uid=0,
           gid=0)),
    ("type=secret,id=tok", Mount("secret", "/run/secrets/tok", id="tok", readonly=True,
                                 mode=0o400, uid=0, gid=0)),
    ("type=secret,target=/etc/key,required",
     Mount("secret", "/etc/key", id="key", readonly=True, mode=0o400, uid=0, gid=0,
           required=True)),
    ("type=secret,id=API_KEY,env=API_KEY",
     Mount("secret", None, id="API_KEY", readonly=True, mode=0o400, uid=0, gid=0,
           env="API_KEY")),
    ("type=secret,source=npm,required=true",
     Mount("secret", "/run/secrets/npm", id="npm", readonly=True, mode=0o400, uid=0, gid=0,
           required=True)),
    # The flag's quotes go first; the CSV's own quotes then keep a comma in a value.
    ("'type=bind,target=/a,\"source=x,y\"'", Mount("bind", "/a", source="x,y", readonly=True)),
])
def test_mounts(spec: str, mount: Mount) -> None:
    assert first(f"RUN --mount={spec} make").mounts == (mount,)


@pytest.mark.parametrize(("spec", "message"), [
    ("type=ssh", "type=ssh is not supported"),
    ("type=tmpfs,target=/t", "type=tmpfs is not supported"),
    ("type=nfs,target=/t", "unsupported mount type 'nfs'"),
    ("type=bind", "needs a target"),
    ("type=cache", "needs a target"),
    ("type=bind,target=/x,mode=0755", "mode is not allowed for bind mounts"),
    ("type=cache,target=/x,mode=abc", "invalid value 'abc' for mode"),
    ("type=cache,target=/x,uid=-1", "invalid value '-1' for uid"),
    ("type=cache,target=/x,sharing=weird", "unsupported sharing value 'weird'"),
    ("type=bind,target=/x,sharing=locked", "sharing is only for cache mounts"),
    ("type=cache,target=/x,required", "required is only for secret mounts"),
    ("type=bind,target=/x,env=X", "env is only for secret mounts"),
    ("type=secret,id=a,from=b", "a secret mount cannot have from="),
    ("type=secret,id=a,source=b", "id= or source=, not both"),
    ("type=secret", "a secret mount needs id="),
    ("type=bind,target=/x,ro=maybe", "invalid value for ro: 'maybe'"),
    ("unknown=1,target=/x", "unexpected key 'unknown'"),
    ("type=bind,target", "invalid field 'target'"),
    ("from=$STAGE,target=/x", "from= does not support variable expansion"),
])
def test_mount_errors(spec: str, message: str) -> None:
    err = error(f"FROM a\nRUN --mount={spec} make\n")
    assert err.line == 2
    assert message in err.message


def test_mounts_expand_when_the_step_runs() -> None:
    run = first("RUN --mount=type=cache,target=$DIR,uid=${UID},id=c-$V make")
    assert run.mounts == (Mount("cache", "$DIR", id="c-$V", sharing="shared", mode=0o755,
                                uid=None, gid=0),)
    expanded = expand_mounts(run, {"DIR": "/cache", "UID": "1000", "V": "2"})
    assert expanded == (Mount("cache", "/cache", id="c-2", sharing="shared", mode=0o755,
                              uid=1000, gid=0),)


def test_mount_expansion_errors_name_the_line() -> None:
    run = parse("FROM a\n\nRUN --mount=type=cache,target=${D:?needed} x\n").stages[0]
    with pytest.raises(DockerfileError, match=r"^Dockerfile:3: .*D: needed"):
        expand_mounts(run.instructions[0], {})


# --- HEALTHCHECK ------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "check"), [
    ("HEALTHCHECK NONE", Healthcheck(("NONE",))),
    ("HEALTHCHECK none", Healthcheck(("NONE",))),
    ("HEALTHCHECK CMD curl -f http://localhost/ || exit 1",
     Healthcheck(("CMD-SHELL", "curl -f http://localhost/ || exit 1"))),
    ('HEALTHCHECK CMD ["/bin/check", "-q"]', Healthcheck(("CMD", "/bin/check", "-q"))),
    ("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms "
     "--retries=4 CMD check",
     Healthcheck(("CMD-SHELL", "check"), 300 * 10**9, 3 * 10**9, 90 * 10**9, 500 * 10**6, 4)),
    ("HEALTHCHECK --interval=1.5s --timeout=0 CMD check",
     Healthcheck(("CMD-SHELL", "check"), 1_500_000_000)),
])
def test_healthcheck(body: str, check: Healthcheck) -> None:
    assert first(body).healthcheck == check


@pytest.mark.parametrize(("body", "message"), [
    ("HEALTHCHECK NONE extra", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK --interval=5s NONE", "HEALTHCHECK NONE takes no arguments or options"),
    ("HEALTHCHECK PING x", "unknown type 'PING' in HEALTHCHECK"),
    ("HEALTHCHECK CMD", "missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK CMD []", "missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative"),
    ("HEALTHCHECK --retries=many CMD x", "--retries=many is not a number"),
    ("HEALTHCHECK --timeout=abc CMD x", "--timeout=abc is not a duration"),
    ("HEALTHCHECK --timeout=10 CMD x", "is not a duration"),
    ("HEALTHCHECK --interval=10us CMD x", "cannot be less than 1ms"),
    ("HEALTHCHECK --interval=-1s CMD x", "cannot be less than 1ms"),
    ("HEALTHCHECK --every=1s CMD x", "unknown flag --every for HEALTHCHECK"),
])
def test_healthcheck_errors(body: str, message: str) -> None:
    assert message in error("FROM a\n" + body + "\n").message


# --- heredocs ---------------------------------------------------------------------------

def test_run_heredoc_is_the_script() -> None:
    dockerfile = parse("FROM a\nRUN <<EOF\napt-get update\n# not a comment\nFROM nope \\\nEOF\n"
                       "RUN after\n")
    run, after = dockerfile.stages[0].instructions
    assert (run.value, run.line, run.end_line) == ("<<EOF", 2, 6)
    (doc,) = run.heredocs
    assert (doc.name, doc.word, doc.chomp, doc.expand, doc.fd) == ("EOF", "<<EOF", False, True,
                                                                   None)
    assert doc.content == "apt-get update\n# not a comment\nFROM nope \\\n"
    assert run_script(run).text == doc.content
    assert not run_script(run).executable
    assert (after.value, after.line) == ("after", 7)


def test_run_heredoc_with_a_shebang_is_executed_directly() -> None:
    run = first("RUN <<EOT\n#!/usr/bin/env python3\nprint('hi')\nEOT\n")
    assert run_script(run).executable
    assert run_script(run).text == "#!/usr/bin/env python3\nprint('hi')\n"


def test_a_chomped_shebang_heredoc_is_a_script_too() -> None:
    run = first("RUN <<-EOT\n\t#!/bin/sh -e\n\techo $0\n\tEOT\n")
    assert run_script(run) == RunScript("#!/bin/sh -e\necho $0\n", executable=True)
    # A shebang later in the body, or a heredoc fed to a command, is the shell's.
    assert not run_script(first("RUN <<EOT\necho\n#!/bin/sh\nEOT\n")).executable
    assert not run_script(first("RUN <<EOT python3\n#!/usr/bin/env python3\nEOT\n")).executable


def test_copy_may_mix_heredocs_and_context_files() -> None:
    copy = first("COPY <<EOF app.txt <<'two' /dest/\nfirst\nEOF\nsecond\ntwo\n")
    assert copy.words == ("<<EOF", "app.txt", "<<'two'", "/dest/")
    assert [copy.heredoc(w) is not None for w in copy.words] == [True, False, True, False]
    doc = copy.heredoc("<<'two'")
    assert doc is not None and (doc.name, doc.text, doc.expand) == ("two", "second\n", False)


def test_run_heredocs_with_a_command_go_to_the_shell() -> None:
    run = first("RUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\n"
                "second\nFILE2\n")
    assert [doc.name for doc in run.heredocs] == ["FILE1", "FILE2"]
    assert run_script(run).text == ("<<FILE1 cat > file1 && <<FILE2 cat > file2\n"
                                    "I am\nfirst\nFILE1\nI am\nsecond\nFILE2")


def test_plain_run_script_is_the_value() -> None:
    assert run_script(first("RUN --network=none make all")).text == "make all"
    with pytest.raises(ValueError):
        run_script(first('RUN ["make"]'))


@pytest.mark.parametrize(("word", "name", "expand", "chomp"), [
    ("<<EOF", "EOF", True, False),
    ("<<-EOF", "EOF", True, True),
    ('<<"EOF"', "EOF", False, False),
    ("<<'EOF'", "EOF", False, False),
    ("<<-'END'", "END", False, True),
])
def test_heredoc_delimiters(word: str, name: str, expand: bool, chomp: bool) -> None:
    copy = first(f"COPY {word} /etc/conf\n\tline $x\n\t{name}\n" if chomp else
                 f"COPY {word} /etc/conf\n\tline $x\n{name}\n")
    (doc,) = copy.heredocs
    assert (doc.name, doc.expand, doc.chomp, doc.word) == (name, expand, chomp, word)
    assert doc.content == "\tline $x\n"
    assert doc.text == ("line $x\n" if chomp else "\tline $x\n")
    assert copy.heredoc(word) is doc
    assert copy.heredoc("<<OTHER") is None


def test_copy_with_two_heredocs_and_a_file() -> None:
    copy = first("COPY <<a.txt file <<b.txt /dst/\nA\na.txt\nB\nb.txt\nCMD x\n")
    assert copy.words == ("<<a.txt", "file", "<<b.txt", "/dst/")
    assert [(doc.name, doc.content) for doc in copy.heredocs] == [("a.txt", "A\n"),
                                                                   ("b.txt", "B\n")]


def test_heredoc_file_descriptor() -> None:
    assert first("RUN 3<<EOF cat /dev/fd/3\nx\nEOF\n").heredocs[0].fd == 3


def test_quoted_heredoc_marker_is_not_a_heredoc() -> None:
    dockerfile = parse('FROM a\nRUN echo "<<EOF"\nCMD x\n')
    run, cmd = dockerfile.stages[0].instructions
    assert run.heredocs == () and cmd.keyword == "CMD"


def test_heredoc_under_backtick_escape() -> None:
    run = parse("# escape=`\nFROM a\nRUN <<EOF\nc:\\dir `\nEOF\n").stages[0].instructions[0]
    assert run.heredocs[0].content == "c:\\dir `\n"


def test_unterminated_heredoc() -> None:
    err = error("FROM a\nRUN <<EOF\necho\n")
    assert (err.line, err.message, err.hint) == (2, "unterminated heredoc <<EOF",
                                                 "end it with a line holding only EOF")


# --- ONBUILD ----------------------------------------------------------------------------

def test_onbuild_keeps_a_parsed_trigger() -> None:
    onbuild = first("ONBUILD COPY --from=build /a /b")
    assert onbuild.value == "COPY --from=build /a /b"
    assert onbuild.trigger is not None
    assert (onbuild.trigger.keyword, onbuild.trigger.flag("from")) == ("COPY", "build")


def test_onbuild_heredoc_is_part_of_the_trigger() -> None:
    onbuild = first("ONBUILD RUN <<EOF\necho hi\nEOF\n")
    assert onbuild.value == "RUN <<EOF\necho hi\nEOF"
    assert onbuild.trigger is not None and onbuild.trigger.heredocs[0].content == "echo hi\n"


@pytest.mark.parametrize(("body", "message"), [
    ("ONBUILD ONBUILD RUN x", "ONBUILD ONBUILD isn't allowed"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
    ("ONBUILD MAINTAINER x", "MAINTAINER isn't allowed as an ONBUILD trigger"),
    ("ONBUILD RUN", "RUN requires at least one argument"),
    ("ONBUILD COPY --parents a b", "COPY --parents is BuildKit syntax"),
])
def test_onbuild_errors(body: str, message: str) -> None:
    assert message in error("FROM a\n" + body + "\n").message


def test_parse_trigger_of_a_base_image() -> None:
    trigger = parse_trigger("RUN --mount=type=cache,target=/c make")
    assert (trigger.keyword, trigger.value, trigger.mounts[0].type) == ("RUN", "make", "cache")
    with pytest.raises(DockerfileError, match="FROM isn't allowed"):
        parse_trigger("FROM x")
    with pytest.raises(DockerfileError, match="must be one instruction"):
        parse_trigger("RUN a\nRUN b")


def test_maintainer_is_deprecated() -> None:
    assert "MAINTAINER is deprecated" in parse("FROM a\nMAINTAINER me\n").warnings[0]
