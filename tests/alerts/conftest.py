"""Builders for alert events: real transitions of a rollout, run through `derive_events`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.base import AlertEvent, RenderContext
from alerts.events import Change, derive_events
from guard.models import (
    NEEDS_HUMAN,
    Decision,
    Evidence,
    RolloutRequest,
    RolloutState,
    Severity,
    Verdict,
)

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
ROLLOUT = "5f0c8a1e-0000-4000-8000-000000000001"
REQUEST = RolloutRequest(
    namespace="shop",
    deployment="checkout",
    images={"checkout": "registry/checkout:1.4.3"},
    commit_sha="9f2c1e7",
)
STRATEGY_STATE: dict[str, Any] = {
    "stable_revision": 3,
    "stable_images": {"checkout": "registry/checkout:1.4.1"},
}
ERROR_RATE = Evidence(
    metric="error_rate",
    query='sum(rate(http_requests_total{code=~"5.."}[30s])) / sum(rate(http_requests_total[30s]))',
    value=0.0812,
    threshold=0.05,
    sample_count=1234,
    window_seconds=30,
    severity=Severity.CRITICAL,
)


def breach(
    severity: Severity = Severity.CRITICAL,
    verdict: Verdict = Verdict.ROLLBACK,
    *,
    needs_human: bool = False,
) -> Decision:
    action = "rollback started" if verdict is Verdict.ROLLBACK else "none"
    return Decision(
        at=T0,
        verdict=verdict,
        severity=severity,
        summary=f"{severity.value}: error rate 8.12% > 5.00%",
        action=NEEDS_HUMAN if needs_human else action,
        step="analysing",
        evidence=[ERROR_RATE],
    )


def change(
    before: RolloutState,
    after: RolloutState,
    *,
    decision: Decision | None = None,
    history: Sequence[AlertEvent] = (),
    message: str = "",
    seconds: float = 0,
    guard_url: str | None = "https://guard.example.com",
) -> Change:
    return Change(
        rollout_id=ROLLOUT,
        request=REQUEST,
        previous_state=before,
        state=after,
        step="analysing",
        message=message,
        decision=decision,
        strategy_state=dict(STRATEGY_STATE),
        now=T0 + timedelta(seconds=seconds),
        history=tuple(history),
        guard_url=guard_url,
    )


def one(c: Change) -> AlertEvent:
    events = derive_events(c)
    assert len(events) == 1, events
    return events[0]


def long_hold(severity: Severity = Severity.HIGH) -> AlertEvent:
    """A tier breach the analysis policy hands to a human (it holds without rolling back)."""
    p = RolloutState.PROGRESSING
    return one(change(p, p, decision=breach(severity, Verdict.HOLD, needs_human=True)))


def rollback_started() -> AlertEvent:
    return one(change(RolloutState.PROGRESSING, RolloutState.ROLLING_BACK, decision=breach()))


def rollback_verified() -> AlertEvent:
    return one(
        change(
            RolloutState.ROLLING_BACK,
            RolloutState.ROLLED_BACK,
            history=[rollback_started()],
            message="previous revision fully available again: 4/4 available",
            seconds=12.5,
        )
    )


def render_ctx(**secrets: str) -> RenderContext:
    return RenderContext(secrets=secrets, delivery_key="key-1", now=T0 + timedelta(seconds=1))
