"""Canary by replica ratio end to end: real PromQL judges the canary pods step by step."""

from __future__ import annotations

import time
from typing import Any

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, OLD, submit

CANARY = {"strategy": "canary", "steps": [25, 50]}


def _wait_step(guard: GuardProcess, rollout_id: str, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with guard.client() as client:
        while time.monotonic() < deadline:
            rollout: dict[str, Any] = client.get(f"/v1/rollouts/{rollout_id}").json()
            if rollout["step"].startswith(prefix):
                return
            time.sleep(0.2)
    raise TimeoutError(f"rollout never reached step {prefix!r}: {rollout}")


def _no_canary_left(stack: SimulatedStack, timeout: float = 15.0) -> None:
    """The canary Deployment is gone, and its pods follow (garbage collection deletes them after
    the Deployment, as in a cluster)."""
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-canary") is None
    deadline = time.monotonic() + timeout
    while True:
        pods = stack.kube.list("v1", "Pod", "shop", "app=checkout")
        left = [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["name"].startswith("checkout-canary")
        ]
        if pods and not left:
            return
        assert time.monotonic() < deadline, f"canary pods still listed: {left}"
        time.sleep(0.1)


def test_good_release_is_promoted_through_every_step(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout = guard.wait_for(submit(guard, GOOD, **CANARY)["id"])

    assert rollout["state"] == "promoted", rollout["message"]
    weights = rollout["details"]["effective_weights"]
    assert [w["weight"] for w in weights] == [25, 50]
    assert [w["effective_weight"] for w in weights] == [20.0, 50.0]  # 1 of 5, 4 of 8 pods
    assert [w["canary_replicas"] for w in weights] == [1, 4]
    steps = {d["step"].split(":")[0] for d in rollout["decisions"] if d["verdict"] == "continue"}
    assert {"step 1/2", "step 2/2"} <= steps
    queries = [
        e["query"] or ""
        for d in rollout["decisions"]
        if d["step"].startswith("step 1/2")
        for e in d["evidence"]
        if e["metric"] == "error_rate"
    ]
    stable_hash = rollout["details"]["stable_hash"]
    assert queries and "pod_template_hash=" in queries[0] and stable_hash not in queries[0]
    assert stack.images() == {"checkout": GOOD}
    stack.wait_complete(timeout=10)
    _no_canary_left(stack)


def test_bad_release_is_rolled_back_with_traffic_on_stable(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout = guard.wait_for(submit(guard, BAD, **CANARY)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert rollback["severity"] in ("critical", "high")  # high needs two intervals in a row
    assert (
        rollout["timestamps"]["first_bad_sample_at"]
        <= rollout["timestamps"]["rollback_verified_at"]
    )
    assert stack.images() == {"checkout": OLD}
    _no_canary_left(stack)
    assert stack.workload is not None
    assert {p.image for p in stack.workload.pods() if p.serving} == {OLD}


def test_abort_mid_step_records_who_and_why(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout_id = submit(guard, GOOD, **CANARY)["id"]
    _wait_step(guard, rollout_id, "step 1/2")
    with guard.client() as client:
        body = {"actor": "alice", "reason": "customer escalation"}
        assert client.post(f"/v1/rollouts/{rollout_id}/abort", json=body).status_code == 200

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "aborted"
    assert any("alice: customer escalation" in d["summary"] for d in rollout["decisions"])
    assert stack.images() == {"checkout": OLD}
    _no_canary_left(stack)


def test_guard_restarted_mid_step_resumes(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout_id = submit(guard, GOOD, **CANARY)["id"]
    _wait_step(guard, rollout_id, "step 1/2")

    guard.kill()
    guard.start()

    rollout = guard.wait_for(rollout_id)
    assert rollout["state"] == "promoted", rollout["message"]
    assert stack.images() == {"checkout": GOOD}
    _no_canary_left(stack)
