"""Resolving ``user`` and ``group_add`` against a container's /etc/passwd and /etc/group."""

from __future__ import annotations

import pytest

from composer.runtime.users import (
    GroupEntry,
    PasswdEntry,
    User,
    UserError,
    parse_group,
    parse_passwd,
    resolve_user,
)

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment, then a blank line and a broken one

broken:x:notanumber:0::/:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App User:/home/app:/bin/sh
noHome:x:1002:1002::
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:app
app:x:1000:
extra:x:1001:app,other
other:x:1002: app2 , app
nogroup:x:65534:
"""


def test_parsers_skip_what_is_not_an_entry() -> None:
    assert parse_passwd(PASSWD)[:3] == [
        PasswdEntry("root", 0, 0, "/root"), PasswdEntry("daemon", 1, 1, "/usr/sbin"),
        PasswdEntry("app", 1000, 1000, "/home/app")]
    assert parse_group(GROUP)[3] == GroupEntry("extra", 1001, ("app", "other"))
    assert parse_group(GROUP)[4] == GroupEntry("other", 1002, ("app2", "app"))
    assert parse_passwd(None) == [] and parse_group("") == []


@pytest.mark.parametrize(("user", "expected"), [
    (None, User(0, 0, (0,), "/root", "root")),
    ("", User(0, 0, (0,), "/root", "root")),
    ("root", User(0, 0, (0,), "/root", "root")),
    ("0", User(0, 0, (0,), "/root", "root")),
    # by name or by uid: the primary group, then the groups that list the user
    ("app", User(1000, 1000, (1000, 1, 1001, 1002), "/home/app", "app")),
    ("1000", User(1000, 1000, (1000, 1, 1001, 1002), "/home/app", "app")),
    # an explicit group: no supplementary groups (runc's rule)
    ("app:extra", User(1000, 1001, (1001,), "/home/app", "app")),
    ("app:1002", User(1000, 1002, (1002,), "/home/app", "app")),
    ("1000:nogroup", User(1000, 65534, (65534,), "/home/app", "app")),
    ("1000:5000", User(1000, 5000, (5000,), "/home/app", "app")),
    # a uid not in passwd is fine: gid 0 unless given, HOME /
    ("4242", User(4242, 0, (0,), "/", None)),
    ("4242:4242", User(4242, 4242, (4242,), "/", None)),
    ("4242:extra", User(4242, 1001, (1001,), "/", None)),
    ("noHome", User(1002, 1002, (1002,), "/", "noHome")),
])
def test_resolve(user: str | None, expected: User) -> None:
    assert resolve_user(user, PASSWD, GROUP) == expected


def test_group_add_by_name_or_number_without_repeats() -> None:
    assert resolve_user("app", PASSWD, GROUP, ["extra", "0", "777", "app"]).additional_gids == (
        1000, 1, 1001, 1002, 0, 777)
    assert resolve_user("4242", PASSWD, GROUP, ["nogroup"]).additional_gids == (0, 65534)


def test_numbers_work_without_any_files() -> None:
    assert resolve_user("1000:1000", None, None, ["5"]) == User(1000, 1000, (1000, 5), "/")
    assert resolve_user(None, None, None) == User(0, 0, (0,), "/")


@pytest.mark.parametrize(("user", "passwd", "group", "group_add", "message"), [
    ("bob", PASSWD, GROUP, (), "unable to find user bob: no matching entries in /etc/passwd"),
    ("bob", None, GROUP, (), "unable to find user bob: the container has no /etc/passwd"),
    ("app:wheel", PASSWD, GROUP, (),
     "unable to find group wheel: no matching entries in /etc/group"),
    ("app:wheel", PASSWD, None, (), "unable to find group wheel: the container has no "
                                    "/etc/group"),
    ("app", PASSWD, GROUP, ("wheel",), "unable to find group wheel"),
    ("99999999999", PASSWD, GROUP, (), "uid 99999999999 is out of range"),
    ("app:99999999999", PASSWD, GROUP, (), "gid 99999999999 is out of range"),
    (":app", PASSWD, GROUP, (), "a group without a user"),
])
def test_errors_name_the_user_and_the_file(user: str, passwd: str | None, group: str | None,
                                           group_add: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_user(user, passwd, group, group_add)


def test_first_matching_line_wins() -> None:
    passwd = "app:x:1000:1000::/first:/bin/sh\napp:x:1001:1001::/second:/bin/sh\n"
    assert resolve_user("app", passwd, "").home == "/first"
    # a name that is also a number is looked up as a name first
    passwd = "1001:x:2000:2000::/named:/bin/sh\nother:x:1001:1001::/other:/bin/sh\n"
    assert resolve_user("1001", passwd, "").uid == 2000
