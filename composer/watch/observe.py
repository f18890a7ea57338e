"""watchdog glue: which directories to observe, and every changed path handed on.

Files are observed through their directory (editors save by writing a new file and renaming
it over the old one, which a watch on the file itself would lose). A directory observed
recursively covers those below it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

# Events that say nothing changed: a file opened, or closed without a write.
_QUIET = frozenset({"opened", "closed_no_write"})


def directories(files: Iterable[str], trees: Iterable[str]) -> dict[str, bool]:
    """Directory -> recursive, for manifest ``files`` (their folders, not recursively) and
    rule paths ``trees`` (a directory recursively; a file through its folder; a path not
    there yet through its nearest existing parent), without overlaps."""
    wanted: dict[str, bool] = {}
    for path in files:
        wanted.setdefault(os.path.dirname(path), False)
    for path in trees:
        if os.path.isdir(path):
            wanted[path] = True
            continue
        parent = os.path.dirname(path)
        while parent != os.path.dirname(parent) and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        wanted.setdefault(parent, False)
    recursive = [d for d, r in wanted.items() if r]

    def covered(d: str) -> bool:
        return any(d != r and (d + "/").startswith(r.rstrip("/") + "/") for r in recursive)

    return {d: r for d, r in sorted(wanted.items()) if not covered(d)}


class _Handler(FileSystemEventHandler):
    def __init__(self, changed: Callable[[str], None]) -> None:
        self.changed = changed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in _QUIET:
            return
        # A directory's own "modified" only says an entry changed: that entry has its event.
        if event.is_directory and event.event_type == "modified":
            return
        for path in (event.src_path, event.dest_path):
            if path:
                self.changed(os.fsdecode(path))


class Observation:
    """An observer over a set of directories that can change while it runs."""

    def __init__(self, changed: Callable[[str], None]) -> None:
        self._handler = _Handler(changed)
        self._observer: BaseObserver = Observer()
        self._watches: dict[tuple[str, bool], ObservedWatch] = {}
        self._lock = threading.Lock()

    def start(self, dirs: Mapping[str, bool]) -> None:
        self.update(dirs)
        self._observer.start()

    def update(self, dirs: Mapping[str, bool]) -> None:
        with self._lock:
            wanted = set(dirs.items())
            # New watches first, old ones after: overlapping for a moment repeats an event
            # (the batch absorbs it), a gap would lose one.
            for directory, recursive in sorted(wanted - set(self._watches)):
                with contextlib.suppress(FileNotFoundError):  # gone since it was listed
                    self._watches[(directory, recursive)] = self._observer.schedule(
                        self._handler, directory, recursive=recursive)
            for key in sorted(set(self._watches) - wanted):
                self._observer.unschedule(self._watches.pop(key))

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join()
