"""Property tests: no false rollbacks at low traffic, no missed faults at 3x a threshold.

Each example simulates a rollout with numpy binomial (and multinomial, for the latency
histogram) draws from a seed hypothesis picks, and runs every interval through evaluate() with
the state carried over, exactly as the guard and `guard backtest` do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzers.base import Observation, TrackSample
from analyzers.policy import PolicyState, evaluate
from guard.config import AnalysisConfig
from guard.models import Verdict

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
CONFIG = AnalysisConfig()
INTERVAL = 10.0
BOUNDS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, float("inf"))
# A healthy latency distribution with a thin tail above 1 s (per-bucket probabilities).
LATENCY = np.array([0.10, 0.25, 0.35, 0.20, 0.07, 0.027, 0.002, 0.0007, 0.0003, 0.0])
LATENCY = LATENCY / LATENCY.sum()


def histogram(rng: np.random.Generator, requests: int) -> tuple[tuple[float, float], ...]:
    counts = np.cumsum(rng.multinomial(requests, LATENCY))
    return tuple((bound, float(c)) for bound, c in zip(BOUNDS, counts, strict=True))


def draw(rng: np.random.Generator, requests: int, error_rate: float) -> TrackSample:
    errors = int(rng.binomial(requests, error_rate))
    return TrackSample(float(requests), float(errors), latency_buckets=histogram(rng, requests))


def simulate(
    seed: int,
    *,
    candidate_rate: float,
    baseline_rate: float,
    candidate_traffic: tuple[int, int],
    baseline_traffic: tuple[int, int],
    intervals: int,
) -> list[Verdict]:
    rng = np.random.default_rng(seed)
    state = PolicyState()
    verdicts = []
    for i in range(intervals):
        observation = Observation(
            at=T0 + timedelta(seconds=INTERVAL * i),
            window_seconds=30,
            candidate=draw(
                rng, int(rng.integers(*candidate_traffic, endpoint=True)), candidate_rate
            ),
            baseline=draw(rng, int(rng.integers(*baseline_traffic, endpoint=True)), baseline_rate),
        )
        evaluation = evaluate(observation, state, CONFIG)
        state = PolicyState.from_json(evaluation.state.to_json())
        verdicts.append(evaluation.verdict)
        if evaluation.verdict is Verdict.ROLLBACK:
            break
    return verdicts


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    error_rate=st.floats(min_value=0.001, max_value=0.02),
)
def test_a_release_no_worse_than_its_baseline_is_never_rolled_back_at_low_traffic(
    seed: int, error_rate: float
) -> None:
    verdicts = simulate(
        seed,
        candidate_rate=error_rate,
        baseline_rate=error_rate,
        candidate_traffic=(10, 60),
        baseline_traffic=(2000, 9000),
        intervals=12,
    )
    assert Verdict.ROLLBACK not in verdicts, verdicts


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    error_rate=st.floats(min_value=0.15, max_value=0.3),  # >= 3x the 5 % critical tier
    traffic=st.integers(min_value=100, max_value=2000),
)
def test_a_release_at_three_times_the_critical_tier_is_always_rolled_back(
    seed: int, error_rate: float, traffic: int
) -> None:
    verdicts = simulate(
        seed,
        candidate_rate=error_rate,
        baseline_rate=0.005,
        candidate_traffic=(traffic, traffic),
        baseline_traffic=(2000, 9000),
        intervals=3,
    )
    assert verdicts[-1] is Verdict.ROLLBACK, verdicts


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    error_rate=st.floats(min_value=0.06, max_value=0.15),  # >= 3x the 2 % high tier
    traffic=st.integers(min_value=300, max_value=2000),
)
def test_a_release_at_three_times_the_high_tier_is_always_rolled_back(
    seed: int, error_rate: float, traffic: int
) -> None:
    verdicts = simulate(
        seed,
        candidate_rate=error_rate,
        baseline_rate=0.005,
        candidate_traffic=(traffic, traffic),
        baseline_traffic=(2000, 9000),
        intervals=4,
    )
    assert verdicts[-1] is Verdict.ROLLBACK, verdicts
