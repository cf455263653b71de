"""The strategy interface: a pure state machine from (rollout, cluster, analysis) to actions.

Strategies never query Prometheus or call Kubernetes. The engine hands them a snapshot and the
interval's analysis; they return the next state, the decision with its evidence, and the
Kubernetes actions for the adapter to carry out after the transition is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from analyzers.base import Observation
from analyzers.policy import PolicyState, evaluate
from guard.cluster import ClusterNeeds, ClusterSnapshot
from guard.config import AnalysisConfig, ServiceConfig
from guard.kube import DeploymentSnapshot
from guard.models import (
    NEEDS_HUMAN,
    ControlCommand,
    Decision,
    Evidence,
    RolloutRequest,
    RolloutState,
    Severity,
    Verdict,
)


@dataclass(frozen=True)
class Action:
    """One Kubernetes change; `kind` names a KubeClient method, `params` its arguments."""

    kind: str
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        return cls(kind=data["kind"], params=data["params"])


@dataclass(frozen=True)
class Track:
    """One version's pods: the workload (Deployment) name and its pod-template-hash."""

    workload: str
    revision: str


@dataclass(frozen=True)
class AnalysisTarget:
    """The new version to judge and, where it still serves, the version it replaces."""

    candidate: Track
    baseline: Track | None = None


@dataclass(frozen=True)
class RolloutContext:
    """Everything a strategy may look at in one tick."""

    rollout_id: str
    request: RolloutRequest
    state: RolloutState
    step: str
    strategy_state: dict[str, Any]
    commands: list[ControlCommand]
    now: datetime
    config: AnalysisConfig
    deployment: DeploymentSnapshot | None = None
    observation: Observation | None = None
    service: ServiceConfig = field(default_factory=ServiceConfig)
    cluster: ClusterSnapshot = field(default_factory=ClusterSnapshot)
    command_notes: dict[str, str] = field(default_factory=dict)

    def note(self, command: ControlCommand) -> str:
        """Who sent `command` and why, as recorded with it."""
        return self.command_notes.get(command.value, "an operator")


@dataclass
class Transition:
    """The outcome of a tick; stored before any action runs."""

    state: RolloutState
    step: str
    strategy_state: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    decision: Decision | None = None
    timestamps: dict[str, datetime] = field(default_factory=dict)
    message: str | None = None
    outcome_reason: str | None = None
    consumed_commands: list[ControlCommand] = field(default_factory=list)


class Strategy(Protocol):
    """One rollout strategy; registered in `strategies.registry`."""

    name: str

    def needs(self, request: RolloutRequest, service: ServiceConfig) -> ClusterNeeds:
        """Objects besides the request's Deployment to read into `ctx.cluster` every tick."""
        ...

    def analysis_target(self, ctx: RolloutContext) -> AnalysisTarget | None:
        """What to analyse this tick, or None when the current step needs no metrics."""
        ...

    def step(self, ctx: RolloutContext) -> Transition:
        """Advance one tick; must be deterministic in `ctx`."""
        ...


def stay(ctx: RolloutContext, **changes: Any) -> Transition:
    """A transition that keeps state and step unless told otherwise."""
    base = Transition(state=ctx.state, step=ctx.step, strategy_state=dict(ctx.strategy_state))
    return replace(base, **changes)


@dataclass(frozen=True)
class Judgement:
    """An analysis result after the escalation policy, with the updated breach streak."""

    verdict: Verdict
    decision: Decision
    strategy_state: dict[str, Any]
    timestamps: dict[str, datetime]


def judge(ctx: RolloutContext, observation: Observation) -> Judgement:
    """Run the shared analysis policy on this interval and keep its memory in the state."""
    state = dict(ctx.strategy_state)
    evaluation = evaluate(observation, PolicyState.from_json(state.get("policy")), ctx.config)
    state["policy"] = evaluation.state.to_json()
    result = evaluation.result
    at = observation.at
    timestamps: dict[str, datetime] = {}
    if result.severity is not Severity.NONE and not result.excused:
        timestamps["first_bad_sample_at"] = first_bad_sample(ctx, at)
    summary = "; ".join([result.summary, *evaluation.notes])
    streak = evaluation.state.breach_streak
    if streak > 1 and result.severity is not Severity.NONE and not result.excused:
        summary += f" ({streak} intervals in a row)"
    decision = Decision(
        at=at,
        verdict=evaluation.verdict,
        severity=result.severity,
        summary=summary,
        action=NEEDS_HUMAN if evaluation.alert else "none",
        step=ctx.step,
        evidence=list(result.evidence),
    )
    return Judgement(evaluation.verdict, decision, state, timestamps)


def reset_policy(strategy_state: dict[str, Any]) -> dict[str, Any]:
    """A new step judges its own traffic: forget the previous step's totals and streaks."""
    return {k: v for k, v in strategy_state.items() if k != "policy"}


def first_bad_sample(ctx: RolloutContext, analysed_at: datetime) -> datetime:
    """The earliest moment a bad sample in the breaching window can come from.

    That is the start of the query window, or, if later, the moment the new version's first pod
    became available: before it, no traffic reached the new version.
    """
    window_start = analysed_at - timedelta(seconds=ctx.config.window_seconds)
    serving = ctx.strategy_state.get("candidate_serving_at")
    if serving is None:
        return window_start
    return max(window_start, datetime.fromisoformat(serving))


def operational_decision(
    ctx: RolloutContext, verdict: Verdict, summary: str, action: str, evidence: list[Evidence]
) -> Decision:
    """A decision that rests on cluster facts or an operator's command, not on metrics."""
    return Decision(
        at=ctx.now,
        verdict=verdict,
        summary=summary,
        action=action,
        step=ctx.step,
        evidence=evidence,
    )
