"""Absolute thresholds: classify the new version's error rate and latency into severity tiers.

A rate is only judged when enough requests stand behind it; otherwise the interval is
inconclusive, because one error in twenty requests is not evidence of a 5 % breach.
"""

from __future__ import annotations

from guard.config import AnalysisConfig, Tier
from guard.models import Evidence, Severity, Verdict
from guard.prometheus import QueryResult, QueryStatus

from .base import AnalysisResult, Observation

_TIER_ORDER = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM)


class ThresholdAnalyzer:
    """Severity of the worst metric against the configured tiers."""

    name = "thresholds"

    def analyze(self, observation: Observation, config: AnalysisConfig) -> AnalysisResult:
        metrics = observation.candidate
        window = observation.window_seconds
        outage = [
            result
            for result in (metrics.request_count, metrics.error_rate, metrics.latency)
            if result.status in (QueryStatus.UNREACHABLE, QueryStatus.QUERY_ERROR)
        ]
        if outage:
            return _unavailable(outage, window)
        requests = metrics.request_count.value if metrics.request_count.usable else 0.0
        count = _evidence("request_count", metrics.request_count, window, requests)
        if requests is None or requests < config.min_requests:
            enough = count.model_copy(
                update={
                    "threshold": config.min_requests,
                    "comparison": ">=",
                    "note": "not enough requests to judge",
                }
            )
            return AnalysisResult(
                Verdict.INCONCLUSIVE,
                Severity.NONE,
                f"{requests:.0f} requests in {window:g}s, need {config.min_requests:g}",
                [enough],
            )
        error_rate = _classify("error_rate", metrics.error_rate, window, requests, config)
        latency = _classify("latency", metrics.latency, window, requests, config)
        evidence = [count, error_rate, latency]
        severity = max((error_rate.severity, latency.severity), key=lambda s: s.rank)
        missing = [e.metric for e in (error_rate, latency) if e.value is None]
        if severity is Severity.NONE and missing:
            summary = f"no data for {', '.join(missing)} over {requests:.0f} requests"
            return AnalysisResult(Verdict.INCONCLUSIVE, severity, summary, evidence)
        return AnalysisResult(_verdict(severity), severity, _summary(evidence, severity), evidence)


def _unavailable(failed: list[QueryResult], window: float) -> AnalysisResult:
    evidence = [
        Evidence(metric="prometheus", query=r.query, window_seconds=window, note=r.error)
        for r in failed
    ]
    kind = failed[0].status.value.replace("_", " ")
    return AnalysisResult(
        Verdict.HOLD, Severity.NONE, f"metrics unavailable ({kind}): {failed[0].error}", evidence
    )


def _classify(
    metric: str, result: QueryResult, window: float, requests: float, config: AnalysisConfig
) -> Evidence:
    if not result.usable or result.value is None:
        return _evidence(metric, result, window, requests, note="no data for this metric")
    tiers = config.tiers
    for severity in _TIER_ORDER:
        tier: Tier = getattr(tiers, severity.value)
        threshold = tier.error_rate if metric == "error_rate" else tier.latency_seconds
        if result.value > threshold:
            return _evidence(metric, result, window, requests, threshold, severity)
    threshold = tiers.medium.error_rate if metric == "error_rate" else tiers.medium.latency_seconds
    return _evidence(metric, result, window, requests, threshold)


def _evidence(
    metric: str,
    result: QueryResult,
    window: float,
    requests: float | None,
    threshold: float | None = None,
    severity: Severity = Severity.NONE,
    note: str = "",
) -> Evidence:
    return Evidence(
        metric=metric,
        query=result.query,
        value=result.value,
        threshold=threshold,
        sample_count=requests,
        window_seconds=window,
        severity=severity,
        note=note or result.error,
    )


def _verdict(severity: Severity) -> Verdict:
    if severity is Severity.CRITICAL:
        return Verdict.ROLLBACK
    if severity is Severity.NONE:
        return Verdict.CONTINUE
    return Verdict.HOLD


def _summary(evidence: list[Evidence], severity: Severity) -> str:
    if severity is Severity.NONE:
        return "healthy: " + ", ".join(_describe(e) for e in evidence[1:] if e.value is not None)
    breached = [e for e in evidence if e.severity is not Severity.NONE]
    return f"{severity.value}: " + ", ".join(_describe(e) for e in breached)


def _describe(item: Evidence) -> str:
    value = item.value or 0.0
    if item.metric == "error_rate":
        text = f"error rate {value:.2%}"
        limit = f"{item.threshold:.2%}" if item.threshold is not None else "-"
    else:
        text = f"{item.metric} {value:.3f}s"
        limit = f"{item.threshold:g}s" if item.threshold is not None else "-"
    relation = ">" if item.severity is not Severity.NONE else "<="
    return f"{text} {relation} {limit} over {item.sample_count or 0:.0f} requests"
