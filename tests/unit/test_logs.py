"""logs.py on files written here: records, joins, filters, generations, rotation, times."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.errors import UsageError
from composer.runtime import logs
from composer.runtime.logs import LogLine, LogRotation

T0 = 1_796_000_000 * 10**9  # a second in 2026


def stamp(ns: int, offset: str = "+00:00") -> str:
    """A conmon timestamp: local time with its offset (conmon uses localtime_r)."""
    sign = 1 if offset[0] == "+" else -1
    delta = dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * sign
    seconds, fraction = divmod(ns, 10**9)
    local = dt.datetime.fromtimestamp(seconds, dt.timezone(delta))
    return f"{local:%Y-%m-%dT%H:%M:%S}.{fraction:09d}{offset}"


def record(ns: int, data: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"{stamp(ns)} {stream} {tag} {data}\n"


def line(ns: int, data: str, stream: str = "stdout", partial: bool = False) -> LogLine:
    return LogLine(ns, stream, data.encode(), partial)  # type: ignore[arg-type]


# -- records ---------------------------------------------------------------------------------


def test_parse_records() -> None:
    assert logs.parse(b"2026-12-02T01:15:37.913416974+00:00 stdout F out1") == LogLine(
        1796174137913416974, "stdout", b"out1", False)
    assert logs.parse(b"2026-12-02T01:15:37.913416974+00:00 stderr P a b  c\n") == LogLine(
        1796174137913416974, "stderr", b"a b  c", True)
    # the same instant in other zones, with fewer digits, Z
    same = 1796174137 * 10**9 + 500_000_000
    for text in (b"2026-12-02T02:15:37.5+01:00", b"2026-12-01T19:45:37.500000000-05:30",
                 b"2026-12-02T01:15:37.5Z"):
        parsed = logs.parse(text + b" stdout F x")
        assert parsed is not None and parsed.time_ns == same
    assert logs.parse(b"2026-12-02T01:15:37Z stdout F ") == LogLine(1796174137 * 10**9,
                                                                    "stdout", b"", False)
    assert logs.parse(b"2026-12-02T01:15:37Z stdout F") == LogLine(1796174137 * 10**9,
                                                                   "stdout", b"", False)
    assert logs.parse(b"2026-12-02T01:15:37Z stdout F:x y") == LogLine(
        1796174137 * 10**9, "stdout", b"y", False)  # CRI tags after a colon


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b"2026-12-02T01:15:37Z stdin F x", b"2026-12-02T01:15:37Z stdout X x",
    b"2026-13-02T01:15:37Z stdout F x", b"2026-12-02 stdout F x", b"yesterday stdout F x",
    b"2026-12-02T01:15:37.1234567890Z stdout F x", b"2026-12-02T25:15:37Z stdout F x",
])
def test_parse_refuses_what_is_not_a_record(raw: bytes) -> None:
    assert logs.parse(raw) is None


def test_read_joins_pieces_per_stream(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text(record(T0, "out1") + record(T0 + 1, "ab", tag="P")
                    + record(T0 + 2, "e1-", "stderr", "P") + record(T0 + 3, "cd", tag="P")
                    + "not a record\n" + record(T0 + 4, "ef")
                    + record(T0 + 5, "end", "stderr") + record(T0 + 6, "open", tag="P")
                    + record(T0 + 7, "being written")[:-1])  # no newline yet: left out
    assert logs.read(path) == [
        line(T0, "out1"), line(T0 + 4, "abcdef"), line(T0 + 5, "e1-end", "stderr"),
        line(T0 + 6, "open", partial=True)]


def test_read_since_until_tail(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text("".join(record(T0 + i * 10**9, f"n{i}") for i in range(6)))
    every = logs.read(path)
    assert [x.data for x in every] == [b"n0", b"n1", b"n2", b"n3", b"n4", b"n5"]
    assert logs.read(path, since_ns=T0 + 2 * 10**9) == every[2:]  # inclusive
    assert logs.read(path, until_ns=T0 + 2 * 10**9) == every[:3]  # inclusive
    assert logs.read(path, since_ns=T0 + 1, until_ns=T0 + 3 * 10**9) == every[1:4]
    assert logs.read(path, tail=2) == every[-2:]
    assert logs.read(path, tail=0) == []
    assert logs.read(path, tail=-1) == every
    assert logs.read(path, tail=100) == every
    assert logs.read(path, until_ns=T0 + 3 * 10**9, tail=1) == every[3:4]
    assert logs.read(tmp_path / "absent.log") == []


# -- generations and rotation ----------------------------------------------------------------


def conmon_rotate(path: Path, first: str) -> None:
    """What conmon does past --log-size-max: a new file renamed over the log."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(first)
    os.replace(tmp, path)


