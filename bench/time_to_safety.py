"""Time to safety: a fault injected into a running release, until traffic is back on the old one.

For each strategy (rolling, canary at its first step, blue-green after the switch) and each
scrape interval, a release starts healthy on a simulated cluster scraped by a real Prometheus;
once the guard is analysing it with the new version serving production traffic, the new image
turns bad (8 % errors, or p99 4 s). Reported, from fault onset:
  breach    the first analysis that judged the new version bad (scrape + rate window + tick),
  decision  the rollback decision (plus the escalation policy's consecutive intervals),
  verified  the guard verified the rollback (Kubernetes calls, pods becoming ready, next tick),
  traffic   the simulated load balancer sends the bad version nothing (observed independently).
Target: verified within 3 scrape intervals + 5 s.
`python -m bench.time_to_safety [--scrapes 1,5] [--faults errors,latency] [--strategies ...]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.common import emit
from guard.sim.guard_process import TERMINAL, GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile

HEALTHY = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25)
FAULTS = {
    "errors": TrafficProfile(error_rate=0.08, latency_p50_seconds=0.07, latency_p99_seconds=0.25),
    "latency": TrafficProfile(error_rate=0.002, latency_p50_seconds=1.5, latency_p99_seconds=4.0),
}
STRATEGIES = ("rolling", "canary", "bluegreen")
COLUMNS = (
    "strategy",
    "scrape_s",
    "fault",
    "outcome",
    "breach_s",
    "decision_s",
    "verified_s",
    "traffic_s",
    "target_s",
    "met",
)


@dataclass(frozen=True)
class Case:
    strategy: str
    scrape: float
    fault: str
    image: str


def _config(stack: SimulatedStack, workdir: Path, strategy: str, scrape: float) -> Path:
    """Analysis every scrape interval over a window of two (the floor for a rate), and
    releases that never finish on their own, so the fault always meets a running release."""
    config = stack.guard_config(
        workdir / "data",
        interval_seconds=scrape,
        window_seconds=2 * scrape,
        healthy_intervals_to_promote=2 if strategy == "bluegreen" else 1000,
    )
    config["scheduler"]["tick_seconds"] = min(0.5, scrape / 2)
    config["services"] = {
        "checkout": {
            "canary": {"steps": [25, 50], "intervals_per_step": 1000},
            "bluegreen": {"post_promotion_intervals": 1000, "scale_down_delay_seconds": 600},
        }
    }
    path = workdir / f"guard-{strategy}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


RUNNING_STEP = {"rolling": "analysing", "canary": "step 1/", "bluegreen": "post-promotion"}


def _running(rollout: dict[str, Any], strategy: str) -> bool:
    """The new version serves production traffic (rolling: the update is complete; canary:
    its first step; blue-green: after the switch) and was judged healthy there."""
    decisions = rollout.get("decisions") or []
    step = rollout.get("step", "")
    return (
        rollout.get("state") == "progressing"
        and step.startswith(RUNNING_STEP[strategy])
        and bool(decisions)
        and decisions[-1]["verdict"] == "continue"
        and decisions[-1]["step"] == step
    )


def _seconds(stamp: str | None, origin: datetime) -> float | None:
    if not stamp:
        return None
    return round((datetime.fromisoformat(stamp) - origin).total_seconds(), 2)


def run_case(stack: SimulatedStack, guard: GuardProcess, case: Case) -> dict[str, Any]:
    assert stack.workload is not None
    stack.set_profile(case.image, HEALTHY)
    body = {"namespace": "shop", "deployment": "checkout", "strategy": case.strategy,
            "images": {"checkout": case.image}}  # fmt: skip
    row: dict[str, Any] = {"strategy": case.strategy, "scrape_s": case.scrape, "fault": case.fault}
    with guard.client() as client:
        created = client.post("/v1/rollouts", json=body)
        created.raise_for_status()
        rollout_id = created.json()["id"]
        deadline = time.monotonic() + 180
        rollout: dict[str, Any] = created.json()
        while not _running(rollout, case.strategy):
            if time.monotonic() > deadline or rollout.get("state") not in (
                "pending",
                "progressing",
            ):
                return {**row, "outcome": f"not running: {rollout.get('state')}"}
            time.sleep(0.1)
            rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
        onset = datetime.now(UTC)
        stack.set_profile(case.image, FAULTS[case.fault])
        traffic: float | None = None
        while time.monotonic() < deadline:
            if traffic is None and stack.workload.rate_to(case.image) == 0:
                traffic = (datetime.now(UTC) - onset).total_seconds()
            rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
            if rollout["state"] in TERMINAL and traffic is not None:
                break
            time.sleep(0.05)
    stamps = rollout["timestamps"]
    breaches = [d["at"] for d in rollout["decisions"] if d["severity"] != "none"]
    breaches = [b for b in breaches if datetime.fromisoformat(b) >= onset]
    verified = _seconds(stamps.get("rollback_verified_at"), onset)
    target = 3 * case.scrape + 5
    return {
        **row,
        "outcome": rollout["state"],
        "breach_s": _seconds(min(breaches), onset) if breaches else None,
        "decision_s": _seconds(stamps.get("rollback_started_at"), onset),
        "verified_s": verified,
        "traffic_s": round(traffic, 2) if traffic is not None else None,
        "target_s": target,
        "met": verified is not None and traffic is not None and max(verified, traffic) <= target,
    }


def measure(scrape: float, strategies: list[str], faults: list[str]) -> list[dict[str, Any]]:
    """One stack per scrape interval; one guard per strategy; a new image per case."""
    rows = []
    settings = StackSettings(scrape_interval_seconds=scrape)
    with tempfile.TemporaryDirectory(prefix="guard-tts-") as tmp:
        workdir = Path(tmp)
        with SimulatedStack(settings, workdir / "stack") as stack:
            for s_index, strategy in enumerate(strategies):
                path = _config(stack, workdir, strategy, scrape)
                with GuardProcess(
                    path, workdir / f"guard-{strategy}.log", start_timeout=120
                ) as guard:
                    for f_index, fault in enumerate(faults):
                        image = f"registry/checkout:2.{s_index}.{f_index}"
                        rows.append(run_case(stack, guard, Case(strategy, scrape, fault, image)))
                        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", default="1,5", help="scrape intervals in seconds")
    parser.add_argument("--faults", default="errors,latency")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    args = parser.parse_args(argv)
    rows = [
        row
        for scrape in args.scrapes.split(",")
        for row in measure(float(scrape), args.strategies.split(","), args.faults.split(","))
    ]
    emit("time_to_safety", rows, COLUMNS)


if __name__ == "__main__":
    main()
