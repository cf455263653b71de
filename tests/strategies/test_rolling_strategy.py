"""RollingStrategy.step as a pure state machine: snapshots and observations in, transition out.

Observations carry request and error counts; the real analyzers and policy judge them.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzers.base import Observation, TrackSample
from guard.config import AnalysisConfig
from guard.kube import DeploymentSnapshot, ReplicaSetSnapshot
from guard.models import (
    NEEDS_HUMAN,
    ControlCommand,
    RolloutRequest,
    RolloutState,
    Severity,
    Verdict,
)
from strategies.base import Action, RolloutContext, Track, Transition
from strategies.rolling import RollingStrategy

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
OLD_IMAGE = "registry.example.com/shop/checkout:1.4.1"
NEW_IMAGE = "registry.example.com/shop/checkout:1.4.2"
OLD_HASH = "6b7c8d9f5"
NEW_HASH = "5f4d3c2b1"
CONFIG = AnalysisConfig(
    healthy_intervals_to_promote=3,
    high_consecutive_to_rollback=2,
    medium_consecutive_to_rollback=3,
)
STRATEGY = RollingStrategy()
REQUEST = RolloutRequest(namespace="shop", deployment="checkout", images={"checkout": NEW_IMAGE})
QUERIES = {"requests": "q_requests", "errors": "q_errors", "latency_buckets": "q_latency"}


def template(image: str, pod_hash: str | None = None) -> dict[str, Any]:
    labels = {"app": "checkout"}
    if pod_hash is not None:
        labels["pod-template-hash"] = pod_hash
    return {
        "metadata": {"labels": labels},
        "spec": {
            "containers": [
                {"name": "checkout", "image": image},
                {"name": "envoy", "image": "envoyproxy/envoy:v1.30.1"},
            ]
        },
    }


OLD_TEMPLATE = template(OLD_IMAGE)
NEW_TEMPLATE = template(NEW_IMAGE)


def rs(revision: int, pod_hash: str, image: str, replicas: int = 4) -> ReplicaSetSnapshot:
    return ReplicaSetSnapshot(
        name=f"checkout-{pod_hash}",
        revision=revision,
        pod_template_hash=pod_hash,
        template=template(image, pod_hash),
        replicas=replicas,
        available_replicas=replicas,
    )


def stable_deployment() -> DeploymentSnapshot:
    """Revision 3 running 1.4.1 on all four replicas."""
    return DeploymentSnapshot(
        namespace="shop",
        name="checkout",
        generation=5,
        observed_generation=5,
        desired_replicas=4,
        replicas=4,
        updated_replicas=4,
        available_replicas=4,
        paused=False,
        revision=3,
        template=copy.deepcopy(OLD_TEMPLATE),
        conditions={"Progressing": {"type": "Progressing", "reason": "NewReplicaSetAvailable"}},
        replica_sets=[rs(3, OLD_HASH, OLD_IMAGE)],
    )


def patched_not_observed() -> DeploymentSnapshot:
    """The image patch is accepted but the controller has not created the new RS yet."""
    return replace(stable_deployment(), generation=6, template=copy.deepcopy(NEW_TEMPLATE))


def rolling(updated: int = 2, available: int = 4, total: int = 6) -> DeploymentSnapshot:
    """Revision 4 (the new RS) in the middle of the rolling update."""
    return replace(
        stable_deployment(),
        generation=6,
        observed_generation=6,
        revision=4,
        template=copy.deepcopy(NEW_TEMPLATE),
        replicas=total,
        updated_replicas=updated,
        available_replicas=available,
        conditions={"Progressing": {"type": "Progressing", "reason": "ReplicaSetUpdated"}},
        replica_sets=[rs(3, OLD_HASH, OLD_IMAGE, 4 - updated), rs(4, NEW_HASH, NEW_IMAGE, updated)],
    )


def rolled_out() -> DeploymentSnapshot:
    """Revision 4 complete: all four replicas updated and available, no old pod left."""
    return replace(
        rolling(updated=4, available=4, total=4),
        replica_sets=[rs(3, OLD_HASH, OLD_IMAGE, 0), rs(4, NEW_HASH, NEW_IMAGE, 4)],
        conditions={"Progressing": {"type": "Progressing", "reason": "NewReplicaSetAvailable"}},
    )


def deadline_exceeded() -> DeploymentSnapshot:
    return replace(
        rolling(updated=1, available=3, total=5),
        conditions={
            "Progressing": {
                "type": "Progressing",
                "reason": "ProgressDeadlineExceeded",
                "message": 'ReplicaSet "checkout-5f4d3c2b1" has timed out progressing.',
            }
        },
    )


def rollback_in_progress() -> DeploymentSnapshot:
    """The old template is back (revision 5 reuses the old RS) but pods are still replaced."""
    return replace(
        stable_deployment(),
        generation=7,
        observed_generation=7,
        revision=5,
        replicas=6,
        updated_replicas=2,
        available_replicas=4,
        replica_sets=[rs(5, OLD_HASH, OLD_IMAGE, 2), rs(4, NEW_HASH, NEW_IMAGE, 4)],
    )


def rolled_back() -> DeploymentSnapshot:
    return replace(
        stable_deployment(),
        generation=7,
        observed_generation=7,
        revision=5,
        replica_sets=[rs(5, OLD_HASH, OLD_IMAGE, 4), rs(4, NEW_HASH, NEW_IMAGE, 0)],
    )


def interval(requests: float, errors: float, latency: float = 0.2) -> Observation:
    """One interval of the new version's traffic, judged by the real analyzers."""
    sample = TrackSample(requests=requests, errors=errors, latency=latency, queries=QUERIES)
    return Observation(at=T0, window_seconds=CONFIG.window_seconds, candidate=sample)


