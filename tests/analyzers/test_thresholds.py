"""ThresholdAnalyzer: severity tiers from error rate and latency, never guessing on thin data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from analyzers.base import AnalysisResult, Observation, TrackMetrics
from analyzers.thresholds import ThresholdAnalyzer
from guard.config import AnalysisConfig, parse_config
from guard.models import Severity, Verdict
from guard.prometheus import QueryResult, QueryStatus

AT = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
WINDOW = 30.0
Q_COUNT = "q_request_count"
Q_ERRORS = "q_error_rate"
Q_LATENCY = "q_latency"
CONFIG = AnalysisConfig()  # critical 5 %/3 s, high 2 %/2 s, medium 1 %/1 s, min 50 requests


def ok(query: str, value: float) -> QueryResult:
    return QueryResult(query, QueryStatus.OK, value=value, evaluated_at=AT)


def status(query: str, kind: QueryStatus, error: str = "") -> QueryResult:
    return QueryResult(query, kind, evaluated_at=AT, error=error)


def observe(
    *,
    requests: float | QueryResult = 600.0,
    errors: float | QueryResult = 0.001,
    latency: float | QueryResult = 0.2,
) -> Observation:
    def as_result(query: str, value: float | QueryResult) -> QueryResult:
        return value if isinstance(value, QueryResult) else ok(query, value)

    return Observation(
        at=AT,
        window_seconds=WINDOW,
        candidate=TrackMetrics(
            request_count=as_result(Q_COUNT, requests),
            error_rate=as_result(Q_ERRORS, errors),
            latency=as_result(Q_LATENCY, latency),
        ),
    )


def analyze(observation: Observation, config: AnalysisConfig = CONFIG) -> AnalysisResult:
    return ThresholdAnalyzer().analyze(observation, config)


def evidence_for(result: AnalysisResult, metric: str):  # type: ignore[no-untyped-def]
    matches = [e for e in result.evidence if e.metric == metric]
    assert len(matches) == 1, result.evidence
    return matches[0]


def test_healthy_interval_continues() -> None:
    result = analyze(observe())
    assert result.verdict is Verdict.CONTINUE
    assert result.severity is Severity.NONE
    assert result.summary.startswith("healthy: ")
    assert [e.metric for e in result.evidence] == ["request_count", "error_rate", "latency"]
    assert all(e.severity is Severity.NONE for e in result.evidence)


def test_eight_percent_errors_roll_back_as_critical_with_evidence() -> None:
    result = analyze(observe(errors=0.08, requests=600))
    assert result.verdict is Verdict.ROLLBACK
    assert result.severity is Severity.CRITICAL
    errors = evidence_for(result, "error_rate")
    assert errors.query == Q_ERRORS
    assert errors.value == 0.08
    assert errors.threshold == 0.05
    assert errors.comparison == ">"
    assert errors.sample_count == 600
    assert errors.window_seconds == WINDOW
    assert errors.severity is Severity.CRITICAL
    assert evidence_for(result, "request_count").value == 600
    assert "error rate 8.00% > 5.00%" in result.summary


def test_three_percent_errors_hold_as_high() -> None:
    result = analyze(observe(errors=0.03))
    assert result.verdict is Verdict.HOLD
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "error_rate").threshold == 0.02


def test_one_and_a_half_percent_errors_hold_as_medium() -> None:
    result = analyze(observe(errors=0.015))
    assert result.verdict is Verdict.HOLD
    assert result.severity is Severity.MEDIUM
    assert evidence_for(result, "error_rate").threshold == 0.01


def test_latency_of_three_and_a_half_seconds_is_critical() -> None:
    result = analyze(observe(latency=3.5))
    assert result.verdict is Verdict.ROLLBACK
    assert result.severity is Severity.CRITICAL
    latency = evidence_for(result, "latency")
    assert latency.value == 3.5
    assert latency.threshold == 3.0
    assert latency.query == Q_LATENCY
    assert latency.severity is Severity.CRITICAL
    assert evidence_for(result, "error_rate").severity is Severity.NONE


def test_latency_of_two_and_a_half_seconds_is_high() -> None:
    result = analyze(observe(latency=2.5))
    assert result.verdict is Verdict.HOLD
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "latency").threshold == 2.0


def test_the_worst_metric_decides_the_severity() -> None:
    result = analyze(observe(errors=0.015, latency=2.5))
    assert result.severity is Severity.HIGH
    assert evidence_for(result, "error_rate").severity is Severity.MEDIUM
    assert evidence_for(result, "latency").severity is Severity.HIGH


@pytest.mark.parametrize(
    ("errors", "latency"),
    [(0.05, 0.2), (0.02, 0.2), (0.01, 0.2), (0.0, 3.0), (0.0, 2.0), (0.0, 1.0)],
)
def test_a_value_exactly_at_a_threshold_is_not_a_breach_of_it(
    errors: float, latency: float
) -> None:
    result = analyze(observe(errors=errors, latency=latency))
    at_critical = errors == 0.05 or latency == 3.0
    at_high = errors == 0.02 or latency == 2.0
    expected = Severity.HIGH if at_critical else Severity.MEDIUM if at_high else Severity.NONE
    assert result.severity is expected


def test_too_few_requests_is_inconclusive_even_with_errors() -> None:
    result = analyze(observe(requests=20, errors=0.5, latency=9.0))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.severity is Severity.NONE
    assert len(result.evidence) == 1
    count = result.evidence[0]
    assert count.metric == "request_count"
    assert count.value == 20
    assert count.threshold == 50
    assert count.comparison == ">="
    assert "not enough requests" in count.note
    assert result.summary == "20 requests in 30s, need 50"


def test_too_few_healthy_requests_are_inconclusive_not_continue() -> None:
    result = analyze(observe(requests=49.9))
    assert result.verdict is Verdict.INCONCLUSIVE


def test_exactly_min_requests_is_judged() -> None:
    assert analyze(observe(requests=50)).verdict is Verdict.CONTINUE


def test_request_count_without_data_is_inconclusive() -> None:
    result = analyze(observe(requests=status(Q_COUNT, QueryStatus.NO_DATA)))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert result.severity is Severity.NONE


@pytest.mark.parametrize("kind", [QueryStatus.UNREACHABLE, QueryStatus.QUERY_ERROR])
@pytest.mark.parametrize("which", ["requests", "errors", "latency"])
def test_prometheus_trouble_holds_never_continues_or_rolls_back(
    kind: QueryStatus, which: str
) -> None:
    broken = status(f"q_{which}", kind, error="ConnectError: refused")
    # The other metrics say "critical", so a guess either way would show.
    values: dict[str, float | QueryResult] = {"requests": 600, "errors": 0.5, "latency": 9.0}
    values[which] = broken
    result = analyze(observe(**values))  # type: ignore[arg-type]
    assert result.verdict is Verdict.HOLD
    assert result.severity is Severity.NONE
    assert result.evidence[0].metric == "prometheus"
    assert result.evidence[0].query == f"q_{which}"
    assert result.evidence[0].note == "ConnectError: refused"
    assert kind.value.replace("_", " ") in result.summary


def test_healthy_metrics_with_prometheus_trouble_still_hold() -> None:
    result = analyze(observe(latency=status(Q_LATENCY, QueryStatus.UNREACHABLE, "timeout")))
    assert result.verdict is Verdict.HOLD


def test_per_service_tiers_are_honoured() -> None:
    config = parse_config(
        {
            "services": {
                "checkout": {
                    "analysis": {
                        "min_requests": 10,
                        "tiers": {"critical": {"error_rate": 0.1}, "high": {"error_rate": 0.07}},
                    }
                }
            }
        }
    )
    checkout = config.analysis_for("checkout")
    eight_percent = observe(errors=0.08, requests=20)
    # Globally 8 % on 20 requests is inconclusive; for checkout it is judged, and only high.
    assert analyze(eight_percent, config.analysis).verdict is Verdict.INCONCLUSIVE
    result = analyze(eight_percent, checkout)
    assert result.severity is Severity.HIGH
    assert result.verdict is Verdict.HOLD
    assert evidence_for(result, "error_rate").threshold == 0.07
    assert analyze(observe(errors=0.12), checkout).verdict is Verdict.ROLLBACK
    assert analyze(observe(errors=0.08), config.analysis).verdict is Verdict.ROLLBACK


@pytest.mark.parametrize("missing", ["errors", "latency"])
def test_a_metric_without_data_is_inconclusive_never_healthy(missing: str) -> None:
    no_data = status(Q_ERRORS if missing == "errors" else Q_LATENCY, QueryStatus.NO_DATA)
    result = analyze(observe(**{missing: no_data}))  # type: ignore[arg-type]
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "no data" in result.summary


def test_a_breach_still_counts_when_the_other_metric_has_no_data() -> None:
    result = analyze(observe(errors=0.08, latency=status(Q_LATENCY, QueryStatus.NO_DATA)))
    assert result.verdict is Verdict.ROLLBACK
    assert result.severity is Severity.CRITICAL
