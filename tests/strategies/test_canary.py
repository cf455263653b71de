"""CanaryStrategy.step as a pure state machine: snapshots and analysis in, transition out."""

from __future__ import annotations

from guard.cluster import (
    TRACK_LABEL,
    BackendWeight,
    ClusterSnapshot,
    RouteSnapshot,
    ServiceSnapshot,
)
from guard.config import RouterConfig, ServiceConfig
from guard.models import ControlCommand, RolloutState, Verdict
from strategies.base import RolloutContext, Track, Transition
from strategies.canary import CanaryStrategy

from .cluster_fixtures import (
    NEW_HASH,
    NEW_IMAGE,
    OLD_HASH,
    OLD_IMAGE,
    after,
    context,
    critical,
    deployment,
    healthy,
    kinds,
)

STRATEGY = CanaryStrategy()


def canary(replicas: int = 1, available: int | None = None) -> ClusterSnapshot:
    snapshot = deployment(
        "checkout-canary", NEW_IMAGE, NEW_HASH, replicas=replicas, available=available,
        revision=1, **{TRACK_LABEL: "canary"},
    )  # fmt: skip
    return ClusterSnapshot(deployments={"checkout-canary": snapshot})


NO_CANARY = ClusterSnapshot(deployments={"checkout-canary": None})


def started(steps: list[int | str] | None = None) -> tuple[RolloutContext, Transition]:
    ctx = context("canary", steps=steps or [25, 50], cluster=NO_CANARY)
    return ctx, STRATEGY.step(ctx)


def at_step_one() -> tuple[RolloutContext, Transition]:
    ctx, transition = started()
    return after(ctx, transition, cluster=canary(1)), transition