def test_rotation_keeps_generations_and_drops_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    rotation = LogRotation(path, max_files=3)
    rotation.check()  # no log yet
    path.write_text(record(T0, "g0-a") + record(T0 + 1, "g0-b", tag="P"))
    rotation.check()
    assert os.path.samefile(path, tmp_path / "ctr.log.live")
    rotation.check()  # nothing new: nothing changes
    for n in range(1, 5):
        conmon_rotate(path, record(T0 + 10 * n, f"g{n}"))
        if n == 1:  # read before the rotation is seen: the live link is read
            assert [x.data for x in logs.read(path)] == [b"g0-a", b"g0-bg1"]
        rotation.check()
    assert logs.generations(path) == [rotation.generation(2), rotation.generation(1), path]
    assert not rotation.generation(3).exists()
    assert [x.data for x in logs.read(path)] == [b"g2", b"g3", b"g4"]


def test_rotation_with_one_file_and_a_smaller_max(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text(record(T0, "old"))
    for n in (5, 6):
        path.with_name(f"ctr.log.{n}").write_text(record(T0 - n, f"stale{n}"))
    rotation = LogRotation(path, max_files=1)
    rotation.check()
    assert logs.generations(path) == [path]  # generations beyond max_files are deleted
    conmon_rotate(path, record(T0 + 1, "new"))
    rotation.check()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.log", "ctr.log.live"]
    assert [x.data for x in logs.read(path)] == [b"new"]
    with pytest.raises(ValueError):
        LogRotation(path, 0)


def test_engine_down_through_rotations(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text(record(T0, "g0"))
    rotation = LogRotation(path, max_files=5)
    rotation.check()
    conmon_rotate(path, record(T0 + 1, "g1"))  # one rotation while down: nothing lost
    rotation.check()
    assert [x.data for x in logs.read(path)] == [b"g0", b"g1"]
    conmon_rotate(path, record(T0 + 2, "g2"))  # two: g2 had no second link when replaced
    conmon_rotate(path, record(T0 + 3, "g3"))
    rotation.check()
    assert [x.data for x in logs.read(path)] == [b"g0", b"g1", b"g3"]


def test_generations_count_an_inode_once(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text(record(T0 + 3, "current"))
    os.link(path, tmp_path / "ctr.log.live")
    (tmp_path / "ctr.log.2").write_text(record(T0, "two"))
    (tmp_path / "ctr.log.10").write_text(record(T0 - 1, "ten"))
    (tmp_path / "ctr.log.tmp").write_text(record(T0, "conmon's temporary"))
    (tmp_path / "ctr.log.x1").write_text(record(T0, "other"))
    assert logs.generations(path) == [tmp_path / "ctr.log.10", tmp_path / "ctr.log.2", path]


# -- follow ----------------------------------------------------------------------------------


class Flag:
    """stop() for follow: true once set, or after 10 s so that a broken follow ends."""

    def __init__(self) -> None:
        self.value = False
        self.deadline = time.monotonic() + 10

    def __call__(self) -> bool:
        return self.value or time.monotonic() > self.deadline


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_follow_reads_on_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_text(record(T0, "old1") + record(T0 + 1, "old2") + record(T0 + 2, "p1", tag="P"))
    rotation = LogRotation(path, max_files=4)
    rotation.check()
    stop = Flag()
    following: Iterator[LogLine] = logs.follow(path, tail=1, stop=stop, poll=0.001)
    assert next(following) == line(T0 + 1, "old2")  # tail applies to existing lines
    being_written = record(T0 + 4, "whole")
    append(path, record(T0 + 3, "-p2") + being_written[:20])  # a record and a half
    assert next(following) == line(T0 + 3, "p1-p2")
    append(path, being_written[20:])
    assert next(following) == line(T0 + 4, "whole")
    append(path, record(T0 + 5, "last in the old file"))
    conmon_rotate(path, record(T0 + 6, "in between"))
    rotation.check()
    conmon_rotate(path, record(T0 + 7, "new"))  # two rotations between reads
    rotation.check()
    assert [next(following).data for _ in range(3)] == [
        b"last in the old file", b"in between", b"new"]
    append(path, record(T0 + 8, "unended", tag="P"))
    stop.value = True
    assert list(following) == [line(T0 + 8, "unended", partial=True)]


def test_follow_since_and_a_log_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    stop = Flag()
    stop.value = True
    assert list(logs.follow(path, stop=stop)) == []
    path.write_text(record(T0, "a") + record(T0 + 5, "b"))
    stop.value = False
    following = logs.follow(path, since_ns=T0 + 1, stop=stop, poll=0.001)
    assert next(following).data == b"b"
    append(path, record(T0 - 1, "clock went back"))  # filtered like existing lines
    append(path, record(T0 + 6, "c"))
    assert next(following).data == b"c"
    stop.value = True
    assert list(following) == []


# -- times -----------------------------------------------------------------------------------


def test_format_time() -> None:
    assert logs.format_time(0) == "1970-01-01T00:00:00.000000000Z"
    assert logs.format_time(1796174137913416974) == "2026-12-02T01:15:37.913416974Z"
    assert logs.format_time(1796174137 * 10**9 + 5) == "2026-12-02T01:15:37.000000005Z"


NOW = 1_796_174_137.25


@pytest.mark.parametrize(("text", "expected"), [
    ("42s", round(NOW * 10**9) - 42 * 10**9),
    ("10m", round(NOW * 10**9) - 600 * 10**9),
    ("1h30m", round(NOW * 10**9) - 5400 * 10**9),
    ("1.5h", round(NOW * 10**9) - 5400 * 10**9),
    ("250ms", round(NOW * 10**9) - 250 * 10**6),
    ("1m0.5s", round(NOW * 10**9) - 60_500_000_000),
    ("-10s", round(NOW * 10**9) + 10 * 10**9),
    ("0", 0),
    ("1700000000", 1_700_000_000 * 10**9),
    ("1700000000.5", 1_700_000_000 * 10**9 + 500_000_000),
    ("1700000000.000000001", 1_700_000_000 * 10**9 + 1),
    ("2026-12-02T01:15:37Z", 1796174137 * 10**9),
    ("2026-12-02T01:15:37.913416974Z", 1796174137913416974),
    ("2026-12-02T02:15:37.5+01:00", 1796174137 * 10**9 + 500_000_000),
    ("2026-12-02T01:15Z", 1796174100 * 10**9),
    ("2026-12-02T01Z", 1796173200 * 10**9),
    ("2026-12-02Z", 1796169600 * 10**9),
])
def test_parse_since(text: str, expected: int) -> None:
    assert logs.parse_since(text, NOW) == expected


def test_parse_since_without_a_zone_is_local() -> None:
    local = dt.datetime(2026, 12, 2, 1, 15, 37).astimezone()  # the zone in force then
    assert logs.parse_since("2026-12-02T01:15:37", local.timestamp()) == \
        int(local.timestamp()) * 10**9
    day = dt.datetime(2026, 12, 2).astimezone()
    assert logs.parse_since("2026-12-02", day.timestamp()) == int(day.timestamp()) * 10**9


@pytest.mark.parametrize("text", ["", "yesterday", "10x", "2026-13-01", "1h-30m",
                                  "2026-12-02T01:15:37+0100", "12:00"])
def test_parse_since_refuses_nonsense(text: str) -> None:
    with pytest.raises(UsageError, match="invalid time"):
        logs.parse_since(text, NOW)
