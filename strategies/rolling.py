"""Guarded rolling update: Kubernetes replaces pods; the guard judges the new ReplicaSet.

Rollback is what `kubectl rollout undo` does (the previous pod template put back) and is only
called done once the previous revision is fully available again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from analyzers.base import Observation
from guard.cluster import ClusterNeeds
from guard.config import ServiceConfig
from guard.kube import DeploymentSnapshot
from guard.models import ControlCommand, Evidence, RolloutRequest, RolloutState, Verdict

from .base import (
    Action,
    AnalysisTarget,
    RolloutContext,
    Track,
    Transition,
    judge,
    operational_decision,
    stay,
)
from .common import fail, finish_rollback, rollback_overdue, start_rollback

UPDATING = "updating"
ANALYSING = "analysing"
ROLLING_BACK = "rolling back"


class RollingStrategy:
    """Rolling update of the Deployment in place, analysed while and after it rolls."""

    name = "rolling"

    def needs(self, request: RolloutRequest, service: ServiceConfig) -> ClusterNeeds:
        return ClusterNeeds()  # its own Deployment is all it looks at

    def analysis_target(self, ctx: RolloutContext) -> AnalysisTarget | None:
        if ctx.state not in (RolloutState.PROGRESSING, RolloutState.PAUSED):
            return None
        candidate = _candidate_hash(ctx)
        if candidate is None:
            return None
        workload = ctx.request.deployment
        stable = ctx.strategy_state.get("stable_hash")
        return AnalysisTarget(
            candidate=Track(workload, candidate),
            baseline=Track(workload, stable) if stable else None,
        )

    def step(self, ctx: RolloutContext) -> Transition:
        if ctx.state is RolloutState.PENDING:
            return _start(ctx)
        if ctx.state is RolloutState.ROLLING_BACK:
            return _verify_rollback(ctx)
        ctx = _note_serving(ctx)
        if ControlCommand.ABORT in ctx.commands:
            return _rollback(ctx, "aborted", "aborted by operator", [], ControlCommand.ABORT)
        if ctx.deployment is None:
            return fail(ctx, f"deployment {_target(ctx)} disappeared during the rollout")
        if ctx.deployment.progress_deadline_exceeded:
            return _progress_deadline(ctx)
        if ctx.observation is not None:
            return _analysed(ctx, ctx.observation)
        return _commands_and_progress(ctx)


def _start(ctx: RolloutContext) -> Transition:
    deployment = ctx.deployment
    if ControlCommand.ABORT in ctx.commands:
        return stay(
            ctx,
            state=RolloutState.ABORTED,
            step="aborted before start",
            message="aborted before any change was made",
            outcome_reason="aborted",
            consumed_commands=[ControlCommand.ABORT],
            timestamps={"finished_at": ctx.now},
        )
    if deployment is None:
        return fail(ctx, f"deployment {_target(ctx)} not found; nothing was changed")
    unknown = sorted(set(ctx.request.images) - set(deployment.images))
    if unknown:
        known = ", ".join(sorted(deployment.images))
        return fail(
            ctx,
            f"images: container(s) {', '.join(unknown)} not in {_target(ctx)}; "
            f"its containers are: {known}. Nothing was changed",
        )
    current = deployment.current_replica_set
    state: dict[str, Any] = {
        **ctx.strategy_state,  # pre-flight notes, e.g. a recorded freeze override
        "stable_revision": deployment.revision,
        "stable_hash": current.pod_template_hash if current else None,
        "stable_template": deployment.template,
        "stable_images": deployment.images,
        "healthy_intervals": 0,
    }
    if all(deployment.images[c] == image for c, image in ctx.request.images.items()):
        return stay(
            ctx,
            state=RolloutState.PROMOTED,
            step="no change",
            strategy_state=state,
            message="the deployment already runs these images; nothing to roll out",
            outcome_reason="unchanged",
            timestamps={"started_at": ctx.now, "finished_at": ctx.now},
        )
    action = Action(
        "set_images",
        {
            "namespace": ctx.request.namespace,
            "name": ctx.request.deployment,
            "images": dict(ctx.request.images),
            "rollout_id": ctx.rollout_id,
        },
    )
    return stay(
        ctx,
        state=RolloutState.PROGRESSING,
        step=UPDATING,
        strategy_state=state,
        actions=[action],
        message=f"updating {_target(ctx)} from revision {deployment.revision}",
        timestamps={"started_at": ctx.now},
    )


def _commands_and_progress(ctx: RolloutContext) -> Transition:
    assert ctx.deployment is not None
    if ControlCommand.PAUSE in ctx.commands and ctx.state is RolloutState.PROGRESSING:
        return stay(
            ctx,
            state=RolloutState.PAUSED,
            actions=[_paused(ctx, True)],
            message="paused by operator; analysis continues, nothing advances",
            consumed_commands=[ControlCommand.PAUSE],
        )
    if ControlCommand.RESUME in ctx.commands:
        return stay(
            ctx,
            state=RolloutState.PROGRESSING,
            actions=[_paused(ctx, False)] if ctx.state is RolloutState.PAUSED else [],
            message="resumed by operator",
            # A pause sent while already paused is redundant; left queued, it would pause again.
            consumed_commands=[ControlCommand.RESUME, *_consumed(ctx, ControlCommand.PAUSE)],
        )
    if ctx.state is RolloutState.PAUSED:
        return stay(ctx, consumed_commands=_consumed(ctx, ControlCommand.PAUSE))
    if not ctx.deployment.complete or _candidate_hash(ctx) is None:
        return stay(ctx, step=UPDATING, message=ctx.deployment.describe())
    if ControlCommand.PROMOTE in ctx.commands:
        decision = operational_decision(
            ctx, Verdict.PROMOTE, "promoted by operator", "promoted", []
        )
        return _promote(ctx, decision, ControlCommand.PROMOTE)
    return stay(ctx, step=ANALYSING)


def _analysed(ctx: RolloutContext, observation: Observation) -> Transition:
    assert ctx.deployment is not None
    judgement = judge(ctx, observation)
    state = judgement.strategy_state
    if judgement.verdict is Verdict.ROLLBACK:
        decision = judgement.decision.model_copy(update={"action": "rollback started"})
        moved = _rollback(ctx, "analysis", decision.summary, decision.evidence, None)
        moved.decision = decision
        moved.strategy_state = {**moved.strategy_state, **state}
        moved.timestamps = {**judgement.timestamps, **moved.timestamps}
        return moved
    complete = ctx.deployment.complete
    progressing = ctx.state is RolloutState.PROGRESSING and ControlCommand.PAUSE not in ctx.commands
    healthy = judgement.verdict is Verdict.CONTINUE and complete and progressing
    state["healthy_intervals"] = int(state.get("healthy_intervals", 0)) + 1 if healthy else 0
    needed = ctx.config.healthy_intervals_to_promote
    decision = judgement.decision
    operator_promote = ControlCommand.PROMOTE in ctx.commands
    if complete and progressing and (operator_promote or state["healthy_intervals"] >= needed):
        reason = (
            "promoted by operator"
            if operator_promote
            else f"{needed} healthy intervals after the update completed"
        )
        decision = decision.model_copy(
            update={
                "verdict": Verdict.PROMOTE,
                "action": "promoted",
                "summary": f"{decision.summary}; {reason}",
            }
        )
        moved = _promote(ctx, decision, *_consumed(ctx, ControlCommand.PROMOTE))
        moved.strategy_state = state
        moved.timestamps = {**judgement.timestamps, **moved.timestamps}
        return moved
    plain = _commands_and_progress(ctx)
    plain.strategy_state = {
        **state,
        **{k: v for k, v in plain.strategy_state.items() if k not in state},
    }
    plain.decision = decision
    plain.timestamps = {**judgement.timestamps, **plain.timestamps}
    if complete and plain.state is RolloutState.PROGRESSING:
        plain.step = f"{ANALYSING} ({state['healthy_intervals']}/{needed} healthy)"
    return _hold_progress(ctx, plain, judgement.verdict)


def _hold_progress(ctx: RolloutContext, plain: Transition, verdict: Verdict) -> Transition:
    """A hold stops Kubernetes replacing more pods (spec.paused) until an interval is healthy.

    Only while the update is still rolling and nobody else paused or resumed it this tick.
    """
    assert ctx.deployment is not None
    held = bool(plain.strategy_state.get("held"))
    busy = plain.actions or plain.state is not RolloutState.PROGRESSING
    if verdict is Verdict.HOLD and not held and not busy and not ctx.deployment.complete:
        plain.actions = [_paused(ctx, True)]
        plain.strategy_state = {**plain.strategy_state, "held": True}
        plain.step = f"{UPDATING} (held: {plain.decision.summary if plain.decision else ''})"[:128]
    elif verdict is Verdict.CONTINUE and held and not busy:
        plain.actions = [_paused(ctx, False)]
        plain.strategy_state = {**plain.strategy_state, "held": False}
    return plain


def _progress_deadline(ctx: RolloutContext) -> Transition:
    assert ctx.deployment is not None
    condition = ctx.deployment.conditions.get("Progressing", {})
    evidence = [
        Evidence(
            metric="progress_deadline",
            note=str(condition.get("message", "ProgressDeadlineExceeded")),
            value=float(ctx.deployment.available_replicas),
            threshold=float(ctx.deployment.desired_replicas),
            comparison="<",
        )
    ]
    summary = f"new pods did not become available in time: {ctx.deployment.describe()}"
    moved = _rollback(ctx, "progress_deadline", summary, evidence, None)
    moved.timestamps.setdefault("first_bad_sample_at", ctx.now)
    return moved


def _rollback(
    ctx: RolloutContext,
    reason: str,
    summary: str,
    evidence: list[Evidence],
    command: ControlCommand | None,
) -> Transition:
    template = ctx.strategy_state["stable_template"]
    action = Action(
        "restore_template",
        {"namespace": ctx.request.namespace, "name": ctx.request.deployment, "template": template},
    )
    revision = ctx.strategy_state.get("stable_revision")
    return start_rollback(
        ctx,
        reason=reason,
        summary=summary,
        evidence=evidence,
        command=command,
        actions=[action],
        step=ROLLING_BACK,
        message=f"rolling back to revision {revision}: {summary}",
    )


def _verify_rollback(ctx: RolloutContext) -> Transition:
    deployment = ctx.deployment
    if deployment is None:
        return fail(ctx, f"deployment {_target(ctx)} disappeared during the rollback")
    if not (_restored(ctx, deployment) and deployment.complete):
        overdue = rollback_overdue(ctx, deployment.describe())
        return overdue or stay(
            ctx, message=f"waiting for the previous revision: {deployment.describe()}"
        )
    return finish_rollback(ctx, f"previous revision fully available again: {deployment.describe()}")


def _restored(ctx: RolloutContext, deployment: DeploymentSnapshot) -> bool:
    """The previous ReplicaSet is current again (by hash, or by images if it had none)."""
    stable_hash = ctx.strategy_state.get("stable_hash")
    if stable_hash is None:
        return deployment.images == ctx.strategy_state.get("stable_images")
    current = deployment.current_replica_set
    return current is not None and current.pod_template_hash == stable_hash


def _promote(ctx: RolloutContext, decision: Any, *consumed: ControlCommand) -> Transition:
    return stay(
        ctx,
        state=RolloutState.PROMOTED,
        step="promoted",
        decision=decision,
        message=f"promoted: {ctx.deployment.describe() if ctx.deployment else ''}",
        outcome_reason="promoted",
        consumed_commands=list(consumed),
        timestamps={"finished_at": ctx.now},
    )


def _candidate_hash(ctx: RolloutContext) -> str | None:
    """The new ReplicaSet's hash, once the controller has created it."""
    deployment = ctx.deployment
    if deployment is None or deployment.observed_generation < deployment.generation:
        return None
    current = deployment.current_replica_set
    stable_revision = int(ctx.strategy_state.get("stable_revision", 0))
    if current is None or deployment.revision <= stable_revision:
        return None
    return current.pod_template_hash


def _note_serving(ctx: RolloutContext) -> RolloutContext:
    """Remember when the new version first took traffic: the earliest a fault can show."""
    candidate = _candidate_hash(ctx)
    if "candidate_serving_at" in ctx.strategy_state or candidate is None:
        return ctx
    current = ctx.deployment.current_replica_set if ctx.deployment else None
    if current is None or current.available_replicas == 0:
        return ctx
    serving = {
        **ctx.strategy_state,
        "candidate_hash": candidate,
        "candidate_serving_at": ctx.now.isoformat(),
    }
    return replace(ctx, strategy_state=serving)


def _paused(ctx: RolloutContext, paused: bool) -> Action:
    return Action(
        "set_paused",
        {"namespace": ctx.request.namespace, "name": ctx.request.deployment, "paused": paused},
    )


def _consumed(ctx: RolloutContext, *commands: ControlCommand) -> list[ControlCommand]:
    return [c for c in commands if c in ctx.commands]


def _target(ctx: RolloutContext) -> str:
    return f"{ctx.request.namespace}/{ctx.request.deployment}"
