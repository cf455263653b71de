"""Compare the new version with the stable one in the same interval.

Absolute thresholds alone blame a release for an incident the whole platform is having; the
baseline answers "is the new version worse than what already runs?" with one-sided tests: an
exact binomial test of the error count against the stable version's rate, and Mann-Whitney on
the latency histograms.
"""

from __future__ import annotations

from dataclasses import replace

from guard.config import AnalysisConfig
from guard.models import Evidence, Severity, Verdict

from .base import AnalysisResult, Observation, TrackSample
from .stats import binomial_sf, mann_whitney_binned, wilson_bounds, z_for
from .thresholds import TIER_ORDER, tier_limit


class BaselineAnalyzer:
    """Severity of the stable version itself, and whether the new one is significantly worse.

    The result's severity is the *stable* version's tier; `excused` says the stable version
    breaches and the new one is no worse, so a breach of the new one is not its fault.
    """

    name = "baseline"

    def analyze(self, observation: Observation, config: AnalysisConfig) -> AnalysisResult:
        candidate, baseline = _judged(observation, config), observation.baseline
        if baseline is None or baseline.requests < config.min_requests:
            return AnalysisResult(Verdict.CONTINUE, Severity.NONE, "no baseline traffic to compare")
        if candidate is None or candidate.requests <= 0:
            return AnalysisResult(Verdict.CONTINUE, Severity.NONE, "no new-version traffic")
        window = observation.window_seconds
        stable = _stable_severity(baseline, config)
        stable_errors = _error_baseline(baseline, observation.baseline_total, stable)
        scope = "" if stable_errors is baseline else " since the step began"
        evidence = [_error_test(candidate, stable_errors, config, window, scope)]
        latency = _latency_test(candidate, baseline, config, window)
        if latency is not None:
            evidence.append(latency)
        worse = [e for e in evidence if _worse(e, config)]
        excused = stable is not Severity.NONE and not worse
        if excused:
            summary = f"stable version breaching too ({stable.value}) and the new one is no worse"
        elif worse:
            summary = "new version significantly worse than stable: " + ", ".join(
                e.metric for e in worse
            )
        else:
            summary = "new version no worse than stable"
        return AnalysisResult(Verdict.CONTINUE, stable, summary, evidence, excused=excused)


def _judged(observation: Observation, config: AnalysisConfig) -> TrackSample | None:
    """The same new-version sample the thresholds judged: this window, or the step's totals."""
    window, total = observation.candidate, observation.candidate_total
    if window is not None and window.requests < config.min_requests and total is not None:
        return total
    return window


def _error_baseline(
    baseline: TrackSample, total: TrackSample | None, stable: Severity
) -> TrackSample:
    """The stable errors to test against: since the step began while the stable version is
    healthy in this window, else this window alone.

    A short window bounds the stable rate loosely (300 requests without an error: up to 1.7 %),
    so a canary at 8 % errors would wait for luck to be "significantly worse". While the stable
    version is not breaching, its rate over the step is the same rate measured on more requests.
    When it breaches, a platform incident may have just begun, and only this window says how
    bad the stable version is now, so the new one is excused if no worse than that.
    """
    if stable is Severity.NONE and total is not None and total.requests > baseline.requests:
        return replace(total, queries=baseline.queries)
    return baseline


def significantly_worse(result: AnalysisResult, metric: str, config: AnalysisConfig) -> bool:
    """Whether the baseline test for `metric` ("error_rate" or "latency") says worse."""
    for item in result.evidence:
        if item.metric == f"{metric}_vs_baseline" and item.p_value is not None:
            return _worse(item, config)
    return True  # no test possible: nothing speaks against the absolute thresholds


def _worse(item: Evidence, config: AnalysisConfig) -> bool:
    """Significant, and worse where it counts: a shifted histogram with an equal tail is not."""
    if item.p_value is None or item.p_value >= config.significance:
        return False
    if item.value is None or item.threshold is None:
        return True
    return item.value > item.threshold


def _error_test(
    candidate: TrackSample,
    baseline: TrackSample,
    config: AnalysisConfig,
    window: float,
    scope: str,
) -> Evidence:
    _, baseline_upper = wilson_bounds(baseline.errors, baseline.requests, z_for(config.confidence))
    p_value = binomial_sf(candidate.errors, candidate.requests, baseline_upper)
    return Evidence(
        metric="error_rate_vs_baseline",
        query=baseline.queries.get("errors"),
        value=candidate.error_rate,
        threshold=baseline.error_rate,
        bound=baseline_upper,
        p_value=p_value,
        sample_count=candidate.requests,
        window_seconds=window,
        note=f"exact binomial test against the stable rate's upper bound; "
        f"stable {baseline.errors:.0f}/{baseline.requests:.0f}{scope}",
    )


def _latency_test(
    candidate: TrackSample, baseline: TrackSample, config: AnalysisConfig, window: float
) -> Evidence | None:
    if not candidate.latency_buckets or not baseline.latency_buckets:
        return None
    test = mann_whitney_binned(candidate.latency_buckets, baseline.latency_buckets)
    if test is None:
        return None
    z, p_value = test
    quantile = config.latency_quantile
    return Evidence(
        metric="latency_vs_baseline",
        query=baseline.queries.get("latency_buckets"),
        value=candidate.latency_at(quantile),
        threshold=baseline.latency_at(quantile),
        statistic=z,
        p_value=p_value,
        sample_count=candidate.requests,
        window_seconds=window,
        note="one-sided Mann-Whitney U on histogram buckets",
    )


def _stable_severity(baseline: TrackSample, config: AnalysisConfig) -> Severity:
    rate = baseline.error_rate or 0.0
    latency = baseline.latency_at(config.latency_quantile)
    for severity in TIER_ORDER:
        if rate > tier_limit(config, severity, "error_rate"):
            return severity
        if latency is not None and latency > tier_limit(config, severity, "latency"):
            return severity
    return Severity.NONE
