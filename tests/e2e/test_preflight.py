"""Go/no-go before anything changes, for every strategy: freeze windows, a stable in trouble."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack
from guard.sim.workload import TrafficProfile

from .conftest import GOOD, OLD, QUICK_BLUEGREEN, ROUTER, submit, write_config

# (strategy, request extras, per-service config, stack fixture)
VARIANTS = {
    "canary": ("canary", {"steps": [50]}, {}, "stack"),
    "canary-httproute": ("canary", {"steps": [50]}, ROUTER, "route_stack"),
    "bluegreen": ("bluegreen", {}, QUICK_BLUEGREEN, "stack"),
}


def _untouched(stack: SimulatedStack) -> None:
    assert stack.images() == {"checkout": OLD}
    for name in ("checkout-canary", "checkout-green"):
        assert stack.kube.get("apps/v1", "Deployment", "shop", name) is None
    service = stack.kube.get("v1", "Service", "shop", "checkout")
    assert service is not None and service["spec"]["selector"] == {"app": "checkout"}


def _variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    strategy, extra, services, fixture = VARIANTS[request.param]
    return strategy, extra, services, request.getfixturevalue(fixture)


@pytest.fixture(params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], dict[str, Any], Any]:
    return _variant(request)


def test_freeze_window_refuses_and_an_override_admits(
    variant: tuple[str, dict[str, Any], dict[str, Any], SimulatedStack], tmp_path: Path
) -> None:
    strategy, extra, services, stack = variant
    now = datetime.now(UTC)
    window = {
        "name": "black-friday",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    path = write_config(stack, tmp_path, services=services, freeze_windows=[window])
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        refused = guard.wait_for(submit(guard, GOOD, strategy=strategy, **extra)["id"])

        assert refused["state"] == "refused"
        assert refused["outcome_reason"] == "preflight:freeze"
        assert "black-friday" in refused["message"] and "until" in refused["message"]
        _untouched(stack)

        reason = "hotfix for INC-4711"
        admitted = guard.wait_for(
            submit(guard, GOOD, strategy=strategy, override_freeze=reason, **extra)["id"]
        )
    assert admitted["state"] == "promoted", admitted["message"]
    assert admitted["details"]["freeze_override"] == f"black-friday: {reason}"
    assert "overridden" in admitted["decisions"][0]["summary"]


def test_stable_already_breaching_refuses_the_start(
    variant: tuple[str, dict[str, Any], dict[str, Any], SimulatedStack], tmp_path: Path
) -> None:
    strategy, extra, services, stack = variant
    assert stack.prometheus is not None
    stack.set_profile(OLD, TrafficProfile(error_rate=0.2))
    stack.prometheus.wait_for_series(
        'sum(rate(http_requests_total{namespace="shop",code="500"}[5s]))'
        ' / sum(rate(http_requests_total{namespace="shop"}[5s])) > 0.1',
        timeout=30,
    )
    path = write_config(stack, tmp_path, services=services)
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        refused = guard.wait_for(submit(guard, GOOD, strategy=strategy, **extra)["id"])

    assert refused["state"] == "refused"
    assert refused["outcome_reason"] == "preflight:stable_breaching"
    decision = refused["decisions"][0]
    assert decision["verdict"] == "refuse" and decision["severity"] == "critical"
    assert any(e["metric"] == "error_rate" and e["value"] > 0.05 for e in decision["evidence"])
    _untouched(stack)
