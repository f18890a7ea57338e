"""``.env`` and ``env_file`` parsing, against behaviour verified with Docker Compose v2.40.3."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.errors import ManifestError, ManifestWarning
from composer.manifest.dotenv import parse_dotenv, read_dotenv, read_env_file

ENV = {"OS": "os", "DUP": "fromos"}
FIXTURES = (Path(__file__).resolve().parents[3] / "shared" / "corpus" / "compose"
            / "compose-spec__compose-go" / "dotenv" / "fixtures")

# Each text was used as a service `env_file` and the result read from
# `docker-compose config --format json` (Compose v2.40.3) with OS=os and DUP=fromos in the
# environment ("$$" in Compose's output unescaped to "$").
CASES: list[tuple[str, dict[str, str]]] = [
    ('A=1\nB=$A\n', {'A': '1', 'B': '1'}),
    ('DUP=file\nB=$DUP\n', {'B': 'fromos', 'DUP': 'file'}),
    ('A=1\nexport B=2\n', {'A': '1', 'B': '2'}),
    ('export A\n', {}),
    ('export  A=1', {'A': '1'}),
    ('exportA=1\n', {'exportA': '1'}),
    ('OS\nNOPE\n', {'OS': 'os'}),
    ('A=\n', {'A': ''}),
    ('A\n', {}),
    ('A=1', {'A': '1'}),
    ('A=x # c\nB=x#c\nC=\'x\' # c\nD="y"#c\n', {'A': 'x', 'B': 'x#c', 'C': 'x', 'D': 'y'}),
    ('# only\n\n  \n', {}),
    ('  A = b  \n', {'A': 'b'}),
    ('A="a\\nb\\tc\\"d\\\\e\\$f\\\'g\\qh"\n', {'A': 'a\nb\tc"d\\e$f\\\'g\\qh'}),
    ("A='a\\nb$OS'\n", {'A': 'a\\nb$OS'}),
    ('A="x$OS"\nB=$OS\n', {'A': 'xos', 'B': 'os'}),
    ('A="multi\nline"\nB=2\n', {'A': 'multi\nline', 'B': '2'}),
    ('A=${UNSET:-dflt}\nB=${OS:-x}\nC=${A:+alt}\n', {'A': 'dflt', 'B': 'os', 'C': 'alt'}),
    ('A=1\r\nB=2\r\n', {'A': '1', 'B': '2'}),
    ('\ufeffA=1\n', {'A': '1'}),
    ('=1\n', {'': '1'}),
    ('A="x" y\n', {'A': 'x'}),
    ("A='x'y=2\n", {'A': 'x', 'y': '2'}),
    ('A:1\n', {'A': '1'}),
    ('A=b=c\n', {'A': 'b=c'}),
    ("A= 'q'\n", {'A': 'q'}),
    ('A=  "dq"  \n', {'A': 'dq'}),
    ('A="\\0101"\n', {'A': 'A'}),
    ('A="\\x41"\n', {'A': '\\x41'}),
    ('A="a\\\nb"\n', {'A': 'a\\\nb'}),
    ('A=$$x\n', {'A': '$x'}),
    ('A="$$x"\n', {'A': '$x'}),
    ('A=\\$x\n', {'A': '\\'}),
    ('A="\\$x"\n', {'A': '$x'}),
    ('K.1=a\nK-2=b\nK[3]=c\n', {'K-2': 'b', 'K.1': 'a', 'K[3]': 'c'}),
    ('é=1\n', {'é': '1'}),
    ('A=1\nA=2\n', {'A': '2'}),
    ('\tA=1\n', {'A': '1'}),
    ('A=\t1\t\n', {'A': '1'}),
    ('A=x\\\ny\n', {'A': 'x\\'}),
    ('A=  # comment only\n', {'A': '# comment only'}),
    ('A=#notcomment\n', {'A': '#notcomment'}),
    ('A=x\t#tabcomment\n', {'A': 'x\t#tabcomment'}),
    ('A="a\r\nb"\n', {'A': 'a\r\nb'}),
    ("A='a\r\nb'\n", {'A': 'a\r\nb'}),
    ('export OS\n', {'OS': 'os'}),
    ('A="\\0"\nB="\\01"\nC="\\012"\nD="\\0123"\nE="\\08"\nF="\\0777"\n',
     {'A': '\\', 'B': '\\1', 'C': '\\12', 'D': 'S', 'E': '\\8', 'F': '\\777'}),
    ('A=\nB=2\n', {'A': '', 'B': '2'}),
    ('A\tB=1\n', {'A\tB': '1'}),
    ('A="\\a\\b\\f\\v\\r"\n', {'A': '\x07\x08\x0c\x0b\r'}),
    ('A=\'a\\\\b\'\nB="a\\\\b"\n', {'A': 'a\\\\b', 'B': 'a\\b'}),
    ("A='x'#c\n", {'A': 'x'}),
    ('A \n', {}),
    ('A=1\nB=${A:-x}\nC=${UNSET:-$A}\n', {'A': '1', 'B': '1', 'C': '1'}),
    ("A='${OS}'\n", {'A': '${OS}'}),
    ('export\n', {}),
    ('export=1\n', {'export': '1'}),
    ('A=1 #c\n', {'A': '1'}),
    ('A=x  #  c  \n', {'A': 'x'}),
    ('  # indented comment\nA=1\n', {'A': '1'}),
    ('A=1\n#B=2\n', {'A': '1'}),
    ('A="\\\\"\n', {'A': '\\'}),
    ("A='\\''\n", {'A': "'"}),
    ('A="\'"\nB=\'"\'\n', {'A': "'", 'B': '"'}),
    ('A=${OS}${OS}\n', {'A': 'osos'}),
    ('A=$OS.x\n', {'A': 'os.x'}),
    ('A="${UNSET}"\n', {'A': ''}),
    ('A=${B}\nB=1\n', {'A': '', 'B': '1'}),
    ('A=1\nB="${A}"\nC=\'${A}\'\n', {'A': '1', 'B': '1', 'C': '${A}'}),
    ('A="a\n\nb"\n', {'A': 'a\n\nb'}),
    ('A=x\rB=2\n', {'A': 'x\rB=2'}),
    ('A="${OS:-x y}"\n', {'A': 'os'}),
    ('A=b c d\n', {'A': 'b c d'}),
    ('A="\\0377"\n', {'A': 'ÿ'}),
    ('A="\\c\\e\\\'"\n', {'A': "\\c\\e\\'"}),
    ('A="x" # c\nB=2\n', {'A': 'x', 'B': '2'}),
    ("A = 'x' # c\n", {'A': 'x'}),
    ('A="${OS}\\n$OS"\n', {'A': 'os\nos'}),
    ('A=1 # c # d\n', {'A': '1'}),
    ('A="\\$\\$"\n', {'A': '$$'}),
    ('A="$"\n', {'A': '$'}),
    ('A=$\n', {'A': '$'}),
    ('A=x$\n', {'A': 'x$'}),
    ("A='$'\n", {'A': '$'}),
    ('A="$UNSET"\nB=$UNSET\n', {'A': '', 'B': ''}),
    ('A="${UNSET:-a b}"\n', {'A': 'a b'}),
    ('A=${UNSET:-"q"}\n', {'A': '"q"'}),
    ('export A="x"\nexport B=\'y\'\n', {'A': 'x', 'B': 'y'}),
    ('A=1\n\n\n# c\n\n B = 2 \n', {'A': '1', 'B': '2'}),
]

# (text, line, column, message). Compose rejects each of these too; its words differ a little
# ("key cannot contain a space", and its line is where it stopped reading, not where the
# quote opened).
ERRORS: list[tuple[str, int, int, str]] = [
    ('A="unterminated\nB=2\n', 1, 3, 'unterminated quoted value "unterminated'),
    ('A B=1\n', 1, 1, 'variable name "A B" contains a space'),
    ('A$=1\n', 1, 2, 'unexpected character "$" in variable name "A$=1"'),
    ('A=${UNSET:?boom}\n', 1, 3, 'required variable UNSET is missing a value: boom'),
    ('A=${\n', 1, 3, "invalid interpolation format in '${'"),
    ("A='it''s'\n", 1, 7, 'unexpected character "\'" in variable name "\'s\'"'),
    ('A="a" "b"\n', 1, 7, 'unexpected character """ in variable name ""b""'),
    ('A="x\\"\n', 1, 3, 'unterminated quoted value "x\\"'),
    ('A="x""y"\n', 1, 6, 'unexpected character """ in variable name ""y""'),
    ('\n\n\nA B=1\n', 4, 1, 'variable name "A B" contains a space'),
    ('# c\nA=1\nB C\n', 3, 1, 'variable name "B C" contains a space'),
    ('A="x\nB C=1\n', 1, 3, 'unterminated quoted value "x'),
    ('A=1\n"B"=2\n', 2, 1, 'unexpected character """ in variable name ""B"=2"'),
    ('A=1\nB="a\nb\nc\nD E=1\n', 2, 3, 'unterminated quoted value "a'),
    ('A="""\n', 1, 5, 'unexpected character """ in variable name """'),
]


