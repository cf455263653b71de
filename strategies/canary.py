"""Canary: a second Deployment takes a growing share of traffic, judged against the stable one.

Each step sets a weight (a replica ratio, or exact HTTPRoute weights with a router) and needs
its healthy intervals before the next. Promotion gives the stable Deployment the new template,
waits until it is fully available, then takes traffic off the canary and deletes it. Rollback
takes traffic off the canary at once and deletes it; the stable Deployment was never touched
unless promotion had begun. Either is only done once the cluster shows it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from guard.cluster import ClusterNeeds
from guard.config import ServiceConfig
from guard.kube import DeploymentSnapshot
from guard.models import (
    PAUSE_STEP,
    ControlCommand,
    Decision,
    Evidence,
    RolloutRequest,
    RolloutState,
    Verdict,
)

from . import canary_plan as plan
from .base import (
    Action,
    AnalysisTarget,
    RolloutContext,
    Track,
    Transition,
    judge,
    operational_decision,
    reset_policy,
    stay,
)
from .common import (
    abort_before_start,
    fail,
    finish_rollback,
    first_serving,
    rollback_overdue,
    start_rollback,
    unknown_containers,
)

STEP, PROMOTING, FINISHING = "step", "promoting", "finishing"


class CanaryStrategy:
    """Canary Deployment beside the stable one; weights by replica ratio or HTTPRoute."""

    name = "canary"

    def needs(self, request: RolloutRequest, service: ServiceConfig) -> ClusterNeeds:
        names = plan.Names.of(request, service)
        if names.route is None:
            return ClusterNeeds(deployments=(names.canary,))
        return ClusterNeeds(
            deployments=(names.canary,),
            services=(names.stable_service, names.canary_service),
            httproutes=(names.route,),
        )

    def analysis_target(self, ctx: RolloutContext) -> AnalysisTarget | None:
        if ctx.state not in (RolloutState.PROGRESSING, RolloutState.PAUSED):
            return None
        canary = _canary_hash(ctx)
        if canary is None:
            return None
        names = _names(ctx)
        stable = str(ctx.strategy_state.get("stable_hash", ""))
        return AnalysisTarget(
            candidate=Track(names.canary, canary), baseline=Track(names.stable, stable)
        )

    def step(self, ctx: RolloutContext) -> Transition:
        if ctx.state is RolloutState.PENDING:
            return _start(ctx)
        if ctx.state is RolloutState.ROLLING_BACK:
            return _verify_rollback(ctx)
        ctx = first_serving(ctx, _canary(ctx))
        if ControlCommand.ABORT in ctx.commands:
            summary = f"aborted by {ctx.note(ControlCommand.ABORT)}"
            return _rollback(ctx, "aborted", summary, [], ControlCommand.ABORT)
        if ctx.deployment is None:
            return fail(ctx, f"deployment {_names(ctx).stable} disappeared during the rollout")
        phase = ctx.strategy_state.get("phase")
        if phase == FINISHING:
            return _verify_promotion(ctx)
        if ctx.observation is not None:
            judged = _analysed(ctx)
            if judged is not None:
                return judged
        if phase == PROMOTING:
            return _promoting(ctx)
        return _stepping(ctx)


def _start(ctx: RolloutContext) -> Transition:
    names = _names(ctx)
    stable = ctx.deployment
    if ControlCommand.ABORT in ctx.commands:
        return abort_before_start(ctx)
    if stable is None:
        return fail(ctx, f"deployment {names.namespace}/{names.stable} not found; nothing changed")
    problem = unknown_containers(ctx, stable)
    if problem:
        return fail(ctx, problem)
    current = stable.current_replica_set
    routed = names.route is not None
    steps = plan.traffic_steps(ctx.request.steps or ctx.service.canary.steps, routed)
    template = plan.canary_template(stable.template, ctx.request.images)
    state: dict[str, Any] = {
        **ctx.strategy_state,
        "stable_revision": stable.revision,
        "stable_hash": current.pod_template_hash if current else "",
        "stable_template": stable.template,
        "canary_template": template,
        "steps": steps,
        "step_index": -1,
        "effective_weights": [],
        "phase": STEP,
    }
    actions: list[Action] = []
    if routed:
        service = ctx.cluster.service(names.stable_service)
        route = ctx.cluster.httproute(names.route or "")
        if service is None or route is None or not route.weights(names.stable_service):
            missing = f"HTTPRoute {names.route} routing to Service {names.stable_service}"
            return fail(ctx, f"{missing} not found; nothing was changed")
        state["stable_selector"] = service.selector
        actions = plan.routed_setup(names, state["stable_hash"], service.selector, template)
    moved = _next_step(ctx, state, actions)
    moved.timestamps = {"started_at": ctx.now}
    return moved


def _next_step(ctx: RolloutContext, state: dict[str, Any], actions: list[Action]) -> Transition:
    """Move to the next step: a weight, a pause waiting for promote, or the promotion."""
    index = int(state["step_index"]) + 1
    steps: list[Any] = state["steps"]
    state = {**reset_policy(state), "step_index": index, "healthy_intervals": 0}
    if index >= len(steps):
        return _promote(ctx, state, actions, f"all {len(steps)} steps healthy")
    if steps[index] == PAUSE_STEP:
        return stay(
            ctx,
            state=RolloutState.PAUSED,
            step=f"step {index + 1}/{len(steps)}: paused until promote",
            strategy_state={**state, "pause_step": True},
            actions=actions,
            message="paused at a pause step; promote or resume to continue",
        )
    split = _split(ctx, state, int(steps[index]))
    weights = [*state["effective_weights"], {"step": index + 1, **split.to_json()}]
    actions = [
        *actions,
        *plan.apply_canary(_names(ctx), state["canary_template"], split, ctx.rollout_id),
    ]
    return stay(
        ctx,
        state=RolloutState.PROGRESSING,
        step=_step_label(index, steps, split),
        strategy_state={**state, "effective_weights": weights, "pause_step": False},
        actions=actions,
        message=f"canary at {split.effective_weight:g}% of traffic "
        f"({split.canary_replicas} canary, {split.stable_replicas} stable pods)",
    )


def _stepping(ctx: RolloutContext) -> Transition:
    """No analysis this tick: carry out commands, wait for canary pods."""
    state = ctx.strategy_state
    if ControlCommand.PROMOTE in ctx.commands:
        reason = f"promoted by {ctx.note(ControlCommand.PROMOTE)}"
        moved = _promote(ctx, dict(state), [], reason)
        moved.consumed_commands = [ControlCommand.PROMOTE]
        return moved
    if ctx.state is RolloutState.PAUSED:
        if ControlCommand.RESUME not in ctx.commands:
            return stay(ctx, consumed_commands=_present(ctx, ControlCommand.PAUSE))
        resumed = _next_step(ctx, dict(state), []) if state.get("pause_step") else _resume(ctx)
        resumed.consumed_commands = [ControlCommand.RESUME, *_present(ctx, ControlCommand.PAUSE)]
        return resumed
    if ControlCommand.PAUSE in ctx.commands:
        return stay(
            ctx,
            state=RolloutState.PAUSED,
            message=f"paused by {ctx.note(ControlCommand.PAUSE)}; analysis continues",
            consumed_commands=[ControlCommand.PAUSE],
        )
    canary = _canary(ctx)
    if canary is not None and canary.progress_deadline_exceeded:
        summary = f"canary pods did not become available in time: {canary.describe()}"
        return _rollback(ctx, "progress_deadline", summary, [], None)
    needed = _needed(ctx)
    if int(state.get("healthy_intervals", 0)) >= needed:
        return _next_step(ctx, dict(state), [])
    return stay(ctx)


def _analysed(ctx: RolloutContext) -> Transition | None:
    """Judge this interval; a rollback verdict wins over everything but abort."""
    assert ctx.observation is not None
    judgement = judge(ctx, ctx.observation)
    if judgement.verdict is Verdict.ROLLBACK:
        decision = judgement.decision.model_copy(update={"action": "rollback started"})
        moved = _rollback(ctx, "analysis", decision.summary, decision.evidence, None)
        moved.decision = decision
        moved.strategy_state = {**judgement.strategy_state, **moved.strategy_state}
        moved.timestamps = {**judgement.timestamps, **moved.timestamps}
        return moved
    state = judgement.strategy_state
    canary = _canary(ctx)
    ready = canary is not None and canary.complete
    counting = ctx.state is RolloutState.PROGRESSING and state.get("phase") == STEP
    healthy = judgement.verdict is Verdict.CONTINUE and ready and counting
    state["healthy_intervals"] = int(state.get("healthy_intervals", 0)) + 1 if healthy else 0
    inner = replace(ctx, strategy_state=state, observation=None)
    moved = _promoting(inner) if state.get("phase") == PROMOTING else _stepping(inner)
    moved.decision = _combined(judgement.decision, moved.decision)
    moved.timestamps = {**judgement.timestamps, **moved.timestamps}
    return moved


def _combined(measured: Decision, operational: Decision | None) -> Decision:
    """One decision per tick: the interval's evidence, with what the guard did because of it."""
    if operational is None:
        return measured
    return measured.model_copy(
        update={
            "verdict": operational.verdict,
            "action": operational.action,
            "summary": f"{measured.summary}; {operational.summary}",
        }
    )


