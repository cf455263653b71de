"""Failover benchmark: two `guard serve` replicas on one PostgreSQL, one SIGKILLed mid-rollout.

Runs the simulated stack (Kubernetes API simulator, workloads, real Prometheus) with several
Deployments, two guard processes sharing a throwaway PostgreSQL (Debian's package), submits one
rolling rollout per Deployment, waits until both replicas drive some of them, kills one with
SIGKILL (as when its node dies) and measures, for each rollout it held: kill → the survivor's
first tick on it (its takeover, recorded in the rollout's history) and kill → the rollout
finished. The end-to-end test tests/e2e/test_replicas.py runs the same scenario.
`python -m bench.failover [--rollouts N] [--lease SECONDS]`; prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from guard.sim.guard_process import TERMINAL, GuardProcess
from guard.sim.postgres import PostgresServer
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile

OLD = "registry/checkout:1.4.1"
GOOD = "registry/checkout:1.4.2"
GOOD_PROFILE = TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25)


@dataclass
class FailoverResult:
    """What happened, per rollout, around the kill; times in seconds after it."""

    lease_seconds: float
    rollouts: int
    held_before_kill: dict[str, list[str]]  # replica id -> rollout ids it held
    victim: str
    survivor: str
    takeover_seconds: dict[str, float]  # orphaned rollout -> survivor's first tick on it
    finish_seconds: dict[str, float]  # orphaned rollout -> finished
    states: dict[str, str]  # every rollout -> its final state
    takeovers: dict[str, list[str]] = field(default_factory=dict)  # rollout -> takeover events
    images: dict[str, str] = field(default_factory=dict)  # Deployment -> image after the run
    # alert event -> (delivery status, attempts, times it reached the log receiver of either)
    alerts: dict[str, tuple[str, int, int]] = field(default_factory=dict)


def _replica_of(process: GuardProcess, replica_ids: set[str]) -> str | None:
    return next((r for r in replica_ids if f"-{process.pid}-" in r), None)


def _wait(what: str, check: Any, timeout: float, seen: Any = None) -> Any:
    """Poll `check` until it returns something; `seen()` describes the last state on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise TimeoutError(f"{what} not within {timeout:g}s; last seen: {seen() if seen else '?'}")


def _problems(replica: GuardProcess, lines: int = 30) -> str:
    """The replica's warnings and errors (its log is mostly the scheduler's chatter)."""
    text = replica.log_path.read_text(errors="replace") if replica.log_path.exists() else ""
    found = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    return "\n".join(line for line in found if "apscheduler" not in line)[-4000:]


def run_failover(
    workdir: Path,
    database_url: str,
    *,
    rollouts: int = 4,
    lease_seconds: float = 3.0,
    healthy_intervals: int = 8,
    timeout: float = 150.0,
) -> FailoverResult:
    """The scenario; raises TimeoutError (with the replicas' logs) if it does not play out."""
    names = ["checkout", *(f"checkout-{i}" for i in range(1, rollouts))]
    settings = StackSettings(
        replicas=2, profiles={GOOD: GOOD_PROFILE}, extra_deployments=tuple(names[1:])
    )
    with SimulatedStack(settings, workdir / "stack") as stack:
        config = stack.guard_config(
            workdir / "data", interval_seconds=1, healthy_intervals_to_promote=healthy_intervals
        )
        config["store"] = {"url": database_url, "lease_seconds": lease_seconds}
        config_path = workdir / "guard.yaml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        replicas = [GuardProcess(config_path, workdir / f"guard-{n}.log") for n in "ab"]
        try:
            for replica in replicas:
                replica.start()
            return _scenario(replicas, stack, names, lease_seconds, timeout)
        except TimeoutError as exc:
            logs = "\n".join(f"--- {r.log_path.name}\n{_problems(r)}" for r in replicas)
            raise TimeoutError(f"{exc}\n{logs}") from exc
        finally:
            for replica in replicas:
                replica.stop()