def healthy() -> Observation:
    """0.1 % errors over 1000 requests, 200 ms: no tier breached."""
    return interval(1000, 1)


# Errors out of 1000 requests whose lower 99 % Wilson bound falls in each tier:
# 100 -> 8.0 % (> 5 %), 40 -> 2.8 % (2-5 %), 18 -> 1.05 % (1-2 %).
BREACH_ERRORS = {Severity.CRITICAL: 100, Severity.HIGH: 40, Severity.MEDIUM: 18}


def breach(severity: Severity) -> Observation:
    return interval(1000, BREACH_ERRORS[severity])


def unavailable() -> Observation:
    return Observation(
        at=T0,
        window_seconds=CONFIG.window_seconds,
        candidate=None,
        unavailable=(("q", "connection refused"),),
    )


def inconclusive() -> Observation:
    """5 requests: fewer than min_requests (20) even summed over the step."""
    return interval(5, 0)


def stamped(observation: Observation | None, now: datetime) -> Observation | None:
    return replace(observation, at=now) if observation is not None else None


def context(
    state: RolloutState = RolloutState.PENDING,
    deployment: DeploymentSnapshot | None = None,
    *,
    strategy_state: dict[str, Any] | None = None,
    commands: list[ControlCommand] | None = None,
    observation: Observation | None = None,
    step: str = "queued",
    now: datetime = T0,
    request: RolloutRequest = REQUEST,
    config: AnalysisConfig = CONFIG,
) -> RolloutContext:
    return RolloutContext(
        rollout_id="r-1",
        request=request,
        state=state,
        step=step,
        strategy_state=strategy_state if strategy_state is not None else {},
        commands=commands or [],
        now=now,
        config=config,
        deployment=deployment,
        observation=stamped(observation, now),
    )


def after(
    ctx: RolloutContext,
    transition: Transition,
    deployment: DeploymentSnapshot | None,
    *,
    observation: Observation | None = None,
    commands: list[ControlCommand] | None = None,
    seconds: float = 10,
) -> RolloutContext:
    """The next tick's context, as the store and engine would build it."""
    left = [c for c in ctx.commands if c not in transition.consumed_commands]
    now = ctx.now + timedelta(seconds=seconds)
    return replace(
        ctx,
        state=transition.state,
        step=transition.step,
        strategy_state=transition.strategy_state,
        commands=left + [c for c in commands or [] if c not in left],
        now=now,
        deployment=deployment,
        observation=stamped(observation, now),
    )


def started() -> tuple[RolloutContext, Transition]:
    ctx = context(deployment=stable_deployment())
    return ctx, STRATEGY.step(ctx)


