"""ThresholdAnalyzer: severity tiers judged on confidence bounds, never guessing on thin data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analyzers.base import AnalysisResult, Observation, TrackSample
from analyzers.stats import wilson_bounds, z_for
from analyzers.thresholds import ThresholdAnalyzer
from guard.config import AnalysisConfig, parse_config
from guard.models import Evidence, Severity, Verdict

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
WINDOW = 30.0
QUERIES = {"requests": "q_requests", "errors": "q_errors", "latency_buckets": "q_latency"}
CONFIG = AnalysisConfig()  # critical 5 %/3 s, high 2 %/2 s, medium 1 %/1 s; min 20 requests
INF = float("inf")
BOUNDS = (0.5, 1.0, 2.0, 3.0, 5.0, INF)


def sample(
    requests: float,
    errors: float,
    latency: float | None = 0.2,
    buckets: tuple[tuple[float, float], ...] | None = None,
) -> TrackSample:
    return TrackSample(requests, errors, latency, latency_buckets=buckets, queries=QUERIES)


def observe(
    requests: float = 1000,
    errors: float = 1,
    latency: float | None = 0.2,
    *,
    buckets: tuple[tuple[float, float], ...] | None = None,
    total: TrackSample | None = None,
) -> Observation:
    return Observation(
        at=AT,
        window_seconds=WINDOW,
        candidate=sample(requests, errors, latency, buckets),
        candidate_total=total,
    )


def buckets(*counts: float) -> tuple[tuple[float, float], ...]:
    """Cumulative buckets over BOUNDS from per-bucket counts."""
    total, out = 0.0, []
    for bound, count in zip(BOUNDS, counts, strict=True):
        total += count
        out.append((bound, total))
    return tuple(out)


def analyze(observation: Observation, config: AnalysisConfig = CONFIG) -> AnalysisResult:
    return ThresholdAnalyzer().analyze(observation, config)


def evidence_for(result: AnalysisResult, metric: str) -> Evidence:
    matches = [e for e in result.evidence if e.metric == metric]
    assert len(matches) == 1, result.evidence
    return matches[0]


# --- tiers ----------------------------------------------------------------------------------


def test_healthy_interval_continues() -> None:
    result = analyze(observe(1000, 1))
    assert result.verdict is Verdict.CONTINUE
    assert result.severity is Severity.NONE
    assert result.summary.startswith("healthy: ")
    assert [e.metric for e in result.evidence] == ["error_rate", "latency"]
    assert all(e.severity is Severity.NONE for e in result.evidence)


def test_ten_percent_errors_roll_back_as_critical_with_evidence() -> None:
    result = analyze(observe(1000, 100))
    assert result.verdict is Verdict.ROLLBACK
    assert result.severity is Severity.CRITICAL
    errors = evidence_for(result, "error_rate")
    assert errors.query == "q_errors"
    assert errors.value == pytest.approx(0.1)
    assert errors.threshold == 0.05
    assert errors.bound == pytest.approx(wilson_bounds(100, 1000, z_for(0.99))[0])
    assert errors.bound is not None and 0.05 < errors.bound < 0.1
    assert errors.sample_count == 1000
    assert errors.window_seconds == WINDOW
    assert errors.severity is Severity.CRITICAL
    assert "error rate 10.00% (lower bound 8.00%) > 5.00%" in result.summary


@pytest.mark.parametrize(
    ("errors", "severity", "threshold"),
    [
        (40, Severity.HIGH, 0.02),  # 4 %, lower bound 2.8 %
        (18, Severity.MEDIUM, 0.01),  # 1.8 %, lower bound 1.05 %
        (100, Severity.CRITICAL, 0.05),
    ],
)
def test_each_tier_is_judged_on_the_lower_bound(
    errors: float, severity: Severity, threshold: float
) -> None:
    result = analyze(observe(1000, errors))
    assert result.severity is severity
    assert result.verdict is (Verdict.ROLLBACK if severity is Severity.CRITICAL else Verdict.HOLD)
    assert evidence_for(result, "error_rate").threshold == threshold


def test_a_point_estimate_above_a_tier_is_not_enough() -> None:
    # 6 % is above the 5 % critical tier, but its lower bound (4.5 %) is not: high, not critical.
    result = analyze(observe(1000, 60))
    assert result.severity is Severity.HIGH
    # 1.5 % is above the 1 % medium tier, its lower bound (0.8 %) is not.
    assert analyze(observe(1000, 15)).severity is Severity.NONE


def test_one_error_in_twenty_is_no_five_percent_breach() -> None:
    result = analyze(observe(20, 1))
    assert result.severity is Severity.NONE
    assert result.verdict is not Verdict.ROLLBACK
    assert evidence_for(result, "error_rate").value == pytest.approx(0.05)


def test_four_errors_in_twenty_are_a_critical_breach_at_once() -> None:
    result = analyze(observe(20, 4))
    assert result.severity is Severity.CRITICAL
    assert result.verdict is Verdict.ROLLBACK


def test_healthy_but_too_thin_to_rule_out_critical_is_inconclusive_not_continue() -> None:
    # 0 errors in 25 requests: nothing breached, but 5 % errors cannot be ruled out yet.
    result = analyze(observe(25, 0))
    assert result.severity is Severity.NONE
    assert result.verdict is Verdict.INCONCLUSIVE


# --- latency --------------------------------------------------------------------------------


def test_latency_value_above_three_seconds_is_critical() -> None:
    result = analyze(observe(1000, 0, latency=3.5))
    assert result.verdict is Verdict.ROLLBACK
    latency = evidence_for(result, "latency")
    assert latency.value == 3.5
    assert latency.threshold == 3.0
    assert latency.severity is Severity.CRITICAL
    assert evidence_for(result, "error_rate").severity is Severity.NONE


def test_latency_of_two_and_a_half_seconds_is_high() -> None:
    result = analyze(observe(1000, 0, latency=2.5))
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "latency").threshold == 2.0


def test_the_worst_metric_decides_the_severity() -> None:
    result = analyze(observe(1000, 18, latency=2.5))
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "error_rate").severity is Severity.MEDIUM
    assert evidence_for(result, "latency").severity is Severity.HIGH


def test_latency_breach_from_buckets_with_enough_slow_requests() -> None:
    # 5 % of 1000 requests slower than 3 s: surely more than the 1 % a p99 allows.
    result = analyze(observe(1000, 0, latency=None, buckets=buckets(950, 0, 0, 0, 50, 0)))
    assert result.severity is Severity.CRITICAL
    latency = evidence_for(result, "latency")
    assert latency.query == "q_latency"
    assert latency.value == pytest.approx(3.0 + 2.0 * (990 - 950) / 50)  # histogram_quantile
    assert latency.threshold == 3.0


def test_latency_from_buckets_needs_enough_slow_requests() -> None:
    # p99 over 1000 requests reads 3.7 s, but 15 slow requests cannot prove more than 1 % slow.
    result = analyze(observe(1000, 0, latency=None, buckets=buckets(985, 0, 0, 0, 15, 0)))
    latency = evidence_for(result, "latency")
    assert latency.value is not None and latency.value > 3.0
    assert latency.severity is Severity.NONE
    assert result.severity is Severity.NONE
    assert result.verdict is not Verdict.ROLLBACK


def test_no_latency_data_is_inconclusive_never_healthy() -> None:
    result = analyze(observe(1000, 1, latency=None))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "no latency data" in result.summary


def test_an_error_breach_still_counts_without_latency_data() -> None:
    result = analyze(observe(1000, 100, latency=None))
    assert result.verdict is Verdict.ROLLBACK
    assert result.severity is Severity.CRITICAL


# --- too little data ------------------------------------------------------------------------


def test_too_few_requests_is_inconclusive_even_with_errors() -> None:
    result = analyze(observe(5, 5, latency=9.0))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.severity is Severity.NONE
    [count] = result.evidence
    assert count.metric == "request_count"
    assert count.query == "q_requests"
    assert count.value == 5
    assert count.threshold == 20
    assert count.comparison == ">="
    assert "not enough requests" in count.note
    assert result.summary == "5 requests so far, need 20 to judge"


def test_no_candidate_sample_is_inconclusive() -> None:
    result = analyze(Observation(at=AT, window_seconds=WINDOW, candidate=None))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.evidence[0].note == "no data for the new version"


def test_a_thin_window_is_judged_on_the_total_since_the_step_began() -> None:
    thin = observe(8, 3, total=sample(24, 9))
    result = analyze(thin)
    assert result.severity is Severity.CRITICAL
    errors = evidence_for(result, "error_rate")
    assert errors.sample_count == 24
    assert errors.window_seconds is None
    assert errors.note == "summed since the step began"
    assert result.summary.endswith("(summed since the step began)")


def test_a_thin_total_is_still_inconclusive() -> None:
    result = analyze(observe(8, 3, total=sample(16, 6)))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.summary == "16 requests so far, need 20 to judge"


def test_exactly_min_requests_is_judged() -> None:
    assert analyze(observe(20, 4)).verdict is Verdict.ROLLBACK
    assert analyze(observe(19.9, 4)).verdict is Verdict.INCONCLUSIVE


# --- Prometheus trouble ---------------------------------------------------------------------


def test_prometheus_unavailable_holds_without_severity() -> None:
    observation = Observation(
        at=AT,
        window_seconds=WINDOW,
        candidate=sample(1000, 500, 9.0),  # would be critical; must not be judged
        unavailable=(("q_errors", "ConnectError: refused"), ("q_latency", "timeout")),
    )
    result = analyze(observation)
    assert result.verdict is Verdict.HOLD
    assert result.severity is Severity.NONE
    assert [e.metric for e in result.evidence] == ["prometheus", "prometheus"]
    assert result.evidence[0].query == "q_errors"
    assert result.evidence[0].note == "ConnectError: refused"
    assert result.summary == "metrics unavailable: ConnectError: refused"


# --- configuration --------------------------------------------------------------------------


def test_per_service_tiers_are_honoured() -> None:
    config = parse_config(
        {
            "services": {
                "checkout": {
                    "analysis": {
                        "min_requests": 10,
                        "tiers": {"critical": {"error_rate": 0.3}, "high": {"error_rate": 0.07}},
                    }
                }
            }
        }
    )
    checkout = config.analysis_for("checkout")
    six_in_twelve = observe(12, 6)  # 50 %, lower bound 22 %
    assert analyze(six_in_twelve, config.analysis).verdict is Verdict.INCONCLUSIVE  # < 20 requests
    result = analyze(six_in_twelve, checkout)
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "error_rate").threshold == 0.07
    assert analyze(observe(1000, 100), config.analysis).verdict is Verdict.ROLLBACK
    assert analyze(observe(1000, 100), checkout).severity is Severity.HIGH


def test_a_lower_confidence_judges_sooner() -> None:
    # 3 errors in 20 (15 %): not surely above 5 % at 99 %, but at 80 % it is.
    assert analyze(observe(20, 3)).severity is not Severity.CRITICAL
    assert analyze(observe(20, 3), AnalysisConfig(confidence=0.8)).severity is Severity.CRITICAL