def _promote(
    ctx: RolloutContext, state: dict[str, Any], actions: list[Action], reason: str
) -> Transition:
    """The stable Deployment takes the new template; the canary keeps serving meanwhile."""
    names = _names(ctx)
    template = plan.promoted_template(state["stable_template"], ctx.request.images)
    actions = [*actions, plan.restore_stable(names, template)]
    if names.route is not None and state.get("stable_selector") is not None:
        actions.append(
            plan.selector_action(names.namespace, names.stable_service, state["stable_selector"])
        )
    decision = operational_decision(ctx, Verdict.PROMOTE, reason, "promotion started", [])
    return stay(
        ctx,
        state=RolloutState.PROGRESSING,
        step="promoting: stable takes the new version",
        strategy_state={**state, "phase": PROMOTING, "promote_reason": reason},
        actions=actions,
        decision=decision,
        message=f"{reason}; updating {names.stable} to the new version",
    )


def _promoting(ctx: RolloutContext) -> Transition:
    """Wait until the stable Deployment runs the new version everywhere, then drop the canary."""
    stable = ctx.deployment
    assert stable is not None
    if not (_runs_new_version(ctx, stable) and stable.complete):
        return stay(ctx, message=f"promoting: {stable.describe()}")
    names = _names(ctx)
    return stay(
        ctx,
        step="promoting: removing the canary",
        strategy_state={**ctx.strategy_state, "phase": FINISHING},
        actions=plan.remove_canary(names),
        message=f"{names.stable} runs the new version; traffic back on it, canary removed",
    )


