"""`guard demo`: one good and one bad release on a simulated cluster, judged by real Prometheus.

It runs the same pieces a production guard runs (the `guard serve` process, the official
Kubernetes client, PromQL against a real Prometheus); only the cluster and the pods are simulated.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile

GOOD = "registry/checkout:1.4.2"
BAD = "registry/checkout:1.4.3"


def run_demo(*, scrape_interval: float, analysis_interval: float) -> int:
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp:
        workdir = Path(tmp)
        settings = StackSettings(
            scrape_interval_seconds=scrape_interval,
            profiles={
                GOOD: TrafficProfile(
                    error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25
                ),
                BAD: TrafficProfile(
                    error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3
                ),
            },
        )
        _say("starting the Kubernetes API simulator, a simulated workload and Prometheus ...")
        with SimulatedStack(settings, workdir / "stack") as stack:
            assert stack.prometheus is not None
            _say(f"  Prometheus {stack.prometheus_url}, scrape interval {scrape_interval:g}s")
            _say(f"  shop/checkout: {settings.replicas} replicas of {settings.image}, 200 req/s")
            config = stack.write_guard_config(
                workdir / "guard.yaml", workdir / "data", interval_seconds=analysis_interval
            )
            with GuardProcess(config, workdir / "guard.log") as guard:
                _say(f"  guard serving on {guard.url} (analysis every {analysis_interval:g}s)\n")
                good = _release(guard, GOOD, "good release: 0.2 % errors")
                bad = _release(guard, BAD, "bad release: 8 % errors")
        ok = good["state"] == "promoted" and bad["state"] == "rolled_back"
        _say("demo " + ("passed" if ok else "did NOT go as expected"))
        return 0 if ok else 1


def _release(guard: GuardProcess, image: str, title: str) -> dict[str, Any]:
    _say(f"=== {title}: guard deploy --image checkout={image} --wait")
    command = [
        sys.executable, "-m", "guard", "deploy", "--namespace", "shop", "--deployment", "checkout",
        "--image", f"checkout={image}", "--strategy", "rolling", "--commit-sha", "9f2c1e7",
        "--commit-time", datetime.now().astimezone().isoformat(timespec="seconds"),
        "--wait", "--server", guard.url,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in completed.stdout.splitlines():
        _say(f"  | {line}")
    _say(f"  guard deploy exited {completed.returncode}")
    rollout_id = completed.stdout.split()[1]
    with guard.client() as client:
        rollout: dict[str, Any] = client.get(f"/v1/rollouts/{rollout_id}").json()
    _print_trail(rollout)
    return rollout


def _print_trail(rollout: dict[str, Any]) -> None:
    _say(f"  outcome: {rollout['state']}  ({rollout['message']})")
    _say("  decision trail:")
    for decision in rollout["decisions"]:
        _say(f"    {decision['at'][11:23]} {decision['verdict']:<12} {decision['summary']}")
        for item in decision["evidence"]:
            if item.get("query"):
                _say(
                    f"        {item['metric']}={_fmt(item.get('value'))} "
                    f"threshold={_fmt(item.get('threshold'))} "
                    f"samples={_fmt(item.get('sample_count'))} "
                    f"window={_fmt(item.get('window_seconds'))}s"
                )
    stamps = rollout["timestamps"]
    first_bad, verified = stamps.get("first_bad_sample_at"), stamps.get("rollback_verified_at")
    if first_bad and verified:
        started = datetime.fromisoformat(stamps["rollback_started_at"])
        decided = (started - datetime.fromisoformat(first_bad)).total_seconds()
        total = (
            datetime.fromisoformat(verified) - datetime.fromisoformat(first_bad)
        ).total_seconds()
        _say(f"  first bad sample -> rollback started: {decided:.1f}s")
        _say(f"  first bad sample -> rollback verified: {total:.1f}s")
    _say("")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _say(line: str) -> None:
    print(line, flush=True)