def test_start_creates_a_canary_at_the_first_weight_and_reports_the_effective_one() -> None:
    _, transition = started()

    assert transition.state is RolloutState.PROGRESSING
    assert kinds(transition) == ["apply_deployment"]
    params = transition.actions[0].params
    assert params["name"] == "checkout-canary" and params["replicas"] == 1
    assert params["selector"] == {"app": "checkout", TRACK_LABEL: "canary"}
    assert params["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert transition.strategy_state["effective_weights"][0]["effective_weight"] == 20.0
    assert transition.strategy_state["stable_hash"] == OLD_HASH
    assert transition.step == "step 1/2: weight 25% (effective 20%)"


def test_without_a_router_100_percent_is_the_promotion_not_a_step() -> None:
    ctx = context("canary", cluster=NO_CANARY)  # default steps [10, 25, 50, 100]
    assert STRATEGY.step(ctx).strategy_state["steps"] == [10, 25, 50]


def test_analysis_compares_the_canary_with_the_stable_track() -> None:
    ctx, _ = at_step_one()
    target = STRATEGY.analysis_target(ctx)
    assert target is not None
    assert target.candidate == Track("checkout-canary", NEW_HASH)
    assert target.baseline == Track("checkout", OLD_HASH)


def test_healthy_intervals_advance_to_the_next_weight() -> None:
    ctx, _ = at_step_one()
    first = STRATEGY.step(after(ctx, _stay(ctx), observation=healthy()))
    assert first.strategy_state["healthy_intervals"] == 1 and not first.actions
    second = STRATEGY.step(after(ctx, first, observation=healthy()))

    assert second.step.startswith("step 2/2: weight 50%")
    assert second.actions[0].params["replicas"] == 4
    assert second.strategy_state["healthy_intervals"] == 0


def test_after_the_last_step_the_stable_deployment_takes_the_new_template() -> None:
    ctx, _ = at_step_one()
    moved = ctx
    transition = _stay(ctx)
    for _ in range(4):
        transition = STRATEGY.step(after(moved, transition, observation=healthy()))
        moved = after(moved, transition, cluster=canary(4))
    assert transition.decision is not None and transition.decision.verdict is Verdict.PROMOTE
    assert kinds(transition) == ["restore_template"]
    new_template = transition.actions[0].params["template"]
    assert new_template["spec"]["containers"][0]["image"] == NEW_IMAGE
    assert TRACK_LABEL not in new_template["metadata"]["labels"]


def test_promotion_waits_for_stable_then_removes_the_canary_then_verifies() -> None:
    ctx, _ = at_step_one()
    promoting = STRATEGY.step(after(ctx, _stay(ctx), commands=[ControlCommand.PROMOTE]))
    assert promoting.strategy_state["phase"] == "promoting"
    assert "alice: testing" in (promoting.decision.summary if promoting.decision else "")

    rolling = after(
        ctx, promoting, deployment=deployment("checkout", NEW_IMAGE, "n1", revision=4, available=2)
    )
    assert STRATEGY.step(rolling).actions == []
    updated = deployment("checkout", NEW_IMAGE, "n1", revision=4)
    finishing = STRATEGY.step(after(ctx, promoting, deployment=updated))
    assert kinds(finishing) == ["delete_deployment"]
    still_there = STRATEGY.step(after(ctx, finishing, deployment=updated))
    assert still_there.state is RolloutState.PROGRESSING
    done = STRATEGY.step(after(ctx, finishing, deployment=updated, cluster=NO_CANARY))
    assert done.state is RolloutState.PROMOTED


def test_a_critical_interval_rolls_back_without_touching_stable() -> None:
    ctx, _ = at_step_one()
    transition = STRATEGY.step(after(ctx, _stay(ctx), observation=critical()))

    assert transition.state is RolloutState.ROLLING_BACK
    assert kinds(transition) == ["delete_deployment"]
    assert "first_bad_sample_at" in transition.timestamps
    waiting = STRATEGY.step(after(ctx, transition))
    assert waiting.state is RolloutState.ROLLING_BACK
    verified = STRATEGY.step(after(ctx, transition, cluster=NO_CANARY))
    assert verified.state is RolloutState.ROLLED_BACK
    assert "rollback_verified_at" in verified.timestamps


def test_rollback_during_promotion_also_restores_the_stable_template() -> None:
    ctx, _ = at_step_one()
    promoting = STRATEGY.step(after(ctx, _stay(ctx), commands=[ControlCommand.PROMOTE]))
    transition = STRATEGY.step(after(ctx, promoting, observation=critical()))
    assert kinds(transition) == ["delete_deployment", "restore_template"]
    assert transition.actions[1].params["template"]["spec"]["containers"][0]["image"] == OLD_IMAGE


def test_abort_names_who_and_why() -> None:
    ctx, _ = at_step_one()
    transition = STRATEGY.step(after(ctx, _stay(ctx), commands=[ControlCommand.ABORT]))
    assert transition.state is RolloutState.ROLLING_BACK
    assert transition.decision is not None and "alice: testing" in transition.decision.summary
    done = STRATEGY.step(after(ctx, transition, cluster=NO_CANARY))
    assert done.state is RolloutState.ABORTED


def test_pause_holds_the_step_and_resume_continues() -> None:
    ctx, _ = at_step_one()
    paused = STRATEGY.step(after(ctx, _stay(ctx), commands=[ControlCommand.PAUSE]))
    assert paused.state is RolloutState.PAUSED
    held = STRATEGY.step(after(ctx, paused, observation=healthy()))
    assert held.state is RolloutState.PAUSED and held.strategy_state["healthy_intervals"] == 0
    resumed = STRATEGY.step(after(ctx, held, commands=[ControlCommand.RESUME]))
    assert resumed.state is RolloutState.PROGRESSING


def test_a_pause_step_waits_for_promote_then_goes_on() -> None:
    ctx, first = started([25, "pause", 50])
    ctx = after(ctx, first, cluster=canary(1))
    transition = first
    for _ in range(2):
        transition = STRATEGY.step(after(ctx, transition, observation=healthy()))
    assert transition.state is RolloutState.PAUSED and transition.step.startswith("step 2/3")
    waiting = STRATEGY.step(after(ctx, transition))
    assert waiting.state is RolloutState.PAUSED
    resumed = STRATEGY.step(after(ctx, transition, commands=[ControlCommand.RESUME]))
    assert resumed.step.startswith("step 3/3: weight 50%")


def test_abort_before_start_changes_nothing() -> None:
    ctx = context("canary", cluster=NO_CANARY, commands=[ControlCommand.ABORT])
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.ABORTED and not transition.actions


def test_unknown_container_fails_before_any_change() -> None:
    ctx = context("canary", cluster=NO_CANARY)
    ctx = ctx.__class__(
        **{
            **ctx.__dict__,
            "request": ctx.request.model_copy(update={"images": {"nope": NEW_IMAGE}}),
        }
    )
    transition = STRATEGY.step(ctx)
    assert transition.state is RolloutState.FAILED and not transition.actions


# --- with a Gateway API router ------------------------------------------------------------

ROUTED = ServiceConfig(router=RouterConfig(httproute="checkout"))


def routed_cluster(with_canary: bool = False) -> ClusterSnapshot:
    base = canary(1) if with_canary else NO_CANARY
    return ClusterSnapshot(
        deployments=base.deployments,
        services={
            "checkout": ServiceSnapshot("checkout", {"app": "checkout"}, []),
            "checkout-canary": None,
        },
        httproutes={"checkout": RouteSnapshot("checkout", [[BackendWeight("checkout", 1)]])},
    )


def test_with_a_router_the_weights_are_exact_and_the_stable_service_is_pinned() -> None:
    ctx = context("canary", steps=[10, 100], service=ROUTED, cluster=routed_cluster())
    transition = STRATEGY.step(ctx)

    assert kinds(transition) == [
        "set_service_selector", "apply_service", "apply_deployment", "set_route_weights",
    ]  # fmt: skip
    assert transition.actions[0].params["selector"] == {
        "app": "checkout",
        "pod-template-hash": OLD_HASH,
    }
    assert transition.actions[3].params["weights"] == {"checkout": 90, "checkout-canary": 10}
    assert transition.strategy_state["steps"] == [10, 100]
    assert transition.strategy_state["effective_weights"][0]["effective_weight"] == 10.0


def test_routed_rollback_takes_weight_off_first_and_restores_the_selector_last() -> None:
    ctx = context("canary", steps=[10], service=ROUTED, cluster=routed_cluster())
    first = STRATEGY.step(ctx)
    ctx = after(ctx, first, cluster=routed_cluster(with_canary=True))
    transition = STRATEGY.step(after(ctx, first, observation=critical()))

    assert kinds(transition) == ["set_route_weights", "delete_deployment", "delete_service"]
    assert transition.actions[0].params["weights"] == {"checkout": 100, "checkout-canary": 0}
    pinned = {"app": "checkout", "pod-template-hash": OLD_HASH}
    gone = ClusterSnapshot(
        deployments={"checkout-canary": None},
        services={"checkout": ServiceSnapshot("checkout", pinned, []), "checkout-canary": None},
        httproutes={"checkout": RouteSnapshot("checkout", [[BackendWeight("checkout", 100)]])},
    )
    unpinning = STRATEGY.step(after(ctx, transition, cluster=gone))
    assert kinds(unpinning) == ["set_service_selector"]
    assert unpinning.actions[0].params["selector"] == {"app": "checkout"}
    assert unpinning.state is RolloutState.ROLLING_BACK
    done = STRATEGY.step(after(ctx, unpinning, cluster=routed_cluster()))
    assert done.state is RolloutState.ROLLED_BACK


def test_a_missing_route_fails_before_any_change() -> None:
    cluster = ClusterSnapshot(deployments={"checkout-canary": None}, httproutes={"checkout": None})
    transition = STRATEGY.step(context("canary", service=ROUTED, cluster=cluster))
    assert transition.state is RolloutState.FAILED and not transition.actions


def _stay(ctx: RolloutContext) -> Transition:
    return Transition(ctx.state, ctx.step, dict(ctx.strategy_state))