def progressing_ctx(
    deployment: DeploymentSnapshot,
    *,
    observation: Observation | None = None,
    commands: list[ControlCommand] | None = None,
    state: RolloutState = RolloutState.PROGRESSING,
    **extra_state: Any,
) -> RolloutContext:
    ctx, transition = started()
    assert transition.state is RolloutState.PROGRESSING
    next_ctx = after(ctx, transition, deployment, observation=observation, commands=commands)
    return replace(next_ctx, state=state, strategy_state={**next_ctx.strategy_state, **extra_state})


def kinds(transition: Transition) -> list[str]:
    return [action.kind for action in transition.actions]


# --- start ----------------------------------------------------------------------------------


def test_start_sets_images_and_records_the_stable_revision() -> None:
    _, transition = started()
    assert transition.state is RolloutState.PROGRESSING
    assert transition.actions == [
        Action(
            "set_images",
            {
                "namespace": "shop",
                "name": "checkout",
                "images": {"checkout": NEW_IMAGE},
                "rollout_id": "r-1",
            },
        )
    ]
    state = transition.strategy_state
    assert state["stable_template"] == OLD_TEMPLATE
    assert state["stable_hash"] == OLD_HASH
    assert state["stable_revision"] == 3
    assert state["stable_images"] == {"checkout": OLD_IMAGE, "envoy": "envoyproxy/envoy:v1.30.1"}
    assert transition.timestamps == {"started_at": T0}
    assert transition.outcome_reason is None


def test_start_without_the_deployment_fails_and_changes_nothing() -> None:
    transition = STRATEGY.step(context(deployment=None))
    assert transition.state is RolloutState.FAILED
    assert transition.actions == []
    assert "shop/checkout not found" in (transition.message or "")
    assert transition.outcome_reason == "error"
    assert transition.timestamps == {"finished_at": T0}


def test_start_with_an_unknown_container_fails_naming_it() -> None:
    request = RolloutRequest(namespace="shop", deployment="checkout", images={"chekout": NEW_IMAGE})
    transition = STRATEGY.step(context(deployment=stable_deployment(), request=request))
    assert transition.state is RolloutState.FAILED
    assert transition.actions == []
    message = transition.message or ""
    assert "chekout" in message
    assert "its containers are: checkout, envoy" in message


def test_start_with_the_images_already_running_is_promoted_unchanged() -> None:
    request = RolloutRequest(
        namespace="shop", deployment="checkout", images={"checkout": OLD_IMAGE}
    )
    transition = STRATEGY.step(context(deployment=stable_deployment(), request=request))
    assert transition.state is RolloutState.PROMOTED
    assert transition.outcome_reason == "unchanged"
    assert transition.actions == []
    assert transition.timestamps == {"started_at": T0, "finished_at": T0}


def test_abort_before_start_changes_nothing() -> None:
    ctx = context(deployment=stable_deployment(), commands=[ControlCommand.ABORT])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ABORTED
    assert transition.actions == []
    assert transition.outcome_reason == "aborted"
    assert transition.consumed_commands == [ControlCommand.ABORT]


# --- analysis target ------------------------------------------------------------------------


def test_nothing_is_analysed_before_the_new_replica_set_exists() -> None:
    ctx, transition = started()
    assert STRATEGY.analysis_target(ctx) is None  # still pending
    assert STRATEGY.analysis_target(after(ctx, transition, stable_deployment())) is None
    assert STRATEGY.analysis_target(after(ctx, transition, patched_not_observed())) is None


def test_analysis_target_names_the_new_replica_sets_hash() -> None:
    ctx, transition = started()
    target = STRATEGY.analysis_target(after(ctx, transition, rolling()))
    assert target is not None
    assert target.candidate == Track("checkout", NEW_HASH)
    assert target.baseline == Track("checkout", OLD_HASH)


def test_nothing_is_analysed_while_rolling_back() -> None:
    ctx = progressing_ctx(rolling(), state=RolloutState.ROLLING_BACK)
    assert STRATEGY.analysis_target(ctx) is None


# --- rollback on analysis -------------------------------------------------------------------


