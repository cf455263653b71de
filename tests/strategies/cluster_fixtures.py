"""Snapshots of a stable Deployment and a second (canary or green) one, for strategy tests."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzers.base import Observation, TrackSample
from guard.cluster import ClusterSnapshot
from guard.config import AnalysisConfig, ServiceConfig
from guard.kube import DeploymentSnapshot, ReplicaSetSnapshot
from guard.models import ControlCommand, RolloutRequest, RolloutState
from strategies.base import RolloutContext, Transition

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
OLD_IMAGE = "registry.example.com/shop/checkout:1.4.1"
NEW_IMAGE = "registry.example.com/shop/checkout:1.4.2"
OLD_HASH, NEW_HASH, SIDE_HASH = "6b7c8d9f5", "5f4d3c2b1", "7a8b9c0d1"
CONFIG = AnalysisConfig(healthy_intervals_to_promote=2)


def template(image: str, **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "checkout", **labels}},
        "spec": {"containers": [{"name": "checkout", "image": image}]},
    }


def deployment(
    name: str,
    image: str,
    pod_hash: str,
    *,
    replicas: int = 4,
    available: int | None = None,
    revision: int = 3,
    **labels: str,
) -> DeploymentSnapshot:
    ready = replicas if available is None else available
    rs = ReplicaSetSnapshot(
        name=f"{name}-{pod_hash}",
        revision=revision,
        pod_template_hash=pod_hash,
        template=template(image, **labels),
        replicas=replicas,
        available_replicas=ready,
    )
    return DeploymentSnapshot(
        namespace="shop",
        name=name,
        generation=2,
        observed_generation=2,
        desired_replicas=replicas,
        replicas=replicas,
        updated_replicas=replicas,
        available_replicas=ready,
        paused=False,
        revision=revision,
        template=copy.deepcopy(template(image, **labels)),
        conditions={},
        replica_sets=[rs],
    )


def stable() -> DeploymentSnapshot:
    return deployment("checkout", OLD_IMAGE, OLD_HASH)


def healthy() -> Observation:
    """An interval the real analyzers find healthy: 1 error in 1000, p99 0.2 s."""
    return Observation(at=T0, window_seconds=10, candidate=TrackSample(1000, 1, latency=0.2))


def critical() -> Observation:
    """An interval the real analyzers find critical: 10 % errors over 1000 requests."""
    return Observation(at=T0, window_seconds=10, candidate=TrackSample(1000, 100, latency=0.2))


def context(
    strategy: str,
    *,
    steps: list[int | str] | None = None,
    service: ServiceConfig | None = None,
    cluster: ClusterSnapshot | None = None,
    commands: list[ControlCommand] | None = None,
) -> RolloutContext:
    request = RolloutRequest(
        namespace="shop",
        deployment="checkout",
        images={"checkout": NEW_IMAGE},
        strategy=strategy,
        steps=steps,  # type: ignore[arg-type]
    )
    return RolloutContext(
        rollout_id="r-1",
        request=request,
        state=RolloutState.PENDING,
        step="pre-flight passed",
        strategy_state={"preflight": "passed"},
        commands=commands or [],
        now=T0,
        config=CONFIG,
        deployment=stable(),
        service=service or ServiceConfig(),
        cluster=cluster or ClusterSnapshot(),
        command_notes={c.value: "alice: testing" for c in commands or []},
    )


def after(
    ctx: RolloutContext,
    transition: Transition,
    *,
    deployment: DeploymentSnapshot | None = None,
    cluster: ClusterSnapshot | None = None,
    observation: Observation | None = None,
    commands: list[ControlCommand] | None = None,
) -> RolloutContext:
    """The next tick's context, as the store and the engine would build it."""
    left = [c for c in ctx.commands if c not in transition.consumed_commands]
    now = ctx.now + timedelta(seconds=10)
    pending = left + [c for c in commands or [] if c not in left]
    return replace(
        ctx,
        state=transition.state,
        step=transition.step,
        strategy_state=transition.strategy_state,
        commands=pending,
        command_notes={c.value: "alice: testing" for c in pending},
        now=now,
        deployment=deployment or ctx.deployment,
        cluster=cluster if cluster is not None else ctx.cluster,
        observation=replace(observation, at=now) if observation is not None else None,
    )


def kinds(transition: Transition) -> list[str]:
    return [action.kind for action in transition.actions]
