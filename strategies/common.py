"""Small steps every multi-Deployment strategy shares: start checks, failure, first serving."""

from __future__ import annotations

from dataclasses import replace

from guard.kube import DeploymentSnapshot
from guard.models import RolloutState

from .base import RolloutContext, Transition, stay


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
