"""derive_events: which alerts a transition raises, with what evidence and incident."""

from __future__ import annotations

from alerts.base import AlertKind
from alerts.events import derive_events
from guard.models import RolloutState, Severity, Verdict

from .conftest import (
    ROLLOUT,
    breach,
    change,
    long_hold,
    one,
    rollback_started,
    rollback_verified,
)

P, RB = RolloutState.PROGRESSING, RolloutState.ROLLING_BACK


def test_rollback_started_says_what_broke_the_evidence_and_what_the_guard_did() -> None:
    event = rollback_started()
    assert event.kind is AlertKind.ROLLBACK_STARTED
    assert event.id == f"{ROLLOUT}/rollback_started/1"
    assert event.status == "firing"
    assert event.severity is Severity.CRITICAL
    assert event.summary == "critical: error rate 8.12% > 5.00%"
    assert event.decision is not None and event.decision.evidence[0].value == 0.0812
    assert event.action == "started an automatic rollback to revision 3"
    assert event.outcome == "rollback in progress; not yet verified"
    assert event.previous_images == {"checkout": "registry/checkout:1.4.1"}
    assert event.links == {"rollout": f"https://guard.example.com/v1/rollouts/{ROLLOUT}"}


def test_rollback_verified_resolves_the_same_incident_and_repeats_what_broke() -> None:
    started, verified = rollback_started(), rollback_verified()
    assert verified.kind is AlertKind.ROLLBACK_VERIFIED and verified.status == "resolved"
    assert verified.incident_key == started.incident_key == f"deploy-guard/{ROLLOUT}"
    assert verified.incident_severity is Severity.CRITICAL
    assert verified.severity is Severity.CRITICAL
    assert verified.summary == started.summary
    assert verified.decision == started.decision
    assert verified.rollback_seconds == 12.5
    assert verified.outcome.startswith("rollback verified: previous revision fully available")


def test_a_failure_during_the_rollback_is_rollback_failed_and_critical() -> None:
    failed = one(
        change(RB, RolloutState.FAILED, history=[rollback_started()], message="deployment gone")
    )
    assert failed.kind is AlertKind.ROLLBACK_FAILED and failed.status == "firing"
    assert failed.severity is Severity.CRITICAL
    assert "a human is needed" in failed.outcome


def test_a_failure_before_any_change_is_preflight_refused() -> None:
    event = one(change(RolloutState.PENDING, RolloutState.FAILED, message="deployment not found"))
    assert event.kind is AlertKind.PREFLIGHT_REFUSED
    assert event.summary == "deployment not found"
    assert event.action == "refused the release; nothing was changed"


def test_a_failure_mid_rollout_is_rollout_failed() -> None:
    assert one(change(P, RolloutState.FAILED)).kind is AlertKind.ROLLOUT_FAILED


def test_promotion_is_a_resolving_event() -> None:
    decision = breach(Severity.NONE, Verdict.PROMOTE)
    event = one(change(P, RolloutState.PROMOTED, decision=decision))
    assert event.kind is AlertKind.PROMOTED and event.status == "resolved"


def test_a_hold_without_metrics_alerts_once_per_episode_and_clears_once() -> None:
    outage = breach(Severity.NONE, Verdict.HOLD, needs_human=True)
    first = one(change(P, P, decision=outage))
    assert first.kind is AlertKind.HOLD and first.severity is Severity.MEDIUM
    assert derive_events(change(P, P, decision=outage, history=[first])) == []
    cleared = one(change(P, P, decision=breach(Severity.NONE, Verdict.CONTINUE), history=[first]))
    assert cleared.kind is AlertKind.HOLD_CLEARED and cleared.incident_severity is Severity.MEDIUM
    again = one(change(P, P, decision=outage, history=[first, cleared]))
    assert again.id == f"{ROLLOUT}/hold/2"


def test_a_hold_alerts_only_when_the_policy_asks_for_a_human() -> None:
    high = breach(Severity.HIGH, Verdict.HOLD)
    assert derive_events(change(P, P, decision=high)) == []  # rolls back next interval
    outage = breach(Severity.NONE, Verdict.HOLD)
    assert derive_events(change(P, P, decision=outage)) == []  # a blip, not yet a page
    event = long_hold()
    assert event.kind is AlertKind.HOLD and event.severity is Severity.HIGH


def test_healthy_intervals_and_inconclusive_ones_raise_nothing() -> None:
    assert derive_events(change(P, P, decision=breach(Severity.NONE, Verdict.CONTINUE))) == []
    inconclusive = breach(Severity.NONE, Verdict.INCONCLUSIVE)
    assert derive_events(change(P, P, decision=inconclusive)) == []
    assert derive_events(change(P, P)) == []


def test_a_rollback_after_a_hold_escalates_the_same_incident() -> None:
    hold = long_hold()
    started = one(change(P, RB, decision=breach(), history=[hold]))
    assert started.kind is AlertKind.ROLLBACK_STARTED
    assert started.incident_key == hold.incident_key
    assert started.incident_severity is Severity.HIGH and started.severity is Severity.CRITICAL


def test_an_operator_abort_rolls_back_and_verifies() -> None:
    started = one(change(P, RB, message="rolling back to revision 3: aborted by operator"))
    assert started.kind is AlertKind.ROLLBACK_STARTED and started.severity is Severity.HIGH
    verified = one(change(RB, RolloutState.ABORTED, history=[started]))
    assert verified.kind is AlertKind.ROLLBACK_VERIFIED
