"""The writer lock orders the writers of two processes, lets a waiting process have its turn,
and is given back by a coroutine cancelled while it waited.

Helper processes are forked before the test's own lock is made, so that none of them inherits
its open file descriptions (a `flock` belongs to those, not to a process).
"""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

from guard.writer_lock import WriterLock

TIMEOUT = 10.0
"""Every wait's bound: a bug fails the test instead of hanging it."""
ROUNDS = 150
FORK = multiprocessing.get_context("fork")

Spawn = Callable[..., BaseProcess]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    started: list[BaseProcess] = []

    def start(target: Callable[..., None], *args: Any) -> BaseProcess:
        process = FORK.Process(target=target, args=args, daemon=True)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.is_alive():
            process.kill()
        process.join(TIMEOUT)


def locked(path: Path | str) -> bool:
    """Whether some holder has `path` locked: a fresh open file description conflicts with any
    other, in this process or another."""
    file = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(file, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(file)
    return False


def wait_until(condition: Callable[[], bool]) -> None:
    """For a state no event reports, such as a process blocked in `flock`."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def joined(process: BaseProcess) -> None:
    process.join(TIMEOUT)
    assert process.exitcode == 0, f"{process.name} ended with {process.exitcode}"


def bump(counter: Path) -> None:
    value = int(counter.read_text())
    time.sleep(0)  # lets another writer in between the read and the write, if it can get in
    counter.write_text(str(value + 1))


def note(log: Path, who: str) -> None:
    with log.open("a") as file:
        file.write(f"{who}\n")


def hold_until(path: Path, held: Event, release: Event) -> None:
    lock = WriterLock(path)
    with lock:
        held.set()
        assert release.wait(TIMEOUT)
    lock.close()


def take_once(path: Path, go: Event, took: Event, log: Path | None = None) -> None:
    assert go.wait(TIMEOUT)
    lock = WriterLock(path)
    with lock:
        if log is not None:
            note(log, "B")
        took.set()
    lock.close()


def bump_in_threads(path: Path, counter: Path, start: Event) -> None:
    lock = WriterLock(path)
    assert start.wait(TIMEOUT)

    def rounds() -> None:
        for _ in range(ROUNDS):
            with lock:
                bump(counter)

    threads = [threading.Thread(target=rounds) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    lock.close()


def bump_in_coroutines(path: Path, counter: Path, start: Event) -> None:
    lock = WriterLock(path)
    assert start.wait(TIMEOUT)

    async def rounds() -> None:
        for _ in range(ROUNDS):
            async with lock.held_on_loop():
                bump(counter)
            await asyncio.sleep(0)  # the loop's other coroutine takes its turn

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(rounds(), rounds()), TIMEOUT)

    asyncio.run(both())
    lock.close()


def test_two_processes_writing_in_threads_and_on_a_loop_never_overlap(
    tmp_path: Path, spawn: Spawn
) -> None:
    path, counter = tmp_path / "writer-lock", tmp_path / "counter"
    counter.write_text("0")
    start = FORK.Event()
    workers = [
        spawn(bump_in_threads, path, counter, start),
        spawn(bump_in_coroutines, path, counter, start),
    ]
    start.set()
    for worker in workers:
        joined(worker)
    assert int(counter.read_text()) == 4 * ROUNDS


@pytest.mark.parametrize("retake", ["thread", "loop"])
def test_a_process_waiting_has_the_lock_before_the_holder_takes_it_again(
    tmp_path: Path, spawn: Spawn, retake: str
) -> None:
    path, log = tmp_path / "writer-lock", tmp_path / "log"
    go, took = FORK.Event(), FORK.Event()
    waiter = spawn(take_once, path, go, took, log)
    lock = WriterLock(path)

    def waiter_at_the_gate() -> bool:
        return locked(f"{path}-gate")

    if retake == "thread":
        with lock:
            note(log, "A")
            go.set()
            wait_until(waiter_at_the_gate)
        with lock:  # straight back, as a tick's next batch would
            note(log, "A")
    else:

        async def holder() -> None:
            async with lock.held_on_loop():
                note(log, "A")
                go.set()
                wait_until(waiter_at_the_gate)
            async with lock.held_on_loop():
                note(log, "A")

        asyncio.run(asyncio.wait_for(holder(), TIMEOUT))
    lock.close()
    joined(waiter)
    assert log.read_text().split() == ["A", "B", "A"]


def test_coroutines_of_one_loop_take_turns_behind_another_process_each_holding_the_file(
    tmp_path: Path, spawn: Spawn
) -> None:
    path = tmp_path / "writer-lock"
    held, release = FORK.Event(), FORK.Event()
    holder = spawn(hold_until, path, held, release)
    assert held.wait(TIMEOUT)
    lock = WriterLock(path)
    seen: list[tuple[str, bool]] = []

    async def write(who: str) -> None:
        async with lock.held_on_loop():
            if who == "first":
                joined(holder)  # whoever holds the file now, it is not the other process
            seen.append((who, locked(path)))

    async def scenario() -> None:
        first = asyncio.create_task(write("first"))
        await until(lambda: locked(f"{path}-gate"))  # it waits for the holder's release
        second = asyncio.create_task(write("second"))
        await asyncio.sleep(0)  # it waits too
        release.set()
        await asyncio.wait_for(asyncio.gather(first, second), TIMEOUT)

    asyncio.run(scenario())
    assert seen == [("first", True), ("second", True)]
    assert not locked(path)
    lock.close()


def test_a_coroutine_cancelled_while_another_process_holds_the_lock_leaves_it_free(
    tmp_path: Path, spawn: Spawn
) -> None:
    path = tmp_path / "writer-lock"
    held, release, go, took = FORK.Event(), FORK.Event(), FORK.Event(), FORK.Event()
    holder = spawn(hold_until, path, held, release)
    other = spawn(take_once, path, go, took)
    assert held.wait(TIMEOUT)
    lock = WriterLock(path)
    entered: list[str] = []

    async def write() -> None:
        async with lock.held_on_loop():
            entered.append("cancelled one")

    async def scenario() -> None:
        waiting = asyncio.create_task(write())
        await until(lambda: locked(f"{path}-gate"))
        waiting.cancel()
        # Its thread cannot be stopped: the cancelled waiter ends once that thread has taken
        # the file lock, given back before anyone else of this process enters.
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.to_thread(joined, holder)
        go.set()
        assert await asyncio.to_thread(took.wait, TIMEOUT), "the other process never got it"
        await asyncio.to_thread(joined, other)
        async with lock.held_on_loop():  # and this loop can take it again
            assert locked(path)

    asyncio.run(asyncio.wait_for(scenario(), 2 * TIMEOUT))
    in_a_thread = threading.Event()

    def take_in_a_thread() -> None:
        with lock:
            in_a_thread.set()

    taker = threading.Thread(target=take_in_a_thread, daemon=True)
    taker.start()
    assert in_a_thread.wait(TIMEOUT), "the loop's thread kept the lock"
    taker.join(TIMEOUT)  # out of its block, so the file is free again
    assert entered == []
    assert not locked(path)
    lock.close()


def test_a_write_inside_a_coroutine_hold_re_enters_and_keeps_the_file_locked(
    tmp_path: Path,
) -> None:
    path = tmp_path / "writer-lock"
    lock = WriterLock(path)

    async def hand_off() -> list[bool]:
        async with lock.held_on_loop():
            with lock:  # the store call's own `with self.writer`
                pass
            return [locked(path)]

    assert asyncio.run(asyncio.wait_for(hand_off(), TIMEOUT)) == [True]
    assert not locked(path)
    lock.close()


def test_without_a_path_threads_and_coroutines_take_turns() -> None:
    lock = WriterLock()
    count = [0]

    def bump_in_memory() -> None:
        value = count[0]
        time.sleep(0)  # another thread runs here, unless the lock keeps it out
        count[0] = value + 1

    def in_thread() -> None:
        for _ in range(ROUNDS):
            with lock:
                bump_in_memory()

    async def on_loop() -> None:
        for _ in range(ROUNDS):
            async with lock.held_on_loop():
                bump_in_memory()
            await asyncio.sleep(0)

    threads = [threading.Thread(target=in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(on_loop(), on_loop()), TIMEOUT)

    asyncio.run(both())
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert count[0] == 4 * ROUNDS
    lock.close()


def test_without_a_path_a_coroutine_awaits_a_thread_s_hold_while_the_loop_serves_others() -> None:
    lock = WriterLock()
    held, release = threading.Event(), threading.Event()
    order: list[str] = []

    def tick() -> None:
        with lock:
            held.set()
            assert release.wait(TIMEOUT)
            order.append("thread released")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    assert held.wait(TIMEOUT)

    async def hand_off() -> None:
        async with lock.held_on_loop():
            order.append("coroutine held")

    async def meanwhile() -> None:
        order.append("loop served another")
        release.set()

    async def both() -> None:
        await asyncio.wait_for(asyncio.gather(hand_off(), meanwhile()), TIMEOUT)

    asyncio.run(both())
    thread.join(TIMEOUT)
    assert order == ["loop served another", "thread released", "coroutine held"]
    lock.close()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_time_counts_each_outermost_hold_and_how_long_it_waited() -> None:
    clock = _Clock()
    lock = WriterLock(clock=clock)
    with lock:
        clock.now += 2.0
        with lock:  # a write inside a write: the same hold
            clock.now += 1.0
    assert (lock.time.holds, lock.time.held_seconds, lock.time.waited_seconds) == (1, 3.0, 0.0)

    held, release = threading.Event(), threading.Event()

    def hold_in_thread() -> None:
        with lock:
            held.set()
            release.wait(TIMEOUT)

    async def wait_on_loop() -> None:
        thread = threading.Thread(target=hold_in_thread)
        thread.start()
        assert await asyncio.to_thread(held.wait, TIMEOUT)
        waiting = asyncio.create_task(_hold_on_loop(lock, clock))
        await asyncio.sleep(0)
        clock.now += 5.0  # the coroutine waits this long, then the thread lets go
        release.set()
        await asyncio.wait_for(waiting, TIMEOUT)
        thread.join(TIMEOUT)

    asyncio.run(wait_on_loop())
    assert lock.time.holds == 3
    assert lock.time.waited_seconds == 5.0
    assert lock.time.held_seconds == 3.0 + 5.0 + 0.5  # the thread's hold, then the coroutine's
    lock.close()


async def _hold_on_loop(lock: WriterLock, clock: _Clock) -> None:
    async with lock.held_on_loop():
        clock.now += 0.5
