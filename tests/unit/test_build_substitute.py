"""Docker's word processing: expansion, quotes, escapes, and the word and flag splitters."""

from __future__ import annotations

import pytest

from composer.errors import ComposerError
from composer.runtime.images.build.substitute import (
    ExpansionError,
    expand,
    expand_heredoc,
    split_flags,
    split_whitespace,
    split_words,
)

ENV = {"a": "foobarbaz", "x": "X", "empty": "", "sp": "a b", "home": "/root"}

# word -> what Docker's builder makes of it in ENV, WORKDIR, COPY, ... with ENV above.
EXPANDED: list[tuple[str, str]] = [
    ("$x", "X"),
    ("${x}", "X"),
    ("${x}y", "Xy"),
    ("$xy", ""),
    ("$unset", ""),
    ("a$", "a$"),
    ("$ x", "$ x"),
    ("$%", "$%"),
    ("$1", ""),
    ("$@", ""),
    ("${home}/bin", "/root/bin"),
    ("$sp", "a b"),
    ("${empty:-d}", "d"),
    ("${empty-d}", ""),
    ("${unset-d}", "d"),
    ("${unset:-d}", "d"),
    ("${x:-d}", "X"),
    ("${x:+y}", "y"),
    ("${empty:+y}", ""),
    ("${empty+y}", "y"),
    ("${unset+y}", ""),
    ("${unset:-$x}", "X"),
    ("${unset:-${x}z}", "Xz"),
    ("${unset:-'a b'}", "a b"),
    ("${x:?}", "X"),
    ("${empty?}", ""),
    ("${a#f*b}", "arbaz"),
    ("${a##f*b}", "az"),
    ("${a%b*}", "foobar"),
    ("${a%%b*}", "foo"),
    ("${a#x}", "foobarbaz"),
    ("${a#f?o}", "barbaz"),
    ("${a%\\*}", "foobarbaz"),
    ("${a/ba/fo}", "fooforbaz"),
    ("${a//ba/fo}", "fooforfoz"),
    ("${a/z*/}", "foobarba"),
    ("${unset/a/b}", ""),
    ("'$x'", "$x"),
    ('"$x"', "X"),
    ('"a  b"', "a  b"),
    ('"\\$x"', "$x"),
    ('"\\a"', "\\a"),
    ('"\\""', '"'),
    ('"\\\\"', "\\"),
    ("\\$x", "$x"),
    ("\\${x}", "${x}"),
    ("a\\ b", "a b"),
    ("a\\", "a"),
    ("'a\\b'", "a\\b"),
    ("x\"$x\"'$x'", "xX$x"),
    ("~/a", "~/a"),
    ("", ""),
]


@pytest.mark.parametrize(("word", "expected"), EXPANDED)
def test_expand(word: str, expected: str) -> None:
    assert expand(word, ENV) == expected


@pytest.mark.parametrize(("word", "expected"), [
    ("`$x", "$x"),
    ("c:\\dir\\$x", "c:\\dir\\X"),
    ('"`""', '"'),
    ("a`", "a"),
])
def test_expand_with_backtick_escape(word: str, expected: str) -> None:
    assert expand(word, ENV, escape="`") == expected


@pytest.mark.parametrize(("word", "message"), [
    ("${x", "missing '}'"),
    ("${", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:x}", "bad substitution"),
    ("'open", "unmatched single quote"),
    ('"open', "unmatched double quote"),
    ("${unset?}", "unset: is not allowed to be unset"),
    ("${unset:?set it first}", "unset: set it first"),
    ("${empty:?}", "empty: is not allowed to be empty"),
    ("${x!y}", "unsupported modifier"),
    ("${x:=y}", "unsupported modifier"),
    ("${x/a}", "missing '/'"),
    ("${a#\\q}", "invalid escape"),
])
def test_expansion_errors(word: str, message: str) -> None:
    with pytest.raises(ExpansionError, match=message.replace("?", "\\?")) as caught:
        expand(word, ENV)
    assert isinstance(caught.value, ComposerError)
    assert repr(word) in str(caught.value)


@pytest.mark.parametrize(("body", "expected"), [
    ("echo '$x' \"$x\"\n", "echo 'X' \"X\"\n"),
    ("\\$x ${unset:-d}\n", "$x d\n"),
    ("it's \"quoted\"\n", "it's \"quoted\"\n"),
    ("no vars\n", "no vars\n"),
])
def test_heredoc_bodies_expand_without_quote_processing(body: str, expected: str) -> None:
    assert expand_heredoc(body, ENV) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("a=1 b=2", ["a=1", "b=2"]),
    ('a="x y" b', ['a="x y"', "b"]),
    ("a='x y'", ["a='x y'"]),
    ("a\\ b c", ["a\\ b", "c"]),
    ('""', ['""']),
    ("  a   b  ", ["a", "b"]),
    ('a="x\\"y"', ['a="x\\"y"']),
    ("a\\", ["a"]),
    ("", []),
])
def test_split_words_keeps_quotes_and_escapes(text: str, words: list[str]) -> None:
    assert split_words(text) == words


def test_split_words_with_backtick_escape() -> None:
    assert split_words('a=`" b', escape="`") == ['a=`"', "b"]


@pytest.mark.parametrize(("text", "flags", "rest"), [
    ("--from=a src dst", ["--from=a"], "src dst"),
    ('--chown="a b" x', ["--chown=a b"], "x"),
    ("-- --x y", [], "--x y"),
    ("src --from=a", [], "src --from=a"),
    ("--link", ["--link"], ""),
    ("--mount=type=cache,target=/x --mount=target=/y cmd",
     ["--mount=type=cache,target=/x", "--mount=target=/y"], "cmd"),
    ("  --a=1   b", ["--a=1"], "b"),
    ("-x y", [], "-x y"),
    ("--a=x\\ y z", ["--a=x y"], "z"),
])
def test_split_flags(text: str, flags: list[str], rest: str) -> None:
    assert split_flags(text) == (flags, rest)


def test_split_whitespace_knows_no_quotes() -> None:
    assert split_whitespace(' "a b"\t c ') == ['"a', 'b"', "c"]
    assert split_whitespace("   ") == []
