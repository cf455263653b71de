"""The statistics behind "enough evidence", checked against known values."""

from __future__ import annotations

import math

import pytest

from analyzers.stats import (
    binomial_sf,
    mann_whitney_binned,
    quantile_from_buckets,
    slower_than,
    wilson_bounds,
    z_for,
)

INF = float("inf")


def cumulative(
    bounds: tuple[float, ...], counts: tuple[float, ...]
) -> tuple[tuple[float, float], ...]:
    total, out = 0.0, []
    for bound, count in zip(bounds, counts, strict=True):
        total += count
        out.append((bound, total))
    return tuple(out)


# --- z and Wilson ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "z"), [(0.95, 1.6449), (0.975, 1.9600), (0.99, 2.3263), (0.5, 0.0)]
)
def test_z_for_is_the_one_sided_normal_quantile(confidence: float, z: float) -> None:
    assert z_for(confidence) == pytest.approx(z, abs=1e-4)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # Textbook 95 % Wilson score intervals (z = 1.96).
        (1, 20, 0.0089, 0.2361),
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (50, 1000, 0.0381, 0.0653),
    ],
)
def test_wilson_bounds_match_known_values(
    successes: float, trials: float, low: float, high: float
) -> None:
    lower, upper = wilson_bounds(successes, trials, 1.96)
    assert lower == pytest.approx(low, abs=1e-4)
    assert upper == pytest.approx(high, abs=1e-4)


def test_wilson_without_trials_knows_nothing() -> None:
    assert wilson_bounds(0, 0, 2.326) == (0.0, 1.0)


def test_wilson_bounds_narrow_with_more_trials_around_the_same_rate() -> None:
    z = z_for(0.99)
    bounds = [wilson_bounds(n / 20, n, z) for n in (20, 200, 2000)]
    widths = [hi - lo for lo, hi in bounds]
    assert widths == sorted(widths, reverse=True)
    for n in (20, 200, 2000):
        lo, hi = wilson_bounds(n / 20, n, z)
        assert lo < 0.05 < hi


def test_one_error_in_twenty_is_not_surely_above_five_percent_but_four_are() -> None:
    z = z_for(0.99)
    assert wilson_bounds(1, 20, z)[0] < 0.01
    assert wilson_bounds(4, 20, z)[0] > 0.05


# --- binomial tail --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (1, 20, 0.05, 1 - 0.95**20),  # 0.6415...
        (2, 3, 0.5, 0.5),
        (3, 3, 0.5, 0.125),
        (20, 20, 0.5, 0.5**20),
        (4, 20, 0.005, sum(math.comb(20, i) * 0.005**i * 0.995 ** (20 - i) for i in range(4, 21))),
        (
            10,
            100,
            0.05,
            1 - sum(math.comb(100, i) * 0.05**i * 0.95 ** (100 - i) for i in range(10)),
        ),
    ],
)
def test_binomial_sf_exact_values(k: float, n: float, p: float, expected: float) -> None:
    assert binomial_sf(k, n, p) == pytest.approx(expected, rel=1e-9)


def test_binomial_sf_four_in_twenty_at_half_a_percent_is_tiny() -> None:
    assert binomial_sf(4, 20, 0.005) == pytest.approx(2.8403e-06, rel=1e-4)


@pytest.mark.parametrize(
    ("k", "n", "p", "expected"),
    [
        (0, 10, 0.3, 1.0),  # at least zero: certain
        (-1, 10, 0.3, 1.0),
        (11, 10, 0.3, 0.0),  # more errors than requests: impossible
        (1, 10, 0.0, 0.0),
        (1, 10, 1.0, 1.0),
    ],
)
def test_binomial_sf_edges(k: float, n: float, p: float, expected: float) -> None:
    assert binomial_sf(k, n, p) == expected


def test_binomial_sf_rounds_extrapolated_counts() -> None:
    # increase() gives fractions: 3.2 errors in 19.6 requests reads as >= 4 in 20.
    assert binomial_sf(3.2, 19.6, 0.1) == pytest.approx(binomial_sf(4, 20, 0.1))


def test_binomial_sf_normal_approximation_for_large_counts_is_close() -> None:
    n, p = 10_000, 0.01
    for k in (90, 100, 110, 130):
        exact = math.fsum(
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(i + 1)
                - math.lgamma(n - i + 1)
                + i * math.log(p)
                + (n - i) * math.log1p(-p)
            )
            for i in range(k, n + 1)
        )
        assert binomial_sf(k, n, p) == pytest.approx(exact, abs=0.01)


