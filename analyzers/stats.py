"""The statistics behind "enough evidence": confidence bounds and one-sided tests.

Small samples are where Argo and Flagger roll back healthy releases; every comparison here asks
"is this *surely* above the limit" rather than "is the point estimate above it".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

_NORMAL = NormalDist()

Buckets = Sequence[tuple[float, float]]  # (upper bound, cumulative count), sorted, last is +Inf


def z_for(confidence: float) -> float:
    """One-sided z for a confidence level (0.99 -> 2.326)."""
    return _NORMAL.inv_cdf(confidence)


def wilson_bounds(successes: float, trials: float, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion; (0, 1) when there are no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(max(successes / trials, 0.0), 1.0)
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    denominator = 1 + z2 / trials
    return max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)


def binomial_sf(k: float, n: float, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the chance of at least k errors at rate p.

    Exact for the small counts where it matters; counts from Prometheus are rounded, since
    `increase()` extrapolates to fractions.
    """
    trials, successes = round(n), math.ceil(k - 1e-9)
    if successes <= 0:
        return 1.0
    if successes > trials or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    if trials > 5000:
        mean, sd = trials * p, math.sqrt(trials * p * (1 - p))
        return 1 - _NORMAL.cdf((successes - 0.5 - mean) / sd)
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for i in range(successes, trials + 1):
        log_term = math.lgamma(trials + 1) - math.lgamma(i + 1) - math.lgamma(trials - i + 1)
        term = math.exp(log_term + i * log_p + (trials - i) * log_q)
        total += term
        if term < total * 1e-12:
            break
    return min(1.0, total)


def mann_whitney_binned(candidate: Buckets, baseline: Buckets) -> tuple[float, float] | None:
    """One-sided Mann-Whitney U on histogram buckets: is the candidate slower?

    Requests in one bucket are ties. Returns (z, p-value), or None without data on both sides.
    """
    cand, base = _counts(candidate), _counts(baseline)
    if cand is None or base is None or len(cand) != len(base):
        return None
    n1, n2 = sum(cand), sum(base)
    if n1 <= 0 or n2 <= 0:
        return None
    u = 0.0
    base_below = 0.0
    for c, b in zip(cand, base, strict=True):
        u += c * (base_below + b / 2)
        base_below += b
    total = n1 + n2
    ties = sum((c + b) ** 3 - (c + b) for c, b in zip(cand, base, strict=True))
    variance = n1 * n2 / 12 * ((total + 1) - ties / (total * (total - 1) if total > 1 else 1))
    if variance <= 0:
        return 0.0, 1.0
    z = (u - n1 * n2 / 2) / math.sqrt(variance)
    return z, 1 - _NORMAL.cdf(z)


def quantile_from_buckets(buckets: Buckets, quantile: float) -> float | None:
    """What PromQL's histogram_quantile computes, so evidence matches what SREs see."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = quantile * total
    lower_bound, lower_count = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower_bound
            if count == lower_count:
                return upper
            return lower_bound + (upper - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = upper, count
    return buckets[-2][0] if len(buckets) > 1 else None


def slower_than(buckets: Buckets, threshold: float) -> float | None:
    """Requests slower than `threshold`, if it is one of the bucket bounds."""
    for upper, count in buckets:
        if math.isclose(upper, threshold):
            return buckets[-1][1] - count
    return None


def _counts(buckets: Buckets) -> list[float] | None:
    if not buckets:
        return None
    counts, previous = [], 0.0
    for _, cumulative in buckets:
        counts.append(max(0.0, cumulative - previous))
        previous = max(previous, cumulative)
    return counts
