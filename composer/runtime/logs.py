"""Container logs as conmon writes them (the CRI "k8s-file" format), and their rotation.

Each record is one line: ``TIMESTAMP STREAM TAG DATA``, for example
``2026-12-02T01:15:37.913416974+00:00 stdout F hello``. TIMESTAMP is RFC 3339 with nanoseconds
and the host's UTC offset, taken when conmon read the chunk (every record from one read of up
to 8192 bytes has the same one); STREAM is ``stdout`` or ``stderr`` (a terminal's output is all
stdout); TAG ``F`` ends a line, ``P`` is a piece of a longer one (a chunk without a newline: a
line over 8 KiB, or ``printf`` without one), continued by the next records of the same stream.
Readers here join pieces into whole lines, stamped with the time of their last piece (as podman
does), so times never go backwards.

Rotation: with ``--log-size-max`` conmon replaces the file by a new, empty one (a new inode) and
drops the old one. :class:`LogRotation` keeps the old ones as numbered generations
(``ctr.log.1`` newest ... ``ctr.log.N``): it holds a hard link ``ctr.log.live`` to the inode
that is current, made as soon as it sees it, and when the file turns out replaced that link
*is* the previous generation, complete. :func:`read` and :func:`follow` read every generation
in order, that link included (so nothing is missed between a rotation and the next ``check``).
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from composer.errors import UsageError

Stream = Literal["stdout", "stderr"]
_STREAMS: dict[bytes, Stream] = {b"stdout": "stdout", b"stderr": "stderr"}
_RFC3339 = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})")
_LIVE_SUFFIX = ".live"
_NS = 1_000_000_000


@dataclass(frozen=True)
class LogLine:
    """One line of output (without its newline), or a piece when ``partial`` (a line the
    container has not ended, or one cut by a record lost to rotation)."""

    time_ns: int
    stream: Stream
    data: bytes
    partial: bool


def _parse_time(text: bytes) -> int | None:
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        dt.datetime(year, month, day, hour, minute, second)  # range checks
    except ValueError:
        return None
    zone = m.group(8)
    offset = 0 if zone in (b"Z", b"z") else \
        (1 if zone[0:1] == b"+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    seconds = calendar.timegm((year, month, day, hour, minute, second)) - offset
    fraction = (m.group(7) or b"").ljust(9, b"0")
    return seconds * _NS + int(fraction or b"0")


def parse(raw: bytes) -> LogLine | None:
    """One record of the file, without its newline; None when it is not one."""
    parts = raw.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3:
        return None
    stream = _STREAMS.get(parts[1])
    tag = parts[2].split(b":", 1)[0]  # the CRI allows more tags after a colon
    time_ns = _parse_time(parts[0])
    if stream is None or tag not in (b"F", b"P") or time_ns is None:
        return None
    return LogLine(time_ns, stream, parts[3] if len(parts) == 4 else b"", tag == b"P")


class _Joiner:
    """Joins P records with what follows on the same stream."""

    def __init__(self) -> None:
        self.pending: dict[Stream, list[bytes]] = {}
        self.last = 0

    def feed(self, record: LogLine) -> LogLine | None:
        if record.partial:
            self.pending.setdefault(record.stream, []).append(record.data)
            self.last = record.time_ns
            return None
        pieces = self.pending.pop(record.stream, None)
        if pieces is None:
            return record
        return LogLine(record.time_ns, record.stream, b"".join([*pieces, record.data]), False)

    def flush(self) -> list[LogLine]:
        """What is pending, as partial lines (the container has not ended them)."""
        out = [LogLine(self.last, s, b"".join(p), True) for s, p in self.pending.items()]
        self.pending.clear()
        return out


def generations(path: Path) -> list[Path]:
    """The files holding the log, oldest first: numbered generations (highest number first),
    the rotation's link to the previous current file when it is not the current one any more
    (a rotation not yet seen by :meth:`LogRotation.check`), then ``path``. Missing ones are
    left out; two names of one inode count once."""
    numbered: list[tuple[int, Path]] = []
    prefix = path.name + "."
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            suffix = entry.name[len(prefix):]
            if entry.name.startswith(prefix) and suffix.isdigit():
                numbered.append((int(suffix), entry))
    candidates = [p for _, p in sorted(numbered, reverse=True)]
    candidates += [_live(path), path]
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for candidate in reversed(candidates):  # newest first, so the current name wins
        try:
            st = candidate.stat()
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            found.append(candidate)
    return found[::-1]


def _live(path: Path) -> Path:
    return path.with_name(path.name + _LIVE_SUFFIX)


def _records(chunk: bytes) -> Iterator[LogLine]:
    for raw in chunk.split(b"\n"):
        record = parse(raw)
        if record is not None:
            yield record


def _select(lines: Iterable[LogLine], since_ns: int | None, until_ns: int | None
            ) -> Iterator[LogLine]:
    for line in lines:
        if since_ns is not None and line.time_ns < since_ns:
            continue
        if until_ns is not None and line.time_ns > until_ns:
            continue
        yield line


def _tail(lines: list[LogLine], tail: int | None) -> list[LogLine]:
    if tail is None or tail < 0:
        return lines
    return lines[-tail:] if tail else []


def _whole(data: bytes) -> tuple[bytes, bytes]:
    """``data`` cut after its last newline: (complete records, an unfinished one)."""
    end = data.rfind(b"\n") + 1
    return data[:end], data[end:]


def read(path: Path, *, since_ns: int | None = None, until_ns: int | None = None,
         tail: int | None = None) -> list[LogLine]:
    """The log's lines in order, across its generations, pieces joined into whole lines; a
    piece still open at the end comes last with ``partial`` set. ``since_ns``/``until_ns``
    keep lines stamped within them (both inclusive, as Docker), then ``tail`` keeps the last
    N (None or negative: all; 0: none). A record being written at the end is left out."""
    joiner = _Joiner()
    lines: list[LogLine] = []
    for file in generations(path):
        try:
            data = file.read_bytes()
        except FileNotFoundError:  # rotated away while reading: its link has moved
            continue
        complete, _ = _whole(data)
        lines.extend(x for r in _records(complete) if (x := joiner.feed(r)) is not None)
    lines.extend(joiner.flush())
    return _tail(list(_select(lines, since_ns, until_ns)), tail)


def _identity(file: BinaryIO | Path) -> tuple[int, int, bytes]:
    """A file's identity across renames and links: device, inode and its first bytes (the
    first record's timestamp), since a deleted generation's inode number is soon reused."""
    if isinstance(file, Path):
        st = os.stat(file)
        with file.open("rb") as f:
            head = f.read(64)
    else:
        st = os.fstat(file.fileno())
        head = os.pread(file.fileno(), 64, 0)
    return st.st_dev, st.st_ino, head


def _before(files: list[Path], current: os.stat_result) -> list[Path]:
    """The generations listed before the file ``current`` (the older ones)."""
    older = []
    for file in files:
        try:
            if os.path.samestat(os.stat(file), current):
                break
        except FileNotFoundError:
            continue
        older.append(file)
    return older


def follow(path: Path, *, since_ns: int | None = None, tail: int | None = None,
           stop: Callable[[], bool], poll: float = 0.1) -> Iterator[LogLine]:
    """The log's existing lines (``since_ns`` and ``tail`` apply to them), then new ones as
    they are written, across rotations: when ``path`` becomes a new file, the old one is read
    to its end, then any generation kept in between, then the new one. Ends once ``stop()`` is
    true and nothing more is to be read; a line still open then comes with ``partial``."""
    while not path.exists():
        if stop():
            return
        time.sleep(poll)
    joiner = _Joiner()
    seen: set[tuple[int, int, bytes]] = set()  # the generations read already
    buffer = b""  # the current file's unfinished record

    def records(data: bytes) -> list[LogLine]:
        return [x for r in _records(data) if (x := joiner.feed(r)) is not None]

    def take(data: bytes) -> list[LogLine]:
        nonlocal buffer
        complete, buffer = _whole(buffer + data)
        return list(_select(records(complete), since_ns, None))

    def catch_up(current: BinaryIO) -> list[LogLine]:
        """The generations older than ``current`` not read yet, in order (listed again when
        one is renamed under us by a concurrent :meth:`LogRotation.check`)."""
        lines: list[LogLine] = []
        for _ in range(5):
            try:
                for file in _before(generations(path), os.fstat(current.fileno())):
                    if (identity := _identity(file)) not in seen:
                        complete, _ = _whole(file.read_bytes())
                        seen.add(identity)
                        lines += _select(records(complete), since_ns, None)
                return lines
            except FileNotFoundError:
                continue
        return lines

    current = path.open("rb")
    try:
        existing = catch_up(current) + take(current.read())
        yield from _tail(existing, tail)
        while True:
            data = current.read()
            if data:
                yield from take(data)
                continue
            try:
                replaced = not os.path.samestat(os.fstat(current.fileno()), os.stat(path))
            except FileNotFoundError:
                replaced = False  # between conmon's rename and our stat: look again
            if replaced:  # conmon wrote its last record to the old file before replacing it
                yield from take(current.read())
                seen.add(_identity(current))
                current.close()
                current = path.open("rb")
                buffer = b""  # a record cut at the end of a closed file is never finished
                yield from catch_up(current)
                continue
            if stop():
                yield from take(current.read())
                yield from _select(joiner.flush(), since_ns, None)
                return
            time.sleep(poll)
    finally:
        current.close()


class LogRotation:
    """Keeps conmon's rotated log files as generations ``path.1`` (newest) ...
    ``path.<max_files-1>``; with the current file that makes ``max_files`` files (Docker's
    ``max-file``), and older ones are deleted.

    :meth:`check` must be called often (the engine calls it on its supervision tick, and after
    writes it notices). Each call that sees ``path`` as a new inode links it as ``path.live``
    at once, so when conmon replaces it, the complete previous file is still there: it becomes
    ``path.1``. That is lossless while checks keep up with rotations. When the engine is down
    through one rotation, nothing is lost either (``path.live`` still holds the file that was
    current when it stopped). Through two or more, the files that were current only while it
    was down had no second link when conmon replaced them, so they are gone: after restarting,
    ``path.1`` is the file current at the stop and ``path`` the newest, with a gap in between.
    One checker per log (the engine is one process per state root).
    """

    def __init__(self, path: Path, max_files: int) -> None:
        if max_files < 1:
            raise ValueError(f"max_files is at least 1: {max_files}")
        self.path = path
        self.max_files = max_files

    def generation(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def check(self) -> None:
        live = _live(self.path)
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return
        try:
            linked = os.stat(live)
        except FileNotFoundError:
            linked = None
        if linked is not None and os.path.samestat(linked, current):
            return
        if linked is not None:  # conmon replaced the file: the link is the previous one
            self._shift()
            if self.max_files > 1:
                os.replace(live, self.generation(1))
            else:
                live.unlink()
        with contextlib.suppress(FileNotFoundError):  # replaced again just now: next check
            os.link(self.path, live)
        self._drop(self.max_files)

    def _shift(self) -> None:
        for n in range(self.max_files - 1, 0, -1):
            older = self.generation(n)
            if not older.exists():
                continue
            if n + 1 > self.max_files - 1:
                older.unlink()
            else:
                os.replace(older, self.generation(n + 1))

    def _drop(self, first: int) -> None:
        """Delete generations numbered ``first`` and above (left by a larger max_files)."""
        prefix = self.path.name + "."
        for entry in self.path.parent.iterdir():
            suffix = entry.name[len(prefix):]
            if entry.name.startswith(prefix) and suffix.isdigit() and int(suffix) >= first:
                entry.unlink(missing_ok=True)


def format_time(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds, as ``docker logs -t`` prints it."""
    seconds, fraction = divmod(ns, _NS)
    stamp = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": _NS, "m": 60 * _NS, "h": 3600 * _NS}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION = re.compile(r"[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})"
                        r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?"
                        r"(Z|z|[+-]\d{2}:\d{2})?")
