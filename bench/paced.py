"""An open-loop HTTP/1.1 load generator: requests sent at a fixed rate, latency from when each
was due.

A closed-loop generator (wrk, or httpx clients) sends the next request only when the last one
returned, so it measures latency at saturation, and while the server stalls it sends nothing
and records nothing (coordinated omission). A target such as "500 requests/s with p99 under
50 ms" asks instead: offered 500 requests a second, how late do the answers come? Here request
`i` is due at `start + i / rate`; it goes out on the first idle keep-alive connection, and its
latency runs from when it was due, so time spent queued behind a stall counts, as in wrk2.

Requests are prebuilt bytes and responses are read with asyncio streams: at 500 requests/s
this costs a few percent of a core, where an HTTP client library took most of one. Still, the
generator shares the machine: `send_lag_p99_ms` is how late it sent its requests (from when each
was due to when it went out), the part of the latency that may be the generator's own.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from typing import Any


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def paced(
    host: str,
    port: int,
    request: Callable[[int], bytes],
    *,
    rate: float,
    seconds: float,
    connections: int,
) -> dict[str, Any]:
    """Offer `rate` requests a second for `seconds`; `request(i)` builds the i-th request."""
    loop = asyncio.get_running_loop()
    due: asyncio.Queue[int | None] = asyncio.Queue()
    latencies: list[float] = []
    send_lags: list[float] = []
    failures = 0
    start = loop.time() + 0.2  # connections open first

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (index := await due.get()) is not None:
                due_at = start + index / rate
                send_lags.append(loop.time() - due_at)
                writer.write(request(index))
                status = await _answer(reader)
                latencies.append(loop.time() - due_at)
                failures += status >= 400
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    total = int(rate * seconds)
    for index in range(total):
        wait = start + index / rate - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        due.put_nowait(index)
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = loop.time() - start
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "failures": failures,
        "requests_per_second": round(len(ordered) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(_p99(ordered) * 1000, 2),
        "send_lag_p99_ms": round(_p99(sorted(send_lags)) * 1000, 2),
    }


def _p99(ordered: list[float]) -> float:
    return ordered[int(0.99 * (len(ordered) - 1))]


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request on a keep-alive connection, as bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
