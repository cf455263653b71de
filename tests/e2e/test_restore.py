"""Restoring a previous revision, and superseding a rollout in flight."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import GOOD, OLD, submit


def _guard_cli(guard: GuardProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "guard", *args, "--server", guard.url]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=180, check=False, env=guard.env()
    )


def test_rollback_to_a_previous_revision(stack: SimulatedStack, guard: GuardProcess) -> None:
    assert guard.wait_for(submit(guard, GOOD)["id"])["state"] == "promoted"

    listed = json.loads(_guard_cli(guard, "revisions", "checkout").stdout)
    assert listed["current"]["images"] == {"checkout": GOOD}
    assert listed["restorable"] == [{"revision": 1, "images": {"checkout": OLD}}]
    unknown = _guard_cli(guard, "rollback", "checkout", "--to", "7")
    assert unknown.returncode == 2 and "not restorable" in unknown.stderr

    restored = _guard_cli(guard, "rollback", "checkout", "--to", "1", "--reason", "INC-9", "--wait")

    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert stack.images() == {"checkout": OLD}
    with guard.client() as client:
        latest: dict[str, Any] = client.get("/v1/rollouts").json()[0]
    assert latest["request"]["restore_revision"] == 1


def test_supersede_rolls_back_the_running_rollout_first(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    first = submit(guard, GOOD, strategy="canary", steps=[25, "pause"])["id"]
    guard.wait_for(first, states=("paused",))
    with guard.client() as client:
        refused = client.post("/v1/rollouts", json={**_body(), "strategy": "rolling"})
    assert refused.status_code == 409 and "supersede" in refused.json()["detail"]

    second = submit(guard, GOOD, strategy="rolling", supersede=True)["id"]

    superseded = guard.wait_for(first)
    assert superseded["state"] == "aborted"
    assert any(second in h["message"] for h in superseded["details"]["history"])
    replacement = guard.wait_for(second)
    assert replacement["state"] == "promoted", replacement["message"]
    started = datetime.fromisoformat(replacement["timestamps"]["started_at"])
    assert datetime.fromisoformat(superseded["timestamps"]["finished_at"]) <= started
    assert stack.kube.get("apps/v1", "Deployment", "shop", "checkout-canary") is None
    assert stack.images() == {"checkout": GOOD}


def _body() -> dict[str, Any]:
    return {"namespace": "shop", "deployment": "checkout", "images": {"checkout": GOOD}}


def test_cli_deploy_takes_steps_and_pause_takes_a_reason(
    stack: SimulatedStack, guard: GuardProcess
) -> None:
    common = ["--namespace", "shop", "--deployment", "checkout", "--image", f"checkout={GOOD}"]
    bad_steps = _guard_cli(guard, "deploy", *common, "--strategy", "canary", "--steps", "50,20")
    assert bad_steps.returncode == 2 and "steps" in bad_steps.stderr

    submitted = _guard_cli(guard, "deploy", *common, "--strategy", "canary", "--steps", "50")
    rollout_id = submitted.stdout.split()[1]
    guard.wait_for(rollout_id, states=("progressing",))
    paused = _guard_cli(guard, "pause", rollout_id, "--actor", "carol", "--reason", "lunch")
    assert paused.returncode == 0
    deadline = time.monotonic() + 30
    with guard.client() as client:
        while time.monotonic() < deadline:
            rollout = client.get(f"/v1/rollouts/{rollout_id}").json()
            if any("carol: lunch" in h["message"] for h in rollout["details"]["history"]):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(rollout)
        client.post(f"/v1/rollouts/{rollout_id}/abort")
    assert guard.wait_for(rollout_id)["state"] == "aborted"
