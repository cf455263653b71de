"""Alertmanager API v2: labels and annotations, endsAt on resolve, checked on the real server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.alertmanager import ALERTNAME, AlertmanagerNotifier, AlertmanagerSettings, payload
from alerts.base import AlertEvent, RenderContext
from guard.models import RolloutState
from guard.sim.alertmanager import AlertmanagerServer
from guard.sim.receiver import AlertReceiver

from .conftest import (
    ROLLOUT,
    T0,
    breach,
    change,
    long_hold,
    one,
    render_ctx,
    rollback_started,
    rollback_verified,
)

SETTINGS = AlertmanagerSettings(url="http://am.example:9093/", labels={"team": "payments"})
LABELS = {
    "alertname": ALERTNAME,
    "rollout_id": ROLLOUT,
    "namespace": "shop",
    "deployment": "checkout",
    "service": "checkout",
    "severity": "critical",
    "team": "payments",
}


def test_firing_alert_has_the_labels_users_route_on_and_ends_far_ahead() -> None:
    now = T0 + timedelta(seconds=1)
    [alert] = payload(rollback_started(), SETTINGS, now=now)
    assert alert["labels"] == LABELS
    assert alert["startsAt"] == T0.isoformat()
    assert alert["endsAt"] == (now + timedelta(hours=24)).isoformat()
    assert alert["generatorURL"].endswith(f"/v1/rollouts/{ROLLOUT}")
    notes = alert["annotations"]
    assert notes["summary"] == (
        "[critical] Automatic rollback started: shop/checkout: critical: error rate 8.12% > 5.00%"
    )
    assert notes["evidence"] == "error_rate 8.12% > 5.00% over 1234 requests in 30s (critical)"
    assert notes["action"] == "started an automatic rollback to revision 3"
    assert notes["event"] == "rollback_started"


def test_resolve_posts_the_same_labels_with_ends_at_now() -> None:
    now = T0 + timedelta(seconds=20)
    [alert] = payload(rollback_verified(), SETTINGS, now=now)
    assert alert["labels"] == LABELS
    assert alert["endsAt"] == now.isoformat()


def test_an_escalation_resolves_the_label_set_it_replaces() -> None:
    p = RolloutState.PROGRESSING
    hold = long_hold()
    started = one(change(p, RolloutState.ROLLING_BACK, decision=breach(), history=[hold]))
    firing, old = payload(started, SETTINGS, now=T0)
    assert firing["labels"]["severity"] == "critical" and old["labels"]["severity"] == "high"
    assert old["endsAt"] == T0.isoformat()


def test_render_posts_to_api_v2_alerts() -> None:
    post = AlertmanagerNotifier().render(rollback_started(), SETTINGS, render_ctx())
    assert post.url == "http://am.example:9093/api/v2/alerts"


@pytest.fixture
def notifications() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


@pytest.fixture
def alertmanager(notifications: AlertReceiver) -> Iterator[AlertmanagerServer]:
    with AlertmanagerServer(webhook_url=f"{notifications.url}/am") as server:
        yield server


def _post(server: AlertmanagerServer, event: AlertEvent, now: datetime) -> None:
    settings = AlertmanagerSettings(url=server.url, labels={"team": "payments"})
    post = AlertmanagerNotifier().render(event, settings, RenderContext({}, "key-1", now))
    response = httpx.post(post.url, content=post.body, headers=post.headers, timeout=5)
    assert response.status_code == 200, response.text


def test_the_real_alertmanager_shows_the_alert_and_resolves_it_by_ends_at(
    alertmanager: AlertmanagerServer, notifications: AlertReceiver
) -> None:
    now = datetime.now(UTC)
    started = rollback_started().model_copy(update={"at": now})
    _post(alertmanager, started, now)

    [alert] = alertmanager.wait_for_alerts(lambda alerts: len(alerts) == 1)
    assert alert["labels"] == LABELS
    assert alert["status"]["state"] == "active"
    assert alert["annotations"]["outcome"] == "rollback in progress; not yet verified"
    assert datetime.fromisoformat(alert["endsAt"]) > now + timedelta(hours=23)
    notifications.wait_for(lambda got: any(r.json()["status"] == "firing" for r in got))

    resolved_at = datetime.now(UTC)
    verified = rollback_verified().model_copy(update={"at": resolved_at})
    _post(alertmanager, verified, resolved_at)

    alertmanager.wait_for_alerts(lambda alerts: alerts == [])
    got = notifications.wait_for(lambda got: any(r.json()["status"] == "resolved" for r in got))
    resolved = next(r.json() for r in got if r.json()["status"] == "resolved")
    [sent] = resolved["alerts"]
    assert sent["labels"] == LABELS
    assert sent["status"] == "resolved"
    ends = datetime.fromisoformat(sent["endsAt"].replace("Z", "+00:00"))
    assert abs((ends - resolved_at).total_seconds()) < 1
