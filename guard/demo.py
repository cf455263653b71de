"""`guard demo`: a good and a bad release per strategy on a simulated cluster, judged by Prometheus.

It runs the same pieces a production guard runs (the `guard serve` process, the official
Kubernetes client, PromQL against a real Prometheus); only the cluster and the pods are simulated.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from alerts.base import AlertEvent
from alerts.text import evidence_line, title
from alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from guard.models import Evidence
from guard.sim.guard_process import GuardProcess
from guard.sim.receiver import AlertReceiver
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


EXPECTED_ALERTS = {
    "promoted": ["promoted"],
    "rolled_back": ["rollback_started", "rollback_verified"],
}


def run_demo(*, scrape_interval: float, analysis_interval: float) -> int:
    with tempfile.TemporaryDirectory(prefix="guard-demo-") as tmp:
        workdir = Path(tmp)
        settings = StackSettings(
            scrape_interval_seconds=scrape_interval,
            profiles={r.image: GOOD_PROFILE if r.good else BAD_PROFILE for r in RELEASES},
        )
        _say("starting the Kubernetes API simulator, a simulated workload and Prometheus ...")
        with SimulatedStack(settings, workdir / "stack") as stack, AlertReceiver() as hook:
            assert stack.prometheus is not None
            _say(f"  Prometheus {stack.prometheus_url}, scrape interval {scrape_interval:g}s")
            _say(f"  shop/checkout: {settings.replicas} replicas of {settings.image}, 200 req/s")
            _say(f"  on-call webhook (signed alerts) listening on {hook.url}/alerts")
            key = secrets.token_hex(16)
            path = _write_config(stack, workdir, hook, key, analysis_interval)
            with GuardProcess(path, workdir / "guard.log") as guard:
                _say(f"  guard serving on {guard.url} (analysis every {analysis_interval:g}s)\n")
                outcomes = []
                alerted = True
                for release in RELEASES:
                    rollout = _release(guard, release)
                    alerted = _print_alerts(hook, key, rollout) and alerted
                    outcomes.append((release, rollout))
        ok = alerted and all(
            o["state"] == ("promoted" if r.good else "rolled_back") for r, o in outcomes
        )
        _summary(outcomes)
        _say("demo " + ("passed" if ok else "did NOT go as expected"))
        return 0 if ok else 1


def _write_config(
    stack: SimulatedStack, workdir: Path, hook: AlertReceiver, key: str, interval: float
) -> Path:
    """The stack's guard config plus one signed webhook receiver; the key stays in a file."""
    key_file = workdir / "webhook.key"
    key_file.write_text(key, encoding="utf-8")
    config = stack.guard_config(workdir / "data", interval_seconds=interval)
    config["services"] = DEMO_SERVICES
    config["alerts"] = {
        "receivers": {
            "oncall": {
                "type": "webhook",
                "url": f"{hook.url}/alerts",
                "hmac_key_file": str(key_file),
            }
        },
        "delivery": {"poll_seconds": 0.2},
    }
    path = workdir / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _print_alerts(hook: AlertReceiver, key: str, rollout: dict[str, Any]) -> bool:
    """Wait for the alerts this outcome should raise; print them as on-call received them."""
    expected = EXPECTED_ALERTS.get(rollout["state"], [])

    def mine(requests: list[Any]) -> list[dict[str, Any]]:
        bodies = [json.loads(r.body) for r in requests]
        return [b for b in bodies if b.get("rollout_id") == rollout["id"]]

    deadline = time.monotonic() + 30
    while len(mine(hook.requests())) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    _say("  alerts received by the on-call webhook:")
    received = []
    for request in hook.requests():
        body = json.loads(request.body)
        if body.get("rollout_id") != rollout["id"]:
            continue
        received.append(body["kind"])
        headers = {k.lower(): v for k, v in request.headers.items()}
        signed = verify(
            key, headers[TIMESTAMP_HEADER.lower()], request.body, headers[SIGNATURE_HEADER.lower()]
        )
        _say(
            f"    alert {body['kind']:<18} ({'signature verified' if signed else 'BAD SIGNATURE'})"
        )
        _say(f"        {_title_of(body)}")
        decision = body.get("decision") or {}
        for item in decision.get("evidence", []):
            if item.get("query"):
                _say(f"        evidence: {evidence_line(Evidence.model_validate(item))}")
        _say(f"        guard action: {body['action']}")
        _say(f"        outcome: {body['outcome']}")
        if body.get("rollback_seconds") is not None:
            _say(f"        rollback took {body['rollback_seconds']:.1f}s")
    _say("")
    return received == expected


def _title_of(body: dict[str, Any]) -> str:
    event = AlertEvent.model_validate(
        {k: v for k, v in body.items() if k not in ("schema", "status")}
    )
    return f"{title(event)}: {event.summary}"


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
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False, env=guard.env()
    )
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
