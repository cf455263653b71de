"""Hand-offs on a local SQLite file: those that wait for the store together share one
transaction.

Each alone paid a commit, a third of its store time. Submissions that reach the store in the
same turn of the event loop, or that queue while another writer (a tick, in the engine's
process) holds the store's writer lock, are committed together by `Store.submit_many`, on the
loop, in groups of `MAX_GROUP`; elsewhere (PostgreSQL) each is its own transaction in a thread.
"""

from __future__ import annotations

from guard.coalesce import Coalescer
from guard.store import Store, Submission, Submitted, write_store

MAX_GROUP = 100
"""Bounds how long one group holds the loop (about 0.5 ms a submission)."""


class Handoffs:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._grouped: Coalescer[Submission, Submitted] = Coalescer(
            self._commit_held, hold=store.writer.held_on_loop
        )

    async def submit(self, submission: Submission) -> Submitted:
        """`Store.submit` for this submission; raises what it would raise."""
        if self.store.local_file:
            return await self._grouped(submission)
        answer = (await write_store(self.store, self.store.submit_many, [submission]))[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _commit_held(self, submissions: list[Submission]) -> list[Submitted | Exception]:
        """With the writer lock held (see `Coalescer`): the groups one after another."""
        answers: list[Submitted | Exception] = []
        for start in range(0, len(submissions), MAX_GROUP):
            answers += self.store.submit_many(submissions[start : start + MAX_GROUP])
        return answers
