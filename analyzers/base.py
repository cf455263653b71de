"""The analyzer interface: metrics of one interval in, a verdict with evidence out.

Analyzers are pure: they never query Prometheus or touch Kubernetes, so the live guard and
`guard backtest` run exactly the same judgement on the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from guard.config import AnalysisConfig
from guard.models import Evidence, Severity, Verdict
from guard.prometheus import QueryResult


@dataclass(frozen=True)
class TrackMetrics:
    """What Prometheus said about one version (track) over one window."""

    request_count: QueryResult
    error_rate: QueryResult
    latency: QueryResult


@dataclass(frozen=True)
class Observation:
    """The metrics one analysis interval sees; `baseline` is the version being replaced."""

    at: datetime
    window_seconds: float
    candidate: TrackMetrics
    baseline: TrackMetrics | None = None


@dataclass(frozen=True)
class AnalysisResult:
    """One interval's judgement: severity, the verdict it implies, and why."""

    verdict: Verdict
    severity: Severity
    summary: str
    evidence: list[Evidence] = field(default_factory=list)


class Analyzer(Protocol):
    """Turns one interval's metrics into a result; must not keep state between calls."""

    name: str

    def analyze(self, observation: Observation, config: AnalysisConfig) -> AnalysisResult: ...
