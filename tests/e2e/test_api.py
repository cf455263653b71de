"""The API and CLI contract a CD pipeline relies on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, rollout_body, submit


def test_same_idempotency_key_gives_one_rollout(guard: GuardProcess) -> None:
    with guard.client() as client:
        first = client.post(
            "/v1/rollouts", json=rollout_body(GOOD), headers={"Idempotency-Key": "k1"}
        )
        second = client.post(
            "/v1/rollouts", json=rollout_body(GOOD), headers={"Idempotency-Key": "k1"}
        )
        other = client.post(
            "/v1/rollouts", json=rollout_body(BAD), headers={"Idempotency-Key": "k1"}
        )
        listed = client.get("/v1/rollouts").json()

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]
    assert [r["id"] for r in listed] == [first.json()["id"]]


def test_invalid_requests_are_rejected_with_the_field_named(guard: GuardProcess) -> None:
    cases = {
        "namespace": rollout_body(GOOD, namespace="Shop_Prod"),
        "images": rollout_body("Not An Image!"),
        "commit_sha": rollout_body(GOOD, commit_sha="xyz"),
        "strategy": rollout_body(GOOD, strategy="teleport"),
        "unexpected": rollout_body(GOOD, unexpected=1),
    }
    with guard.client() as client:
        for field, body in cases.items():
            response = client.post("/v1/rollouts", json=body)
            assert response.status_code == 422, (field, response.text)
            locations = [d["loc"] for d in response.json()["detail"]]
            assert any(field in loc for loc in locations), (field, locations)
        assert client.get("/v1/rollouts").json() == []


def test_second_rollout_of_a_busy_deployment_is_refused(guard: GuardProcess) -> None:
    first = submit(guard, GOOD)
    with guard.client() as client:
        response = client.post("/v1/rollouts", json=rollout_body(BAD))
    assert response.status_code == 409
    assert first["id"] in response.json()["detail"]


def test_abort_restores_the_previous_version(stack: SimulatedStack, guard: GuardProcess) -> None:
    rollout_id = submit(guard, GOOD)["id"]
    guard.wait_for(rollout_id, states=("progressing",))
    with guard.client() as client:
        assert client.post(f"/v1/rollouts/{rollout_id}/abort").status_code == 200

    rollout = guard.wait_for(rollout_id)

    assert rollout["state"] == "aborted"
    assert rollout["timestamps"]["rollback_verified_at"]
    assert stack.images() == {"checkout": "registry/checkout:1.4.1"}
    with guard.client() as client:
        again = client.post(f"/v1/rollouts/{rollout_id}/abort")
    assert again.status_code == 409


def test_pause_holds_the_deployment_and_resume_promotes(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    rollout_id = submit(guard, GOOD)["id"]
    guard.wait_for(rollout_id, states=("progressing",))
    with guard.client() as client:
        client.post(f"/v1/rollouts/{rollout_id}/pause")
        guard.wait_for(rollout_id, states=("paused",))
        assert stack.deployment()["spec"].get("paused") is True
        client.post(f"/v1/rollouts/{rollout_id}/resume")
    rollout = guard.wait_for(rollout_id)
    assert rollout["state"] == "promoted"
    assert stack.deployment()["spec"].get("paused") is False


def test_unknown_rollout_is_404(guard: GuardProcess) -> None:
    with guard.client() as client:
        assert client.get("/v1/rollouts/nope").status_code == 404
        assert client.post("/v1/rollouts/nope/promote").status_code == 404


def test_service_endpoints(guard: GuardProcess) -> None:
    with guard.client() as client:
        assert client.get("/healthz").text == "ok"
        assert client.get("/readyz").status_code == 200
        metrics = client.get("/metrics").text
        schema = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert "guard_decision_latency_seconds" in metrics
    assert "guard_rollouts_total" in metrics
    assert "/v1/rollouts/{rollout_id}/abort" in schema["paths"]
    assert docs.status_code == 200


def _deploy(guard: GuardProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "guard", "deploy", "--server", guard.url, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=180, check=False, env=guard.env()
    )


def test_cli_deploy_wait_exit_codes(guard: GuardProcess) -> None:
    common = ["--namespace", "shop", "--deployment", "checkout", "--strategy", "rolling"]

    bad_input = _deploy(guard, *common, "--image", "checkout")
    commit = ["--commit-sha", "abcdef1", "--commit-time", "2026-11-23T10:00:00+00:00"]
    promoted = _deploy(guard, *common, "--image", f"checkout={GOOD}", "--wait", *commit)
    rolled_back = _deploy(guard, *common, "--image", f"checkout={BAD}", "--wait")

    assert bad_input.returncode == 2
    assert "CONTAINER=IMAGE" in bad_input.stderr
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert "promoted" in promoted.stdout
    assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
    assert "rolled_back" in rolled_back.stdout
    assert "decision rollback" in rolled_back.stdout


def test_requests_are_logged_only_with_server_access_log(
    stack: SimulatedStack, guard: GuardProcess, tmp_path: Path
) -> None:
    """Pipelines poll every few seconds: one line a request would bury the guard's own log."""
    with guard.client() as client:
        assert client.get("/v1/rollouts").status_code == 200
    guard.stop()
    quiet = guard.log_path.read_text(errors="replace")
    assert "GET /v1/rollouts" not in quiet
    assert "apscheduler" not in quiet  # two lines a job run, six a second

    config = yaml.safe_load(guard.config_path.read_text(encoding="utf-8"))
    config["server"] = {"access_log": True}
    logged_config = tmp_path / "logged.yaml"
    logged_config.write_text(yaml.safe_dump(config), encoding="utf-8")
    with GuardProcess(logged_config, tmp_path / "logged.log") as logged:
        with logged.client() as client:
            assert client.get("/v1/rollouts").status_code == 200
        logged.stop()
        assert '"GET /v1/rollouts HTTP/1.1" 200' in logged.log_path.read_text(errors="replace")