def test_critical_analysis_rolls_back_to_the_stable_template() -> None:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.CRITICAL))
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLING_BACK
    assert transition.actions == [
        Action(
            "restore_template",
            {"namespace": "shop", "name": "checkout", "template": OLD_TEMPLATE},
        )
    ]
    decision = transition.decision
    assert decision is not None
    assert decision.verdict is Verdict.ROLLBACK
    assert decision.severity is Severity.CRITICAL
    assert decision.action == "rollback started"
    errors = next(e for e in decision.evidence if e.metric == "error_rate")
    assert errors.query == "q_errors"
    assert errors.value == 0.1
    assert errors.threshold == 0.05
    assert errors.severity is Severity.CRITICAL
    assert errors.sample_count == 1000
    assert errors.bound is not None and errors.bound > 0.05
    assert transition.timestamps["rollback_started_at"] == ctx.now
    assert transition.timestamps["first_bad_sample_at"] == ctx.now
    assert transition.strategy_state["rollback_reason"] == "analysis"


def test_high_twice_in_a_row_rolls_back() -> None:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.HIGH))
    first = STRATEGY.step(ctx)
    assert first.state is RolloutState.PROGRESSING
    assert kinds(first) == ["set_paused"]  # the hold stops more pods being replaced
    assert first.actions[0].params["paused"] is True
    assert first.decision is not None
    assert first.decision.verdict is Verdict.HOLD
    assert first.timestamps["first_bad_sample_at"] == ctx.now

    second_ctx = after(ctx, first, rolling(), observation=breach(Severity.HIGH))
    second = STRATEGY.step(second_ctx)
    assert second.state is RolloutState.ROLLING_BACK
    assert kinds(second) == ["restore_template"]
    assert second.decision is not None
    assert second.decision.verdict is Verdict.ROLLBACK
    assert "2 intervals in a row" in second.decision.summary


def test_high_healthy_high_does_not_roll_back() -> None:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.HIGH))
    first = STRATEGY.step(ctx)
    ctx = after(ctx, first, rolling(), observation=healthy())
    second = STRATEGY.step(ctx)
    assert second.state is RolloutState.PROGRESSING
    assert [a.params["paused"] for a in second.actions] == [False]  # healthy: the hold ends
    ctx = after(ctx, second, rolling(), observation=breach(Severity.HIGH))
    third = STRATEGY.step(ctx)
    assert third.state is RolloutState.PROGRESSING
    assert [a.params["paused"] for a in third.actions] == [True]
    assert third.decision is not None
    assert third.decision.verdict is Verdict.HOLD


def test_medium_rolls_back_at_its_count() -> None:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.MEDIUM))
    for _ in range(2):
        transition = STRATEGY.step(ctx)
        assert transition.state is RolloutState.PROGRESSING
        ctx = after(ctx, transition, rolling(), observation=breach(Severity.MEDIUM))
    assert STRATEGY.step(ctx).state is RolloutState.ROLLING_BACK


# --- promotion ------------------------------------------------------------------------------


def test_promotes_only_after_n_healthy_intervals_with_the_update_complete() -> None:
    ctx = progressing_ctx(rolled_out(), observation=healthy())
    for count in (1, 2):
        transition = STRATEGY.step(ctx)
        assert transition.state is RolloutState.PROGRESSING
        assert transition.strategy_state["healthy_intervals"] == count
        assert transition.step == f"analysing ({count}/3 healthy)"
        ctx = after(ctx, transition, rolled_out(), observation=healthy())
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROMOTED
    assert transition.outcome_reason == "promoted"
    assert transition.actions == []
    assert transition.timestamps["finished_at"] == ctx.now
    assert transition.decision is not None
    assert transition.decision.verdict is Verdict.PROMOTE


def test_healthy_intervals_during_the_update_do_not_count() -> None:
    ctx = progressing_ctx(rolling(), observation=healthy())
    for _ in range(5):
        transition = STRATEGY.step(ctx)
        assert transition.state is RolloutState.PROGRESSING
        assert transition.strategy_state["healthy_intervals"] == 0
        ctx = after(ctx, transition, rolling(), observation=healthy())
    # The update completes: counting starts from one.
    ctx = replace(ctx, deployment=rolled_out())
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.strategy_state["healthy_intervals"] == 1


def test_a_tick_without_analysis_never_promotes() -> None:
    ctx = progressing_ctx(rolled_out(), healthy_intervals=99)
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.step == "analysing"


