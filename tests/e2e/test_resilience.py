"""What happens when Prometheus or the guard itself goes away in the middle of a rollout."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, submit


@pytest.fixture
def guard_config(stack: SimulatedStack, tmp_path: Path) -> Path:
    """Outages here last seconds: the policy asks for a human after 3 s without evidence."""
    return stack.write_guard_config(
        tmp_path / "guard.yaml",
        tmp_path / "data",
        interval_seconds=1,
        healthy_intervals_to_promote=3,
        hold_alert_after_seconds=3,
    )


def _wait_decisions(
    guard: GuardProcess,
    rollout_id: str,
    matches: Any,
    count: int,
    timeout: float = 60,
    state: str | None = None,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with guard.client() as client:
        while time.monotonic() < deadline:
            rollout: dict[str, Any] = client.get(f"/v1/rollouts/{rollout_id}").json()
            decided = sum(1 for d in rollout["decisions"] if matches(d)) >= count
            if decided and state in (None, rollout["state"]):
                return rollout
            time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} matching decisions: {rollout}")


def test_prometheus_outage_holds_and_never_promotes(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    assert stack.prometheus is not None
    rollout_id = submit(guard, GOOD)["id"]
    _wait_decisions(guard, rollout_id, lambda d: True, 1)

    stack.prometheus.pause()
    held = _wait_decisions(
        guard, rollout_id, lambda d: d["summary"].startswith("metrics unavailable"), 5
    )
    assert held["state"] == "progressing"
    hold = next(d for d in held["decisions"] if d["summary"].startswith("metrics unavailable"))
    assert hold["verdict"] == "hold"
    assert hold["evidence"][0]["metric"] == "prometheus"
    resumed_at = datetime.now(UTC)
    stack.prometheus.resume()

    rollout = guard.wait_for(rollout_id)
    assert rollout["state"] == "promoted"
    promote = rollout["decisions"][-1]
    assert datetime.fromisoformat(promote["at"]) > resumed_at
    with guard.client() as client:
        metrics = client.get("/metrics").text
    assert 'guard_prometheus_query_errors_total{kind="unreachable"}' in metrics
    _assert_hold_alerted_once(guard, rollout_id)


def _assert_hold_alerted_once(guard: GuardProcess, rollout_id: str) -> None:
    """The guard could not judge: one hold alert (to the default log receiver), then resolved."""
    deadline = time.monotonic() + 30
    with guard.client() as client:
        while time.monotonic() < deadline:
            alerts = client.get("/v1/alerts", params={"rollout_id": rollout_id}).json()
            if alerts and all(a["status"] == "sent" for a in alerts):
                break
            time.sleep(0.2)
    kinds = [a["kind"] for a in reversed(alerts)]
    assert kinds in (["hold", "hold_cleared", "promoted"], ["hold", "promoted"]), alerts
    assert {(a["receiver"], a["status"]) for a in alerts} == {("log", "sent")}
    assert f"alert {rollout_id}/hold/1: [medium] Rollout on hold" in guard.log_path.read_text()


def test_guard_killed_mid_rollout_resumes_it(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout_id = submit(guard, GOOD)["id"]
    # The pre-flight's decision is stored a moment before the rollout starts; the engine is
    # another process, so a read can fall between the two.
    before = _wait_decisions(guard, rollout_id, lambda d: True, 1, state="progressing")

    guard.kill()
    guard.start()

    rollout = guard.wait_for(rollout_id)
    assert rollout["state"] == "promoted"
    assert len(rollout["decisions"]) > len(before["decisions"])
    assert stack.images() == {"checkout": GOOD}
    with guard.client() as client:
        assert len(client.get("/v1/rollouts").json()) == 1


def test_guard_killed_during_rollback_finishes_it(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout_id = submit(guard, BAD)["id"]
    guard.wait_for(rollout_id, states=("rolling_back", "rolled_back"))

    guard.kill()
    guard.start()

    rollout = guard.wait_for(rollout_id)
    assert rollout["state"] == "rolled_back"
    assert rollout["timestamps"]["rollback_verified_at"]
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}


def test_a_change_kubernetes_refuses_for_good_fails_clearly(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    stack.kube.inject_fault(
        method="PATCH", path_regex=r".*/deployments/checkout$", status=403, count=None
    )
    rollout = guard.wait_for(submit(guard, GOOD)["id"], timeout=60)
    stack.kube.clear_faults()

    assert rollout["state"] == "failed"
    assert rollout["outcome_reason"] == "kubernetes_error"
    assert "403" in rollout["message"]
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}
    with guard.client() as client:
        alerts = client.get("/v1/alerts", params={"rollout_id": rollout["id"]}).json()
    assert "rollout_failed" in [a["kind"] for a in alerts]


def test_deploy_wait_rides_out_a_guard_restart(stack: SimulatedStack, guard: GuardProcess) -> None:
    command = [
        sys.executable, "-m", "guard", "deploy", "--server", guard.url, "--namespace", "shop",
        "--deployment", "checkout", "--image", f"checkout={GOOD}", "--wait",
    ]  # fmt: skip
    waiting = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=guard.env()
    )
    with guard.client() as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.get("/v1/rollouts").json():
            time.sleep(0.2)
    guard.kill()
    assert waiting.stderr is not None
    first_complaint = waiting.stderr.readline()  # the CLI noticed and keeps waiting
    guard.start()
    out, err = waiting.communicate(timeout=180)

    assert "guard unavailable" in first_complaint
    assert waiting.returncode == 0, out + err
    assert "promoted" in out


def test_a_kubernetes_api_that_keeps_failing_ends_the_rollout_with_an_alert(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    config = stack.guard_config(tmp_path / "data", interval_seconds=1)
    config["kubernetes"] |= {"give_up_after_seconds": 3, "retry_initial_backoff_seconds": 0.05}
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    stack.kube.inject_fault(
        method="PATCH", path_regex=r".*/deployments/checkout$", status=503, count=None
    )
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        rollout = guard.wait_for(submit(guard, GOOD)["id"], timeout=90)
        stack.kube.clear_faults()
        with guard.client() as client:
            alerts = client.get("/v1/alerts", params={"rollout_id": rollout["id"]}).json()

    assert rollout["state"] == "failed"
    assert rollout["outcome_reason"] == "kubernetes_error"
    assert "kept failing" in rollout["message"] and "503" in rollout["message"]
    assert "kubernetes.give_up_after_seconds" in rollout["message"]
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}
    assert [a["kind"] for a in alerts] == ["rollout_failed"]


def test_transient_api_faults_are_absorbed_within_each_call(
    stack: SimulatedStack, tmp_path: Path
) -> None:
    config = stack.guard_config(tmp_path / "data", interval_seconds=1)
    config["kubernetes"] |= {"request_timeout_seconds": 1, "retry_initial_backoff_seconds": 0.05}
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    deployment = r".*/deployments/checkout$"
    with GuardProcess(path, tmp_path / "guard.log") as guard:
        stack.kube.clear_requests_log()
        stack.kube.inject_fault(method="PATCH", path_regex=deployment, status=500, count=2)
        stack.kube.inject_fault(method="PATCH", path_regex=deployment, status=409, count=1)
        stack.kube.inject_fault(method="GET", path_regex=deployment, status=0, delay_seconds=2)
        rollout = guard.wait_for(submit(guard, GOOD)["id"], timeout=90)

    assert rollout["state"] == "promoted"
    assert stack.images() == {"checkout": GOOD}
    statuses = [r.status for r in stack.kube.requests_log if r.method == "PATCH"]
    assert statuses[:4] == [500, 500, 409, 200], statuses
    assert "Kubernetes call failed" not in guard.log_path.read_text()