def _scenario(
    replicas: list[GuardProcess],
    stack: SimulatedStack,
    names: list[str],
    lease_seconds: float,
    timeout: float,
) -> FailoverResult:
    first = replicas[0]
    with first.client() as client:
        ids = []
        for name in names:
            body = {
                "namespace": stack.settings.namespace,
                "deployment": name,
                "images": {stack.settings.container: GOOD},
                "strategy": "rolling",
            }
            response = client.post("/v1/rollouts", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])

        last: list[tuple[str, str, int, Any]] = []

        def spread() -> dict[str, list[str]] | None:
            """Every rollout progressing, and both replicas holding some."""
            held: dict[str, list[str]] = {}
            last.clear()
            for rollout_id in ids:
                rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
                lease = rollout["details"].get("lease")
                last.append((rollout["state"], rollout["step"], len(rollout["decisions"]), lease))
                if rollout["state"] != "progressing" or not rollout["decisions"] or not lease:
                    return None
                held.setdefault(lease["replica"], []).append(rollout_id)
            return held if len(held) == len(replicas) else None

        held: dict[str, list[str]] = _wait(
            "rollouts spread over both replicas", spread, timeout, lambda: last
        )
    victim = replicas[1]
    survivor = replicas[0]
    victim_id = _replica_of(victim, set(held))
    survivor_id = _replica_of(survivor, set(held))
    assert victim_id is not None and survivor_id is not None, held
    killed_at = time.time()
    victim.kill()

    def finished() -> list[dict[str, Any]] | None:
        with survivor.client() as c:
            found = [c.get(f"/v1/rollouts/{rollout_id}").json() for rollout_id in ids]
        return found if all(r["state"] in TERMINAL for r in found) else None

    final: list[dict[str, Any]] = _wait("every rollout finished", finished, timeout)

    def delivered() -> list[dict[str, Any]] | None:
        with survivor.client() as c:
            found: list[dict[str, Any]] = c.get("/v1/alerts", params={"limit": 1000}).json()
        return found if all(a["status"] in ("sent", "failed") for a in found) else None

    deliveries: list[dict[str, Any]] = _wait("every alert delivered", delivered, timeout)
    logs = "".join(r.log_path.read_text(errors="replace") for r in replicas)
    result = FailoverResult(
        lease_seconds=lease_seconds,
        rollouts=len(ids),
        held_before_kill=held,
        victim=victim_id,
        survivor=survivor_id,
        takeover_seconds={},
        finish_seconds={},
        states={r["id"]: r["state"] for r in final},
        images={name: stack.images(name)[stack.settings.container] for name in names},
        alerts={
            a["event_id"]: (a["status"], a["attempts"], logs.count(f"alert {a['event_id']}: "))
            for a in deliveries
        },
    )
    for rollout in final:
        events = [h for h in rollout["details"]["history"] if "took over" in h["message"]]
        result.takeovers[rollout["id"]] = [h["message"] for h in events]
        if rollout["id"] in held[victim_id] and events:
            taken = datetime.fromisoformat(events[0]["at"]).timestamp()
            done = datetime.fromisoformat(rollout["timestamps"]["finished_at"]).timestamp()
            result.takeover_seconds[rollout["id"]] = round(taken - killed_at, 3)
            result.finish_seconds[rollout["id"]] = round(done - killed_at, 3)
    return result


def report(result: FailoverResult) -> tuple[str, dict[str, Any]]:
    """A table for people and one JSON line for machines."""
    takeovers = list(result.takeover_seconds.values())
    finishes = list(result.finish_seconds.values())
    lines = [
        f"two replicas, PostgreSQL, lease {result.lease_seconds:g} s, {result.rollouts} rollouts; "
        f"killed {result.victim} holding {len(result.held_before_kill[result.victim])}",
        f"{'rollout':<38} {'takeover s':>11} {'finished s':>11}",
    ]
    for rollout_id, seconds in result.takeover_seconds.items():
        finish = result.finish_seconds[rollout_id]
        lines.append(f"{rollout_id:<38} {seconds:>11.2f} {finish:>11.2f}")
    summary = {
        "bench": "failover",
        "replicas": 2,
        "backend": "postgresql",
        "lease_seconds": result.lease_seconds,
        "rollouts": result.rollouts,
        "orphaned": len(takeovers),
        "takeover_seconds_max": max(takeovers, default=None),
        "takeover_seconds_median": statistics.median(takeovers) if takeovers else None,
        "finish_seconds_max": max(finishes, default=None),
        "states": sorted(set(result.states.values())),
    }
    lines.append(
        f"{'max':<38} {summary['takeover_seconds_max'] or 0:>11.2f} "
        f"{summary['finish_seconds_max'] or 0:>11.2f}"
    )
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--lease", type=float, default=3.0, help="store.lease_seconds")
    args = parser.parse_args(argv)
    with PostgresServer() as postgres, tempfile.TemporaryDirectory() as tmp:
        result = run_failover(
            Path(tmp), postgres.create_database(), rollouts=args.rollouts, lease_seconds=args.lease
        )
    table, summary = report(result)
    print(table)
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
