"""Blue-green: green runs beside blue at full size and takes all traffic in one Service update.

Green is judged first on preview traffic (its own preview Service), then the active Service's
selector moves to green in one update and green is judged again under real traffic. Blue stays
scaled up until that post-promotion window has passed plus `scale_down_delay_seconds`, so a
rollback in that time is one selector update and needs no pod to start. Finally blue takes the
new template (it is not serving), the active Service selects by the shared labels again and
green is deleted, leaving the cluster shaped exactly as before, with the new version.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from guard.cluster import ClusterNeeds
from guard.config import ServiceConfig
from guard.kube import DeploymentSnapshot
from guard.models import ControlCommand, Evidence, RolloutRequest, RolloutState, Verdict

from . import bluegreen_plan as plan
from .base import (
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

PRE, POST, DELAY, UPDATING_BLUE, CLEANUP = "pre", "post", "delay", "updating blue", "cleanup"
ANALYSED = (PRE, POST)
SMOKE_FAILURES = 3


class BlueGreenStrategy:
    """Green Deployment beside blue; preview Service; active Service switched in one update."""

    name = "bluegreen"

    def needs(self, request: RolloutRequest, service: ServiceConfig) -> ClusterNeeds:
        names = plan.Names.of(request, service)
        smoke = service.bluegreen.smoke_url
        return ClusterNeeds(
            deployments=(names.green,),
            services=(names.active, names.preview),
            probes=(smoke,) if smoke else (),
        )

    def analysis_target(self, ctx: RolloutContext) -> AnalysisTarget | None:
        if ctx.state not in (RolloutState.PROGRESSING, RolloutState.PAUSED):
            return None
        if ctx.strategy_state.get("phase") not in ANALYSED:
            return None
        green = _green(ctx)
        current = green.current_replica_set if green else None
        if current is None or current.available_replicas == 0:
            return None
        names = _names(ctx)
        blue = str(ctx.strategy_state.get("stable_hash", ""))
        return AnalysisTarget(
            Track(names.green, current.pod_template_hash), Track(names.blue, blue)
        )

    def step(self, ctx: RolloutContext) -> Transition:
        if ctx.state is RolloutState.PENDING:
            return _start(ctx)
        if ctx.state is RolloutState.ROLLING_BACK:
            return _verify_rollback(ctx)
        ctx = first_serving(ctx, _green(ctx))
        if ControlCommand.ABORT in ctx.commands:
            summary = f"aborted by {ctx.note(ControlCommand.ABORT)}"
            return _rollback(ctx, "aborted", summary, [], ControlCommand.ABORT)
        if ctx.deployment is None:
            return fail(ctx, f"deployment {_names(ctx).blue} disappeared during the rollout")
        if ctx.observation is not None:
            return _analysed(ctx)
        return _advance(ctx, dict(ctx.strategy_state))


def _start(ctx: RolloutContext) -> Transition:
    names = _names(ctx)
    blue = ctx.deployment
    if ControlCommand.ABORT in ctx.commands:
        return abort_before_start(ctx)
    if blue is None:
        return fail(ctx, f"deployment {names.namespace}/{names.blue} not found; nothing changed")
    problem = unknown_containers(ctx, blue)
    if problem:
        return fail(ctx, problem)
    active = ctx.cluster.service(names.active)
    if active is None:
        return fail(ctx, f"active Service {names.active} not found; nothing was changed")
    current = blue.current_replica_set
    template = plan.green_template(blue.template, ctx.request.images)
    state: dict[str, Any] = {
        **ctx.strategy_state,
        "stable_revision": blue.revision,
        "stable_hash": current.pod_template_hash if current else "",
        "stable_template": blue.template,
        "active_selector": active.selector,
        "phase": PRE,
        "healthy_intervals": 0,
    }
    actions = plan.deploy_green(names, state, template, blue.desired_replicas, ctx.rollout_id)
    return stay(
        ctx,
        state=RolloutState.PROGRESSING,
        step="pre-promotion: green on preview traffic",
        strategy_state=state,
        actions=actions,
        message=f"green {names.green} starting beside blue; preview Service {names.preview}",
        timestamps={"started_at": ctx.now},
    )


def _analysed(ctx: RolloutContext) -> Transition:
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
    green = _green(ctx)
    counting = ctx.state is RolloutState.PROGRESSING and green is not None and green.complete
    healthy = judgement.verdict is Verdict.CONTINUE and counting
    state["healthy_intervals"] = int(state.get("healthy_intervals", 0)) + 1 if healthy else 0
    moved = _advance(ctx, state)
    if moved.decision is None:
        moved.decision = judgement.decision
    moved.timestamps = {**judgement.timestamps, **moved.timestamps}
    return moved


def _advance(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    """Commands first, then whatever the current phase waits for."""
    paused = _pause_commands(ctx, state)
    if paused is not None:
        return paused
    phase = state.get("phase")
    if phase == PRE:
        return _pre(ctx, state)
    if phase == POST:
        return _post(ctx, state)
    if phase == DELAY:
        return _delay(ctx, state)
    if phase == UPDATING_BLUE:
        return _updating_blue(ctx, state)
    return _cleanup(ctx, state)


def _pause_commands(ctx: RolloutContext, state: dict[str, Any]) -> Transition | None:
    if ControlCommand.PAUSE in ctx.commands and ctx.state is RolloutState.PROGRESSING:
        message = f"paused by {ctx.note(ControlCommand.PAUSE)}; analysis continues"
        return stay(
            ctx, state=RolloutState.PAUSED, strategy_state=state, message=message,
            consumed_commands=[ControlCommand.PAUSE],
        )  # fmt: skip
    if ControlCommand.RESUME in ctx.commands:
        message = f"resumed by {ctx.note(ControlCommand.RESUME)}"
        consumed = [c for c in (ControlCommand.RESUME, ControlCommand.PAUSE) if c in ctx.commands]
        return stay(
            ctx, state=RolloutState.PROGRESSING, strategy_state=state, message=message,
            consumed_commands=consumed,
        )  # fmt: skip
    if ctx.state is RolloutState.PAUSED and ControlCommand.PROMOTE not in ctx.commands:
        return stay(ctx, strategy_state=state)
    return None


def _pre(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    green = _green(ctx)
    if green is not None and green.progress_deadline_exceeded:
        summary = f"green pods did not become available in time: {green.describe()}"
        return _rollback(ctx, "progress_deadline", summary, [], None)
    promote = ControlCommand.PROMOTE in ctx.commands
    needed = ctx.config.healthy_intervals_to_promote
    ready = green is not None and green.complete
    smoke = _smoke(ctx, state) if ready and not promote else None
    if isinstance(smoke, Transition):
        return smoke
    analysed = int(state.get("healthy_intervals", 0)) >= needed
    if not (ready and (promote or (analysed and smoke is not False))):
        return stay(ctx, strategy_state=state)
    reason = (
        f"promoted by {ctx.note(ControlCommand.PROMOTE)}"
        if promote
        else (f"{needed} healthy intervals on preview traffic")
    )
    names = _names(ctx)
    decision = operational_decision(ctx, Verdict.PROMOTE, f"{reason}; switching traffic to green",
                                    "switched", [])  # fmt: skip
    return stay(
        ctx,
        state=RolloutState.PROGRESSING,
        step="post-promotion: green under real traffic",
        strategy_state={
            **reset_policy(state),
            "phase": POST,
            "healthy_intervals": 0,
            "switched_at": ctx.now.isoformat(),
        },
        actions=[plan.selector(names, names.active, plan.green_selector(state))],
        decision=decision,
        message=f"active Service {names.active} now selects green",
        consumed_commands=[ControlCommand.PROMOTE] if promote else [],
    )


def _smoke(ctx: RolloutContext, state: dict[str, Any]) -> Transition | bool | None:
    """The preview smoke check: None when none is configured, whether the last one passed, or
    a rollback after SMOKE_FAILURES failures in a row (one may be a blip; three are not)."""
    url = ctx.service.bluegreen.smoke_url
    result = ctx.cluster.probes.get(url) if url else None
    if result is None:
        return None
    if result.ok:
        state["smoke_failures"] = 0
        return True
    failures = int(state.get("smoke_failures", 0)) + 1
    state["smoke_failures"] = failures
    if failures < SMOKE_FAILURES:
        return False
    evidence = [
        Evidence(
            metric="smoke_check", value=float(result.status or 0), note=result.describe(),
            threshold=float(SMOKE_FAILURES), comparison=">=",
        )
    ]  # fmt: skip
    summary = f"smoke check failed {failures} times in a row: {result.describe()}"
    moved = _rollback(ctx, "smoke_check", summary, evidence, None)
    moved.strategy_state = {**state, **moved.strategy_state}
    moved.timestamps.setdefault("first_bad_sample_at", ctx.now)
    return moved


def _post(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    promote = ControlCommand.PROMOTE in ctx.commands
    needed = ctx.service.bluegreen.post_promotion_intervals
    if not (promote or int(state.get("healthy_intervals", 0)) >= needed):
        return stay(ctx, strategy_state=state)
    delay = ctx.service.bluegreen.scale_down_delay_seconds
    until = ctx.now + timedelta(seconds=delay)
    return stay(
        ctx,
        step=f"post-promotion passed; blue kept {delay:g}s more",
        strategy_state={**state, "phase": DELAY, "blue_until": until.isoformat()},
        message=f"post-promotion analysis passed; blue stays up until {until.isoformat()}",
        consumed_commands=[ControlCommand.PROMOTE] if promote else [],
    )


def _delay(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    if ctx.now < datetime.fromisoformat(state["blue_until"]):
        return stay(ctx, strategy_state=state)
    names = _names(ctx)
    template = plan.promoted_template(state["stable_template"], ctx.request.images)
    return stay(
        ctx,
        step="finishing: blue takes the new version",
        strategy_state={**state, "phase": UPDATING_BLUE},
        actions=[plan.restore_blue(names, template)],
        message=f"{names.blue} (not serving) updated to the new version",
    )


def _updating_blue(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    blue = ctx.deployment
    assert blue is not None
    if not (_runs_new_version(ctx, blue) and blue.complete):
        return stay(ctx, strategy_state=state, message=f"updating blue: {blue.describe()}")
    names = _names(ctx)
    return stay(
        ctx,
        step="finishing: green removed",
        strategy_state={**state, "phase": CLEANUP},
        actions=[
            plan.selector(names, names.active, state["active_selector"]),
            *plan.remove_green(names),
        ],
        message=f"{names.blue} runs the new version and serves again; green removed",
    )


def _cleanup(ctx: RolloutContext, state: dict[str, Any]) -> Transition:
    if not plan.green_gone(ctx.cluster, _names(ctx)):
        return stay(ctx, strategy_state=state, message="waiting for green to be removed")
    return stay(
        ctx,
        state=RolloutState.PROMOTED,
        step="promoted",
        strategy_state=state,
        message="promoted: the new version serves from the original Deployment; green removed",
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
    """The active Service back on blue in one update (blue is still up), then green removed."""
    names = _names(ctx)
    state = ctx.strategy_state
    actions = [
        plan.selector(names, names.active, plan.blue_selector(state)),
        *plan.remove_green(names),
    ]
    if state.get("phase") in (UPDATING_BLUE, CLEANUP):
        actions.append(plan.restore_blue(names, state["stable_template"]))
    return start_rollback(
        ctx,
        reason=reason,
        summary=summary,
        evidence=evidence,
        command=command,
        actions=actions,
        step="rolling back: traffic on blue",
        state={**state, "phase": "rollback"},
    )


def _verify_rollback(ctx: RolloutContext) -> Transition:
    """Green gone first; only then the active Service selects by the shared labels again."""
    blue = ctx.deployment
    names = _names(ctx)
    if blue is None:
        return fail(ctx, f"deployment {names.blue} disappeared during the rollback")
    state = ctx.strategy_state
    current = blue.current_replica_set
    restored = current is not None and current.pod_template_hash == state.get("stable_hash")
    if not (plan.green_gone(ctx.cluster, names) and restored and blue.complete):
        overdue = rollback_overdue(ctx, blue.describe())
        return overdue or stay(ctx, message=f"waiting for green to go and blue: {blue.describe()}")
    active = ctx.cluster.service(names.active)
    if active is not None and active.selector != state.get("active_selector"):
        return stay(ctx, actions=[plan.selector(names, names.active, state["active_selector"])])
    return finish_rollback(ctx, f"all traffic on blue, green removed: {blue.describe()}")


def _runs_new_version(ctx: RolloutContext, blue: DeploymentSnapshot) -> bool:
    matches = all(blue.images.get(c) == i for c, i in ctx.request.images.items())
    newer = blue.revision > int(ctx.strategy_state.get("stable_revision", 0))
    return matches and newer and blue.observed_generation >= blue.generation


def _green(ctx: RolloutContext) -> DeploymentSnapshot | None:
    return ctx.cluster.deployment(_names(ctx).green)


def _names(ctx: RolloutContext) -> plan.Names:
    return plan.Names.of(ctx.request, ctx.service)
