"""Absolute thresholds: classify the new version's error rate and latency into severity tiers.

A tier is breached only when the evidence says so with confidence: the lower Wilson bound of the
error rate (or of the share of requests slower than the latency limit) must exceed the tier.
One error in twenty requests is then no 5 % breach, while four errors in twenty are.
"""

from __future__ import annotations

from collections.abc import Callable

from guard.config import AnalysisConfig
from guard.models import Evidence, Severity, Verdict

from .base import AnalysisResult, Observation, TrackSample
from .stats import slower_than, wilson_bounds, z_for

TIER_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM)


class ThresholdAnalyzer:
    """Severity of the worst metric against the configured tiers."""

    name = "thresholds"

    def analyze(self, observation: Observation, config: AnalysisConfig) -> AnalysisResult:
        if observation.unavailable:
            return unavailable(observation)
        sample, scope = _enough(observation, config)
        if sample is None:
            return _inconclusive(observation, config)
        window = observation.window_seconds if scope == "window" else None
        error_rate = _error_rate(sample, config, window)
        latency = _latency(sample, config, window)
        evidence = [error_rate, latency]
        severity = max((e.severity for e in evidence), key=lambda s: s.rank)
        if severity is Severity.NONE and latency.value is None:
            summary = f"no latency data over {sample.requests:.0f} requests"
            return AnalysisResult(Verdict.INCONCLUSIVE, severity, summary, evidence)
        if severity is Severity.NONE and not _surely_not_critical(observation, sample, config):
            summary = (
                f"no breach, but {sample.requests:.0f} requests cannot yet rule out "
                f"{config.tiers.critical.error_rate:.0%} errors"
            )
            return AnalysisResult(Verdict.INCONCLUSIVE, severity, summary, evidence)
        verdict = verdict_for(severity)
        return AnalysisResult(verdict, severity, summarize(evidence, severity, scope), evidence)


def unavailable(observation: Observation) -> AnalysisResult:
    evidence = [
        Evidence(
            metric="prometheus", query=query, window_seconds=observation.window_seconds, note=error
        )
        for query, error in observation.unavailable
    ]
    first_error = observation.unavailable[0][1]
    return AnalysisResult(
        Verdict.HOLD, Severity.NONE, f"metrics unavailable: {first_error}", evidence
    )


def verdict_for(severity: Severity) -> Verdict:
    if severity is Severity.CRITICAL:
        return Verdict.ROLLBACK
    if severity is Severity.NONE:
        return Verdict.CONTINUE
    return Verdict.HOLD


def tier_limit(config: AnalysisConfig, severity: Severity, metric: str) -> float:
    tier = getattr(config.tiers, severity.value)
    limit: float = tier.error_rate if metric == "error_rate" else tier.latency_seconds
    return limit


def _enough(observation: Observation, config: AnalysisConfig) -> tuple[TrackSample | None, str]:
    """This window if it holds enough requests, else everything since the step began."""
    window = observation.candidate
    if window is None:
        return None, ""
    if window.requests >= config.min_requests:
        return window, "window"
    total = observation.candidate_total
    if total is not None and total.requests >= config.min_requests:
        return total, "step"
    return None, ""


def _surely_not_critical(
    observation: Observation, sample: TrackSample, config: AnalysisConfig
) -> bool:
    """Promotion needs evidence of health: the upper bound of errors below the critical tier."""
    evidence = observation.candidate_total or sample
    _, high = wilson_bounds(evidence.errors, evidence.requests, z_for(config.confidence))
    return high < config.tiers.critical.error_rate


def _inconclusive(observation: Observation, config: AnalysisConfig) -> AnalysisResult:
    window = observation.candidate
    total = observation.candidate_total
    requests = total.requests if total else (window.requests if window else 0.0)
    seen = window or total
    query = seen.queries.get("requests") if seen else None
    evidence = Evidence(
        metric="request_count",
        query=query,
        value=requests,
        threshold=config.min_requests,
        comparison=">=",
        sample_count=requests,
        window_seconds=observation.window_seconds,
        note="not enough requests to judge" if window else "no data for the new version",
    )
    summary = f"{requests:.0f} requests so far, need {config.min_requests:g} to judge"
    return AnalysisResult(Verdict.INCONCLUSIVE, Severity.NONE, summary, [evidence])


def _error_rate(sample: TrackSample, config: AnalysisConfig, window: float | None) -> Evidence:
    low, _ = wilson_bounds(sample.errors, sample.requests, z_for(config.confidence))
    return _classify(
        "error_rate",
        sample,
        config,
        window,
        value=sample.error_rate,
        breaches=lambda limit: low > limit,
        bound=low,
    )


def _latency(sample: TrackSample, config: AnalysisConfig, window: float | None) -> Evidence:
    """With buckets: breached when surely more than (1 - q) of requests are slower."""
    quantile = config.latency_quantile
    value = sample.latency_at(quantile)
    z = z_for(config.confidence)

    def breaches(limit: float) -> bool:
        slow = slower_than(sample.latency_buckets or (), limit)
        if slow is None:
            return value is not None and value > limit
        low, _ = wilson_bounds(slow, sample.requests, z)
        return low > 1 - quantile

    return _classify("latency", sample, config, window, value=value, breaches=breaches, bound=None)


def _classify(
    metric: str,
    sample: TrackSample,
    config: AnalysisConfig,
    window: float | None,
    *,
    value: float | None,
    breaches: Callable[[float], bool],
    bound: float | None,
) -> Evidence:
    query = sample.queries.get("errors" if metric == "error_rate" else "latency_buckets")
    evidence = Evidence(
        metric=metric,
        query=query,
        value=value,
        bound=bound,
        sample_count=sample.requests,
        window_seconds=window,
        note="" if window else "summed since the step began",
    )
    if value is None:
        return evidence.model_copy(update={"note": "no data for this metric"})
    for severity in TIER_ORDER:
        limit = tier_limit(config, severity, metric)
        if breaches(limit):
            return evidence.model_copy(update={"threshold": limit, "severity": severity})
    return evidence.model_copy(update={"threshold": tier_limit(config, Severity.MEDIUM, metric)})


def summarize(evidence: list[Evidence], severity: Severity, scope: str = "window") -> str:
    suffix = " (summed since the step began)" if scope == "step" else ""
    if severity is Severity.NONE:
        return (
            "healthy: " + ", ".join(describe(e) for e in evidence if e.value is not None) + suffix
        )
    breached = [e for e in evidence if e.severity is not Severity.NONE]
    return f"{severity.value}: " + ", ".join(describe(e) for e in breached) + suffix


def describe(item: Evidence) -> str:
    value = item.value or 0.0
    relation = ">" if item.severity is not Severity.NONE else "<="
    if item.metric == "error_rate":
        limit = f"{item.threshold:.2%}" if item.threshold is not None else "-"
        bound = f" (lower bound {item.bound:.2%})" if item.bound is not None else ""
        text = f"error rate {value:.2%}{bound} {relation} {limit}"
    else:
        limit = f"{item.threshold:g}s" if item.threshold is not None else "-"
        text = f"{item.metric} {value:.3f}s {relation} {limit}"
    return f"{text} over {item.sample_count or 0:.0f} requests"
