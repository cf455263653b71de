"""`guard demo`: a good and a bad release per strategy on a simulated cluster, judged by Prometheus.

It runs the same pieces a production guard runs (the `guard serve` process, the official
Kubernetes client, PromQL against a real Prometheus); only the cluster and the pods are simulated.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile

GOOD_PROFILE = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25)
BAD_PROFILE = TrafficProfile(error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3)


@dataclass(frozen=True)
class Release:
    strategy: str
    image: str
    good: bool
    extra: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        kind = "good release: 0.2 % errors" if self.good else "bad release: 8 % errors"
        return f"{self.strategy}, {kind}"


RELEASES = (
    Release("rolling", "registry/checkout:1.4.2", good=True),
    Release("rolling", "registry/checkout:1.4.3", good=False),
    Release("canary", "registry/checkout:1.5.0", good=True, extra=("--steps", "25,50")),
    Release("canary", "registry/checkout:1.5.1", good=False, extra=("--steps", "25,50")),
    Release("bluegreen", "registry/checkout:1.6.0", good=True),
    Release("bluegreen", "registry/checkout:1.6.1", good=False),
)
# Blue-green: a short post-promotion window and scale-down delay keep the demo brisk.
DEMO_SERVICES = {
    "checkout": {"bluegreen": {"post_promotion_intervals": 2, "scale_down_delay_seconds": 2}}
}


def run_demo(*, scrape_interval: float, analysis_interval: float) -> int:
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp:
        workdir = Path(tmp)
        settings = StackSettings(
            scrape_interval_seconds=scrape_interval,
            profiles={r.image: GOOD_PROFILE if r.good else BAD_PROFILE for r in RELEASES},
        )
        _say("starting the Kubernetes API simulator, a simulated workload and Prometheus ...")
        with SimulatedStack(settings, workdir / "stack") as stack:
            assert stack.prometheus is not None
            _say(f"  Prometheus {stack.prometheus_url}, scrape interval {scrape_interval:g}s")
            _say(f"  shop/checkout: {settings.replicas} replicas of {settings.image}, 200 req/s")
            config = stack.guard_config(workdir / "data", interval_seconds=analysis_interval)
            config["services"] = DEMO_SERVICES
            path = workdir / "guard.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            with GuardProcess(path, workdir / "guard.log") as guard:
                _say(f"  guard serving on {guard.url} (analysis every {analysis_interval:g}s)\n")
                outcomes = [(r, _release(guard, r)) for r in RELEASES]
        ok = all(o["state"] == ("promoted" if r.good else "rolled_back") for r, o in outcomes)
        _summary(outcomes)
        _say("demo " + ("passed" if ok else "did NOT go as expected"))
        return 0 if ok else 1


def _summary(outcomes: list[tuple[Release, dict[str, Any]]]) -> None:
    _say("=== time from the first bad sample to a verified rollback, per strategy")
    for release, rollout in outcomes:
        if not release.good:
            stamps = rollout["timestamps"]
            total = _seconds(stamps.get("first_bad_sample_at"), stamps.get("rollback_verified_at"))
            shown = f"{total:.1f}s" if total is not None else "-"
            _say(f"  {release.strategy:<10} {shown}  ({rollout['state']})")
    _say("")


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _release(guard: GuardProcess, release: Release) -> dict[str, Any]:
    image = release.image
    _say(f"=== {release.title}: guard deploy --strategy {release.strategy} --image ... --wait")
    command = [
        sys.executable, "-m", "guard", "deploy", "--namespace", "shop", "--deployment", "checkout",
        "--image", f"checkout={image}", "--strategy", release.strategy, *release.extra,
        "--commit-sha", "9f2c1e7",
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
    first_bad = stamps.get("first_bad_sample_at")
    decided = _seconds(first_bad, stamps.get("rollback_started_at"))
    total = _seconds(first_bad, stamps.get("rollback_verified_at"))
    if decided is not None and total is not None:
        _say(f"  first bad sample -> rollback started: {decided:.1f}s")
        _say(f"  first bad sample -> rollback verified: {total:.1f}s")
    _say("")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _say(line: str) -> None:
    print(line, flush=True)
