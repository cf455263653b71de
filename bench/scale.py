"""Scale benchmark: 10, 100 and 1,000 concurrent rollouts analysed at once by one guard.

Each size gets a fresh simulated cluster (`python -m guard.sim.kubeapi`, its own process) with
that many one-replica Deployments and Services, one simulated workload serving them all, a real
Prometheus scraping it, and a real `guard serve`. Every Deployment gets a rolling rollout that
never has enough healthy intervals to promote, so all stay analysing. Once every rollout is
analysed in one tick, the benchmark watches `--ticks` more and reports, per tick: PromQL queries,
Kubernetes API calls, duration and CPU of the engine's process (whose tick it is), and the
resident memory of the whole guard (the API's process and the engine's, see `ProcessStats`).
`python -m bench.scale [--sizes 10,100,1000] [--ticks N]`; prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.common import ProcessStats, SimulatorProcess, emit, metric
from bench.profile import record, summary
from guard.sim.guard_process import GuardProcess
from guard.sim.prometheus import PrometheusServer
from guard.sim.workload import Fleet, TrafficProfile

NAMESPACE = "fleet"
OLD, NEW = "registry/app:1.0", "registry/app:1.1"
HEALTHY = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25)
COLUMNS = (
    "rollouts",
    "analysed",
    "queries_per_tick",
    "k8s_calls_per_tick",
    "tick_ms",
    "cpu_ms_per_tick",
    "api_cpu_ms_per_tick",
    "pss_mb",
    "api_pss_mb",
    "engine_pss_mb",
    "rss_mb",
    "peak_rss_mb",
    "ticks",
)


def manifests(name: str) -> list[dict[str, Any]]:
    labels = {"app": name}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": OLD}]},
            },
        },
    }
    return [service, deployment]


def _create(client: httpx.Client, names: list[str]) -> None:
    paths = {"Service": "/api/v1/namespaces/{ns}/services",
             "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments"}  # fmt: skip
    for name in names:
        for manifest in manifests(name):
            path = paths[manifest["kind"]].format(ns=NAMESPACE)
            client.post(path, json=manifest).raise_for_status()


def _wait_available(client: httpx.Client, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    available = 0
    while time.monotonic() < deadline:
        items = client.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments").json()["items"]
        available = sum(1 for d in items if d.get("status", {}).get("availableReplicas") == 1)
        if available >= count:
            return
        time.sleep(0.5)
    raise TimeoutError(f"only {available}/{count} Deployments available after {timeout}s")


async def _submit(url: str, token: str, names: list[str]) -> int:
    """POST one rollout per Deployment, 16 at a time; returns how many were accepted."""
    limits = httpx.Limits(max_connections=16)
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=auth) as client:
        gate = asyncio.Semaphore(16)

        async def post(name: str) -> bool:
            """Retried on a dropped connection: the Idempotency-Key makes that safe."""
            body = {"namespace": NAMESPACE, "deployment": name, "images": {"app": NEW},
                    "strategy": "rolling"}  # fmt: skip
            headers = {"Idempotency-Key": f"scale-{name}"}
            async with gate:
                for attempt in range(5):
                    try:
                        response = await client.post("/v1/rollouts", json=body, headers=headers)
                        return response.status_code in (200, 201)
                    except httpx.TransportError:
                        if attempt == 4:
                            raise
            return False

        return sum(await asyncio.gather(*map(post, names)))


def _guard_config(workdir: Path, prometheus: str, kubeconfig: Path, tick: float) -> Path:
    config = {
        "store": {"data_dir": str(workdir / "data")},
        "prometheus": {"url": prometheus, "timeout_seconds": 10},
        "kubernetes": {"kubeconfig": str(kubeconfig), "request_timeout_seconds": 30},
        "scheduler": {"tick_seconds": tick},
        "analysis": {
            "interval_seconds": tick,
            "window_seconds": 10,
            "healthy_intervals_to_promote": 1000,
        },
    }
    path = workdir / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def measure(
    rollouts: int, *, ticks: int = 10, tick_seconds: float = 2.0, profile: Path | None = None
) -> dict[str, Any]:
    """One size on a fresh stack; figures averaged over `ticks` ticks once all analyse at once."""
    names = [f"svc-{i:04d}" for i in range(rollouts)]
    timeout = 120 + rollouts * 0.2
    with tempfile.TemporaryDirectory(prefix="guard-scale-") as tmp:
        workdir = Path(tmp)
        kubeconfig = workdir / "kubeconfig"
        with SimulatorProcess(kubeconfig, NAMESPACE, tick_seconds=0.5) as kube:
            with httpx.Client(base_url=kube.url, timeout=60) as client:
                _create(client, names)
                _wait_available(client, rollouts, timeout)
            fleet = Fleet(kube.url, NAMESPACE, names, default_profile=HEALTHY)
            with fleet, PrometheusServer([fleet.start()], 1.0, workdir / "prometheus") as prom:
                prom.wait_for_series(
                    f'count(http_requests_total{{namespace="{NAMESPACE}",code="200"}}) '
                    f">= {rollouts}",
                    timeout=timeout,
                )
                config = _guard_config(workdir, prom.url, kubeconfig, tick_seconds)
                with GuardProcess(config, workdir / "guard.log", start_timeout=120) as guard:
                    accepted = asyncio.run(_submit(guard.url, guard.token, names))
                    figures = _watch(
                        guard, rollouts, ticks, timeout, tick_seconds=tick_seconds, profile=profile
                    )
                    figures["accepted"] = accepted
                    with guard.client() as client:
                        listed = client.get("/v1/rollouts", params={"limit": rollouts}).json()
                    states: dict[str, int] = {}
                    for rollout in listed:
                        states[rollout["state"]] = states.get(rollout["state"], 0) + 1
                    figures["states"] = states
    return figures


def _watch(
    guard: GuardProcess,
    rollouts: int,
    ticks: int,
    timeout: float,
    *,
    tick_seconds: float,
    profile: Path | None,
) -> dict[str, Any]:
    """Wait until one tick analyses every rollout, then average the next `ticks` ticks."""
    pid = guard.pid
    assert pid is not None, "guard not started"
    stats = ProcessStats(pid)
    engine = stats.engine_pid()
    with guard.client() as client:

        def scrape() -> str:
            for attempt in range(5):
                try:
                    return client.get("/metrics", timeout=30).text
                except httpx.TransportError:
                    if attempt == 4:
                        raise
            return ""

        deadline = time.monotonic() + timeout
        text = scrape()
        while (metric(text, "guard_analysed_rollouts_last_tick") or 0) < rollouts:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
            text = scrape()
        profiler = (
            record(engine, ticks * tick_seconds, profile / f"scale-{rollouts}.txt")
            if profile
            else None
        )
        count0 = metric(text, "guard_tick_duration_seconds_count") or 0
        sum0 = metric(text, "guard_tick_duration_seconds_sum") or 0
        cpu0 = stats.cpu_seconds(engine)
        api_cpu0 = stats.cpu_seconds(pid)
        analysed, queries, calls = [], [], []
        count = count0
        while count < count0 + ticks and time.monotonic() < deadline + 60 * ticks:
            time.sleep(0.25)
            text = scrape()
            now = metric(text, "guard_tick_duration_seconds_count") or 0
            if now > count:
                analysed.append(metric(text, "guard_analysed_rollouts_last_tick") or 0)
                queries.append(metric(text, "guard_prometheus_queries_last_tick") or 0)
                calls.append(metric(text, "guard_kubernetes_calls_last_tick") or 0)
                count = now
        cpu = stats.cpu_seconds(engine) - cpu0
        api_cpu = stats.cpu_seconds(pid) - api_cpu0
        if profiler is not None:
            profiler.wait(timeout=120)
            print(f"profile at {rollouts} rollouts:")
            print(summary(profile / f"scale-{rollouts}.txt"))  # type: ignore[operator]
        seconds = (metric(text, "guard_tick_duration_seconds_sum") or 0) - sum0
    done = max(count - count0, 1)
    memory = stats.memory_mb()
    return {
        "rollouts": rollouts,
        "analysed": int(min(analysed, default=0)),
        "queries_per_tick": max(queries, default=0),
        "k8s_calls_per_tick": max(calls, default=0),
        "tick_ms": round(seconds / done * 1000, 1),
        "cpu_ms_per_tick": round(cpu / done * 1000, 1),
        "api_cpu_ms_per_tick": round(api_cpu / done * 1000, 1),
        "pss_mb": round(memory["pss"], 1),
        "api_pss_mb": round(memory.get("api_pss", 0.0), 1),
        "engine_pss_mb": round(memory.get("engine_pss", 0.0), 1),
        "rss_mb": round(memory["rss"], 1),
        "peak_rss_mb": round(memory["peak_rss"], 1),
        "ticks": int(count - count0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated rollout counts")
    parser.add_argument("--ticks", type=int, default=10, help="ticks to average over")
    parser.add_argument("--tick-seconds", type=float, default=2.0)
    parser.add_argument(
        "--profile", type=Path, help="directory for py-spy profiles of the guard (if installed)"
    )
    args = parser.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    rows = [
        measure(int(size), ticks=args.ticks, tick_seconds=args.tick_seconds, profile=args.profile)
        for size in args.sizes.split(",")
    ]
    emit("scale", rows, COLUMNS, tick_seconds=args.tick_seconds)


if __name__ == "__main__":
    main()