def lookup(name: str) -> str | None:
    return ENV.get(name)


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_matches_compose(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, "e.env", lookup, warn=lambda w: None) == expected


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS)
def test_rejects_what_compose_rejects(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_dotenv(text, "e.env", lookup)
    error = caught.value
    assert error.message == message
    assert error.loc is not None and (error.loc.file, error.loc.line, error.loc.column) == (
        "e.env", line, column)
    assert error.hint


def test_values_keep_file_order_and_later_keys_win() -> None:
    assert list(parse_dotenv("B=1\nA=2\nB=3\n", "e.env")) == ["B", "A"]
    assert parse_dotenv("B=1\nA=2\nB=3\n", "e.env")["B"] == "3"


def test_environment_wins_over_earlier_keys_when_interpolating() -> None:
    # Compose asks the lookup first: DUP=file then B=$DUP gives B=fromos.
    assert parse_dotenv("DUP=file\nB=$DUP\n", "e.env", lookup) == {"DUP": "file", "B": "fromos"}
    assert parse_dotenv("DUP=file\nB=$DUP\n", "e.env") == {"DUP": "file", "B": "file"}


def test_bare_key_on_last_line_is_inherited() -> None:
    # Deliberate difference: Compose 2.40.3 sets an empty-named key to "OS" here.
    assert parse_dotenv("OS", "e.env", lookup) == {"OS": "os"}
    assert parse_dotenv("NOPE", "e.env", lookup) == {}


def test_unset_variables_warn_once_with_the_place() -> None:
    warnings: list[ManifestWarning] = []
    text = "A=1\nB=${UNSET}\nC=\"$UNSET\"\n"
    assert parse_dotenv(text, "e.env", warn=warnings.append) == {"A": "1", "B": "", "C": ""}
    assert [str(w) for w in warnings] == [
        'e.env:2:3: The "UNSET" variable is not set. Defaulting to a blank string.']


def test_read_dotenv_missing_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    assert read_dotenv(str(missing), required=False) == {}
    with pytest.raises(ManifestError) as caught:
        read_dotenv(str(missing))
    assert caught.value.message == f"env file {missing} not found"
    assert caught.value.hint
    with pytest.raises(ManifestError, match="is a directory"):
        read_dotenv(str(tmp_path))


def test_read_dotenv_reads_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfA=1\r\nB='x'\r\nC='y\r\nz'\r\nD=u\rE=v\n")
    # Compose keeps a carriage return inside quotes and inside an unquoted line.
    assert read_dotenv(str(path)) == {"A": "1", "B": "x", "C": "y\r\nz", "D": "u\rE=v"}
    path.write_bytes(b"A=\xff\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_dotenv(str(path))


# `format: raw` env_file entries, verified the same way.
RAW_CASES: list[tuple[str, dict[str, str]]] = [
    ("A=1\nB=$OS\nC=\"q\"\nD='s'\n", {"A": "1", "B": "$OS", "C": '"q"', "D": "'s'"}),
    ("A\n", {}),
    ("OS\n", {"OS": "os"}),
    ("OS", {"OS": "os"}),
    ("A:1\n", {}),
    ("A=\"multi\nline\"\n", {"A": '"multi'}),
    ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
    ("\ufeffA=1\n", {"A": "1"}),
    ("  A=1\n", {"A": "1"}),
    ("A=${OS:-x}\\n\n", {"A": "${OS:-x}\\n"}),
    ("A=x # y  \nB=\t\n", {"A": "x # y  ", "B": "\t"}),
    ("A=a=b\n", {"A": "a=b"}),
    ("  # c\nA=1\n", {"A": "1"}),
    ("A=1\rB=2\n", {"A": "1\rB=2"}),
    ("OS=\nB\n", {"OS": ""}),
]

RAW_ERRORS: list[tuple[str, str]] = [
    ("export A=1\n", "variable name 'export A' contains whitespace"),
    ("A = x\n", "variable name 'A ' contains whitespace"),
    ("  OS  \n", "variable name 'OS  ' contains whitespace"),
    ("=x\n", "no variable name on line '=x'"),
]


@pytest.mark.parametrize(("text", "expected"), RAW_CASES)
def test_raw_format_matches_compose(tmp_path: Path, text: str, expected: dict[str, str]) -> None:
    path = tmp_path / "e.env"
    path.write_bytes(text.encode())
    assert read_env_file(str(path), fmt="raw", lookup=lookup, required=True) == expected


@pytest.mark.parametrize(("text", "message"), RAW_ERRORS)
def test_raw_format_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "e.env"
    path.write_text(text)
    with pytest.raises(ManifestError) as caught:
        read_env_file(str(path), fmt="raw", lookup=lookup, required=True)
    assert caught.value.message == message and caught.value.loc is not None


def test_env_file_formats(tmp_path: Path) -> None:
    path = tmp_path / "e.env"
    path.write_text("A='$OS'\nB=$OS\n")
    assert read_env_file(str(path), fmt=None, lookup=lookup, required=True) == {
        "A": "$OS", "B": "os"}
    assert read_env_file(str(tmp_path / "nope"), fmt=None, lookup=lookup, required=False) == {}
    with pytest.raises(ManifestError, match='unsupported env_file format "foo"'):
        read_env_file(str(path), fmt="foo", lookup=lookup, required=True)


# compose-go's own fixtures, read as a service env_file by Compose v2.40.3 with
# VAR_TO_BE_LOADED_FROM_OS_ENV=fromos in the environment.
PLAIN = {"OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "3", "OPTION_D": "4", "OPTION_E": "5",
         "456": "ABC", "OPTION_F": "", "OPTION_G": "", "OPTION_H": "my string"}
SUBSTITUTED = {"OPTION_A": "1", "OPTION_B": "1", "OPTION_C": "1", "OPTION_D": "1_1",
               "OPTION_E": ""}
FIXTURE_CASES: dict[str, dict[str, str]] = {
    "custom.format": {"FOO": "BAR", "ZOT": "QIX"},
    "equals.env": {"OPTION_A": "postgres://localhost:5432/database?sslmode=disable"},
    "exported.env": {"OPTION_A": "2", "OPTION_B": "\\n"},
    "inherited-multi-var.env": {"foo": "bar", "VAR_TO_BE_LOADED_FROM_OS_ENV": "fromos",
                                "bar": "baz"},
    "inherited-not-found.env": {},
    "inherited-single-var.env": {"VAR_TO_BE_LOADED_FROM_OS_ENV": "fromos"},
    "plain.env": PLAIN,
    "utf8-bom.env": PLAIN,
    "quoted.env": {"OPTION_A": "1", "OPTION_B": "2", "OPTION_C": "", "OPTION_D": "\\n",
                   "OPTION_E": "1", "OPTION_F": "2", "OPTION_G": "", "OPTION_H": "\n",
                   "OPTION_I": "echo 'asd'",
                   "OPTION_J": "first line\nsecond line\nthird line\nand so on",
                   "OPTION_K": "Let's go!", "OPTION_Z": "last value"},
    "special.env": {"VAR.WITH.DOTS": "dots", "VAR_WITH_UNDERSCORES": "underscores",
                    "VAR-WITH-DASHES": "dashes"},
    "substitutions.env": SUBSTITUTED,
    "substitutions-default.env": SUBSTITUTED,
    "unquoted.env": {
        "OPTION_A": "some quoted phrase", "OPTION_B": "first one with an unquoted phrase",
        "OPTION_C": "then another one with an unquoted phrase",
        "OPTION_D": "then another one with an unquoted phrase special \u00e8 char",
        "OPTION_E": "then another one quoted phrase"},
}


@pytest.mark.corpus
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the shared corpus is not checked out here")
@pytest.mark.parametrize("name", sorted(FIXTURE_CASES))
def test_compose_go_fixtures(name: str) -> None:
    env = {"VAR_TO_BE_LOADED_FROM_OS_ENV": "fromos"}
    got = read_dotenv(str(FIXTURES / name), env.get, warn=lambda w: None)
    assert got == FIXTURE_CASES[name]


@pytest.mark.corpus
@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the shared corpus is not checked out here")
def test_compose_go_invalid_fixture() -> None:
    with pytest.raises(ManifestError) as caught:
        read_dotenv(str(FIXTURES / "invalid1.env"))
    assert caught.value.loc is not None and caught.value.loc.line == 7
    assert "contains a space" in caught.value.message and caught.value.hint


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("AZ_=:# \t\r\n\"'\\${}-?+é.")), max_size=40)
       | st.text(max_size=40))
def test_random_text_only_raises_manifest_error(text: str) -> None:
    try:
        result = parse_dotenv(text, "e.env", lookup, warn=lambda w: None)
    except ManifestError as error:
        assert error.loc is not None
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in result.items())
