"""Go/no-go before a rollout changes anything, the same for every strategy.

A release started on a broken target, during an incident or a freeze would be blamed for
problems it did not cause (or cause them at the worst moment). So before the strategy's first
step the guard checks, in order: the Deployment exists and is healthy; the freeze calendar; that
Prometheus answers; that the stable version's own metrics are not already breaching. The first
failed check refuses the rollout (a terminal state) with its reason and evidence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analyzers.base import Observation
from analyzers.registry import get_analyzer
from guard.config import AnalysisConfig, GuardConfig
from guard.kube import DeploymentSnapshot
from guard.models import (
    ControlCommand,
    Decision,
    Evidence,
    RolloutRequest,
    RolloutState,
    Severity,
    Verdict,
)
from strategies.base import Track, Transition

MeasureTrack = Callable[[Track], Awaitable[Observation]]


@dataclass(frozen=True)
class Preflight:
    """The outcome: `refused` names the failed check; `notes` go into the strategy state."""

    decision: Decision
    refused: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


async def preflight(
    request: RolloutRequest,
    deployment: DeploymentSnapshot | None,
    *,
    config: GuardConfig,
    analysis: AnalysisConfig,
    measure: MeasureTrack,
    now: datetime,
) -> Preflight:
    """Run the checks in order; the first failure refuses, with what it found."""
    target = f"{request.namespace}/{request.deployment}"
    if deployment is None:
        return _refuse(now, "target", f"deployment {target} not found", [])
    if not (deployment.complete and not deployment.paused):
        return _refuse(now, "target", f"{target} is not healthy: {deployment.describe()}", [])
    notes: dict[str, str] = {}
    window = config.active_freeze(request.service_name, now)
    if window is not None and request.override_freeze is None:
        summary = (
            f"freeze window '{window.name}' is active until {window.end.isoformat()}; "
            "submit with override_freeze and a reason to deploy anyway"
        )
        return _refuse(now, "freeze", summary, [_freeze_evidence(window.name, window.end)])
    if window is not None:
        notes["freeze_override"] = f"{window.name}: {request.override_freeze}"
    current = deployment.current_replica_set
    if current is None:
        return _refuse(now, "target", f"{target} has no current ReplicaSet", [])
    observation = await measure(Track(deployment.name, current.pod_template_hash))
    if request.restore_revision is not None:
        notes["restore"] = f"restoring revision {request.restore_revision}"
    return _judge_stable(observation, analysis, now, notes)


def _judge_stable(
    observation: Observation, analysis: AnalysisConfig, now: datetime, notes: dict[str, str]
) -> Preflight:
    """The stable version judged alone, as if it were the candidate: is it already in trouble?"""
    result = get_analyzer("thresholds").analyze(observation, analysis)
    if observation.unavailable:
        return _refuse(now, "prometheus", f"Prometheus: {result.summary}", result.evidence)
    # One short window at the medium tier is within the noise of a healthy service (the
    # policy itself only acts on medium after several intervals); high or critical is trouble.
    if result.severity.rank >= Severity.HIGH.rank and "restore" not in notes:
        summary = f"the stable version is already breaching ({result.summary})"
        return _refuse(now, "stable_breaching", summary, result.evidence)
    summary = "pre-flight passed: target healthy, no freeze, Prometheus answers, stable "
    summary += result.summary if result.verdict is Verdict.CONTINUE else f"({result.summary})"
    if "freeze_override" in notes:
        summary += f"; freeze window overridden ({notes['freeze_override']})"
    decision = Decision(
        at=now, verdict=Verdict.CONTINUE, summary=summary, step="pre-flight",
        action="started", evidence=list(result.evidence),
    )  # fmt: skip
    return Preflight(decision=decision, notes=notes)


def preflight_transition(
    outcome: Preflight, state: dict[str, Any], commands: list[ControlCommand], now: datetime
) -> Transition:
    """Refused: terminal, nothing changed. Passed: still pending, the strategy starts next."""
    if outcome.refused is None:
        return Transition(
            RolloutState.PENDING, "pre-flight passed", state, decision=outcome.decision
        )
    return Transition(
        RolloutState.REFUSED,
        "refused",
        state,
        decision=outcome.decision,
        message=outcome.decision.summary,
        outcome_reason=f"preflight:{outcome.refused}",
        consumed_commands=list(commands),
        timestamps={"finished_at": now},
    )


def _freeze_evidence(name: str, end: datetime) -> Evidence:
    return Evidence(metric="freeze_window", note=f"{name} until {end.isoformat()}")


def _refuse(now: datetime, check: str, summary: str, evidence: list[Evidence]) -> Preflight:
    decision = Decision(
        at=now,
        verdict=Verdict.REFUSE,
        severity=max((e.severity for e in evidence), key=lambda s: s.rank, default=Severity.NONE),
        summary=f"refused: {summary}; nothing was changed",
        action="refused",
        step="pre-flight",
        evidence=list(evidence),
    )
    return Preflight(decision=decision, refused=check)
