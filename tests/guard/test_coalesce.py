"""Calls made in one turn of the event loop are answered by one batch, each with its own answer."""

from __future__ import annotations

import asyncio

import pytest

from guard.coalesce import Coalescer


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
