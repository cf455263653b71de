"""DORA figures and reports from real rollouts: a good release promoted, a bad one rolled back."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guard.sim.guard_process import GuardProcess
from guard.sim.stack import SimulatedStack

from .conftest import BAD, GOOD, rollout_body


def _at(rollout: dict[str, Any], name: str) -> datetime:
    return datetime.fromisoformat(rollout["timestamps"][name])


def _run(guard: GuardProcess, image: str, commit_time: datetime) -> dict[str, Any]:
    body = rollout_body(image, commit_time=commit_time.isoformat())
    with guard.client() as client:
        response = client.post("/v1/rollouts", json=body)
    assert response.status_code == 201, response.text
    return guard.wait_for(response.json()["id"])


def test_dora_and_reports_match_real_rollouts(stack: SimulatedStack, guard: GuardProcess) -> None:
    commit_time = datetime.now(UTC) - timedelta(hours=1)
    good = _run(guard, GOOD, commit_time)
    bad = _run(guard, BAD, commit_time)
    assert (good["state"], bad["state"]) == ("promoted", "rolled_back")

    with guard.client() as client:
        body = client.get("/v1/dora", params={"window": "1d"}).json()
        report = client.get(f"/v1/rollouts/{bad['id']}/report", params={"format": "json"}).json()
        markdown = client.get(f"/v1/rollouts/{bad['id']}/report").text
        metrics = client.get("/metrics").text

    overall = body["overall"]
    assert overall["deployments"] == 2
    assert overall["outcomes"]["promoted"] == 1 and overall["outcomes"]["rolled_back"] == 1
    assert overall["failed_changes"] == 1
    assert overall["change_failure_rate"] == 0.5
    lead = (_at(good, "finished_at") - commit_time).total_seconds()
    assert overall["lead_time_seconds"]["median"] == pytest.approx(lead, abs=1e-3)
    restore = (_at(bad, "rollback_verified_at") - _at(bad, "first_bad_sample_at")).total_seconds()
    assert overall["time_to_restore_seconds"]["median"] == pytest.approx(restore, abs=1e-3)
    assert overall["levels"]["time_to_restore"] == "elite"
    assert [s["group"] for s in body["by_team"]] == ["unassigned"]

    assert report["rolled_back"] is True
    assert report["time_to_restore_seconds"] == pytest.approx(restore, abs=1e-3)
    decided = (_at(bad, "rollback_started_at") - _at(bad, "first_bad_sample_at")).total_seconds()
    assert report["rollback_decision_seconds"] == pytest.approx(decided, abs=1e-3)
    assert len(report["decisions"]) == len(bad["decisions"])
    during = next(m for m in report["metrics"] if m["phase"] == "during")
    first_bad, verified = _at(bad, "first_bad_sample_at"), _at(bad, "rollback_verified_at")
    rates = [
        e["value"]
        for d in bad["decisions"]
        if first_bad <= datetime.fromisoformat(d["at"]) <= verified
        for e in d["evidence"]
        if e["metric"] == "error_rate" and e["value"] is not None
    ]
    assert rates and during["error_rate_max"] == pytest.approx(max(rates))
    assert "rolling_back" in [p["state"] for p in report["phases"]]
    assert "| rolled back | yes |" in markdown

    assert 'guard_deployments_total{outcome="promoted",service="checkout"} 1.0' in metrics
    assert 'guard_deployments_total{outcome="rolled_back",service="checkout"} 1.0' in metrics
    assert 'guard_lead_time_seconds_count{service="checkout"} 1.0' in metrics
    assert 'guard_time_to_restore_seconds_count{service="checkout",source="rollback"} 1.0' in (
        metrics
    )

    table = subprocess.run(
        [sys.executable, "-m", "guard", "dora", "--window", "1d", "--server", guard.url],
        capture_output=True,
        text=True,
        env=guard.env(),
        timeout=60,
        check=True,
    ).stdout
    assert table.splitlines()[1].split()[:2] == ["all", "2"]
    assert "50.0 %" in table
