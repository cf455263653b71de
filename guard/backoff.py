"""Exponential backoff with jitter, shared by every retry loop of the guard."""

from __future__ import annotations


def backoff_seconds(attempt: int, *, initial: float, cap: float, jitter: float) -> float:
    """Exponential backoff with jitter: `min(cap, initial * 2**(attempt-1))`, then scaled by
    `0.5 + jitter / 2` (jitter in [0, 1)), so replicas and receivers never retry in lock-step."""
    base = min(cap, initial * 2.0 ** max(0, attempt - 1))
    return base * (0.5 + jitter / 2)
