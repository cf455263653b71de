"""HTTP smoke checks a strategy can ask for (e.g. a blue-green preview URL before the switch).

Kept out of strategies (which never do I/O) and out of the Kubernetes adapter: the engine runs the
probes a strategy declares in its `ClusterNeeds` and hands the results over with the snapshot.
"""

from __future__ import annotations

import time

import httpx

from guard.cluster import ProbeResult


async def probe(client: httpx.AsyncClient, url: str) -> ProbeResult:
    """GET `url`; any answer is a result (2xx passes), a connection failure is one too."""
    started = time.perf_counter()
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        elapsed = time.perf_counter() - started
        return ProbeResult(url, None, f"{type(exc).__name__}: {exc}", elapsed)
    elapsed = time.perf_counter() - started
    return ProbeResult(url, response.status_code, "", elapsed)
