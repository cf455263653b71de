"""BaselineAnalyzer: is the new version worse than the stable one in the same interval?"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analyzers.base import AnalysisResult, Observation, TrackSample
from analyzers.baseline import BaselineAnalyzer, significantly_worse
from guard.config import AnalysisConfig
from guard.models import Evidence, Severity, Verdict

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CONFIG = AnalysisConfig()
INF = float("inf")
BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, INF)
FAST = (3000, 4000, 2000, 700, 250, 50, 0)  # per-bucket counts of the stable version


def buckets(counts: tuple[float, ...]) -> tuple[tuple[float, float], ...]:
    total, out = 0.0, []
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        out.append((bound, total))
    return tuple(out)


def track(
    requests: float,
    errors: float,
    latency: float | None = 0.2,
    counts: tuple[float, ...] | None = None,
) -> TrackSample:
    return TrackSample(
        requests,
        errors,
        latency=None if counts else latency,
        latency_buckets=buckets(counts) if counts else None,
        queries={"errors": "q_base_errors", "latency_buckets": "q_base_latency"},
    )


def compare(candidate: TrackSample | None, baseline: TrackSample | None) -> AnalysisResult:
    observation = Observation(at=AT, window_seconds=30, candidate=candidate, baseline=baseline)
    return BaselineAnalyzer().analyze(observation, CONFIG)


def evidence_for(result: AnalysisResult, metric: str) -> Evidence:
    [match] = [e for e in result.evidence if e.metric == metric]
    return match


def test_without_a_baseline_there_is_nothing_to_compare() -> None:
    result = compare(track(1000, 1), None)
    assert result.verdict is Verdict.CONTINUE
    assert result.severity is Severity.NONE
    assert not result.excused
    assert result.evidence == []


def test_a_thin_baseline_is_not_compared() -> None:
    result = compare(track(1000, 1), track(10, 0))
    assert result.evidence == []
    assert result.summary == "no baseline traffic to compare"


def test_four_errors_in_twenty_against_half_a_percent_is_significantly_worse() -> None:
    result = compare(track(20, 4), track(8000, 40))
    assert not result.excused
    errors = evidence_for(result, "error_rate_vs_baseline")
    assert errors.p_value is not None and errors.p_value < 1e-4
    assert errors.value == pytest.approx(0.2)
    assert errors.threshold == pytest.approx(0.005)
    assert errors.bound is not None and 0.005 < errors.bound < 0.01  # stable's upper bound
    assert errors.query == "q_base_errors"
    assert errors.sample_count == 20
    assert significantly_worse(result, "error_rate", CONFIG)
    assert "significantly worse" in result.summary


def test_one_error_in_twenty_against_half_a_percent_is_not() -> None:
    result = compare(track(20, 1), track(8000, 40))
    errors = evidence_for(result, "error_rate_vs_baseline")
    assert errors.p_value is not None and errors.p_value > CONFIG.significance
    assert not significantly_worse(result, "error_rate", CONFIG)
    assert result.summary == "new version no worse than stable"


def test_stable_breaching_as_badly_excuses_the_new_version() -> None:
    # platform-incident-0's shape: the stable version at 6.6 %, the new one at 7 %.
    result = compare(track(1000, 70), track(9000, 594))
    assert result.excused
    assert result.severity is Severity.CRITICAL  # the stable version's own tier
    assert result.verdict is Verdict.CONTINUE
    assert "stable version breaching too (critical)" in result.summary
    assert not significantly_worse(result, "error_rate", CONFIG)


def test_stable_breaching_does_not_excuse_a_much_worse_new_version() -> None:
    result = compare(track(1000, 300), track(9000, 594))
    assert not result.excused
    assert significantly_worse(result, "error_rate", CONFIG)


def test_stable_latency_breach_sets_its_tier() -> None:
    result = compare(track(1000, 1, latency=2.6), track(9000, 9, latency=2.5))
    assert result.severity is Severity.HIGH
    assert result.excused


def test_a_healthy_stable_version_excuses_nothing() -> None:
    result = compare(track(1000, 70), track(9000, 9))
    assert result.severity is Severity.NONE
    assert not result.excused


def test_mann_whitney_flags_a_slower_candidate_from_buckets() -> None:
    slower = (20, 40, 60, 50, 20, 10, 0)
    result = compare(track(200, 0, counts=slower), track(10_000, 10, counts=FAST))
    latency = evidence_for(result, "latency_vs_baseline")
    assert latency.statistic is not None and latency.statistic > 5
    assert latency.p_value is not None and latency.p_value < CONFIG.significance
    assert latency.query == "q_base_latency"
    assert latency.value is not None and latency.threshold is not None
    assert latency.value > latency.threshold  # candidate p99 above the stable p99
    assert significantly_worse(result, "latency", CONFIG)


def test_mann_whitney_does_not_flag_an_equal_candidate() -> None:
    same = tuple(c / 50 for c in FAST)
    result = compare(track(200, 0, counts=same), track(10_000, 10, counts=FAST))
    latency = evidence_for(result, "latency_vs_baseline")
    assert latency.p_value is not None and latency.p_value > 0.3
    assert not significantly_worse(result, "latency", CONFIG)


def test_without_buckets_there_is_no_latency_test_and_nothing_argues_against_thresholds() -> None:
    result = compare(track(1000, 1), track(9000, 9))
    assert [e.metric for e in result.evidence] == ["error_rate_vs_baseline"]
    assert significantly_worse(result, "latency", CONFIG)  # no test: thresholds decide
