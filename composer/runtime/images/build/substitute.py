"""Docker's word processing: variable expansion, quotes, escapes, and the word splitters.

``expand`` does what BuildKit's shell lexer does to the arguments of ADD, ARG defaults, COPY,
ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and RUN ``--mount`` options:

* ``$name`` and ``${name}``; a name is letters, digits and ``_``, or a run of digits, or one of
  the special parameters ``@*#?-$!`` (all of which are simply looked up, so usually empty);
  a ``$`` followed by none of those stays a ``$``. Unset variables expand to nothing.
* ``${name:-word}`` / ``${name-word}``: ``word`` when unset (or, with the colon, empty);
  ``${name:+word}`` / ``${name+word}``: ``word`` when set (and, with the colon, non-empty);
  ``${name:?msg}`` / ``${name?msg}``: an error when unset (or empty);
  ``${name#pat}``, ``${name##pat}``, ``${name%pat}``, ``${name%%pat}``: shortest / longest prefix
  or suffix removal; ``${name/pat/rep}``, ``${name//pat/rep}``: first / every replacement.
  ``pat`` is a shell glob with ``*`` and ``?`` (``\\*`` and ``\\?`` are literal).
* single quotes keep everything literally; double quotes keep everything except ``$``, and the
  escape character there only escapes ``"``, ``$`` and itself; unquoted, the escape character
  makes the next character literal and disappears (a trailing one is dropped).

Heredoc bodies of COPY and ADD expand with ``expand_heredoc``: quotes are ordinary characters
there, as in a shell heredoc, and the escape character is always the backslash (BuildKit's
"raw" lexer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from composer.errors import ComposerError

_SPECIAL_PARAMS = frozenset("@*#?-$!")


class ExpansionError(ComposerError):
    """A word cannot be expanded: a syntax error in ``${...}``, an unmatched quote, or a
    ``${name?message}`` whose variable is unset."""


def expand(word: str, env: Mapping[str, str], *, escape: str = "\\") -> str:
    """``word`` with variables expanded and quotes and escapes removed, as Docker's builder
    expands instruction arguments. Raises ExpansionError."""
    return _Lexer(word, env, escape, quotes=True).top()


def expand_heredoc(text: str, env: Mapping[str, str]) -> str:
    """A COPY/ADD heredoc body with variables expanded; quotes stay as they are."""
    return _Lexer(text, env, "\\", quotes=False).top()


class _Lexer:
    """One pass over a word; the methods mirror the shell grammar's productions."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, *, quotes: bool) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.quotes = quotes

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += len(ch)
        return ch

    def top(self) -> str:
        try:
            return self.until("")
        except ExpansionError as err:
            raise ExpansionError(f"cannot expand {self.text!r}: {err}") from None

    def until(self, stop: str, *, raw_escapes: bool = False) -> str:
        """Process up to (and consume) ``stop``; ``""`` means the end of the text. With
        ``raw_escapes`` an escape character is kept along with what it escapes (patterns need
        to see ``\\*``)."""
        out: list[str] = []
        while ch := self.peek():
            if stop and ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif self.quotes and ch == "'":
                out.append(self.single_quoted())
            elif self.quotes and ch == '"':
                out.append(self.double_quoted())
            else:
                self.pos += 1
                if ch == self.escape:
                    if raw_escapes:
                        out.append(ch)
                    ch = self.take()
                out.append(ch)
        if stop:
            raise ExpansionError(f"missing {stop!r}")
        return "".join(out)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise ExpansionError("unmatched single quote")
        content = self.text[self.pos + 1:end]
        self.pos = end + 1
        return content

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ExpansionError("unmatched double quote")
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape:
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.take()
            out.append(ch)

    def name(self) -> str:
        start = self.pos
        ch = self.peek()
        if ch.isdecimal():
            while self.peek().isdecimal():
                self.pos += 1
            return self.text[start:self.pos]
        if ch and ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        while (ch := self.peek()) and (ch.isalpha() or ch.isdecimal() or ch == "_"):
            self.pos += 1
        return self.text[start:self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        if not self.peek():
            raise ExpansionError("missing '}'")
        if self.peek() in "{}:":
            raise ExpansionError("bad substitution")
        name = self.name()
        op = self.take()
        if op == "}":
            return self.env.get(name, "")
        if not op:
            raise ExpansionError("missing '}'")
        if op == "/":
            return self.replace(name)
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.take()
        if not op or op not in "+-?#%":
            raise ExpansionError(f"unsupported modifier ({op or 'end of text'}) in ${{{name}...}}")
        word = self.until("}", raw_escapes=op in "#%")
        value = self.env.get(name)
        unset = value is None or (null_is_unset and value == "")
        if op == "-":
            return word if unset else (value or "")
        if op == "+":
            return "" if unset else word
        if op == "?":
            if unset:
                default = "is not allowed to be unset" if value is None else (
                    "is not allowed to be empty")
                raise ExpansionError(f"{name}: {word or default}")
            return value or ""
        greedy = word.startswith(op)
        pattern = _glob(word[1:] if greedy else word, name)
        return _trim(value or "", pattern, suffix=op == "%", greedy=greedy)

    def replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.pos += 1
        try:
            pattern = self.until("/", raw_escapes=True)
        except ExpansionError:
            raise ExpansionError(f"missing '/' in ${{{name}/...}}") from None
        replacement = self.until("}", raw_escapes=True)
        value = self.env.get(name, "")
        regex = _glob(pattern, name)
        # A function keeps the replacement literal (re.sub would read backslashes in it).
        return regex.sub(lambda _: replacement, value, count=0 if every else 1)


def _glob(pattern: str, name: str) -> re.Pattern[str]:
    """A ``${name#pattern}`` glob as a regular expression: ``*`` any run, ``?`` one character."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i:i + 1]
            if nxt in ("}", "/"):
                continue  # escaped only to get past the ${...} parser
            if nxt not in ("*", "?", "\\"):
                raise ExpansionError(f"invalid escape '\\{nxt}' in pattern of ${{{name}...}}")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim(value: str, pattern: re.Pattern[str], *, suffix: bool, greedy: bool) -> str:
    """Remove the shortest (or, greedy, the longest) prefix or suffix that ``pattern`` matches."""
    # For a prefix, cut i removes value[:i], so the shortest removal is the smallest i; for a
    # suffix it removes value[i:], so the shortest is the largest i.
    ascending = greedy if suffix else not greedy
    order: list[int] = list(range(len(value) + 1))
    if not ascending:
        order.reverse()
    for i in order:
        part = value[i:] if suffix else value[:i]
        if pattern.fullmatch(part):
            return value[:i] if suffix else value[i:]
    return value


def split_words(text: str, *, escape: str = "\\") -> list[str]:
    """Split on unquoted whitespace, keeping quotes and escapes in the words (Docker's
    ``parseWords``, used for ENV, LABEL and ARG before each word is expanded). A quoted empty
    string is a word; an escape character at the very end is dropped."""
    words: list[str] = []
    word: list[str] = []
    in_word = keep_empty = False
    quote = ""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if not quote and ch.isspace():
            if in_word and (word or keep_empty):
                words.append("".join(word))
            word, in_word, keep_empty = [], False, False
            i += 1
            continue
        in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = text[i]
        elif ch in "'\"":
            quote, keep_empty = ch, True
        elif ch == escape:
            if i + 1 == n:
                break
            word.append(ch)
            i += 1
            ch = text[i]
        word.append(ch)
        i += 1
    if in_word and (word or keep_empty):
        words.append("".join(word))
    return words


def split_flags(text: str) -> tuple[list[str], str]:
    """Take the leading ``--flag[=value]`` words off an instruction's arguments, as Docker does
    for every instruction: quotes are removed and a backslash escapes, whatever the escape
    directive says; a bare ``--`` ends the flags. Returns the flags and the rest."""
    flags: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if not text.startswith("--", i):
            return flags, text[i:]
        word: list[str] = []
        quote = ""
        quoted = False
        while i < n and (quote or not text[i].isspace()):
            ch = text[i]
            i += 1
            if quote and ch == quote:
                quote = ""
                continue
            if not quote and ch in "'\"":
                quote, quoted = ch, True
                continue
            if ch == "\\":
                if i == n:
                    break
                ch = text[i]
                i += 1
            word.append(ch)
        flag = "".join(word)
        if flag == "--":
            return flags, text[i:].lstrip()
        if flag or quoted:
            flags.append(flag)


_WHITESPACE = re.compile(r"[\t\v\f\r ]+")


def split_whitespace(text: str) -> list[str]:
    """Docker's plain split for FROM, EXPOSE and non-JSON COPY/ADD/VOLUME: no quote handling."""
    stripped = text.strip()
    return _WHITESPACE.split(stripped) if stripped else []