def test_metrics_unavailable_never_promotes_and_resets_the_count() -> None:
    ctx = progressing_ctx(rolled_out(), observation=unavailable(), healthy_intervals=2)
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.actions == []
    assert transition.strategy_state["healthy_intervals"] == 0
    assert transition.decision is not None
    assert transition.decision.verdict is Verdict.HOLD


def test_inconclusive_never_promotes_and_resets_the_count() -> None:
    ctx = progressing_ctx(rolled_out(), observation=inconclusive(), healthy_intervals=2)
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.strategy_state["healthy_intervals"] == 0
    assert transition.decision is not None
    assert transition.decision.verdict is Verdict.INCONCLUSIVE


def test_operator_promote_when_complete_promotes() -> None:
    ctx = progressing_ctx(rolled_out(), commands=[ControlCommand.PROMOTE])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROMOTED
    assert transition.consumed_commands == [ControlCommand.PROMOTE]
    assert transition.decision is not None
    assert transition.decision.verdict is Verdict.PROMOTE
    assert transition.decision.summary == "promoted by operator"


def test_operator_promote_with_a_healthy_interval_promotes_at_once() -> None:
    ctx = progressing_ctx(rolled_out(), observation=healthy(), commands=[ControlCommand.PROMOTE])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROMOTED
    assert transition.consumed_commands == [ControlCommand.PROMOTE]


def test_operator_promote_waits_for_the_update_to_complete() -> None:
    ctx = progressing_ctx(rolling(), commands=[ControlCommand.PROMOTE])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.consumed_commands == []


# --- progress deadline ----------------------------------------------------------------------


def test_progress_deadline_exceeded_rolls_back_with_evidence() -> None:
    ctx = progressing_ctx(deadline_exceeded())
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLING_BACK
    assert transition.actions == [
        Action(
            "restore_template",
            {"namespace": "shop", "name": "checkout", "template": OLD_TEMPLATE},
        )
    ]
    assert transition.strategy_state["rollback_reason"] == "progress_deadline"
    decision = transition.decision
    assert decision is not None
    assert decision.verdict is Verdict.ROLLBACK
    [evidence] = decision.evidence
    assert evidence.metric == "progress_deadline"
    assert evidence.value == 3
    assert evidence.threshold == 4
    assert evidence.comparison == "<"
    assert "timed out progressing" in evidence.note
    assert transition.timestamps == {"rollback_started_at": ctx.now, "first_bad_sample_at": ctx.now}


# --- rollback verification ------------------------------------------------------------------


def rolling_back_ctx(deployment: DeploymentSnapshot, reason: str = "analysis") -> RolloutContext:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.CRITICAL))
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLING_BACK
    assert transition.strategy_state["rollback_reason"] == "analysis"
    next_ctx = after(ctx, transition, deployment)
    return replace(next_ctx, strategy_state={**next_ctx.strategy_state, "rollback_reason": reason})


def test_rollback_waits_while_the_new_revision_is_still_current() -> None:
    transition = STRATEGY.step(rolling_back_ctx(rolling()))
    assert transition.state is RolloutState.ROLLING_BACK
    assert "rollback_verified_at" not in transition.timestamps
    assert transition.actions == []


def test_rollback_waits_until_the_old_revision_is_complete() -> None:
    transition = STRATEGY.step(rolling_back_ctx(rollback_in_progress()))
    assert transition.state is RolloutState.ROLLING_BACK
    assert "rollback_verified_at" not in transition.timestamps


def test_a_rollback_not_verified_in_time_fails_for_a_human() -> None:
    stuck = rolling_back_ctx(rollback_in_progress())
    waited = replace(stuck, now=stuck.now + timedelta(seconds=CONFIG.rollback_timeout_seconds + 1))
    transition = STRATEGY.step(waited)
    assert transition.state is RolloutState.FAILED
    assert "rollback not verified" in (transition.message or "")
    assert transition.actions == []


def test_rollback_with_complete_but_wrong_hash_is_not_verified() -> None:
    # Complete, but the current RS is not the stable one (someone rolled forward instead).
    transition = STRATEGY.step(rolling_back_ctx(rolled_out()))
    assert transition.state is RolloutState.ROLLING_BACK


