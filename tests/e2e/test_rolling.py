"""A guarded rolling update end to end: real PromQL decides, the simulator's cluster obeys."""

from __future__ import annotations

from datetime import datetime

from guard.sim.guard_process import GuardProcess
from guard.sim.kubeapi import ImageBehaviour
from guard.sim.stack import SimulatedStack

from .conftest import BAD, BROKEN, GOOD, SLOW, submit


def _at(rollout: dict[str, object], name: str) -> datetime:
    stamps = rollout["timestamps"]
    assert isinstance(stamps, dict) and stamps[name], f"{name} missing in {stamps}"
    return datetime.fromisoformat(stamps[name])


def test_good_release_is_promoted(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout = guard.wait_for(submit(guard, GOOD)["id"])

    assert rollout["state"] == "promoted", rollout["message"]
    assert stack.images() == {"checkout": GOOD}
    verdicts = [d["verdict"] for d in rollout["decisions"]]
    assert verdicts[-1] == "promote"
    assert "rollback" not in verdicts
    healthy = [d for d in rollout["decisions"] if d["verdict"] in ("continue", "promote")]
    evidence = {e["metric"]: e for e in healthy[-1]["evidence"]}
    assert evidence["error_rate"]["value"] < 0.01
    new_hash = rollout["details"]["candidate_hash"]
    assert evidence["error_rate"]["query"] == (
        "sum by (namespace, pod_template_hash) (increase(http_requests_total"
        f'{{namespace="shop",pod_template_hash="{new_hash}",code=~"5.."}}[5s]))'
    )
    assert evidence["error_rate"]["sample_count"] >= 20
    assert evidence["error_rate"]["bound"] < 0.01
    assert evidence["error_rate"]["window_seconds"] == 5
    assert _at(rollout, "started_at") <= _at(rollout, "finished_at")


def test_bad_release_is_rolled_back_and_verified(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout = guard.wait_for(submit(guard, BAD)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    assert rollout["outcome_reason"] == "analysis"
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert rollback["severity"] in ("critical", "high")
    error_rate = next(e for e in rollback["evidence"] if e["metric"] == "error_rate")
    assert error_rate["value"] > 0.05
    assert error_rate["bound"] > error_rate["threshold"] >= 0.02
    assert error_rate["sample_count"] >= 20
    versus = next(e for e in rollback["evidence"] if e["metric"] == "error_rate_vs_baseline")
    assert versus["p_value"] < 0.001
    first_bad = _at(rollout, "first_bad_sample_at")
    assert first_bad <= _at(rollout, "rollback_started_at") <= _at(rollout, "rollback_verified_at")
    assert _at(rollout, "rollback_verified_at") <= _at(rollout, "finished_at")
    stack.wait_complete(timeout=5)


def test_slow_release_is_rolled_back_on_latency(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout = guard.wait_for(submit(guard, SLOW)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    latency = next(e for e in rollback["evidence"] if e["metric"] == "latency")
    assert latency["value"] > latency["threshold"] >= 2.0


def test_pods_never_ready_roll_back_on_progress_deadline(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    stack.set_image_behaviour(BROKEN, ImageBehaviour(ready_delay_seconds=0.5, broken=True))

    rollout = guard.wait_for(submit(guard, BROKEN)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    assert rollout["outcome_reason"] == "progress_deadline"
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert rollback["evidence"][0]["metric"] == "progress_deadline"
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}
    assert _at(rollout, "rollback_verified_at")
