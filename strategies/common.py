"""Small steps every strategy shares: start checks, failure, first serving, rollback bookkeeping."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from guard.kube import DeploymentSnapshot
from guard.models import ControlCommand, Evidence, RolloutState, Verdict

from .base import Action, RolloutContext, Transition, operational_decision, stay


def abort_before_start(ctx: RolloutContext) -> Transition:
    return stay(
        ctx,
        state=RolloutState.ABORTED,
        step="aborted before start",
        message="aborted before any change was made",
        outcome_reason="aborted",
        consumed_commands=list(ctx.commands),
        timestamps={"finished_at": ctx.now},
    )


def unknown_containers(ctx: RolloutContext, deployment: DeploymentSnapshot) -> str | None:
    """Why the request's images do not fit the Deployment, or None when they do."""
    unknown = sorted(set(ctx.request.images) - set(deployment.images))
    if not unknown:
        return None
    known = ", ".join(sorted(deployment.images))
    return (
        f"images: container(s) {', '.join(unknown)} not in {deployment.namespace}/"
        f"{deployment.name}; its containers are: {known}. Nothing was changed"
    )


def fail(ctx: RolloutContext, message: str) -> Transition:
    return stay(
        ctx,
        state=RolloutState.FAILED,
        step="failed",
        message=message,
        outcome_reason="error",
        consumed_commands=list(ctx.commands),
        timestamps={"finished_at": ctx.now},
    )


def first_serving(ctx: RolloutContext, candidate: DeploymentSnapshot | None) -> RolloutContext:
    """Remember when the new version first had an available pod: the earliest a fault shows."""
    if "candidate_serving_at" in ctx.strategy_state or candidate is None:
        return ctx
    current = candidate.current_replica_set
    if current is None or current.available_replicas == 0:
        return ctx
    serving = {**ctx.strategy_state, "candidate_serving_at": ctx.now.isoformat()}
    return replace(ctx, strategy_state=serving)


def start_rollback(
    ctx: RolloutContext,
    *,
    reason: str,
    summary: str,
    evidence: list[Evidence],
    command: ControlCommand | None,
    actions: list[Action],
    step: str = "rolling back",
    message: str | None = None,
    state: dict[str, Any] | None = None,
) -> Transition:
    """Enter ROLLING_BACK with the strategy's undo actions; the clock for `rollback_overdue`
    starts here."""
    decision = operational_decision(ctx, Verdict.ROLLBACK, summary, "rollback started", evidence)
    return stay(
        ctx,
        state=RolloutState.ROLLING_BACK,
        step=step,
        strategy_state={
            **(state if state is not None else ctx.strategy_state),
            "rollback_reason": reason,
            "rollback_started_at": ctx.now.isoformat(),
        },
        actions=actions,
        decision=decision,
        message=message or f"rolling back: {summary}",
        consumed_commands=[command] if command else [],
        timestamps={"rollback_started_at": ctx.now},
    )


def rollback_overdue(ctx: RolloutContext, progress: str) -> Transition | None:
    """A rollback not verified within `rollback_timeout_seconds` fails, so a human is paged
    instead of the guard waiting forever on a version that cannot come back."""
    started = ctx.strategy_state.get("rollback_started_at")
    waited = (ctx.now - datetime.fromisoformat(started)).total_seconds() if started else 0.0
    if waited <= ctx.config.rollback_timeout_seconds:
        return None
    return fail(
        ctx,
        f"rollback not verified after {waited:.0f}s: {progress}; "
        "the previous version is not available, a human is needed",
    )


def finish_rollback(ctx: RolloutContext, message: str) -> Transition:
    """The previous version serves everything again: rolled back, or aborted if an operator
    asked for it."""
    reason = ctx.strategy_state.get("rollback_reason")
    return stay(
        ctx,
        state=RolloutState.ABORTED if reason == "aborted" else RolloutState.ROLLED_BACK,
        step="rollback verified",
        message=message,
        outcome_reason=str(reason),
        consumed_commands=list(ctx.commands),
        timestamps={"rollback_verified_at": ctx.now, "finished_at": ctx.now},
    )
