"""PagerDuty Events v2: trigger and resolve share the dedup_key; severity follows the tier."""

from __future__ import annotations

import json

from alerts.base import AlertKind
from alerts.pagerduty import EVENTS_URL, PagerDutyNotifier, PagerDutySettings, payload
from guard.models import RolloutState, Severity

from .conftest import (
    ROLLOUT,
    change,
    long_hold,
    one,
    render_ctx,
    rollback_started,
    rollback_verified,
)

KEY = "R0UT1NGKEY0000000000000000000000"


def test_trigger_carries_summary_severity_source_and_evidence() -> None:
    body = payload(rollback_started(), KEY)
    assert body["routing_key"] == KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"deploy-guard/{ROLLOUT}"
    details = body["payload"]
    assert details["severity"] == "critical"
    assert details["source"] == "shop/checkout"
    assert details["component"] == "checkout"
    assert details["summary"].startswith("[critical] Automatic rollback started: shop/checkout")
    assert details["custom_details"]["evidence"] == [
        "error_rate 8.12% > 5.00% over 1234 requests in 30s (critical)"
    ]
    assert details["custom_details"]["action"] == "started an automatic rollback to revision 3"
    assert body["links"][0]["href"].endswith(f"/v1/rollouts/{ROLLOUT}")


def test_resolve_uses_the_same_dedup_key_and_no_payload() -> None:
    trigger, resolve = payload(rollback_started(), KEY), payload(rollback_verified(), KEY)
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    assert "payload" not in resolve


def test_severity_is_mapped_from_the_tier() -> None:
    for tier, expected in ((Severity.HIGH, "error"), (Severity.MEDIUM, "warning")):
        hold = long_hold(tier)
        assert hold.kind is AlertKind.HOLD
        assert payload(hold, KEY)["payload"]["severity"] == expected
    failed = one(change(RolloutState.ROLLING_BACK, RolloutState.FAILED, message="gone"))
    assert payload(failed, KEY)["payload"]["severity"] == "critical"


def test_render_posts_to_the_events_api_with_the_secret_key() -> None:
    settings = PagerDutySettings(routing_key_env="PD_KEY")
    post = PagerDutyNotifier().render(rollback_started(), settings, render_ctx(routing_key=KEY))
    assert post.url == EVENTS_URL
    assert json.loads(post.body)["routing_key"] == KEY
    assert KEY not in repr(settings)
