"""BlueGreenStrategy.step as a pure state machine: snapshots and analysis in, transition out."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from guard.cluster import TRACK_LABEL, ClusterSnapshot, ProbeResult, ServiceSnapshot
from guard.config import BlueGreenConfig, ServiceConfig
from guard.kube import HASH_LABEL
from guard.models import ControlCommand, RolloutState, Verdict
from strategies.base import RolloutContext, Track, Transition
from strategies.bluegreen import BlueGreenStrategy

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

STRATEGY = BlueGreenStrategy()
SERVICE = ServiceConfig(
    bluegreen=BlueGreenConfig(post_promotion_intervals=1, scale_down_delay_seconds=30)
)
ORIGINAL = {"app": "checkout"}
ON_BLUE = {"app": "checkout", HASH_LABEL: OLD_HASH}
ON_GREEN = {"app": "checkout", TRACK_LABEL: "green"}


def cluster(green: bool = True, active: dict[str, str] = ON_BLUE) -> ClusterSnapshot:
    snapshot = deployment(
        "checkout-green", NEW_IMAGE, NEW_HASH, revision=1, **{TRACK_LABEL: "green"}
    )
    return ClusterSnapshot(
        deployments={"checkout-green": snapshot if green else None},
        services={
            "checkout": ServiceSnapshot("checkout", active, []),
            "checkout-preview": ServiceSnapshot("checkout-preview", ON_GREEN, [])
            if green
            else None,
        },
    )


def started() -> tuple[RolloutContext, Transition]:
    ctx = context("bluegreen", service=SERVICE, cluster=cluster(False, ORIGINAL))
    transition = STRATEGY.step(ctx)
    return after(ctx, transition, cluster=cluster()), transition


def switched() -> tuple[RolloutContext, Transition]:
    ctx, transition = started()
    for _ in range(2):
        transition = STRATEGY.step(after(ctx, transition, observation=healthy()))
    return ctx, transition


def test_start_pins_the_active_service_to_blue_and_starts_green_at_full_size() -> None:
    _, transition = started()
    assert kinds(transition) == ["set_service_selector", "apply_deployment", "apply_service"]
    assert transition.actions[0].params["selector"] == ON_BLUE
    assert transition.actions[1].params["replicas"] == 4
    assert transition.actions[2].params["selector"] == ON_GREEN
    assert transition.actions[2].params["name"] == "checkout-preview"


def test_pre_promotion_analysis_judges_green_against_blue() -> None:
    ctx, _ = started()
    target = STRATEGY.analysis_target(ctx)
    assert target is not None
    assert target.candidate == Track("checkout-green", NEW_HASH)
    assert target.baseline == Track("checkout", OLD_HASH)


def test_healthy_preview_intervals_switch_the_active_selector_in_one_update() -> None:
    _, transition = switched()
    assert transition.decision is not None and transition.decision.verdict is Verdict.PROMOTE
    assert kinds(transition) == ["set_service_selector"]
    assert transition.actions[0].params == {
        "namespace": "shop", "name": "checkout", "selector": ON_GREEN,
    }  # fmt: skip
    assert transition.step.startswith("post-promotion")


def test_rollback_after_the_switch_puts_traffic_on_blue_first() -> None:
    ctx, transition = switched()
    rolled = STRATEGY.step(after(ctx, transition, observation=critical()))
    assert rolled.state is RolloutState.ROLLING_BACK
    assert kinds(rolled) == ["set_service_selector", "delete_deployment", "delete_service"]
    assert rolled.actions[0].params["selector"] == ON_BLUE
    gone = STRATEGY.step(after(ctx, rolled, cluster=cluster(False, ON_BLUE)))
    assert kinds(gone) == ["set_service_selector"] and gone.state is RolloutState.ROLLING_BACK
    assert gone.actions[0].params["selector"] == ORIGINAL
    done = STRATEGY.step(after(ctx, gone, cluster=cluster(False, ORIGINAL)))
    assert done.state is RolloutState.ROLLED_BACK


def test_blue_stays_up_for_the_delay_then_takes_the_new_version() -> None:
    ctx, transition = switched()
    passed = STRATEGY.step(after(ctx, transition, observation=healthy()))
    assert passed.strategy_state["phase"] == "delay" and not passed.actions
    waiting = STRATEGY.step(after(ctx, passed))
    assert not waiting.actions
    later = after(ctx, passed)
    later = replace(later, now=later.now + timedelta(seconds=60))
    updating = STRATEGY.step(later)
    assert kinds(updating) == ["restore_template"]
    assert updating.actions[0].params["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE


def test_finishing_reselects_by_shared_labels_then_removes_green() -> None:
    ctx, transition = switched()
    state = {**transition.strategy_state, "phase": "updating blue"}
    updated = deployment("checkout", NEW_IMAGE, "n1", revision=4)
    moved = STRATEGY.step(after(ctx, Transition(transition.state, "x", state), deployment=updated))
    assert kinds(moved) == ["set_service_selector", "delete_deployment", "delete_service"]
    assert moved.actions[0].params["selector"] == ORIGINAL
    done = STRATEGY.step(after(ctx, moved, deployment=updated, cluster=cluster(False, ORIGINAL)))
    assert done.state is RolloutState.PROMOTED


def test_a_bad_green_is_rolled_back_before_it_takes_traffic() -> None:
    ctx, transition = started()
    rolled = STRATEGY.step(after(ctx, transition, observation=critical()))
    assert rolled.state is RolloutState.ROLLING_BACK
    assert rolled.actions[0].params["selector"] == ON_BLUE
    assert rolled.decision is not None and rolled.decision.step.startswith("pre-promotion")


def test_abort_restores_blue_template_once_blue_was_updated() -> None:
    ctx, transition = switched()
    state = {**transition.strategy_state, "phase": "updating blue"}
    aborted = STRATEGY.step(
        after(ctx, Transition(transition.state, "x", state), commands=[ControlCommand.ABORT])
    )
    assert kinds(aborted)[-1] == "restore_template"
    template = aborted.actions[-1].params["template"]
    assert template["spec"]["containers"][0]["image"] == OLD_IMAGE
    assert aborted.decision is not None and "alice: testing" in aborted.decision.summary


def test_promote_skips_the_preview_analysis() -> None:
    ctx, transition = started()
    promoted = STRATEGY.step(after(ctx, transition, commands=[ControlCommand.PROMOTE]))
    assert kinds(promoted) == ["set_service_selector"]
    assert promoted.consumed_commands == [ControlCommand.PROMOTE]
    assert promoted.decision is not None and "alice: testing" in promoted.decision.summary


def test_a_missing_active_service_fails_before_any_change() -> None:
    empty = ClusterSnapshot(services={"checkout": None}, deployments={"checkout-green": None})
    transition = STRATEGY.step(context("bluegreen", cluster=empty))
    assert transition.state is RolloutState.FAILED and not transition.actions


# --- smoke check ----------------------------------------------------------------------------

SMOKE = "http://checkout-preview.shop.svc/healthz"
WITH_SMOKE = ServiceConfig(bluegreen=BlueGreenConfig(smoke_url=SMOKE))


def smoked(status: int | None) -> ClusterSnapshot:
    base = cluster()
    error = "" if status else "ConnectError: refused"
    return replace(base, probes={SMOKE: ProbeResult(SMOKE, status, error)})


def test_a_smoke_url_is_declared_as_a_probe() -> None:
    ctx = context("bluegreen", service=WITH_SMOKE)
    assert STRATEGY.needs(ctx.request, WITH_SMOKE).probes == (SMOKE,)
    assert STRATEGY.needs(ctx.request, ServiceConfig()).probes == ()


def test_the_switch_waits_for_a_passing_smoke_check() -> None:
    ctx, transition = started()
    ctx = replace(ctx, service=WITH_SMOKE, cluster=smoked(503))
    held = STRATEGY.step(after(ctx, transition, observation=healthy()))
    held = STRATEGY.step(after(ctx, held, observation=healthy()))
    assert held.strategy_state["phase"] == "pre" and not held.actions
    assert held.strategy_state["smoke_failures"] == 2
    switched = STRATEGY.step(after(ctx, held, observation=healthy(), cluster=smoked(200)))
    assert switched.strategy_state["phase"] == "post"
    assert switched.actions[0].params["selector"] == ON_GREEN


def test_three_failed_smoke_checks_in_a_row_roll_back_before_the_switch() -> None:
    ctx, transition = started()
    ctx = replace(ctx, service=WITH_SMOKE, cluster=smoked(None))
    for _ in range(3):
        transition = STRATEGY.step(after(ctx, transition))
    assert transition.state is RolloutState.ROLLING_BACK
    assert transition.strategy_state["rollback_reason"] == "smoke_check"
    assert transition.decision is not None
    assert transition.decision.evidence[0].metric == "smoke_check"
    assert transition.actions[0].params["selector"] == ON_BLUE
