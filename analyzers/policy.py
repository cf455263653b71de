"""From one interval's analysis to a verdict, given what came before.

This is the single place the rules live, shared by the live guard and `guard backtest`:
- critical rolls back at once; high after N intervals in a row; medium holds and rolls back
  after M in a row; a breach the stable version shows as badly holds instead (never blamed,
  never promoted);
- an interval without evidence (too little traffic, Prometheus down) neither breaks nor extends
  a streak, never promotes, and after `hold_alert_after_seconds` asks for a human.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from guard.config import AnalysisConfig
from guard.models import Severity, Verdict

from .base import AnalysisResult, Observation, TrackSample
from .baseline import significantly_worse
from .registry import get_analyzer


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers between intervals of one step; JSON-serialisable."""

    breach_severity: Severity = Severity.NONE
    breach_streak: int = 0
    no_evidence_since: datetime | None = None
    total_requests: float = 0.0
    total_errors: float = 0.0
    total_buckets: tuple[tuple[float, float], ...] | None = None
    baseline_requests: float = 0.0
    baseline_errors: float = 0.0
    alerted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "breach_severity": self.breach_severity.value,
            "breach_streak": self.breach_streak,
            "no_evidence_since": self.no_evidence_since.isoformat()
            if self.no_evidence_since
            else None,
            "total_requests": self.total_requests,
            "total_errors": self.total_errors,
            "total_buckets": [[_bound(b), c] for b, c in self.total_buckets]
            if self.total_buckets
            else None,
            "baseline_requests": self.baseline_requests,
            "baseline_errors": self.baseline_errors,
            "alerted": self.alerted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PolicyState:
        if not data:
            return cls()
        since = data.get("no_evidence_since")
        buckets = data.get("total_buckets")
        return cls(
            breach_severity=Severity(data.get("breach_severity", "none")),
            breach_streak=int(data.get("breach_streak", 0)),
            no_evidence_since=datetime.fromisoformat(since) if since else None,
            total_requests=float(data.get("total_requests", 0.0)),
            total_errors=float(data.get("total_errors", 0.0)),
            total_buckets=tuple((float(b), float(c)) for b, c in buckets) if buckets else None,
            baseline_requests=float(data.get("baseline_requests", 0.0)),
            baseline_errors=float(data.get("baseline_errors", 0.0)),
            alerted=bool(data.get("alerted", False)),
        )

    @property
    def total(self) -> TrackSample | None:
        if self.total_requests <= 0:
            return None
        return TrackSample(
            self.total_requests, self.total_errors, latency_buckets=self.total_buckets
        )

    @property
    def baseline_total(self) -> TrackSample | None:
        if self.baseline_requests <= 0:
            return None
        return TrackSample(self.baseline_requests, self.baseline_errors)


@dataclass(frozen=True)
class Evaluation:
    """The verdict of one interval, the analysis behind it and the policy's new memory."""

    verdict: Verdict
    result: AnalysisResult
    state: PolicyState
    alert: bool = False
    notes: list[str] = field(default_factory=list)


def evaluate(observation: Observation, state: PolicyState, config: AnalysisConfig) -> Evaluation:
    """Analyse one interval with everything the step has seen, then apply the rules."""
    share = min(1.0, config.interval_seconds / observation.window_seconds)
    state = _accumulate(state, observation.candidate, share)
    state = _accumulate_baseline(state, observation.baseline, share)
    observation = replace(
        observation,
        candidate_total=_with_latency(state.total, observation),
        baseline_total=state.baseline_total,
    )
    result = analyze_interval(observation, config)
    if result.severity is Severity.NONE and result.verdict in (Verdict.HOLD, Verdict.INCONCLUSIVE):
        return _no_evidence(result, state, observation.at, config)
    state = replace(state, no_evidence_since=None)
    if result.excused:
        return Evaluation(
            Verdict.HOLD, result, replace(state, alerted=True), alert=not state.alerted
        )
    state = replace(state, alerted=False)
    window = observation.candidate
    if result.severity in (Severity.HIGH, Severity.MEDIUM) and (
        window is None or window.requests < config.min_requests
    ):
        # Judged on the step's totals, which still hold the old breach: no new evidence.
        return Evaluation(Verdict.HOLD, result, state)
    streak = _streak(state, result.severity)
    state = replace(state, breach_severity=result.severity, breach_streak=streak)
    verdict = _escalate(result, streak, config)
    # A medium breach holds the step; on-call hears of it once, when the hold begins.
    alert = verdict is Verdict.HOLD and result.severity is Severity.MEDIUM and streak == 1
    return Evaluation(verdict, result, state, alert=alert)


