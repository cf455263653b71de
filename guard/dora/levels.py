"""DORA performance levels from the Accelerate State of DevOps Report 2024.

The 2024 report is the latest that publishes elite/high/medium/low clusters (the 2025 report
replaced them with team archetypes). Each function classifies one metric on its own; where the
report's table is ambiguous or odd, the docstring says how it is read.
"""

from __future__ import annotations

import enum
from typing import Any

BENCHMARK_YEAR = 2024
BENCHMARK = f"DORA Accelerate State of DevOps Report {BENCHMARK_YEAR}"
DAY = 86_400.0
WEEK = 7 * DAY
MONTH = 30 * DAY
HOUR = 3_600.0
MINUTE = 60.0


class Level(enum.StrEnum):
    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


# DORA 2024 clusters (share of respondents: elite 19 %, high 22 %, medium 35 %, low 25 %):
#   deployment frequency: on demand (multiple per day) | daily to weekly | weekly to monthly |
#                         monthly to every six months
#   change lead time:     < 1 day | 1 day to 1 week | 1 week to 1 month | 1 to 6 months
#   change failure rate:  5 % | 20 % | 10 % | 40 %  (typical values, not ranges; medium < high)
#   recovery time:        < 1 hour | < 1 day | < 1 day | 1 week to 1 month
FREQUENCY_EDGES_PER_DAY = ((Level.ELITE, 1.0), (Level.HIGH, 1 / 7), (Level.MEDIUM, 1 / 30))
LEAD_TIME_EDGES = ((Level.ELITE, DAY), (Level.HIGH, WEEK), (Level.MEDIUM, MONTH))
CHANGE_FAILURE_CENTRES = (
    (Level.ELITE, 0.05),
    (Level.MEDIUM, 0.10),
    (Level.HIGH, 0.20),
    (Level.LOW, 0.40),
)
RECOVERY_EDGES = ((Level.ELITE, HOUR), (Level.HIGH, DAY))
LEVELS_2024: dict[str, Any] = {
    "year": BENCHMARK_YEAR,
    "deployment_frequency_per_day": {"elite": ">= 1", "high": ">= 1/7", "medium": ">= 1/30"},
    "lead_time": {"elite": "< 1 day", "high": "<= 1 week", "medium": "<= 30 days"},
    "change_failure_rate": {"elite": "<= 7.5 %", "medium": "<= 15 %", "high": "<= 30 %"},
    "time_to_restore": {"elite": "< 1 hour", "high": "< 1 day"},
    "time_to_restore_note": "high and medium share '< 1 day'; a day or more reads low",
    "change_failure_rate_note": "the report gives one value per cluster (elite 5 %, high 20 %, "
    "medium 10 %, low 40 %); the nearest one is taken",
    "rework_rate": "no buckets published in the 2024 report",
}


def frequency_level(per_day: float, deployments: int) -> Level | None:
    """Daily or more on average is "on demand": the 2024 high band starts at once per day."""
    if deployments == 0:
        return None
    return next((lvl for lvl, edge in FREQUENCY_EDGES_PER_DAY if per_day >= edge), Level.LOW)


def lead_time_level(median_seconds: float | None) -> Level | None:
    """Elite is strictly under a day; a week or a month exactly still belongs to the band below."""
    if median_seconds is None:
        return None
    if median_seconds < DAY:
        return Level.ELITE
    return next((lvl for lvl, edge in LEAD_TIME_EDGES[1:] if median_seconds <= edge), Level.LOW)


def change_failure_level(rate: float | None) -> Level | None:
    """Nearest 2024 cluster value; ties go to the better cluster.

    The report gives one typical rate per cluster and its medium cluster failed less (10 %) than
    its high one (20 %), so the edges are the midpoints 7.5 %, 15 % and 30 % and a rate of 12 %
    reads "medium" while 18 % reads "high". That is the report's data, not a bug here.
    """
    if rate is None:
        return None
    return min(CHANGE_FAILURE_CENTRES, key=lambda c: (abs(rate - c[1]), c[1]))[0]


def recovery_level(median_seconds: float | None) -> Level | None:
    """High and medium share "< 1 day" in 2024, so the better one (high) is given; a day or more
    (the report's low band starts at a week, nothing sits between) is low."""
    if median_seconds is None:
        return None
    return next((lvl for lvl, edge in RECOVERY_EDGES if median_seconds < edge), Level.LOW)