def _verify_promotion(ctx: RolloutContext) -> Transition:
    if not _canary_gone(ctx):
        return stay(ctx, message="waiting for the canary to be removed")
    return stay(
        ctx,
        state=RolloutState.PROMOTED,
        step="promoted",
        message=f"promoted: {ctx.deployment.describe() if ctx.deployment else ''}; canary removed",
        outcome_reason="promoted",
        consumed_commands=list(ctx.commands),
        timestamps={"finished_at": ctx.now},
    )


def _rollback(
    ctx: RolloutContext,
    reason: str,
    summary: str,
    evidence: list[Evidence],
    command: ControlCommand | None,
) -> Transition:
    """Traffic off the canary at once and the canary deleted; stable restored if promotion began."""
    names = _names(ctx)
    state = ctx.strategy_state
    actions = plan.remove_canary(names)
    if state.get("phase") in (PROMOTING, FINISHING):
        actions.append(plan.restore_stable(names, state["stable_template"]))
    return start_rollback(
        ctx, reason=reason, summary=summary, evidence=evidence, command=command, actions=actions
    )


def _verify_rollback(ctx: RolloutContext) -> Transition:
    stable = ctx.deployment
    if stable is None:
        return fail(ctx, f"deployment {_names(ctx).stable} disappeared during the rollback")
    current = stable.current_replica_set
    restored = current is not None and current.pod_template_hash == ctx.strategy_state.get(
        "stable_hash"
    )
    if not (_canary_gone(ctx) and restored and stable.complete):
        overdue = rollback_overdue(ctx, stable.describe())
        return overdue or stay(
            ctx, message=f"waiting for the canary to go and stable: {stable.describe()}"
        )
    unpin = _unpin_stable_service(ctx)
    if unpin is not None:
        return stay(ctx, actions=[unpin], message="canary gone; stable Service selector restored")
    return finish_rollback(
        ctx, f"canary removed, all traffic on the stable version: {stable.describe()}"
    )