# --- quantile from buckets ------------------------------------------------------------------

# Prometheus's own test histogram (promql/testdata/histograms.test, "positive" series at 50m):
# le=0.1: 50, le=0.2: 70, le=1: 110, le=+Inf: 120. Values are what histogram_quantile returns:
# linear interpolation inside the bucket holding the rank, the last finite bound for +Inf.
PROM = ((0.1, 50.0), (0.2, 70.0), (1.0, 110.0), (INF, 120.0))


@pytest.mark.parametrize(
    ("quantile", "expected"),
    [
        (0.1, 0.1 * 12 / 50),  # rank 12 in the first bucket, which starts at 0
        (0.5, 0.1 + 0.1 * (60 - 50) / 20),  # 0.15
        (0.9, 0.2 + 0.8 * (108 - 70) / 40),  # 0.96
        (0.99, 1.0),  # rank in the +Inf bucket: the highest finite bound
        (1.0, 1.0),
    ],
)
def test_quantile_from_buckets_matches_histogram_quantile(quantile: float, expected: float) -> None:
    assert quantile_from_buckets(PROM, quantile) == pytest.approx(expected)


def test_quantile_of_an_exact_bucket_edge() -> None:
    # rank 50 is exactly the first bucket's count: its upper bound.
    assert quantile_from_buckets(PROM, 50 / 120) == pytest.approx(0.1)


@pytest.mark.parametrize("buckets", [(), ((0.1, 0.0), (INF, 0.0))])
def test_quantile_of_no_observations_is_none(buckets: tuple[tuple[float, float], ...]) -> None:
    assert quantile_from_buckets(buckets, 0.99) is None


def test_slower_than_counts_requests_above_a_bucket_bound() -> None:
    assert slower_than(PROM, 0.2) == 50
    assert slower_than(PROM, 1.0) == 10
    assert slower_than(PROM, 0.5) is None  # not a bucket bound: unknown


# --- Mann-Whitney on buckets ----------------------------------------------------------------

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, INF)
BASELINE = cumulative(BOUNDS, (3000, 4000, 2000, 700, 250, 50, 0))


def test_mann_whitney_sees_a_slower_candidate() -> None:
    slower = cumulative(BOUNDS, (20, 40, 60, 50, 20, 10, 0))
    result = mann_whitney_binned(slower, BASELINE)
    assert result is not None
    z, p_value = result
    assert z > 5
    assert p_value < 1e-6


def test_mann_whitney_does_not_flag_an_equal_candidate() -> None:
    same = cumulative(BOUNDS, (60, 80, 40, 14, 5, 1, 0))  # BASELINE / 50
    result = mann_whitney_binned(same, BASELINE)
    assert result is not None
    z, p_value = result
    assert abs(z) < 0.5
    assert p_value > 0.3


def test_mann_whitney_is_one_sided_a_faster_candidate_is_not_worse() -> None:
    faster = cumulative(BOUNDS, (150, 40, 10, 0, 0, 0, 0))
    result = mann_whitney_binned(faster, BASELINE)
    assert result is not None
    z, p_value = result
    assert z < 0
    assert p_value > 0.99


def test_mann_whitney_z_matches_the_tie_corrected_formula_by_hand() -> None:
    # Two buckets: candidate 0 fast, 2 slow; baseline 2 fast, 0 slow.
    # U = 2 * (2 + 0/2) = 4; mean 2; ties: 2^3-2 twice = 12; n = 4.
    # var = 2*2/12 * (5 - 12/(4*3)) = 4/12 * 4 = 4/3.
    cand = ((0.1, 0.0), (INF, 2.0))
    base = ((0.1, 2.0), (INF, 2.0))
    result = mann_whitney_binned(cand, base)
    assert result is not None
    assert result[0] == pytest.approx((4 - 2) / math.sqrt(4 / 3))


def test_mann_whitney_needs_data_on_both_sides_and_the_same_buckets() -> None:
    empty = cumulative(BOUNDS, (0, 0, 0, 0, 0, 0, 0))
    assert mann_whitney_binned(empty, BASELINE) is None
    assert mann_whitney_binned((), BASELINE) is None
    assert mann_whitney_binned(BASELINE[:3], BASELINE) is None
