"""Go/no-go before anything changes: freeze windows and a stable version already in trouble."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack
from guard.sim.workload import TrafficProfile

from .conftest import GOOD, OLD, submit


@pytest.fixture
def frozen_guard(stack: SimulatedStack, tmp_path: Path) -> Iterator[GuardProcess]:
    config = stack.guard_config(tmp_path / "data", interval_seconds=1)
    now = datetime.now(UTC)
    config["freeze_windows"] = [
        {
            "name": "black-friday",
            "start": (now - timedelta(hours=1)).isoformat(),
            "end": (now + timedelta(hours=1)).isoformat(),
        }
    ]
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with GuardProcess(path, tmp_path / "guard.log") as process:
        yield process


def test_freeze_window_refuses_and_an_override_admits(
    stack: SimulatedStack, frozen_guard: GuardProcess
) -> None:
    refused = frozen_guard.wait_for(submit(frozen_guard, GOOD, strategy="canary")["id"])

    assert refused["state"] == "refused"
    assert refused["outcome_reason"] == "preflight:freeze"
    assert "black-friday" in refused["message"] and "until" in refused["message"]
    assert stack.images() == {"checkout": OLD}
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-canary") is None

    admitted = frozen_guard.wait_for(
        submit(
            frozen_guard,
            GOOD,
            strategy="canary",
            steps=[50],
            override_freeze="hotfix for INC-4711",
        )["id"]
    )
    assert admitted["state"] == "promoted", admitted["message"]
    assert admitted["details"]["freeze_override"] == "black-friday: hotfix for INC-4711"
    assert "overridden" in admitted["decisions"][0]["summary"]


def test_stable_already_breaching_refuses_the_start(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    assert stack.prometheus is not None
    stack.set_profile(OLD, TrafficProfile(error_rate=0.2))
    stack.prometheus.wait_for_series(
        'sum(rate(http_requests_total{namespace="shop",code="500"}[5s]))'
        ' / sum(rate(http_requests_total{namespace="shop"}[5s])) > 0.1',
        timeout=30,
    )

    refused = guard.wait_for(submit(guard, GOOD, strategy="canary")["id"])

    assert refused["state"] == "refused"
    assert refused["outcome_reason"] == "preflight:stable_breaching"
    decision = refused["decisions"][0]
    assert decision["verdict"] == "refuse" and decision["severity"] == "critical"
    assert any(e["metric"] == "error_rate" and e["value"] > 0.05 for e in decision["evidence"])
    assert stack.images() == {"checkout": OLD}
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-canary") is None
