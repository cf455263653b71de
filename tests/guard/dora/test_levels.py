"""Level edges of the DORA 2024 buckets, one metric at a time."""

from __future__ import annotations

import pytest

from guard.dora import (
    DAY,
    HOUR,
    Level,
    change_failure_level,
    frequency_level,
    lead_time_level,
    recovery_level,
)


@pytest.mark.parametrize(
    ("per_day", "level"),
    [
        (1.0, Level.ELITE),
        (0.99, Level.HIGH),
        (1 / 7, Level.HIGH),
        (0.14, Level.MEDIUM),
        (1 / 30, Level.MEDIUM),
        (0.033, Level.LOW),
    ],
)
def test_frequency_edges(per_day: float, level: Level) -> None:
    assert frequency_level(per_day, 1) is level


def test_no_deployments_has_no_frequency_level() -> None:
    assert frequency_level(0.0, 0) is None


@pytest.mark.parametrize(
    ("seconds", "level"),
    [
        (DAY - 1, Level.ELITE),
        (DAY, Level.HIGH),
        (7 * DAY, Level.HIGH),
        (7 * DAY + 1, Level.MEDIUM),
        (30 * DAY, Level.MEDIUM),
        (30 * DAY + 1, Level.LOW),
        (None, None),
    ],
)
def test_lead_time_edges(seconds: float | None, level: Level | None) -> None:
    assert lead_time_level(seconds) is level


@pytest.mark.parametrize(
    ("rate", "level"),
    [
        (0.0, Level.ELITE),
        (0.075, Level.ELITE),
        (0.076, Level.MEDIUM),
        (0.15, Level.MEDIUM),
        (0.151, Level.HIGH),
        (0.30, Level.HIGH),
        (0.301, Level.LOW),
        (1.0, Level.LOW),
        (None, None),
    ],
)
def test_change_failure_rate_nearest_2024_cluster(rate: float | None, level: Level | None) -> None:
    assert change_failure_level(rate) is level


@pytest.mark.parametrize(
    ("seconds", "level"),
    [
        (HOUR - 1, Level.ELITE),
        (HOUR, Level.HIGH),
        (DAY - 1, Level.HIGH),
        (DAY, Level.LOW),
        (None, None),
    ],
)
def test_recovery_edges(seconds: float | None, level: Level | None) -> None:
    assert recovery_level(seconds) is level
