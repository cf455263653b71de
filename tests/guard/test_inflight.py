"""A tick's batches wait for a gap between API requests, but never longer than MAX_WAIT."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from guard import inflight
from guard.inflight import CountInFlight, InFlight


def test_gap_returns_at_once_with_no_request_in_flight() -> None:
    async def gap() -> None:
        await asyncio.wait_for(InFlight().gap(), 5)

    asyncio.run(gap())


def test_gap_waits_for_the_requests_in_flight_to_finish() -> None:
    order: list[str] = []

    async def scenario() -> None:
        requests = InFlight()
        requests.started()

        async def request() -> None:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append("request answered")
            requests.finished()

        async def tick_batch() -> None:
            await requests.gap()
            order.append("tick batch")

        await asyncio.gather(tick_batch(), request())

    asyncio.run(scenario())
    assert order == ["request answered", "tick batch"]


def test_gap_gives_up_waiting_after_max_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inflight, "MAX_WAIT", 0.01)

    async def scenario() -> int:
        requests = InFlight()
        requests.started()  # and never finished
        await asyncio.wait_for(requests.gap(), 5)
        return requests.count

    assert asyncio.run(scenario()) == 1


def test_the_middleware_counts_a_request_while_it_is_served() -> None:
    requests = InFlight()
    app = FastAPI()
    seen: list[int] = []

    @app.get("/probe")
    async def probe() -> dict[str, bool]:
        seen.append(requests.count)
        return {"ok": True}

    app.add_middleware(CountInFlight, in_flight=requests)
    with TestClient(app) as client:
        assert client.get("/probe").status_code == 200
    assert seen == [1]
    assert requests.count == 0


def test_a_request_with_a_body_counts_once_its_body_has_arrived() -> None:
    """A client sending its body slowly is not being served: ticks need not wait for it."""
    requests = InFlight()
    seen: list[int] = []
    chunks: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"12345", "more_body": True},
        {"type": "http.request", "body": b"67890", "more_body": False},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(requests.count)
        await receive()
        seen.append(requests.count)
        await receive()
        seen.append(requests.count)

    async def receive() -> dict[str, Any]:
        return chunks.pop(0)

    async def send(message: Any) -> None:
        return None

    scope = {"type": "http", "headers": [(b"content-length", b"10")]}
    asyncio.run(CountInFlight(app, requests)(scope, receive, send))

    assert seen == [0, 0, 1]
    assert requests.count == 0
