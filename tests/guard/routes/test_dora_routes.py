"""The delivery-performance API on a real store: DORA JSON and CSV, incidents, reports, dashboard.

Rollouts are written through the store as the engine writes them (submit, then transitions), with
times relative to now because the window ends now; the scheduler does not run.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from guard.cli import dora_table
from guard.models import RolloutState
from guard.sim.history import finished_rollout
from guard.store import Store


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(services={"checkout": {"team": "payments"}})


def store_of(client: TestClient) -> Store:
    store: Store = client.app.state.services.store  # type: ignore[attr-defined]
    return store


@pytest.fixture
def history(client: TestClient) -> dict[str, Any]:
    """Two days ago: a promoted change (lead 2 h, 10 min), a rolled-back one (restore 4 min),
    and a promoted search change."""
    store = store_of(client)
    base = datetime.now(UTC) - timedelta(days=2)
    good = finished_rollout(
        store, started=base, state=RolloutState.PROMOTED, minutes=10, lead=timedelta(hours=2)
    )
    bad = finished_rollout(
        store,
        started=base + timedelta(hours=1),
        state=RolloutState.ROLLED_BACK,
        minutes=8,
        bad_after=4,
    )
    search = finished_rollout(
        store,
        started=base + timedelta(hours=2),
        state=RolloutState.PROMOTED,
        minutes=5,
        deployment="search",
        labels={"team": "discovery"},
    )
    return {"good": good, "bad": bad, "search": search, "base": base}


def test_dora_json_has_the_hand_computed_figures(
    client: TestClient, history: dict[str, Any]
) -> None:
    body = client.get("/v1/dora", params={"window": "7d"}).json()

    assert body["benchmark_year"] == 2024
    assert "2024" in body["benchmark"]
    assert body["buckets"]["lead_time"]["elite"] == "< 1 day"
    overall = body["overall"]
    assert overall["deployments"] == 3
    assert overall["failed_changes"] == 1
    assert overall["change_failure_rate"] == pytest.approx(1 / 3)
    assert overall["deployment_frequency_per_day"] == pytest.approx(3 / 7)
    assert overall["lead_time_seconds"]["median"] == pytest.approx(2 * 3600 + 600)
    assert overall["time_to_restore_seconds"]["median"] == pytest.approx(4 * 60)
    teams = {t["group"]: t for t in body["by_team"]}
    assert set(teams) == {"payments", "discovery"}  # config first, then the `team` label
    assert teams["payments"]["deployments"] == 2


def test_dora_filters_by_team_and_service(client: TestClient, history: dict[str, Any]) -> None:
    assert client.get("/v1/dora?team=discovery").json()["overall"]["deployments"] == 1
    assert client.get("/v1/dora?service=checkout").json()["overall"]["failed_changes"] == 1
    assert client.get("/v1/dora?service=nothing").json()["overall"]["deployments"] == 0


def test_dora_csv(client: TestClient, history: dict[str, Any]) -> None:
    response = client.get("/v1/dora", params={"format": "csv"})
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["scope"], r["group"]) for r in rows] == [
        ("all", "all"),
        ("service", "checkout"),
        ("service", "search"),
        ("team", "discovery"),
        ("team", "payments"),
    ]
    assert float(rows[1]["change_failure_rate"]) == pytest.approx(0.5)


def test_bad_window_is_422_with_the_field_named(client: TestClient) -> None:
    response = client.get("/v1/dora", params={"window": "forever"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "window"]
    assert client.get("/v1/dora", params={"format": "xml"}).status_code == 422


def test_incident_after_promotion_counts_as_a_failed_change(
    client: TestClient, history: dict[str, Any]
) -> None:
    promoted_at = history["base"] + timedelta(minutes=10)
    opened = promoted_at + timedelta(hours=3)
    url = f"/v1/rollouts/{history['good']}/incident"

    first = client.post(url, json={"opened_at": opened.isoformat(), "link": "https://t/1"})
    assert first.status_code == 201, first.text
    resolved = opened + timedelta(minutes=45)
    second = client.post(
        url, json={"opened_at": opened.isoformat(), "resolved_at": resolved.isoformat()}
    )
    assert second.status_code == 200, second.text
    assert second.json()["link"] == "https://t/1"
    retried = client.post(
        url, json={"opened_at": opened.isoformat(), "resolved_at": resolved.isoformat()}
    )
    assert retried.status_code == 200  # a retry changes nothing and is not observed twice

    overall = client.get("/v1/dora").json()["overall"]
    assert overall["failed_changes"] == 2
    assert overall["time_to_restore_seconds"]["count"] == 2
    assert overall["time_to_restore_seconds"]["median"] == pytest.approx((240 + 2700) / 2)
    metrics = client.get("/metrics").text
    assert 'guard_time_to_restore_seconds_count{service="checkout",source="incident"} 1.0' in (
        metrics
    )


def test_incident_errors(client: TestClient, history: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    good = f"/v1/rollouts/{history['good']}/incident"
    assert (
        client.post("/v1/rollouts/nope/incident", json={"opened_at": now.isoformat()}).status_code
        == 404
    )
    rolled_back = client.post(
        f"/v1/rollouts/{history['bad']}/incident", json={"opened_at": now.isoformat()}
    )
    assert rolled_back.status_code == 409
    assert "rolled_back" in rolled_back.json()["detail"]
    backwards = {
        "opened_at": now.isoformat(),
        "resolved_at": (now - timedelta(hours=1)).isoformat(),
    }
    assert client.post(good, json=backwards).status_code == 422
    naive = client.post(good, json={"opened_at": "2026-11-23T10:00:00"})
    assert naive.status_code == 422
    too_early = client.post(
        good, json={"opened_at": (history["base"] - timedelta(hours=1)).isoformat()}
    )
    assert too_early.status_code == 422
    assert too_early.json()["detail"][0]["loc"] == ["body", "opened_at"]
    assert client.post(good, json={"opened_at": now.isoformat()}).status_code == 201
    other = client.post(good, json={"opened_at": (now - timedelta(minutes=1)).isoformat()})
    assert other.status_code == 409


def test_report_markdown_html_and_json(client: TestClient, history: dict[str, Any]) -> None:
    url = f"/v1/rollouts/{history['bad']}/report"
    markdown = client.get(url)
    assert markdown.headers["content-type"].startswith("text/markdown")
    text = markdown.text
    for heading in (
        "Plan vs actual",
        "Error rate and latency",
        "Decisions",
        "Rollback",
        "Alerts sent",
    ):
        assert f"## {heading}" in text
    assert "| rolled back | yes |" in text
    assert "| first bad sample → rollback decision | 60.0 s |" in text
    assert "| detection → verified recovery | 4.0 min |" in text
    body = client.get(url, params={"format": "json"}).json()
    metrics = {m["phase"]: m for m in body["metrics"]}
    assert metrics["before"]["error_rate_median"] == pytest.approx(0.001)
    assert metrics["during"]["error_rate_max"] == pytest.approx(0.08)
    assert metrics["after"]["samples"] == 0
    assert [p["state"] for p in body["phases"]] == [
        "pending",
        "progressing",
        "rolling_back",
        "rolled_back",
    ]
    assert body["alerts"] == []
    assert body["team"] == "payments"
    page = client.get(url, params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert "<h2>Decisions</h2>" in page.text
    assert client.get("/v1/rollouts/nope/report").status_code == 404


def test_dashboard_shows_the_api_figures(client: TestClient, history: dict[str, Any]) -> None:
    page = client.get("/dashboard").text
    overall = client.get("/v1/dora").json()["overall"]

    values = dict(
        re.findall(
            r"data-metric='([a-z_]+)'><div class='title'>[^<]*</div>"
            r"<div class='value' data-value='([^']*)'",
            page,
        )
    )
    assert float(values["deployment_frequency_per_day"]) == overall["deployment_frequency_per_day"]
    assert float(values["change_failure_rate"]) == overall["change_failure_rate"]
    assert float(values["lead_time_median_seconds"]) == overall["lead_time_seconds"]["median"]
    for rollout_id in (history["good"], history["bad"], history["search"]):
        assert f"/v1/rollouts/{rollout_id}/report?format=html" in page
    assert "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing fetched


def test_cli_table_renders_the_api_body(client: TestClient, history: dict[str, Any]) -> None:
    table = dora_table(client.get("/v1/dora").json())
    lines = table.splitlines()
    assert lines[0].split()[:3] == [
        "group",
        "deploys",
        "per",
    ]
    assert lines[1].split()[:2] == ["all", "3"]
    assert any(line.startswith("service:checkout") and "50.0 %" in line for line in lines)
    assert "DORA Accelerate State of DevOps Report 2024" in table
    assert any(
        line.startswith("KPI change_failure_rate") and line.endswith("warn") for line in lines
    )
