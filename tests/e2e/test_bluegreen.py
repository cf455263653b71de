"""Blue-green end to end: green judged on preview traffic, one selector switch, blue kept up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, OLD, PROFILES, QUICK_BLUEGREEN, submit, write_config

BLUEGREEN = {"strategy": "bluegreen"}


@pytest.fixture
def guard(stack: SimulatedStack, tmp_path: Path) -> Iterator[GuardProcess]:
    path = write_config(stack, tmp_path, services=QUICK_BLUEGREEN)
    with GuardProcess(path, tmp_path / "guard.log") as process:
        yield process


def _wait_step(guard: GuardProcess, rollout_id: str, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with guard.client() as client:
        while time.monotonic() < deadline:
            rollout: dict[str, Any] = client.get(f"/v1/rollouts/{rollout_id}").json()
            if rollout["step"].startswith(prefix):
                return
            time.sleep(0.2)
    raise TimeoutError(f"rollout never reached step {prefix!r}: {rollout}")


def _serving_images(stack: SimulatedStack) -> set[str]:
    """Images of the pods the active Service sends production traffic to."""
    service = stack.kube.get("v1", "Service", "shop", "checkout")
    assert service is not None
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    pods = stack.kube.list("v1", "Pod", "shop", selector)
    return {p["spec"]["containers"][0]["image"] for p in pods}


def _clean(stack: SimulatedStack, image: str) -> None:
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-green") is None
    assert stack.kube.get("v1", "Service", "shop", "checkout-preview") is None
    service = stack.kube.get("v1", "Service", "shop", "checkout")
    assert service is not None and service["spec"]["selector"] == {"app": "checkout"}
    assert stack.images() == {"checkout": image}
    stack.wait_complete(timeout=10)
    assert _serving_images(stack) == {image}


def test_good_release_is_switched_and_promoted(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout = guard.wait_for(submit(guard, GOOD, **BLUEGREEN)["id"])

    assert rollout["state"] == "promoted", rollout["message"]
    steps = [d["step"] for d in rollout["decisions"]]
    assert any(s.startswith("pre-promotion") for s in steps)
    assert any(s.startswith("post-promotion") for s in steps)
    switch = next(d for d in rollout["decisions"] if d["action"] == "switched")
    assert "switching traffic to green" in switch["summary"]
    _clean(stack, GOOD)


def test_bad_release_never_takes_production_traffic(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout = guard.wait_for(submit(guard, BAD, **BLUEGREEN)["id"])

    assert rollout["state"] == "rolled_back", rollout["message"]
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert rollback["step"].startswith("pre-promotion")
    assert not any(d["action"] == "switched" for d in rollout["decisions"])
    _clean(stack, OLD)


def test_failure_after_the_switch_moves_traffic_back_to_blue(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout_id = submit(guard, GOOD, **BLUEGREEN)["id"]
    _wait_step(guard, rollout_id, "post-promotion")
    assert _serving_images(stack) == {GOOD}
    stack.set_profile(GOOD, PROFILES[BAD])  # fails only under production load

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "rolled_back", rollout["message"]
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert rollback["step"].startswith("post-promotion")
    _clean(stack, OLD)


def test_abort_mid_step_and_restart_mid_step(stack: SimulatedStack, guard: GuardProcess) -> None:
    first = submit(guard, GOOD, **BLUEGREEN)["id"]
    _wait_step(guard, first, "pre-promotion")
    guard.kill()
    guard.start()
    _wait_step(guard, first, "post-promotion")
    with guard.client() as client:
        body = {"actor": "bob", "reason": "wrong build"}
        assert client.post(f"/v1/rollouts/{first}/abort", json=body).status_code == 200

    rollout = guard.wait_for(first)

    assert rollout["state"] == "aborted", rollout["message"]
    assert any("bob: wrong build" in d["summary"] for d in rollout["decisions"])
    _clean(stack, OLD)


class _Failing(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_failing_smoke_check_rolls_back_before_the_switch(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/healthz"
    quick = QUICK_BLUEGREEN["checkout"]["bluegreen"]
    services = {"checkout": {"bluegreen": {**quick, "smoke_url": url}}}
    path = write_config(stack, tmp_path, services=services)
    try:
        with GuardProcess(path, tmp_path / "guard.log") as guard:
            rollout = guard.wait_for(submit(guard, GOOD, **BLUEGREEN)["id"])
    finally:
        server.shutdown()

    assert rollout["state"] == "rolled_back", rollout["message"]
    assert rollout["outcome_reason"] == "smoke_check"
    assert not any(d["action"] == "switched" for d in rollout["decisions"])
    rollback = next(d for d in rollout["decisions"] if d["verdict"] == "rollback")
    assert "HTTP 503" in rollback["summary"]
    _clean(stack, OLD)
