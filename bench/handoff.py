"""Hand-off benchmark: `POST /v1/rollouts` and `GET /v1/rollouts/{id}` under load on loopback.

Runs a real `guard serve` (SQLite store) whose scheduler has nothing to roll out (the rollouts
name Deployments that do not exist on the simulated cluster and are refused at the first tick),
and drives it with concurrent httpx clients for a fixed number of requests.
`python -m bench.handoff [--requests N] [--concurrency C]`; prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import ProcessStats, emit
from bench.profile import record, summary
from guard.sim.guard_process import GuardProcess
from guard.sim.kubeapi import KubeApiSimulator


def _body(index: int) -> dict[str, Any]:
    return {
        "namespace": "bench",
        "deployment": f"svc-{index}",
        "images": {"app": f"registry/app:1.0.{index}"},
        "strategy": "rolling",
    }


async def _drive(
    url: str, token: str, requests: int, concurrency: int, make: Any
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(requests):
        queue.put_nowait(index)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            index = queue.get_nowait()
            started = time.perf_counter()
            response = await make(client, index)
            latencies.append(time.perf_counter() - started)
            failures += response.status_code >= 400

    limits = httpx.Limits(max_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=limits, headers=headers
    ) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return latencies, elapsed, failures


def _figures(name: str, latencies: list[float], elapsed: float, failures: int) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        "endpoint": name,
        "requests": len(latencies),
        "failures": failures,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(0.99 * (len(ordered) - 1))] * 1000, 2),
    }


async def _run(
    url: str, token: str, requests: int, concurrency: int, server: ProcessStats
) -> list[dict[str, Any]]:
    """Both endpoints in turn, each with the guard's own CPU time per request: on a machine
    shared with the load generator (and other work) that is steadier than throughput."""
    ids: list[str] = []

    async def post(client: httpx.AsyncClient, index: int) -> httpx.Response:
        response = await client.post(
            "/v1/rollouts", json=_body(index), headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if response.status_code < 300:
            ids.append(response.json()["id"])
        return response

    async def get(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.get(f"/v1/rollouts/{ids[index % len(ids)]}")

    rows = []
    for name, make in (("POST /v1/rollouts", post), ("GET /v1/rollouts/{id}", get)):
        cpu = server.cpu_seconds()
        latencies, elapsed, failures = await _drive(url, token, requests, concurrency, make)
        row = _figures(name, latencies, elapsed, failures)
        row["server_cpu_ms"] = round((server.cpu_seconds() - cpu) / requests * 1000, 2)
        rows.append(row)
    return rows


COLUMNS = (
    "endpoint",
    "requests",
    "failures",
    "requests_per_second",
    "p50_ms",
    "p99_ms",
    "server_cpu_ms",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--profile", type=Path, help="directory for a py-spy profile of the guard (if installed)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp, KubeApiSimulator() as kube:
        workdir = Path(tmp)
        kube.write_kubeconfig(workdir / "kubeconfig")
        config = {
            "store": {"data_dir": str(workdir / "data")},
            "prometheus": {"url": "http://127.0.0.1:9"},
            "kubernetes": {"kubeconfig": str(workdir / "kubeconfig")},
            "scheduler": {"tick_seconds": 5},
        }
        (workdir / "guard.yaml").write_text(yaml.safe_dump(config))
        with GuardProcess(
            workdir / "guard.yaml", workdir / "guard.log", start_timeout=120
        ) as guard:
            assert guard.pid is not None
            profiler = None
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler = record(guard.pid, 15, args.profile / "handoff.txt")
            stats = ProcessStats(guard.pid)
            results = asyncio.run(
                _run(guard.url, guard.token, args.requests, args.concurrency, stats)
            )
            if profiler is not None and args.profile:
                profiler.wait(timeout=60)
                print(summary(args.profile / "handoff.txt"))
    emit("handoff", results, COLUMNS, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
