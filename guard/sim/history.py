"""Write finished rollouts into a store as the engine writes them, for DORA tests and demos.

A delivery history of weeks cannot be produced by running real rollouts in a test, so this
writes the same rows the engine would (submission, transitions, decisions with evidence) with
chosen times. Test tool only: no product logic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from guard.models import Decision, Evidence, RolloutRequest, RolloutState, Severity, Verdict
from guard.store import Store
from strategies.base import Transition

IMAGE = "registry.example.com/shop/checkout:1.4.2"
REASONS = {"promoted": "promoted", "rolled_back": "analysis", "aborted": "aborted"}


def measured(at: datetime, error_rate: float, verdict: Verdict, step: str) -> Decision:
    """A decision on one interval's error rate (latency 250 ms), as the analyzer reports it."""
    return Decision(
        at=at,
        verdict=verdict,
        severity=Severity.CRITICAL if error_rate > 0.05 else Severity.NONE,
        summary=f"error rate {error_rate:.2%}",
        step=step,
        evidence=[
            Evidence(metric="error_rate", value=error_rate, threshold=0.05, sample_count=400),
            Evidence(metric="latency", value=0.25, threshold=3.0, sample_count=400),
        ],
    )


def finished_rollout(
    store: Store,
    *,
    started: datetime,
    state: RolloutState,
    minutes: float,
    deployment: str = "checkout",
    bad_after: float | None = None,
    labels: dict[str, str] | None = None,
    lead: timedelta | None = None,
) -> str:
    """One rollout from submission to its end; `bad_after` minutes in, a fault and a rollback
    decided a minute later, verified at the end. Returns the rollout id."""
    request = RolloutRequest(
        namespace="shop",
        deployment=deployment,
        images={"app": IMAGE},
        commit_sha="9f2c1e7aa",
        commit_time=started - lead if lead else None,
        labels=labels or {},
    )
    view, _ = store.submit(request, idempotency_key=None, now=started - timedelta(seconds=1))
    _move(store, view.id, started, RolloutState.PROGRESSING, "updating", {"started_at": started})
    first = started + timedelta(minutes=1)
    healthy = measured(first, 0.001, Verdict.CONTINUE, "analysing")
    _move(store, view.id, first, RolloutState.PROGRESSING, "analysing", {}, healthy)
    end = started + timedelta(minutes=minutes)
    stamps: dict[str, datetime] = {"finished_at": end}
    if bad_after is not None:
        bad = started + timedelta(minutes=bad_after)
        decided = bad + timedelta(minutes=1)
        fault = {"first_bad_sample_at": bad, "rollback_started_at": decided}
        rollback = measured(decided, 0.08, Verdict.ROLLBACK, "analysing")
        _move(store, view.id, decided, RolloutState.ROLLING_BACK, "rolling back", fault, rollback)
        stamps |= {**fault, "rollback_verified_at": end}
    _move(store, view.id, end, state, "done", stamps, reason=REASONS.get(state.value, "error"))
    return view.id


def _move(
    store: Store,
    rollout_id: str,
    at: datetime,
    state: RolloutState,
    step: str,
    stamps: dict[str, datetime],
    decision: Decision | None = None,
    reason: str | None = None,
) -> None:
    transition = Transition(
        state=state,
        step=step,
        strategy_state={},
        timestamps=stamps,
        decision=decision,
        message=step,
        outcome_reason=reason,
    )
    store.apply(rollout_id, transition, analysed_at=at if decision else None, now=at)