_UNIX = re.compile(r"(\d+)(?:\.(\d{1,9}))?")


def _duration_ns(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    total = 0
    for number, unit in _DURATION_PART.findall(text):
        whole, _, fraction = number.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or "0") * scale + int((fraction or "0").ljust(9, "0")[:9]) * scale // _NS
    return sign * total


def parse_since(text: str, now: float) -> int:
    """Docker's ``--since``/``--until`` value as nanoseconds since the epoch: an RFC 3339
    timestamp (date, date and hour, minutes, seconds, fraction; a zone, else the local one),
    a unix timestamp (``1700000000.5``), or a duration back from ``now`` (Go's syntax:
    ``42s``, ``10m``, ``1h30m``, ``1.5h``, ``250ms``)."""
    value = text.strip()
    if value != "0" and _DURATION.fullmatch(value):
        return round(now * _NS) - _duration_ns(value)
    m = _TIMESTAMP.fullmatch(value)
    if m is not None:
        year, month, day = int(m[1]), int(m[2]), int(m[3])
        hour, minute, second = (int(g or 0) for g in (m[4], m[5], m[6]))
        zone = m[8]
        if zone in ("Z", "z"):
            tz: dt.tzinfo = dt.UTC
        elif zone:
            sign = 1 if zone[0] == "+" else -1
            tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        else:  # Docker: no zone means the local zone as it is at `now`
            tz = dt.datetime.fromtimestamp(now).astimezone().tzinfo or dt.UTC
        try:
            stamp = dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
        except ValueError as e:
            raise UsageError(f"invalid time {text!r}: {e}") from None
        return int(stamp.timestamp()) * _NS + int((m[7] or "0").ljust(9, "0"))
    m = _UNIX.fullmatch(value)
    if m is not None:
        return int(m[1]) * _NS + int((m[2] or "0").ljust(9, "0"))
    raise UsageError(f"invalid time {text!r}: give an RFC 3339 timestamp "
                     "(2026-01-02T15:04:05Z), a unix timestamp or a duration (10m, 1h30m)")
