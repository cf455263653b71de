"""Calls made in the same turn of the event loop, answered by one batch.

A burst of hand-offs, or of a tick's gate verdicts, reaches the store together; each alone paid
its own transaction. Waiting for the end of the loop's turn costs a lone call nothing and lets
a burst share one commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Interrupted(Exception):
    """The batch was interrupted before it answered; nothing is known of this call."""


class Coalescer(Generic[Item, Answer]):
    """`await coalescer(item)` answers as `run_batch([item, ...])` did for it, or raises its error.

    `run_batch` gets the items of one turn and answers each, an exception for one that failed.
    A caller that is cancelled meanwhile stays in its batch: what it asked for may be done.
    """

    def __init__(
        self, run_batch: Callable[[list[Item]], Awaitable[list[Answer | Exception]]]
    ) -> None:
        self._run_batch = run_batch
        self._waiting: list[tuple[Item, asyncio.Future[Answer | Exception]]] = []
        self._running: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def __call__(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Answer | Exception] = loop.create_future()
        self._waiting.append((item, answered))
        if len(self._waiting) == 1:
            task = loop.create_task(self._run())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        answer = await answered
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the calls ready in this turn join first
        batch, self._waiting = self._waiting, []
        answers: list[Answer | Exception] = [Interrupted()] * len(batch)
        try:
            answers = await self._run_batch([item for item, _ in batch])
        finally:  # no caller is left waiting
            for (_, answered), answer in zip(batch, answers, strict=True):
                if not answered.done():
                    answered.set_result(answer)