def analyze_interval(observation: Observation, config: AnalysisConfig) -> AnalysisResult:
    """Absolute thresholds, weighed against the stable version when it serves too."""
    absolute = get_analyzer("thresholds").analyze(observation, config)
    if absolute.verdict is Verdict.HOLD and absolute.severity is Severity.NONE:
        return absolute  # metrics unavailable
    compared = get_analyzer("baseline").analyze(observation, config)
    evidence = absolute.evidence + compared.evidence
    if compared.excused and compared.severity.rank >= absolute.severity.rank:
        summary = f"{absolute.summary}; {compared.summary}: platform incident, holding"
        return AnalysisResult(Verdict.HOLD, absolute.severity, summary, evidence, excused=True)
    if absolute.severity is not Severity.NONE:
        blamed = [
            e.metric
            for e in absolute.evidence
            if e.severity is not Severity.NONE and significantly_worse(compared, e.metric, config)
        ]
        if not blamed:
            summary = f"{absolute.summary}; but no worse than the stable version: waiting"
            return AnalysisResult(Verdict.INCONCLUSIVE, Severity.NONE, summary, evidence)
    return AnalysisResult(absolute.verdict, absolute.severity, absolute.summary, evidence)


def _accumulate(state: PolicyState, sample: TrackSample | None, share: float) -> PolicyState:
    """Add this interval's new requests to the step's totals.

    Windows longer than the interval overlap; only `share` (interval / window) of a window is
    new, so adding whole windows would count each request several times and overstate the
    evidence both ways (a rollback or a promotion on a third of the real traffic).
    """
    if sample is None:
        return state
    if share < 1.0:
        sample = sample.scaled(share)
    total = state.total.plus(sample) if state.total else sample
    return replace(
        state,
        total_requests=total.requests,
        total_errors=total.errors,
        total_buckets=total.latency_buckets,
    )


def _accumulate_baseline(
    state: PolicyState, sample: TrackSample | None, share: float
) -> PolicyState:
    """Add this interval's new stable requests to the step's totals, counted as the new
    version's are (only `share` of an overlapping window is new)."""
    if sample is None:
        return state
    return replace(
        state,
        baseline_requests=state.baseline_requests + sample.requests * share,
        baseline_errors=state.baseline_errors + sample.errors * share,
    )


def _with_latency(total: TrackSample | None, observation: Observation) -> TrackSample | None:
    """Totals keep buckets only; without buckets, carry this window's latency value over."""
    window = observation.candidate
    if total is None or total.latency_buckets or window is None or window.latency is None:
        return total
    return replace(total, latency=window.latency)


def _no_evidence(
    result: AnalysisResult, state: PolicyState, at: datetime, config: AnalysisConfig
) -> Evaluation:
    since = state.no_evidence_since or at
    state = replace(state, no_evidence_since=since)
    waited = (at - since).total_seconds()
    if waited >= config.hold_alert_after_seconds:
        note = f"no conclusive evidence for {waited:.0f}s: holding for a human"
        alert = not state.alerted
        return Evaluation(Verdict.HOLD, result, replace(state, alerted=True), alert, [note])
    return Evaluation(result.verdict, result, state)


def _streak(state: PolicyState, severity: Severity) -> int:
    """Intervals in a row at `severity` or worse."""
    if severity is Severity.NONE:
        return 0
    if state.breach_streak > 0 and state.breach_severity.rank >= severity.rank:
        return state.breach_streak + 1
    return 1


def _escalate(result: AnalysisResult, streak: int, config: AnalysisConfig) -> Verdict:
    if result.severity is Severity.CRITICAL:
        return Verdict.ROLLBACK
    if result.severity is Severity.HIGH and streak >= config.high_consecutive_to_rollback:
        return Verdict.ROLLBACK
    if result.severity is Severity.MEDIUM and streak >= config.medium_consecutive_to_rollback:
        return Verdict.ROLLBACK
    return result.verdict


def _bound(upper: float) -> float | str:
    """A bucket's upper bound as Prometheus writes it in `le`: JSON has no infinity."""
    return upper if math.isfinite(upper) else "+Inf"
