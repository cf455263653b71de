"""Calls made in the same turn of the event loop, answered by one batch.

A burst of hand-offs, or of a tick's gate verdicts, reaches the store together; each alone paid
its own transaction. Waiting for the end of the loop's turn costs a lone call nothing and lets
a burst share one commit. With `hold` (a lock the batch needs), the batch is taken once the
lock is held, so the calls that queued while another held it go together: taken before, each
hand-off waited for one whole batch of the engine's writes, and they fell behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
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
        self,
        run_batch: Callable[[list[Item]], Awaitable[list[Answer | Exception]]],
        *,
        hold: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._hold = hold
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
        batch: list[tuple[Item, asyncio.Future[Answer | Exception]]] = []
        answers: list[Answer | Exception] = []
        try:
            await asyncio.sleep(0)  # the calls ready in this turn join first
            async with self._hold() if self._hold is not None else nullcontext():
                batch, self._waiting = self._waiting, []
                answers = [Interrupted()] * len(batch)
                answers = await self._run_batch([item for item, _ in batch])
        finally:  # no caller is left waiting
            if not batch:  # interrupted before the batch was taken: the next call runs it
                batch, self._waiting = self._waiting, []
                answers = [Interrupted()] * len(batch)
            for (_, answered), answer in zip(batch, answers, strict=True):
                if not answered.done():
                    answered.set_result(answer)
