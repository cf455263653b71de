"""The store's one-writer lock, which the event loop can wait for without blocking.

Tick writes take it in worker threads. A hand-off takes it on the event loop, where it runs
cheaper than in a pooled thread; when a tick holds it, the hand-off awaits its release instead
of blocking the loop, or of moving to a thread: a submission in a thread held the lock longer
(GIL hand-offs), so the next one found it busy too, and under load every hand-off ended up
pooled, at twice the CPU.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType


class WriterLock:
    """A re-entrant lock for threads, with `held_on_loop` for coroutines."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_guard = threading.Lock()

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._release()

    @asynccontextmanager
    async def held_on_loop(self) -> AsyncIterator[None]:
        """Hold the lock on the loop's thread for a block that does not await: wait for it
        (awaiting, so the loop serves other requests meanwhile) when another thread has it."""
        loop = asyncio.get_running_loop()
        while not self._lock.acquire(blocking=False):
            released: asyncio.Future[None] = loop.create_future()
            with self._waiters_guard:
                self._waiters.append((loop, released))
            if self._lock.acquire(blocking=False):  # it was released before we were listed
                with self._waiters_guard:
                    if (loop, released) in self._waiters:
                        self._waiters.remove((loop, released))
                break
            await released
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._lock.release()
        with self._waiters_guard:
            waiting, self._waiters = self._waiters, []
        for loop, released in waiting:
            loop.call_soon_threadsafe(_resolve, released)


def _resolve(released: asyncio.Future[None]) -> None:
    if not released.done():
        released.set_result(None)