def test_rollback_is_verified_once_the_stable_hash_is_back_and_complete() -> None:
    ctx = rolling_back_ctx(rolled_back())
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLED_BACK
    assert transition.outcome_reason == "analysis"
    assert transition.timestamps == {"rollback_verified_at": ctx.now, "finished_at": ctx.now}
    assert transition.actions == []


def test_abort_during_progress_rolls_back_then_ends_aborted() -> None:
    ctx = progressing_ctx(rolling(), commands=[ControlCommand.ABORT])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLING_BACK
    assert kinds(transition) == ["restore_template"]
    assert transition.actions[0].params["template"] == OLD_TEMPLATE
    assert transition.consumed_commands == [ControlCommand.ABORT]
    assert transition.strategy_state["rollback_reason"] == "aborted"
    assert transition.decision is not None
    assert transition.decision.verdict is Verdict.ROLLBACK
    assert transition.timestamps == {"rollback_started_at": ctx.now}

    ctx = after(ctx, transition, rollback_in_progress())
    assert STRATEGY.step(ctx).state is RolloutState.ROLLING_BACK
    ctx = replace(ctx, deployment=rolled_back())
    final = STRATEGY.step(ctx)
    assert final.state is RolloutState.ABORTED
    assert final.outcome_reason == "aborted"
    assert final.timestamps["rollback_verified_at"] == ctx.now


# --- pause and resume -----------------------------------------------------------------------


def test_pause_pauses_the_deployment() -> None:
    ctx = progressing_ctx(rolling(), commands=[ControlCommand.PAUSE])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PAUSED
    assert transition.actions == [
        Action("set_paused", {"namespace": "shop", "name": "checkout", "paused": True})
    ]
    assert transition.consumed_commands == [ControlCommand.PAUSE]


def test_no_promotion_while_paused() -> None:
    ctx = progressing_ctx(
        rolled_out(), observation=healthy(), state=RolloutState.PAUSED, healthy_intervals=10
    )
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PAUSED
    assert transition.actions == []
    # Not even on the operator's say-so: resume first.
    ctx = replace(ctx, observation=None, commands=[ControlCommand.PROMOTE])
    assert STRATEGY.step(ctx).state is RolloutState.PAUSED


def test_analysis_continues_while_paused_and_can_roll_back() -> None:
    ctx = progressing_ctx(
        rolling(), state=RolloutState.PAUSED, observation=breach(Severity.CRITICAL)
    )
    assert STRATEGY.analysis_target(ctx) is not None
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ROLLING_BACK
    assert kinds(transition) == ["restore_template"]


def test_resume_unpauses_the_deployment() -> None:
    ctx = progressing_ctx(rolling(), state=RolloutState.PAUSED, commands=[ControlCommand.RESUME])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert transition.actions == [
        Action("set_paused", {"namespace": "shop", "name": "checkout", "paused": False})
    ]
    assert transition.consumed_commands == [ControlCommand.RESUME]


def test_a_second_pause_while_paused_does_not_pause_again_after_resume() -> None:
    ctx = progressing_ctx(rolling(), commands=[ControlCommand.PAUSE])
    paused = STRATEGY.step(ctx)
    assert paused.state is RolloutState.PAUSED
    # The operator presses pause again while paused, then resumes.
    ctx = after(ctx, paused, rolling(), commands=[ControlCommand.PAUSE])
    still = STRATEGY.step(ctx)
    assert still.state is RolloutState.PAUSED
    ctx = after(ctx, still, rolling(), commands=[ControlCommand.RESUME])
    resumed = STRATEGY.step(ctx)
    assert resumed.state is RolloutState.PROGRESSING
    ctx = after(ctx, resumed, rolling())
    assert ctx.commands == []
    assert STRATEGY.step(ctx).state is RolloutState.PROGRESSING


def test_the_deployment_disappearing_mid_rollout_fails() -> None:
    ctx = progressing_ctx(None)  # type: ignore[arg-type]
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.FAILED
    assert transition.actions == []
    assert "disappeared" in (transition.message or "")