def _unpin_stable_service(ctx: RolloutContext) -> Action | None:
    """With a router the stable Service was pinned to the stable pods; put its selector back."""
    names = _names(ctx)
    original = ctx.strategy_state.get("stable_selector")
    service = ctx.cluster.service(names.stable_service)
    if names.route is None or original is None or service is None:
        return None
    if service.selector == original:
        return None
    return plan.selector_action(names.namespace, names.stable_service, original)


def _resume(ctx: RolloutContext) -> Transition:
    return stay(
        ctx, state=RolloutState.PROGRESSING, message=f"resumed by {ctx.note(ControlCommand.RESUME)}"
    )


def _canary_gone(ctx: RolloutContext) -> bool:
    names = _names(ctx)
    if ctx.cluster.deployment(names.canary) is not None:
        return False
    if names.route is None:
        return True
    route = ctx.cluster.httproute(names.route)
    on_route = route is not None and names.canary_service in route.weights(names.stable_service)
    return ctx.cluster.service(names.canary_service) is None and not on_route


def _runs_new_version(ctx: RolloutContext, stable: DeploymentSnapshot) -> bool:
    images = stable.images
    current = stable.current_replica_set
    new_revision = stable.revision > int(ctx.strategy_state.get("stable_revision", 0))
    matches = all(images.get(c) == i for c, i in ctx.request.images.items())
    return (
        matches
        and new_revision
        and current is not None
        and stable.observed_generation >= stable.generation
    )


def _split(ctx: RolloutContext, state: dict[str, Any], weight: int) -> plan.Split:
    assert ctx.deployment is not None
    routed = _names(ctx).route is not None
    return plan.split_for(weight, ctx.deployment.desired_replicas, routed)


def _step_label(index: int, steps: list[Any], split: plan.Split) -> str:
    return (
        f"step {index + 1}/{len(steps)}: weight {split.weight}% "
        f"(effective {split.effective_weight:g}%)"
    )


def _needed(ctx: RolloutContext) -> int:
    return ctx.service.canary.intervals_per_step or ctx.config.healthy_intervals_to_promote


def _canary(ctx: RolloutContext) -> DeploymentSnapshot | None:
    return ctx.cluster.deployment(_names(ctx).canary)


def _canary_hash(ctx: RolloutContext) -> str | None:
    canary = _canary(ctx)
    if canary is None or ctx.strategy_state.get("phase") == FINISHING:
        return None
    current = canary.current_replica_set
    return current.pod_template_hash if current and current.available_replicas else None


def _names(ctx: RolloutContext) -> plan.Names:
    return plan.Names.of(ctx.request, ctx.service)


def _present(ctx: RolloutContext, *commands: ControlCommand) -> list[ControlCommand]:
    return [c for c in commands if c in ctx.commands]
