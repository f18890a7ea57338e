"""Batching of file events with an injected clock, so that tests never sleep.

Editors write a file several times per save, and a branch switch changes hundreds of files:
a :class:`Batcher` collects paths until nothing new came for ``quiet`` seconds, or until the
first path of the batch has waited ``max_wait`` (a stream of changes that never pauses still
gets applied). A :class:`Worker` hands each batch to one handler at a time: what arrives while
a batch is being handled collects into the next batch, so a running reconcile is followed by
at most one more, never by a pile-up (docker/compose ``pkg/watch/debounce.go`` does the same).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]

#: How long a stream of changes that never pauses is held before it is applied anyway. Long
#: enough that a branch switch on a loaded machine (hundreds of files written over a second
#: or two) is one batch; a single save never waits for it, only for the quiet period.
MAX_WAIT = 5.0


class Batcher:
    def __init__(self, *, quiet: float = 0.05, max_wait: float = MAX_WAIT,
                 clock: Clock = time.monotonic) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self.clock = clock
        self._paths: dict[str, None] = {}  # insertion-ordered, without repeats
        self._first = 0.0
        self._last = 0.0

    def add(self, path: str) -> None:
        now = self.clock()
        if not self._paths:
            self._first = now
        self._last = now
        self._paths[path] = None

    def __len__(self) -> int:
        return len(self._paths)

    def due_in(self) -> float | None:
        """Seconds until the batch is due (0 when it is), None when there is no batch."""
        if not self._paths:
            return None
        now = self.clock()
        deadline = min(self._last + self.quiet, self._first + self.max_wait)
        return max(0.0, deadline - now)

    def take(self) -> list[str] | None:
        """The batch, if it is due; the batcher starts empty again."""
        if self.due_in() != 0.0:
            return None
        paths = list(self._paths)
        self._paths.clear()
        return paths


class Worker:
    """One thread handing due batches to ``handle``, one at a time.

    ``add`` may be called from any thread (watchdog's). ``step`` does one round without
    waiting, for tests that drive the clock themselves."""

    def __init__(self, batcher: Batcher, handle: Callable[[list[str]], None],
                 *, name: str = "composer-watch",
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.batcher = batcher
        self.handle = handle
        self.on_error = on_error
        self.name = name
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def add(self, path: str) -> None:
        with self._cond:
            self.batcher.add(path)
            self._cond.notify()

    def step(self) -> bool:
        """Handle the batch if it is due; whether one was handled."""
        with self._cond:
            batch = self.batcher.take()
        if batch is None:
            return False
        self.handle(batch)  # outside the lock: new events keep collecting meanwhile
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    due = self.batcher.due_in()
                    if due == 0.0:
                        break
                    self._cond.wait(due)  # None: until an event or stop
                if self._stopped:
                    return
            try:
                self.step()
            except Exception as exc:  # one failed batch must not end the watch
                if self.on_error is None:
                    raise
                self.on_error(exc)