def test_pause_and_resume_queued_while_paused_resume_for_good() -> None:
    ctx = progressing_ctx(
        rolling(), state=RolloutState.PAUSED, commands=[ControlCommand.PAUSE, ControlCommand.RESUME]
    )
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PROGRESSING
    assert kinds(transition) == ["set_paused"]
    assert set(transition.consumed_commands) == {ControlCommand.PAUSE, ControlCommand.RESUME}


def test_an_interval_without_data_neither_breaks_nor_extends_a_breach_streak() -> None:
    ctx = progressing_ctx(rolling(), observation=breach(Severity.HIGH))
    first = STRATEGY.step(ctx)
    ctx = after(ctx, first, rolling(), observation=unavailable())
    outage = STRATEGY.step(ctx)
    assert outage.state is RolloutState.PROGRESSING
    assert outage.decision is not None
    assert outage.decision.verdict is Verdict.HOLD
    assert outage.strategy_state["policy"]["breach_streak"] == 1
    assert outage.strategy_state["policy"]["breach_severity"] == "high"
    ctx = after(ctx, outage, rolling(), observation=breach(Severity.HIGH))
    assert STRATEGY.step(ctx).state is RolloutState.ROLLING_BACK


def test_healthy_intervals_do_not_count_while_paused() -> None:
    ctx = progressing_ctx(
        rolled_out(), observation=healthy(), state=RolloutState.PAUSED, healthy_intervals=2
    )
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PAUSED
    assert transition.strategy_state["healthy_intervals"] == 0


def test_a_pause_arriving_with_the_last_healthy_interval_wins_over_promotion() -> None:
    ctx = progressing_ctx(
        rolled_out(), observation=healthy(), commands=[ControlCommand.PAUSE], healthy_intervals=2
    )
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.PAUSED
    assert kinds(transition) == ["set_paused"]


def test_first_bad_sample_is_bounded_by_when_the_new_version_started_serving() -> None:
    ctx, start = started()
    serving_ctx = after(ctx, start, rolling(), observation=healthy(), seconds=100)
    serving = STRATEGY.step(serving_ctx)
    assert serving.strategy_state["candidate_serving_at"] == serving_ctx.now.isoformat()

    soon = after(serving_ctx, serving, rolling(), observation=breach(Severity.HIGH), seconds=5)
    assert STRATEGY.step(soon).timestamps["first_bad_sample_at"] == serving_ctx.now
    late = after(serving_ctx, serving, rolling(), observation=breach(Severity.HIGH), seconds=300)
    window_start = late.now - timedelta(seconds=CONFIG.window_seconds)
    assert STRATEGY.step(late).timestamps["first_bad_sample_at"] == window_start


def test_metrics_unavailable_past_the_limit_holds_and_alerts_once() -> None:
    ctx = progressing_ctx(rolled_out(), observation=unavailable())
    alerts = []
    for _ in range(16):  # 150 s of outage at 10 s a tick; the limit is 120 s
        transition = STRATEGY.step(ctx)
        assert transition.state is RolloutState.PROGRESSING
        assert transition.decision is not None
        assert transition.decision.verdict is Verdict.HOLD
        alerts.append(transition.decision.action == NEEDS_HUMAN)
        ctx = after(ctx, transition, rolled_out(), observation=unavailable())
    assert alerts.count(True) == 1
    assert alerts.index(True) == 12  # the tick 120 s after the first unavailable one


def test_a_breach_the_stable_version_shares_holds_and_alerts_never_rolls_back() -> None:
    stable = TrackSample(requests=10_000, errors=660, latency=0.2)  # 6.6 %: a platform incident
    incident = replace(interval(1000, 70), baseline=stable)  # the new version: 7 %
    ctx = progressing_ctx(rolled_out(), observation=incident, healthy_intervals=2)
    actions = []
    for _ in range(5):
        transition = STRATEGY.step(ctx)
        assert transition.state is RolloutState.PROGRESSING
        assert transition.actions == []
        assert transition.decision is not None
        assert transition.decision.verdict is Verdict.HOLD
        assert "platform incident" in transition.decision.summary
        assert "first_bad_sample_at" not in transition.timestamps
        assert transition.strategy_state["healthy_intervals"] == 0
        actions.append(transition.decision.action)
        ctx = after(ctx, transition, rolled_out(), observation=incident)
    assert actions == [NEEDS_HUMAN, "none", "none", "none", "none"]
