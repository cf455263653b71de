"""The analyzer interface: metrics of one interval in, a verdict with evidence out.

Analyzers are pure: they never query Prometheus or touch Kubernetes, so the live guard and
`guard backtest` run exactly the same judgement on the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from guard.config import AnalysisConfig
from guard.models import Evidence, Severity, Verdict

from .stats import Buckets, quantile_from_buckets


@dataclass(frozen=True)
class TrackSample:
    """One version's traffic over one window: counts, latency and the queries behind them."""

    requests: float
    errors: float
    latency: float | None = None
    latency_buckets: tuple[tuple[float, float], ...] | None = None
    queries: Mapping[str, str] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None

    def latency_at(self, quantile: float) -> float | None:
        """The given latency, else the quantile of the buckets (as histogram_quantile)."""
        if self.latency is not None:
            return self.latency
        return quantile_from_buckets(self.latency_buckets or (), quantile)

    def scaled(self, share: float) -> TrackSample:
        """The counts of `share` of this window, for adding overlapping windows up."""
        buckets = self.latency_buckets
        return TrackSample(
            requests=self.requests * share,
            errors=self.errors * share,
            latency=self.latency,
            latency_buckets=tuple((b, c * share) for b, c in buckets) if buckets else None,
            queries=self.queries,
        )

    def plus(self, other: TrackSample) -> TrackSample:
        """Counts of two windows together, so thin traffic adds up to evidence."""
        buckets = _add_buckets(self.latency_buckets, other.latency_buckets)
        return TrackSample(
            requests=self.requests + other.requests,
            errors=self.errors + other.errors,
            latency=None if buckets else max_or_none(self.latency, other.latency),
            latency_buckets=buckets,
            queries=other.queries or self.queries,
        )


@dataclass(frozen=True)
class Observation:
    """What one analysis interval sees.

    `candidate_total` adds up the new version's windows since its step began; analyzers fall
    back on it when one window holds too few requests. `baseline_total` does the same for the
    stable version, whose error rate a short window measures too loosely to compare against.
    `unavailable` lists the queries that got no answer from Prometheus, which makes the
    interval say nothing about the release.
    """

    at: datetime
    window_seconds: float
    candidate: TrackSample | None
    baseline: TrackSample | None = None
    candidate_total: TrackSample | None = None
    baseline_total: TrackSample | None = None
    unavailable: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class AnalysisResult:
    """One interval's judgement: severity, the verdict it implies, and why.

    `excused` marks a breach the stable version shows as badly: not the release's fault, so it
    must neither roll back nor promote.
    """

    verdict: Verdict
    severity: Severity
    summary: str
    evidence: list[Evidence] = field(default_factory=list)
    excused: bool = False


class Analyzer(Protocol):
    """Turns one interval's metrics into a result; must not keep state between calls."""

    name: str

    def analyze(self, observation: Observation, config: AnalysisConfig) -> AnalysisResult: ...


def max_or_none(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


def _add_buckets(a: Buckets | None, b: Buckets | None) -> tuple[tuple[float, float], ...] | None:
    if not a or not b:
        return tuple(a or b or ()) or None
    if [bound for bound, _ in a] != [bound for bound, _ in b]:
        return None
    return tuple((bound, ca + cb) for (bound, ca), (_, cb) in zip(a, b, strict=True))
