"""End-to-end fixtures: real Prometheus, the Kubernetes API simulator, `guard serve` running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack, StackSettings
from guard.sim.workload import TrafficProfile

OLD = "registry/checkout:1.4.1"
GOOD = "registry/checkout:1.4.2"
BAD = "registry/checkout:1.4.3"
SLOW = "registry/checkout:1.4.4"
BROKEN = "registry/checkout:1.4.5"

PROFILES = {
    GOOD: TrafficProfile(error_rate=0.002, latency_p50_seconds=0.07, latency_p99_seconds=0.25),
    BAD: TrafficProfile(error_rate=0.08, latency_p50_seconds=0.08, latency_p99_seconds=0.3),
    SLOW: TrafficProfile(error_rate=0.002, latency_p50_seconds=1.5, latency_p99_seconds=4.0),
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[SimulatedStack]:
    settings = StackSettings(profiles=dict(PROFILES), progress_deadline_seconds=4)
    with SimulatedStack(settings, tmp_path / "stack") as running:
        yield running


@pytest.fixture
def route_stack(tmp_path: Path) -> Iterator[SimulatedStack]:
    """Production traffic enters through an HTTPRoute 'checkout' with one backend."""
    settings = StackSettings(profiles=dict(PROFILES), route=True, requests_per_second=400)
    with SimulatedStack(settings, tmp_path / "stack") as running:
        yield running


ROUTER = {"checkout": {"router": {"httproute": "checkout"}}}
QUICK_BLUEGREEN = {
    "checkout": {"bluegreen": {"post_promotion_intervals": 3, "scale_down_delay_seconds": 1}}
}


def write_config(
    stack: SimulatedStack,
    tmp_path: Path,
    *,
    services: dict[str, Any] | None = None,
    freeze_windows: list[dict[str, Any]] | None = None,
) -> Path:
    """A guard config for `stack` with 1 s analysis intervals, 2 healthy ones to promote."""
    config = stack.guard_config(
        tmp_path / "data", interval_seconds=1, healthy_intervals_to_promote=2
    )
    config["services"] = services or {}
    config["freeze_windows"] = freeze_windows or []
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def guard_config(stack: SimulatedStack, tmp_path: Path) -> Path:
    return stack.write_guard_config(
        tmp_path / "guard.yaml",
        tmp_path / "data",
        interval_seconds=1,
        healthy_intervals_to_promote=3,
    )


@pytest.fixture
def guard(guard_config: Path, tmp_path: Path) -> Iterator[GuardProcess]:
    process = GuardProcess(guard_config, tmp_path / "guard.log")
    process.start()
    yield process
    process.stop()


def rollout_body(image: str, **extra: Any) -> dict[str, Any]:
    return {
        "namespace": "shop",
        "deployment": "checkout",
        "images": {"checkout": image},
        "strategy": "rolling",
        "commit_sha": "9f2c1e7aa",
        "commit_time": "2026-11-23T10:00:00Z",
        **extra,
    }


def submit(guard: GuardProcess, image: str, key: str | None = None, **extra: Any) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    with guard.client() as client:
        response = client.post("/v1/rollouts", json=rollout_body(image, **extra), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
