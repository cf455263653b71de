"""Which alerts a rollout's tick produces: a pure function of the change and the alerts so far.

The strategies know nothing of alerts; this module reads their transitions. A rollout has at
most one open incident (a hold, a rollback or a failure); firing events open or escalate it and
carry its key, resolving events close it and repeat what broke, so a resolve on PagerDuty or
Alertmanager matches its trigger. Holds alert once per episode, not once per interval, and only
when the analysis policy says they need a human.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guard.models import NEEDS_HUMAN, Decision, RolloutRequest, RolloutState, Severity, Verdict

from .base import AlertEvent, AlertKind

DEFAULT_SEVERITY = {
    AlertKind.ROLLBACK_FAILED: Severity.CRITICAL,
    AlertKind.ROLLOUT_FAILED: Severity.CRITICAL,
    AlertKind.ROLLBACK_STARTED: Severity.HIGH,
    AlertKind.HOLD: Severity.MEDIUM,
    AlertKind.PREFLIGHT_REFUSED: Severity.MEDIUM,
    AlertKind.CONFIG_REFUSED: Severity.HIGH,
}
GUARD = "deploy-guard"
CONFIG_INCIDENT = f"{GUARD}/config"
CLEARS_HOLD = frozenset({Verdict.CONTINUE, Verdict.PROMOTE})


@dataclass(frozen=True)
class Change:
    """One tick of one rollout, as far as alerts are concerned."""

    rollout_id: str
    request: RolloutRequest
    previous_state: RolloutState
    state: RolloutState
    step: str
    message: str
    decision: Decision | None
    strategy_state: dict[str, Any]
    now: datetime
    history: Sequence[AlertEvent] = field(default_factory=tuple)
    guard_url: str | None = None


def open_incident(history: Sequence[AlertEvent]) -> AlertEvent | None:
    """The firing event that opened (or last escalated) the incident, if it is still open."""
    return history[-1] if history and history[-1].kind.firing else None


def derive_events(change: Change) -> list[AlertEvent]:
    kind = _state_kind(change) or _hold_kind(change)
    return [] if kind is None else [_event(change, kind)]


def _state_kind(change: Change) -> AlertKind | None:
    before, after = change.previous_state, change.state
    if after is before:
        return None
    if after is RolloutState.ROLLING_BACK:
        return AlertKind.ROLLBACK_STARTED
    if before is RolloutState.ROLLING_BACK and after in (
        RolloutState.ROLLED_BACK,
        RolloutState.ABORTED,
    ):
        return AlertKind.ROLLBACK_VERIFIED
    if after is RolloutState.FAILED:
        if before is RolloutState.PENDING:
            return AlertKind.PREFLIGHT_REFUSED
        if before is RolloutState.ROLLING_BACK:
            return AlertKind.ROLLBACK_FAILED
        return AlertKind.ROLLOUT_FAILED
    if after is RolloutState.PROMOTED:
        return AlertKind.PROMOTED
    return None


def _hold_kind(change: Change) -> AlertKind | None:
    if change.decision is None or change.state.terminal:
        return None
    incident = open_incident(change.history)
    holding = incident is not None and incident.kind is AlertKind.HOLD
    if change.decision.verdict is Verdict.HOLD and incident is None and _needs_human(change):
        return AlertKind.HOLD
    if holding and change.decision.verdict in CLEARS_HOLD:
        return AlertKind.HOLD_CLEARED
    return None


def _needs_human(change: Change) -> bool:
    """The analysis policy decides when a hold needs on-call (see analyzers/policy.py)."""
    assert change.decision is not None
    return change.decision.action == NEEDS_HUMAN


def _event(change: Change, kind: AlertKind) -> AlertEvent:
    incident = open_incident(change.history)
    decision = change.decision or (incident.decision if incident else None)
    seen = sum(1 for e in change.history if e.kind is kind)
    request = change.request
    links = {}
    if change.guard_url:
        links["rollout"] = f"{change.guard_url.rstrip('/')}/v1/rollouts/{change.rollout_id}"
    return AlertEvent(
        id=f"{change.rollout_id}/{kind.value}/{seen + 1}",
        kind=kind,
        at=change.now,
        rollout_id=change.rollout_id,
        namespace=request.namespace,
        deployment=request.deployment,
        service=request.service_name,
        strategy=request.strategy,
        step=change.step,
        severity=_severity(kind, change.decision, incident),
        incident_key=f"deploy-guard/{change.rollout_id}",
        incident_severity=incident.severity if incident else None,
        summary=_summary(kind, change, incident),
        action=_action(kind, change),
        outcome=_outcome(kind, change),
        message=change.message,
        images=dict(request.images),
        previous_images=dict(change.strategy_state.get("stable_images") or {}),
        commit_sha=request.commit_sha,
        decision=decision,
        rollback_seconds=_rollback_seconds(kind, change, incident),
        links=links,
    )


def _severity(kind: AlertKind, decision: Decision | None, incident: AlertEvent | None) -> Severity:
    if kind is AlertKind.ROLLBACK_FAILED:
        return Severity.CRITICAL
    if decision is not None and decision.severity is not Severity.NONE and kind.firing:
        return decision.severity
    if incident is not None:
        return incident.severity
    return DEFAULT_SEVERITY.get(kind, Severity.NONE)


def _summary(kind: AlertKind, change: Change, incident: AlertEvent | None) -> str:
    if kind is AlertKind.ROLLBACK_VERIFIED and incident is not None:
        return incident.summary
    if kind is AlertKind.ROLLBACK_FAILED and incident is not None:
        return f"{incident.summary}; then the rollback failed: {change.message}"
    if change.decision is not None and kind is not AlertKind.PREFLIGHT_REFUSED:
        return change.decision.summary
    return change.message or kind.value


def _action(kind: AlertKind, change: Change) -> str:
    revision = change.strategy_state.get("stable_revision")
    return {
        AlertKind.PREFLIGHT_REFUSED: "refused the release; nothing was changed",
        AlertKind.HOLD: "holding: the rollout neither advances nor is promoted",
        AlertKind.HOLD_CLEARED: "resumed judging the rollout",
        AlertKind.ROLLBACK_STARTED: f"started an automatic rollback to revision {revision}",
        AlertKind.ROLLBACK_VERIFIED: f"rolled back to revision {revision}",
        AlertKind.ROLLBACK_FAILED: f"tried to roll back to revision {revision}",
        AlertKind.ROLLOUT_FAILED: "stopped guarding the rollout",
        AlertKind.PROMOTED: "promoted the new version",
    }[kind]


def _outcome(kind: AlertKind, change: Change) -> str:
    return {
        AlertKind.PREFLIGHT_REFUSED: f"refused: {change.message}",
        AlertKind.HOLD: "on hold until the metrics recover; a human may abort, resume or promote",
        AlertKind.HOLD_CLEARED: "hold cleared; analysis continues",
        AlertKind.ROLLBACK_STARTED: "rollback in progress; not yet verified",
        AlertKind.ROLLBACK_VERIFIED: f"rollback verified: {change.message}",
        AlertKind.ROLLBACK_FAILED: f"rollback FAILED, a human is needed: {change.message}",
        AlertKind.ROLLOUT_FAILED: f"failed, a human is needed: {change.message}",
        AlertKind.PROMOTED: change.message or "promoted",
    }[kind]


def _rollback_seconds(kind: AlertKind, change: Change, incident: AlertEvent | None) -> float | None:
    if kind is not AlertKind.ROLLBACK_VERIFIED or incident is None:
        return None
    if incident.kind is not AlertKind.ROLLBACK_STARTED:
        return None
    return (change.now - incident.at).total_seconds()


def config_event(
    kind: AlertKind, *, source: str, message: str, now: datetime, guard_url: str | None = None
) -> AlertEvent:
    """The guard's own alert about its config file: a reload refused (firing: the file on disk
    is not what runs) or, after a refusal, one applied (resolving that incident).

    Not about a rollout, so `rollout_id` and `namespace` are empty and `deployment` and
    `service` name the guard; routes filtering by service match it as `deploy-guard`.
    """
    refused = kind is AlertKind.CONFIG_REFUSED
    return AlertEvent(
        id=f"{GUARD}/{kind.value}/{now.isoformat()}",
        kind=kind,
        at=now,
        rollout_id="",
        namespace="",
        deployment=GUARD,
        service=GUARD,
        strategy="",
        step="config reload",
        severity=DEFAULT_SEVERITY[AlertKind.CONFIG_REFUSED] if refused else Severity.NONE,
        incident_key=CONFIG_INCIDENT,
        incident_severity=None if refused else DEFAULT_SEVERITY[AlertKind.CONFIG_REFUSED],
        summary=(f"config {source} refused: " if refused else f"config {source} applied: ")
        + message.splitlines()[0],
        action="kept the config in force and refused the new file"
        if refused
        else "applied the new config",
        outcome=f"refused: {message}" if refused else message,
        message=message,
        links={"guard": guard_url} if guard_url else {},
    )
