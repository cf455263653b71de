"""The store's one-writer lock: across the guard's processes, and awaitable on the event loop.

Within a process, tick writes take it in worker threads and a hand-off takes it on the event
loop, where it runs cheaper than in a pooled thread; when another holds it, the hand-off awaits
its release instead of blocking the loop, or of moving to a thread: a submission in a thread
held the lock longer (GIL hand-offs), so the next one found it busy too, and under load every
hand-off ended up pooled, at twice the CPU.

Across processes (the API's and the engine's, see guard.engine_process) a SQLite file's writers
also take an exclusive `flock` on a file beside it. SQLite's own lock would serialize them too,
but a writer that finds it taken sleeps 1, 2, 5, 10 ... 100 ms between tries: at 500 hand-offs
a second, hand-offs waited up to 180 ms for a lock held 5 ms. A waiter blocks in the kernel (a
coroutine's in a worker thread) and is woken at the release. Taking turns needs a second lock:
a waiter holds the `gate` while it waits, so the process that just released cannot take the
lock straight back for its next batch; polling for it, the API waited up to 230 ms while the
engine wrote one batch after another.

Each lock counts how long its process's writers held it and waited for it (`LockTime`, on the
guard's `/metrics`): one writer at a time is the store's capacity, and the share of the time
the lock is held says how near it the guard runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType


@dataclass
class LockTime:
    """Totals since the lock was made, counted when the outermost hold starts and ends."""

    holds: int = 0
    held_seconds: float = 0.0
    waited_seconds: float = 0.0


class WriterLock:
    """A re-entrant lock for threads, with `held_on_loop` for coroutines; with `path`, also an
    exclusive lock on that file, held while any of this process's writers holds this one.

    A loop's thread must not take it as a thread (`with`) while that loop's coroutines use
    `held_on_loop`: it would re-enter their hold.
    """

    def __init__(
        self, path: Path | None = None, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # guarded by _lock
        self._clock = clock
        self.time = LockTime()  # written under _lock
        self._held_since = 0.0
        self._file: int | None = None
        self._gate: int | None = None
        # Where coroutines wait for another process's writer: one at a time, as this process's
        # writers take the lock one at a time anyway.
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-writer")
        if path is not None:
            self._file = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            self._gate = os.open(f"{path}-gate", os.O_RDWR | os.O_CREAT, 0o600)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_guard = threading.Lock()
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def close(self) -> None:
        for file in (self._file, self._gate):
            if file is not None:
                os.close(file)
        self._file = self._gate = None
        self._threads.shutdown(wait=False)

    def __enter__(self) -> None:
        asked = self._clock()
        self._lock.acquire()
        if self._depth == 0 and self._file is not None:
            try:
                self._take_file()
            except BaseException:
                self._lock.release()
                raise
        self._count_entry(asked)

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
        (awaiting, so the loop serves other requests meanwhile) when another has it."""
        asked = self._clock()
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = asyncio.Lock()
        async with turn:  # the loop's thread re-enters the RLock: one coroutine at a time
            while not self._lock.acquire(blocking=False):
                released: asyncio.Future[None] = loop.create_future()
                with self._waiters_guard:
                    self._waiters.append((loop, released))
                if self._lock.acquire(blocking=False):  # released before we were listed
                    with self._waiters_guard:
                        if (loop, released) in self._waiters:
                            self._waiters.remove((loop, released))
                    break
                await released
            if self._depth == 0 and self._file is not None and not self._try_take_file():
                # Another process writes: wait in a thread (the lock is the file's, not the
                # thread's).
                taking = asyncio.wrap_future(self._threads.submit(self._take_file))
                try:
                    await asyncio.shield(taking)
                except asyncio.CancelledError:
                    # The thread cannot be stopped: let it finish, give back what it took, and
                    # only then let others in, so none of them runs while the file is given back.
                    while not taking.done():
                        with contextlib.suppress(asyncio.CancelledError):
                            await asyncio.shield(taking)
                    if not taking.cancelled() and taking.exception() is None:
                        fcntl.flock(self._file, fcntl.LOCK_UN)
                    self._lock.release()
                    raise
                except BaseException:
                    self._lock.release()
                    raise
            self._count_entry(asked)
            try:
                yield
            finally:
                self._release()

    def _count_entry(self, asked: float) -> None:
        """With the lock just taken: one more level, and a new hold if it is the outermost."""
        if self._depth == 0:
            now = self._clock()
            self.time.holds += 1
            self.time.waited_seconds += now - asked
            self._held_since = now
        self._depth += 1

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.time.held_seconds += self._clock() - self._held_since
            if self._file is not None:
                fcntl.flock(self._file, fcntl.LOCK_UN)
        self._lock.release()
        with self._waiters_guard:
            waiting, self._waiters = self._waiters, []
        for loop, released in waiting:
            loop.call_soon_threadsafe(_resolve, released)

    def _take_file(self) -> None:
        assert self._file is not None and self._gate is not None
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)

    def _try_take_file(self) -> bool:
        """Take the file lock if it is free and no other process waits for it."""
        assert self._file is not None and self._gate is not None
        if not _try_flock(self._gate):
            return False
        try:
            return _try_flock(self._file)
        finally:
            fcntl.flock(self._gate, fcntl.LOCK_UN)


def _try_flock(file: int) -> bool:
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _resolve(released: asyncio.Future[None]) -> None:
    if not released.done():
        released.set_result(None)
