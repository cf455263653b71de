"""Canary through a Gateway API HTTPRoute: exact weights, traffic split by the route."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings

from .conftest import BAD, GOOD, OLD, PROFILES, submit

CANARY = {"strategy": "canary", "steps": [10, 100]}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SimulatedStack]:
    settings = StackSettings(profiles=dict(PROFILES), route=True, requests_per_second=400)
    with SimulatedStack(settings, tmp_path / "stack") as running:
        yield running


@pytest.fixture
def guard(stack: SimulatedStack, tmp_path: Path) -> Iterator[GuardProcess]:
    config: dict[str, Any] = stack.guard_config(
        tmp_path / "data", interval_seconds=1, healthy_intervals_to_promote=2
    )
    config["services"] = {"checkout": {"router": {"httproute": "checkout"}}}
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with GuardProcess(path, tmp_path / "guard.log") as process:
        yield process


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
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout_id = submit(guard, GOOD, **CANARY)["id"]
    deadline = time.monotonic() + 30
    while _backends(stack) != {"checkout": 90, "checkout-canary": 10}:
        assert time.monotonic() < deadline, _backends(stack)
        time.sleep(0.1)

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "promoted", rollout["message"]
    weights = rollout["details"]["effective_weights"]
    assert [(w["weight"], w["effective_weight"]) for w in weights] == [(10, 10.0), (100, 100.0)]
    _clean(stack, GOOD)


def test_bad_release_weight_back_to_zero_and_verified(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout = guard.wait_for(submit(guard, BAD, **CANARY)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    assert rollout["timestamps"]["rollback_verified_at"]
    _clean(stack, OLD)
    assert stack.workload is not None
    assert {p.image for p in stack.workload.pods() if p.serving} == {OLD}
