"""Hand-off benchmark: `POST /v1/rollouts` and `GET /v1/rollouts/{id}` under load on loopback.

Runs a real `guard serve` (SQLite store, default config: a tick every second) whose scheduler
has nothing to roll out (the rollouts name Deployments that do not exist on the simulated
cluster and are refused at the next tick). `python -m bench.handoff [--generator wrk|httpx]
[--seconds S] [--requests N] [--concurrency C] [--rate R]`; prints a table and one JSON line.

Each endpoint is measured twice. First at saturation, by a closed-loop generator (named in the
JSON line, and in the table's `load`):

- `wrk` (Debian/Ubuntu: `apt-get install wrk`), the default when it is on PATH: a C generator
  that costs the machine little, so the guard gets most of the CPU. It runs for `--seconds`
  per endpoint with `--concurrency` connections on one thread; a Lua script gives every POST
  its own Deployment and Idempotency-Key.
- `httpx`: `--requests` per endpoint from `--concurrency` asyncio clients in this process. It
  needs nothing but the guard's own dependencies, but in Python it takes most of a core, so on a
  small machine it measures the generator as much as the guard.

Then paced: `--rate` requests a second offered for `--seconds` by an open-loop generator
(`bench.paced`) over up to `--concurrency` connections, each latency counted from when its
request was due. That is the question the target asks (500 requests/s offered, p99 under
50 ms); at saturation a closed loop's latency is mostly its own queue (connections / rate).
`send_lag_p99_ms` is how late the generator itself sent them, a share of that latency that is
the machine's and the generator's, not the guard's.

`lock_api_pct` and `lock_engine_pct` are the share of the load's time each of the guard's
processes held the store's writer lock (from its `/metrics`): every write, hand-off or tick,
takes it in turn, so their sum is how busy the store's one writer was.

`server_cpu_ms` is the guard's CPU per request while the load runs (both its processes, ticks
that fall in it included; `api_cpu_ms` the API process's alone); for POST, `with_refusal_ms`
runs on until the guard has refused every rollout the POSTs submitted, so it holds the whole
tick's share of each hand-off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import ProcessStats, emit, metric
from bench.paced import http_request, paced
from bench.profile import record, summary
from guard.sim.guard_process import GuardProcess
from guard.sim.kubeapi import KubeApiSimulator

POST, GET = "POST /v1/rollouts", "GET /v1/rollouts/{id}"
WRK_INSTALL = "wrk is not installed (Debian/Ubuntu: apt-get install wrk)"


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


def _httpx_post(url: str, token: str, requests: int, concurrency: int) -> dict[str, Any]:
    async def post(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.post(
            "/v1/rollouts", json=_body(index), headers={"Idempotency-Key": str(uuid.uuid4())}
        )

    return _figures(POST, *asyncio.run(_drive(url, token, requests, concurrency, post)))


def _httpx_get(
    url: str, token: str, requests: int, concurrency: int, ids: list[str]
) -> dict[str, Any]:
    async def get(client: httpx.AsyncClient, index: int) -> httpx.Response:
        return await client.get(f"/v1/rollouts/{ids[index % len(ids)]}")

    return _figures(GET, *asyncio.run(_drive(url, token, requests, concurrency, get)))


# wrk's Lua: `setup` numbers the threads, `done` prints the figures as one JSON line.
_WRK_REPORT = """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "failures": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""

_WRK_POST = """
local n = 0
function request()
  n = n + 1
  local name = string.format("svc-%d-%d", tid, n)
  local body = string.format(
    '{"namespace":"bench","deployment":"%s","images":{"app":"registry/app:1.0.%d"},'
    .. '"strategy":"rolling"}', name, n)
  return wrk.format("POST", "/v1/rollouts", {
    ["Authorization"] = "Bearer TOKEN",
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("RUN-%d-%d", tid, n),
  }, body)
end
"""

_WRK_GET = """
local ids = {IDS}
local n = 0
function request()
  n = n + 1
  return wrk.format("GET", "/v1/rollouts/" .. ids[(n % #ids) + 1], {
    ["Authorization"] = "Bearer TOKEN",
  })
end
"""


