"""Requests first: a tick's batches of work wait for a gap between API requests.

A tick over hundreds of rollouts is hundreds of ms of work on the event loop the API shares.
Given a turn of the loop after each batch, it still delayed every request by a batch or two,
and a burst of new rollouts' work left a queue of requests behind it: at 500 hand-offs a second
their p99 went from 20 to over 100 ms. A tick is counted in seconds and a request in
milliseconds, so between batches a tick waits until no request is in flight, up to `MAX_WAIT`,
so that it always progresses, and at most `TICK_BUDGET` a tick all told, so that a saturated API
cannot hold a thousand rollouts' tick up by more than a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import MutableMapping
from typing import Any

from guard.auth import ASGIApp, ASGIScope, Receive, Send

MAX_WAIT = 0.02
"""Longest a batch waits for a gap (seconds)."""
TICK_BUDGET = 1.0
"""Longest a tick waits for gaps all told (seconds), about its default interval: at 500
hand-offs a second a tick waited 0.15-0.8 s, and with 0.2 s the hand-offs' p99 went from 25-31
to 95-122 ms. A thousand rollouts' tick has 160 batches."""


class InFlight:
    """How many HTTP requests this process is serving now."""

    def __init__(self) -> None:
        self.count = 0
        self._quiet = asyncio.Event()

    def started(self) -> None:
        self.count += 1
        self._quiet.clear()

    def finished(self) -> None:
        self.count -= 1
        if not self.count:
            self._quiet.set()

    async def gap(self, max_wait: float = MAX_WAIT) -> float:
        """Return at the next moment no request is in flight, or after `max_wait`; the seconds
        waited for it."""
        await asyncio.sleep(0)  # even when idle: requests just read get their turn
        if not self.count or max_wait <= 0:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._quiet.wait(), max_wait)
        return time.monotonic() - started


class CountInFlight:
    """ASGI middleware keeping `InFlight` up to date.

    A request with a body counts once its body has arrived: a client sending it slowly is not
    being served meanwhile, and must not make every batch of a tick wait.
    """

    def __init__(self, app: ASGIApp, in_flight: InFlight) -> None:
        self.app = app
        self.in_flight = in_flight

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                self.in_flight.started()

        async def received() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                count()
            return message

        headers = dict(scope["headers"])
        if headers.get(b"content-length", b"0") == b"0" and b"transfer-encoding" not in headers:
            count()
        try:
            await self.app(scope, received, send)
        finally:
            if counted:
                self.in_flight.finished()
