"""evaluate(): one interval's analysis plus the policy's memory gives the verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzers.base import Observation, TrackSample
from analyzers.policy import Evaluation, PolicyState, analyze_interval, evaluate
from guard.config import AnalysisConfig
from guard.models import Severity, Verdict

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
STEP = 10.0
CONFIG = AnalysisConfig(
    high_consecutive_to_rollback=2, medium_consecutive_to_rollback=3, hold_alert_after_seconds=30
)
SCENARIO = Path(__file__).resolve().parents[3] / "shared" / "scenarios" / "platform-incident-0.json"


def track(requests: float, errors: float, latency: float = 0.2) -> TrackSample:
    return TrackSample(requests, errors, latency=latency)


def obs(
    candidate: TrackSample | None,
    baseline: TrackSample | None = None,
    *,
    unavailable: tuple[tuple[str, str], ...] = (),
) -> Observation:
    return Observation(
        at=T0,
        window_seconds=CONFIG.interval_seconds,
        candidate=candidate,
        baseline=baseline,
        unavailable=unavailable,
    )


HEALTHY = obs(track(1000, 1))
CRITICAL = obs(track(1000, 100))
HIGH = obs(track(1000, 40))
MEDIUM = obs(track(1000, 18))
THIN = obs(track(5, 0))
DOWN = obs(None, unavailable=(("q_requests", "ConnectError: connection refused"),))


def run(
    observations: list[Observation],
    config: AnalysisConfig = CONFIG,
    state: PolicyState | None = None,
) -> list[Evaluation]:
    """Evaluate intervals STEP seconds apart, carrying the state through JSON like the store."""
    state = state or PolicyState()
    evaluations = []
    for i, observation in enumerate(observations):
        stamped = Observation(
            at=T0 + timedelta(seconds=STEP * i),
            window_seconds=observation.window_seconds,
            candidate=observation.candidate,
            baseline=observation.baseline,
            unavailable=observation.unavailable,
        )
        evaluation = evaluate(stamped, state, config)
        state = PolicyState.from_json(json.loads(json.dumps(evaluation.state.to_json())))
        evaluations.append(evaluation)
    return evaluations


def verdicts(evaluations: list[Evaluation]) -> list[Verdict]:
    return [e.verdict for e in evaluations]


# --- tiers and streaks ----------------------------------------------------------------------


def test_healthy_continues() -> None:
    [evaluation] = run([HEALTHY])
    assert evaluation.verdict is Verdict.CONTINUE
    assert evaluation.state.breach_streak == 0
    assert not evaluation.alert


def test_critical_rolls_back_at_once() -> None:
    [evaluation] = run([CRITICAL])
    assert evaluation.verdict is Verdict.ROLLBACK
    assert evaluation.result.severity is Severity.CRITICAL


def test_high_twice_in_a_row_rolls_back() -> None:
    evaluations = run([HIGH, HIGH])
    assert verdicts(evaluations) == [Verdict.HOLD, Verdict.ROLLBACK]
    assert [e.state.breach_streak for e in evaluations] == [1, 2]


def test_high_then_healthy_then_high_does_not_roll_back() -> None:
    assert verdicts(run([HIGH, HEALTHY, HIGH])) == [Verdict.HOLD, Verdict.CONTINUE, Verdict.HOLD]


def test_medium_holds_and_rolls_back_the_third_time() -> None:
    evaluations = run([MEDIUM, MEDIUM, MEDIUM])
    assert verdicts(evaluations) == [Verdict.HOLD, Verdict.HOLD, Verdict.ROLLBACK]
    assert evaluations[-1].state.breach_severity is Severity.MEDIUM


def test_a_worse_tier_after_a_milder_one_starts_its_own_streak() -> None:
    # medium, then high: the high streak is 1, so no rollback yet; the next high rolls back.
    assert verdicts(run([MEDIUM, HIGH, HIGH])) == [Verdict.HOLD, Verdict.HOLD, Verdict.ROLLBACK]


def test_a_milder_tier_after_a_worse_one_extends_the_streak() -> None:
    evaluations = run([HIGH, MEDIUM, MEDIUM])
    assert [e.state.breach_streak for e in evaluations] == [1, 2, 3]
    assert verdicts(evaluations) == [Verdict.HOLD, Verdict.HOLD, Verdict.ROLLBACK]


def test_rollback_counts_come_from_the_config() -> None:
    patient = AnalysisConfig(high_consecutive_to_rollback=4)
    assert verdicts(run([HIGH] * 4, patient)) == [Verdict.HOLD] * 3 + [Verdict.ROLLBACK]


def test_streak_is_unaffected_by_intervals_without_evidence() -> None:
    evaluations = run([HIGH, DOWN, DOWN, HIGH])
    assert verdicts(evaluations) == [Verdict.HOLD, Verdict.HOLD, Verdict.HOLD, Verdict.ROLLBACK]
    assert [e.state.breach_streak for e in evaluations] == [1, 1, 1, 2]
    assert [e.state.breach_severity for e in evaluations] == [Severity.HIGH] * 4


def test_unavailable_intervals_do_not_break_a_medium_streak_either() -> None:
    evaluations = run([MEDIUM, DOWN, MEDIUM, DOWN, MEDIUM])
    assert [e.state.breach_streak for e in evaluations] == [1, 1, 2, 2, 3]
    assert evaluations[-1].verdict is Verdict.ROLLBACK


@pytest.mark.parametrize("empty", [THIN, obs(None)], ids=["thin", "no-data"])
def test_a_thin_or_empty_interval_does_not_extend_a_streak(empty: Observation) -> None:
    evaluations = run([HIGH, empty])
    assert evaluations[-1].verdict is not Verdict.ROLLBACK
    assert evaluations[-1].state.breach_streak == 1


# --- evidence, not noise --------------------------------------------------------------------


def test_one_error_in_twenty_is_not_a_breach() -> None:
    [evaluation] = run([obs(track(20, 1), track(8000, 40))])
    assert evaluation.result.severity is Severity.NONE
    assert evaluation.verdict in (Verdict.CONTINUE, Verdict.INCONCLUSIVE)


def test_four_errors_in_twenty_against_half_a_percent_baseline_is_seen_at_once() -> None:
    [evaluation] = run([obs(track(20, 4), track(8000, 40))])
    assert evaluation.result.severity in (Severity.CRITICAL, Severity.HIGH)
    assert evaluation.verdict in (Verdict.ROLLBACK, Verdict.HOLD)
    assert evaluation.verdict is Verdict.ROLLBACK  # critical with the default tiers
    metrics = [e.metric for e in evaluation.result.evidence]
    assert "error_rate" in metrics
    assert "error_rate_vs_baseline" in metrics


def test_too_little_data_is_inconclusive_never_continue() -> None:
    for observation in (THIN, obs(None), obs(track(0, 0))):
        [evaluation] = run([observation])
        assert evaluation.verdict is Verdict.INCONCLUSIVE
        assert evaluation.result.severity is Severity.NONE


def test_thin_healthy_windows_add_up_until_judged() -> None:
    patient = CONFIG.model_copy(update={"hold_alert_after_seconds": 600})
    evaluations = run([obs(track(8, 0))] * 14, patient)
    totals = [e.state.total_requests for e in evaluations]
    assert totals[:3] == [8, 16, 24]
    assert evaluations[0].result.summary == "8 requests so far, need 20 to judge"
    # Judged from the third interval on, but 0 errors in fewer than ~100 requests cannot rule
    # out 5 %: inconclusive, never continue, until the total is large enough.
    assert verdicts(evaluations)[:12] == [Verdict.INCONCLUSIVE] * 12
    assert verdicts(evaluations)[12:] == [Verdict.CONTINUE] * 2
    errors = next(e for e in evaluations[-1].result.evidence if e.metric == "error_rate")
    assert errors.sample_count == 112
    assert errors.note == "summed since the step began"


def test_thin_faulty_windows_add_up_to_a_rollback() -> None:
    evaluations = run([obs(track(8, 3))] * 3)
    assert verdicts(evaluations) == [Verdict.INCONCLUSIVE, Verdict.INCONCLUSIVE, Verdict.ROLLBACK]
    assert evaluations[-1].state.total_errors == 9


def test_candidate_over_a_threshold_but_no_worse_than_a_thin_healthy_baseline_waits() -> None:
    # 4 errors in 30 is surely above 2 %, but the stable version's 0 in 40 cannot rule out 12 %.
    [evaluation] = run([obs(track(30, 4), track(40, 0))])
    assert evaluation.verdict is Verdict.INCONCLUSIVE
    assert evaluation.result.severity is Severity.NONE
    assert "no worse than the stable version: waiting" in evaluation.result.summary


def test_a_thin_healthy_baseline_window_is_weighed_with_the_step_s_earlier_stable_traffic() -> None:
    # time_to_safety's canary at 1 s scrapes: ~100 canary and ~300 stable requests a window.
    # 8 errors in 100 are surely above 2 %; against one stable window of 300 without an error
    # (rate up to 1.7 %) they are not significantly worse, against 1,500 stable requests they are.
    healthy = [obs(track(100, 0), track(300, 0))] * 4
    faulty = [obs(track(100, 8), track(300, 0))] * 2
    [alone] = run(faulty[:1])
    assert alone.verdict is Verdict.INCONCLUSIVE
    assert "no worse than the stable version" in alone.result.summary
    evaluations = run(healthy + faulty)
    assert verdicts(evaluations)[-2:] == [Verdict.HOLD, Verdict.ROLLBACK]
    assert evaluations[-1].result.severity is Severity.HIGH
    [versus] = [e for e in evaluations[-1].result.evidence if e.metric == "error_rate_vs_baseline"]
    assert versus.note.endswith("stable 0/1800 since the step began")


# --- no evidence: hold, and alert once ------------------------------------------------------


def test_prometheus_unavailable_holds_then_alerts_exactly_once_after_the_limit() -> None:
    evaluations = run([DOWN] * 8)  # 0..70 s; the limit is 30 s
    assert verdicts(evaluations) == [Verdict.HOLD] * 8
    assert [e.alert for e in evaluations] == [False, False, False, True, False, False, False, False]
    assert evaluations[3].notes == ["no conclusive evidence for 30s: holding for a human"]
    assert evaluations[0].state.no_evidence_since == T0
    assert evaluations[-1].state.no_evidence_since == T0


def test_prometheus_unavailable_never_rolls_back_even_during_a_breach_streak() -> None:
    evaluations = run([HIGH, DOWN, DOWN, DOWN, DOWN, DOWN])
    assert Verdict.ROLLBACK not in verdicts(evaluations)
    assert Verdict.CONTINUE not in verdicts(evaluations)


def test_inconclusive_turns_into_hold_and_alert_after_the_limit() -> None:
    evaluations = run([obs(None)] * 5)
    assert verdicts(evaluations) == [Verdict.INCONCLUSIVE] * 3 + [Verdict.HOLD] * 2
    assert [e.alert for e in evaluations] == [False, False, False, True, False]


def test_evidence_resets_the_no_evidence_clock() -> None:
    evaluations = run([DOWN, DOWN, HEALTHY, DOWN, DOWN, DOWN, DOWN])
    assert evaluations[2].state.no_evidence_since is None
    assert evaluations[3].state.no_evidence_since == T0 + timedelta(seconds=30)
    assert [e.alert for e in evaluations] == [False] * 6 + [True]


# --- platform incidents ---------------------------------------------------------------------


def test_a_breach_the_stable_version_shows_as_badly_holds_excused_and_alerts_once() -> None:
    # platform-incident-0's shape: stable at 6.6 %, new version at 7 %.
    incident = obs(track(1000, 70), track(9000, 594))
    evaluations = run([incident] * 5)
    assert verdicts(evaluations) == [Verdict.HOLD] * 5
    assert all(e.result.excused for e in evaluations)
    assert all(e.result.severity is Severity.CRITICAL for e in evaluations)
    assert [e.alert for e in evaluations] == [True, False, False, False, False]
    assert "platform incident" in evaluations[0].result.summary
    assert evaluations[-1].state.breach_streak == 0  # never counted against the release


def test_an_incident_does_not_excuse_a_release_far_worse_than_stable() -> None:
    [evaluation] = run([obs(track(1000, 300), track(9000, 594))])
    assert evaluation.verdict is Verdict.ROLLBACK
    assert not evaluation.result.excused


def scenario_observations(path: Path) -> list[Observation]:
    data: dict[str, Any] = json.loads(path.read_text())
    by_t: dict[float, dict[str, TrackSample]] = {}
    for s in data["samples"]:
        latency = s.get("latency_seconds", {}).get("p99")
        by_t.setdefault(s["t"], {})[s["track"]] = track(s["requests"], s["errors"], latency)
    return [obs(tracks.get("canary"), tracks.get("baseline")) for _, tracks in sorted(by_t.items())]


def test_an_incident_that_starts_now_is_judged_on_the_stable_window_not_the_step() -> None:
    # The stable version healthy for the step so far, then both versions at 8 %: excused.
    healthy = [obs(track(100, 0), track(300, 0))] * 4
    incident = [obs(track(100, 8), track(300, 24))] * 4
    evaluations = run(healthy + incident)
    assert Verdict.ROLLBACK not in verdicts(evaluations)
    assert all(e.result.excused for e in evaluations[4:])


@pytest.mark.skipif(not SCENARIO.exists(), reason="shared scenarios not checked out")
def test_shared_platform_incident_scenario_never_rolls_back_or_promotes() -> None:
    evaluations = run(scenario_observations(SCENARIO), AnalysisConfig())
    assert evaluations
    assert Verdict.ROLLBACK not in verdicts(evaluations)
    assert Verdict.CONTINUE not in verdicts(evaluations)
    assert Verdict.HOLD in verdicts(evaluations)
    assert sum(e.alert for e in evaluations) == 1


def test_analyze_interval_keeps_the_evidence_of_both_analyzers() -> None:
    result = analyze_interval(obs(track(1000, 1), track(9000, 9)), CONFIG)
    metrics = [e.metric for e in result.evidence]
    assert metrics == ["error_rate", "latency", "error_rate_vs_baseline"]


# --- state ----------------------------------------------------------------------------------


def test_policy_state_json_round_trip() -> None:
    state = PolicyState(
        breach_severity=Severity.HIGH,
        breach_streak=2,
        no_evidence_since=T0,
        total_requests=120.0,
        total_errors=3.0,
        total_buckets=((0.1, 80.0), (1.0, 118.0), (float("inf"), 120.0)),
        baseline_requests=900.0,
        baseline_errors=2.0,
        alerted=True,
    )
    text = json.dumps(state.to_json())
    assert PolicyState.from_json(json.loads(text)) == state
    assert PolicyState.from_json(PolicyState().to_json()) == PolicyState()


@pytest.mark.parametrize("empty", [None, {}])
def test_policy_state_from_nothing_is_the_initial_state(empty: dict[str, Any] | None) -> None:
    assert PolicyState.from_json(empty) == PolicyState()


def test_state_accumulates_buckets_across_intervals() -> None:
    first = TrackSample(10, 0, latency_buckets=((0.1, 8.0), (float("inf"), 10.0)))
    second = TrackSample(5, 0, latency_buckets=((0.1, 5.0), (float("inf"), 5.0)))
    evaluations = run([obs(first), obs(second)])
    assert evaluations[-1].state.total_buckets == ((0.1, 13.0), (float("inf"), 15.0))
    assert evaluations[-1].state.total_requests == 15


def test_overlapping_windows_count_each_request_once() -> None:
    overlapping = AnalysisConfig(interval_seconds=10, window_seconds=30)
    window = TrackSample(30.0, 3.0)
    state = PolicyState()
    for _ in range(3):
        observation = Observation(at=T0, window_seconds=30, candidate=window)
        state = evaluate(observation, state, overlapping).state
    # Each interval adds only its 10 s of new traffic, not the whole overlapping 30 s window.
    assert state.total_requests == 30.0
    assert state.total_errors == 3.0
