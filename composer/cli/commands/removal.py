"""``rm`` and ``prune`` output shared by the resource commands (networks, volumes), in
Docker's words: each name removed on a line of its own, errors on stderr, exit 1 if any."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from composer.cli.app import App
from composer.errors import ComposerError


def remove_each(app: App, names: Iterable[str], remove: Callable[[str], object], *,
                ignore: Callable[[ComposerError], bool] = lambda _: False) -> int:
    """Remove every name in turn (one failing does not stop the others); ``ignore`` says
    which errors are no failure (``rm -f`` of a missing one)."""
    failed = 0
    for name in names:
        try:
            remove(name)
            app.print(name)
        except ComposerError as exc:
            if ignore(exc):
                continue
            app.error(str(exc))
            failed = 1
    return failed


def print_pruned(app: App, title: str, removed: Iterable[str]) -> None:
    """``Deleted Networks:`` (or Volumes) and the names, when there are any."""
    names = list(removed)
    if names:
        app.print(f"Deleted {title}:")
        for name in names:
            app.print(name)
