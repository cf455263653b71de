"""Canary through a Gateway API HTTPRoute: exact weights, traffic split by the route."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, OLD, ROUTER, submit, write_config

CANARY = {"strategy": "canary", "steps": [10, 100]}


@pytest.fixture
def guard(route_stack: SimulatedStack, tmp_path: Path) -> Iterator[GuardProcess]:
    with GuardProcess(
        write_config(route_stack, tmp_path, services=ROUTER), tmp_path / "g.log"
    ) as g:
        yield g


def _backends(stack: SimulatedStack) -> dict[str, int]:
    route = stack.kube.get("gateway.networking.k8s.io/v1", "HTTPRoute", "shop", "checkout")
    assert route is not None
    refs = route["spec"]["rules"][0]["backendRefs"]
    return {r["name"]: r.get("weight", 1) for r in refs}


def _clean(stack: SimulatedStack, image: str) -> None:
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-canary") is None
    assert stack.kube.get("v1", "Service", "shop", "checkout-canary") is None
    assert list(_backends(stack)) == ["checkout"]
    service = stack.kube.get("v1", "Service", "shop", "checkout")
    assert service is not None and service["spec"]["selector"] == {"app": "checkout"}
    assert stack.images() == {"checkout": image}


def test_weights_are_set_exactly_and_the_release_promoted(
    route_stack: SimulatedStack, guard: GuardProcess
) -> None:
    stack = route_stack
    rollout_id = submit(guard, GOOD, **CANARY)["id"]
    _wait_backends(stack, {"checkout": 90, "checkout-canary": 10})

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "promoted", rollout["message"]
    weights = rollout["details"]["effective_weights"]
    assert [(w["weight"], w["effective_weight"]) for w in weights] == [(10, 10.0), (100, 100.0)]
    _clean(stack, GOOD)


def test_bad_release_weight_back_to_zero_and_verified(
    route_stack: SimulatedStack, guard: GuardProcess
) -> None:
    stack = route_stack
    rollout = guard.wait_for(submit(guard, BAD, **CANARY)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    assert rollout["timestamps"]["rollback_verified_at"]
    _clean(stack, OLD)
    assert stack.workload is not None
    assert {p.image for p in stack.workload.pods() if p.serving} == {OLD}


def test_abort_mid_step_after_a_restart_mid_step(
    route_stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout_id = submit(guard, GOOD, strategy="canary", steps=[10, 50, 100])["id"]
    _wait_backends(route_stack, {"checkout": 90, "checkout-canary": 10})
    guard.kill()
    guard.start()
    _wait_backends(route_stack, {"checkout": 50, "checkout-canary": 50})
    with guard.client() as client:
        body = {"actor": "dave", "reason": "pager went off"}
        assert client.post(f"/v1/rollouts/{rollout_id}/abort", json=body).status_code == 200

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "aborted", rollout["message"]
    assert any("dave: pager went off" in d["summary"] for d in rollout["decisions"])
    _clean(route_stack, OLD)


def _wait_backends(stack: SimulatedStack, weights: dict[str, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _backends(stack) != weights:
        assert time.monotonic() < deadline, _backends(stack)
        time.sleep(0.1)
