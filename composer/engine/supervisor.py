"""The supervisor loop: learns of exits without polling, and runs timed work.

Containers are not the engine's children (conmon double-forks away from it, which is what lets
them outlive the engine), so ``waitpid`` cannot tell it when one ends. A pidfd can: the engine
opens one per conmon process and the kernel makes it readable when that process exits, which
conmon does right after writing the container's exit code. One thread waits on all of them and
on a heap of timers (restart back-offs, health probes, log rotation), and hands the work to a
small pool so that a slow ``runc delete`` never delays another container's exit.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger("composer.engine")


@dataclass(order=True)
class Timer:
    when: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class Supervisor:
    """Waits on pidfds and timers; runs callbacks on a worker pool."""

    def __init__(self, *, workers: int = 4) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._timers: list[Timer] = []
        self._seq = itertools.count()
        self._watched: dict[str, int] = {}  # key -> pidfd
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="supervise")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._thread.start()

    def watch(self, key: str, pid: int, on_exit: Callable[[], None]) -> bool:
        """Call ``on_exit`` (on the pool) once process ``pid`` has exited. False when the
        process is already gone (then nothing is called: the caller handles it at once)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return False
        with self._lock:
            old = self._watched.pop(key, None)
            if old is not None:
                self._selector.unregister(old)
                os.close(old)
            self._watched[key] = pidfd
            self._selector.register(pidfd, selectors.EVENT_READ, (key, on_exit))
        self._wake()
        return True

    def unwatch(self, key: str) -> None:
        with self._lock:
            pidfd = self._watched.pop(key, None)
            if pidfd is not None:
                self._selector.unregister(pidfd)
                os.close(pidfd)

    def call_later(self, delay: float, action: Callable[[], None]) -> Timer:
        """Run ``action`` on the pool after ``delay`` seconds; the Timer can be cancelled."""
        timer = Timer(time.monotonic() + max(0.0, delay), next(self._seq), action)
        with self._lock:
            heapq.heappush(self._timers, timer)
        self._wake()
        return timer

    def submit(self, action: Callable[[], None]) -> None:
        self._pool.submit(self._run, action)

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for pidfd in self._watched.values():
                os.close(pidfd)
            self._watched.clear()
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"x")

    @staticmethod
    def _run(action: Callable[[], None]) -> None:
        try:
            action()
        except Exception:
            log.exception("supervision task failed")

    def _next_timeout(self) -> float | None:
        with self._lock:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return None
            return max(0.0, self._timers[0].when - time.monotonic())

    def _loop(self) -> None:
        while not self._stopping:
            events = self._selector.select(self._next_timeout())
            for key, _ in events:
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
                    continue
                name, on_exit = key.data
                self.unwatch(name)
                self.submit(on_exit)
            now = time.monotonic()
            due: list[Timer] = []
            with self._lock:
                while self._timers and self._timers[0].when <= now:
                    timer = heapq.heappop(self._timers)
                    if not timer.cancelled:
                        due.append(timer)
            for timer in due:
                self.submit(timer.action)