def _wrk(
    name: str, url: str, script: str, seconds: float, concurrency: int, workdir: Path
) -> dict[str, Any]:
    """One wrk run on one thread (the guard needs the other core more than wrk does)."""
    path = workdir / "wrk.lua"
    path.write_text(script + _WRK_REPORT)
    out = subprocess.run(
        ["wrk", "--threads", "1", "--connections", str(concurrency),
         "--duration", f"{max(1, round(seconds))}s", "--timeout", "30s",
         "--script", str(path), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    figures = json.loads(out.strip().splitlines()[-1])
    return {
        "endpoint": name,
        "requests": figures["requests"],
        "failures": figures["failures"],
        "requests_per_second": round(figures["requests"] / (figures["duration_us"] / 1e6), 1),
        "p50_ms": round(figures["p50_us"] / 1000, 2),
        "p99_ms": round(figures["p99_us"] / 1000, 2),
    }


def _rollout_ids(client: httpx.Client) -> list[str]:
    response = client.get("/v1/rollouts", params={"limit": 1000})
    response.raise_for_status()
    return [rollout["id"] for rollout in response.json()]


def _lock_held(client: httpx.Client) -> dict[str, float]:
    """Seconds each of the guard's processes has held the store's writer lock."""
    response = client.get("/metrics")
    response.raise_for_status()
    held = {}
    for process in ("api", "engine"):
        name = f'guard_store_writer_lock_held_seconds_total{{process="{process}"}}'
        value = metric(response.text, name)
        assert value is not None, f"no {name} in the guard's /metrics"
        held[process] = value
    return held


def _lock_shares(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    return {
        f"lock_{process}_pct": round(100 * (after[process] - before[process]) / seconds, 1)
        for process in after
    }


def _settled(client: httpx.Client, timeout: float = 120) -> None:
    """Wait until the guard has refused every submitted rollout (the tick's work of a POST)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [
            client.get("/v1/rollouts", params={"state": state, "limit": 1}).json()
            for state in ("pending", "progressing")
        ]
        if not any(busy):
            return
        time.sleep(0.2)
    raise TimeoutError("the guard did not refuse the submitted rollouts in time")


def _run(
    guard: GuardProcess, args: argparse.Namespace, generator: str, workdir: Path
) -> list[dict[str, Any]]:
    """Both endpoints in turn, each at saturation and then paced at `--rate`, each with the
    guard's own CPU time per request: on a machine shared with the load generator (and other
    work) that is steadier than throughput."""
    assert guard.pid is not None
    server = ProcessStats(guard.pid)
    headers = {"Authorization": f"Bearer {guard.token}"}
    run = uuid.uuid4().hex
    rows = []
    with httpx.Client(base_url=guard.url, headers=headers, timeout=30) as client:
        for paced_at in (None, args.rate):
            cpu = server.cpu_seconds()
            api_cpu = server.cpu_seconds(guard.pid)
            held, started = _lock_held(client), time.monotonic()
            if paced_at is not None:
                post = _paced_post(guard, args, f"{run}-paced")
            elif generator == "wrk":
                script = _WRK_POST.replace("TOKEN", guard.token).replace("RUN", run)
                post = _wrk(POST, guard.url, script, args.seconds, args.concurrency, workdir)
            else:
                post = _httpx_post(guard.url, guard.token, args.requests, args.concurrency)
            loaded = server.cpu_seconds()
            api_loaded = server.cpu_seconds(guard.pid)
            post |= _lock_shares(held, _lock_held(client), time.monotonic() - started)
            _settled(client)
            post["server_cpu_ms"] = round((loaded - cpu) / post["requests"] * 1000, 2)
            post["api_cpu_ms"] = round((api_loaded - api_cpu) / post["requests"] * 1000, 2)
            refused = server.cpu_seconds() - cpu
            post["with_refusal_ms"] = round(refused / post["requests"] * 1000, 2)
            post["load"] = _load(generator, args, paced_at)
            rows.append(post)
        ids = _rollout_ids(client)
        for paced_at in (None, args.rate):
            cpu = server.cpu_seconds()
            api_cpu = server.cpu_seconds(guard.pid)
            held, started = _lock_held(client), time.monotonic()
            if paced_at is not None:
                get = _paced_get(guard, args, ids)
            elif generator == "wrk":
                listed = ", ".join(f'"{i}"' for i in ids)
                script = _WRK_GET.replace("TOKEN", guard.token).replace("IDS", listed)
                get = _wrk(GET, guard.url, script, args.seconds, args.concurrency, workdir)
            else:
                get = _httpx_get(guard.url, guard.token, args.requests, args.concurrency, ids)
            get |= _lock_shares(held, _lock_held(client), time.monotonic() - started)
            get["server_cpu_ms"] = round((server.cpu_seconds() - cpu) / get["requests"] * 1000, 2)
            api_used = server.cpu_seconds(guard.pid) - api_cpu
            get["api_cpu_ms"] = round(api_used / get["requests"] * 1000, 2)
            get["load"] = _load(generator, args, paced_at)
            rows.append(get)
    return rows


def _load(generator: str, args: argparse.Namespace, paced_at: float | None) -> str:
    if paced_at is not None:
        return f"{paced_at:g}/s offered"
    return f"{generator}, {args.concurrency} connections"


def _paced_post(guard: GuardProcess, args: argparse.Namespace, run: str) -> dict[str, Any]:
    def request(index: int) -> bytes:
        body = json.dumps(_body(index) | {"deployment": f"paced-{run}-{index}"}).encode()
        headers = {
            "Authorization": f"Bearer {guard.token}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"{run}-{index}",
        }
        return http_request("POST", "/v1/rollouts", headers, body)

    return {"endpoint": POST} | _pace(guard, args, request)


def _paced_get(guard: GuardProcess, args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {guard.token}"}
    prebuilt = [http_request("GET", f"/v1/rollouts/{i}", headers) for i in ids]
    return {"endpoint": GET} | _pace(guard, args, lambda index: prebuilt[index % len(prebuilt)])


def _pace(guard: GuardProcess, args: argparse.Namespace, request: Any) -> dict[str, Any]:
    url = httpx.URL(guard.url)
    assert url.port is not None
    return asyncio.run(
        paced(
            url.host,
            url.port,
            request,
            rate=args.rate,
            seconds=args.seconds,
            connections=args.concurrency,
        )
    )


COLUMNS = (
    "endpoint",
    "load",
    "requests",
    "failures",
    "requests_per_second",
    "p50_ms",
    "p99_ms",
    "server_cpu_ms",
    "api_cpu_ms",
    "with_refusal_ms",
    "send_lag_p99_ms",
    "lock_api_pct",
    "lock_engine_pct",
)


def _generator(wanted: str) -> str:
    found = shutil.which("wrk") is not None
    if wanted == "wrk" and not found:
        sys.exit(f"bench.handoff: {WRK_INSTALL}; or run with --generator httpx")
    if wanted == "auto" and not found:
        print(f"bench.handoff: {WRK_INSTALL}; using the httpx generator", file=sys.stderr)
    return "wrk" if wanted == "auto" and found else "httpx" if wanted == "auto" else wanted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--generator", choices=("auto", "wrk", "httpx"), default="auto",
        help="auto: wrk when installed, else httpx",
    )  # fmt: skip
    parser.add_argument("--seconds", type=float, default=10, help="per endpoint (wrk)")
    parser.add_argument("--requests", type=int, default=2000, help="per endpoint (httpx)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--rate", type=float, default=500, help="requests/s offered in the paced runs"
    )
    parser.add_argument(
        "--profile", type=Path, help="directory for a py-spy profile of the guard (if installed)"
    )
    args = parser.parse_args(argv)
    generator = _generator(args.generator)
    with tempfile.TemporaryDirectory(prefix="guard-bench-") as tmp, KubeApiSimulator() as kube:
        workdir = Path(tmp)
        kube.write_kubeconfig(workdir / "kubeconfig")
        config = {
            "store": {"data_dir": str(workdir / "data")},
            "prometheus": {"url": "http://127.0.0.1:9"},
            "kubernetes": {"kubeconfig": str(workdir / "kubeconfig")},
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
            results = _run(guard, args, generator, workdir)
            if profiler is not None and args.profile:
                profiler.wait(timeout=60)
                print(summary(args.profile / "handoff.txt"))
    emit("handoff", results, COLUMNS, concurrency=args.concurrency, generator=generator)


if __name__ == "__main__":
    main()
