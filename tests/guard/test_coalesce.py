"""Calls made in one turn of the event loop are answered by one batch, each with its own answer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from guard.coalesce import Coalescer, Interrupted
from guard.writer_lock import WriterLock


class Doubler:
    """Answers each number twice over, refuses negative ones, and records its batches."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, numbers: list[int]) -> list[int | Exception]:
        self.batches.append(numbers)
        await asyncio.sleep(0)
        return [ValueError(f"negative: {n}") if n < 0 else 2 * n for n in numbers]


def test_calls_of_one_turn_share_a_batch_and_each_gets_its_own_answer() -> None:
    doubler = Doubler()
    coalescer: Coalescer[int, int] = Coalescer(doubler)

    async def burst() -> list[int]:
        return list(await asyncio.gather(*(coalescer(n) for n in range(5))))

    assert asyncio.run(burst()) == [0, 2, 4, 6, 8]
    assert doubler.batches == [[0, 1, 2, 3, 4]]


def test_a_lone_call_is_its_own_batch() -> None:
    doubler = Doubler()
    coalescer: Coalescer[int, int] = Coalescer(doubler)

    async def one_by_one() -> list[int]:
        return [await coalescer(1), await coalescer(2)]

    assert asyncio.run(one_by_one()) == [2, 4]
    assert doubler.batches == [[1], [2]]


def test_a_failed_item_raises_for_its_caller_only() -> None:
    coalescer: Coalescer[int, int] = Coalescer(Doubler())

    async def burst() -> list[int | BaseException]:
        return list(
            await asyncio.gather(coalescer(1), coalescer(-1), coalescer(3), return_exceptions=True)
        )

    first, refused, third = asyncio.run(burst())
    assert (first, third) == (2, 6)
    assert isinstance(refused, ValueError) and "negative: -1" in str(refused)


def test_a_cancelled_caller_stays_in_its_batch_and_the_others_are_answered() -> None:
    doubler = Doubler()
    coalescer: Coalescer[int, int] = Coalescer(doubler)

    async def burst() -> int:
        gone = asyncio.ensure_future(coalescer(1))
        kept = asyncio.ensure_future(coalescer(2))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        return await kept

    assert asyncio.run(burst()) == 4
    assert doubler.batches == [[1, 2]]


def test_a_batch_that_raises_answers_every_caller() -> None:
    async def broken(numbers: list[int]) -> list[int | Exception]:
        raise RuntimeError("store unreachable")

    coalescer: Coalescer[int, int] = Coalescer(broken)

    async def burst() -> list[int | BaseException]:
        return list(await asyncio.gather(coalescer(1), coalescer(2), return_exceptions=True))

    answers = asyncio.run(burst())
    assert len(answers) == 2 and all(isinstance(a, Exception) for a in answers)


class Gated:
    """Records its batches and answers them once `opened`."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.opened = asyncio.Event()

    async def __call__(self, numbers: list[int]) -> list[int | Exception]:
        self.batches.append(numbers)
        await self.opened.wait()
        return [2 * n for n in numbers]


async def turns_until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


def holding_elsewhere(lock: WriterLock) -> tuple[threading.Thread, threading.Event]:
    """A tick's thread holds the writer until the event is set."""
    held, release = threading.Event(), threading.Event()

    def tick() -> None:
        with lock:
            held.set()
            assert release.wait(10)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread, release


def test_calls_queued_over_several_turns_while_the_hold_is_taken_elsewhere_share_a_batch() -> None:
    lock = WriterLock()
    doubler = Doubler()
    coalescer: Coalescer[int, int] = Coalescer(doubler, hold=lock.held_on_loop)
    thread, release = holding_elsewhere(lock)

    async def queued() -> list[int]:
        calls = []
        for n in range(4):
            calls.append(asyncio.ensure_future(coalescer(n)))
            for _ in range(3):  # well past the turn the first call's batch began in
                await asyncio.sleep(0)
        assert doubler.batches == []
        release.set()
        return list(await asyncio.wait_for(asyncio.gather(*calls), 10))

    try:
        assert asyncio.run(queued()) == [0, 2, 4, 6]
    finally:
        release.set()
        thread.join(10)
    assert doubler.batches == [[0, 1, 2, 3]]
    lock.close()


def test_without_hold_a_call_made_while_a_batch_runs_waits_for_the_next_batch() -> None:
    gated = Gated()
    coalescer: Coalescer[int, int] = Coalescer(gated)

    async def two_turns() -> list[int]:
        first = asyncio.ensure_future(coalescer(1))
        await turns_until(lambda: gated.batches == [[1]])
        second = asyncio.ensure_future(coalescer(2))
        await asyncio.sleep(0)
        gated.opened.set()
        return list(await asyncio.wait_for(asyncio.gather(first, second), 10))

    assert asyncio.run(two_turns()) == [2, 4]
    assert gated.batches == [[1], [2]]


def test_interrupted_before_taking_the_batch_the_callers_get_interrupted_and_the_next_runs() -> (
    None
):
    lock = WriterLock()
    doubler = Doubler()
    waiting_for_hold = asyncio.Event()

    @asynccontextmanager
    async def hold() -> AsyncIterator[None]:
        waiting_for_hold.set()
        async with lock.held_on_loop():
            yield

    coalescer: Coalescer[int, int] = Coalescer(doubler, hold=hold)
    thread, release = holding_elsewhere(lock)

    async def interrupted() -> tuple[list[int | BaseException], int]:
        calls = [asyncio.ensure_future(coalescer(n)) for n in (1, 2)]
        await asyncio.wait_for(waiting_for_hold.wait(), 10)
        for task in coalescer._running:  # as when the loop shuts down under it
            task.cancel()
        answers = list(await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2))
        release.set()
        return answers, await asyncio.wait_for(coalescer(3), 10)

    try:
        answers, later = asyncio.run(interrupted())
    finally:
        release.set()
        thread.join(10)
        lock.close()
    assert all(isinstance(answer, Interrupted) for answer in answers), answers
    assert later == 6
    assert doubler.batches == [[3]]
