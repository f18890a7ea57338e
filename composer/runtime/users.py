"""Who a container's process runs as: ``user`` and ``group_add`` resolved against the text of
the container's own /etc/passwd and /etc/group, with Docker's rules (those of runc's
``libcontainer/user``, which Docker uses):

- ``""``/None is root; ``name`` or ``uid``, optionally ``:group`` or ``:gid``.
- A name must be in /etc/passwd (or /etc/group); a number need not be: an unknown uid runs
  with gid 0 and HOME ``/``, unless a group is given.
- Supplementary groups are the primary group, then, only when no group was given, every group
  that lists the user by name in /etc/group, then ``group_add`` (names or numbers).
- HOME is the passwd entry's home directory, ``/`` when the user is not in passwd.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from composer.errors import ComposerError

MAX_ID = 2**31 - 1


class UserError(ComposerError):
    """A user or group cannot be resolved."""


@dataclass(frozen=True)
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class User:
    """A resolved user: ``additional_gids`` starts with ``gid`` (so that no group of the
    runtime's own leaks in), without repeats."""

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str
    name: str | None = None


def _fields(text: str | None) -> Iterable[list[str]]:
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line.split(":")


def parse_passwd(text: str | None) -> list[PasswdEntry]:
    """The well-formed entries of a passwd file, in order (others are skipped, as libc does)."""
    entries = []
    for parts in _fields(text):
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            home = parts[5] if len(parts) > 5 else ""
            entries.append(PasswdEntry(parts[0], int(parts[2]), int(parts[3]), home))
    return entries


def parse_group(text: str | None) -> list[GroupEntry]:
    entries = []
    for parts in _fields(text):
        if len(parts) >= 3 and parts[2].isdigit():
            members = tuple(m.strip() for m in parts[3].split(",") if m.strip()) \
                if len(parts) > 3 else ()
            entries.append(GroupEntry(parts[0], int(parts[2]), members))
    return entries


def _number(text: str, what: str) -> int | None:
    """``text`` as an id, None when it is not a number; out of range is an error."""
    if not text.isdigit():
        return None
    value = int(text)
    if value > MAX_ID:
        raise UserError(f"{what} {text} is out of range (0 to {MAX_ID})")
    return value


def _find_group(arg: str, groups: list[GroupEntry], group_text: str | None) -> int:
    number = _number(arg, "gid")
    for entry in groups:
        if entry.name == arg or entry.gid == number:
            return entry.gid
    if number is not None:
        return number
    where = "no matching entries in /etc/group" if group_text is not None \
        else "the container has no /etc/group"
    raise UserError(f"unable to find group {arg}: {where}")


def resolve_user(user: str | None, passwd: str | None, group: str | None,
                 group_add: Sequence[str] = ()) -> User:
    """Resolve ``user`` (``name``, ``uid``, ``name:group``, ``uid:gid``...) and ``group_add``.

    ``passwd``/``group`` are the files' text, None when the container has none."""
    user_arg, _, group_arg = (user or "").partition(":")
    if not user_arg and group_arg:
        raise UserError(f"invalid user {user!r}: a group without a user")
    uid_arg = _number(user_arg, "uid") if user_arg else 0
    entry = None
    for candidate in parse_passwd(passwd):
        if (user_arg and candidate.name == user_arg) or candidate.uid == uid_arg:
            entry = candidate
            break
    if entry is None and uid_arg is None:
        where = "no matching entries in /etc/passwd" if passwd is not None \
            else "the container has no /etc/passwd"
        raise UserError(f"unable to find user {user_arg}: {where}")
    groups = parse_group(group)
    if entry is not None:
        uid, gid, home, name = entry.uid, entry.gid, entry.home or "/", entry.name
    else:
        uid, gid, home, name = uid_arg or 0, 0, "/", None
    gids = []
    if group_arg:
        gid = _find_group(group_arg, groups, group)
    elif name is not None:
        # Supplementary groups only make sense in the implicit form (runc's rule).
        gids = [g.gid for g in groups if name in g.members]
    gids += [_find_group(extra, groups, group) for extra in group_add]
    return User(uid, gid, tuple(dict.fromkeys([gid, *gids])), home, name)
