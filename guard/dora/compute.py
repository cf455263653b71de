"""The DORA report: per-deployment figures, then aggregates per group, week and KPI.

Pure functions of the table `guard.dora.frame.build_frame` returns; see `guard.dora` for what
each metric means in the guard's terms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from guard.dora.frame import DEPLOYMENT_OUTCOMES, OUTCOME_CODES, Outcome, Window
from guard.dora.levels import (
    BENCHMARK,
    BENCHMARK_YEAR,
    LEVELS_2024,
    MINUTE,
    WEEK,
    Level,
    change_failure_level,
    frequency_level,
    lead_time_level,
    recovery_level,
)

if TYPE_CHECKING:
    import pandas as pd


class Distribution(BaseModel):
    """Median, p90 (linear interpolation, numpy's default) and mean, in seconds."""

    count: int
    median: float | None = None
    p90: float | None = None
    mean: float | None = None


KpiStatus = Literal["pass", "warn", "no_data"]


class Kpi(BaseModel):
    """A release KPI of the product spec beside its target."""

    name: str
    statistic: str
    value: float | None
    target: float
    comparison: Literal["<=", ">="]
    unit: str
    status: KpiStatus


class Summary(BaseModel):
    """DORA metrics, levels and KPIs of one group of deployments."""

    scope: Literal["all", "service", "team"]
    group: str
    deployments: int
    outcomes: dict[str, int]
    deployment_frequency_per_day: float
    lead_time_seconds: Distribution
    failed_changes: int
    change_failure_rate: float | None
    time_to_restore_seconds: Distribution
    rework_deployments: int
    rework_rate: float | None
    levels: dict[str, Level | None]
    kpis: list[Kpi]


class WeekPoint(BaseModel):
    """One ISO week (starting Monday, UTC) of the trend charts."""

    week_start: date
    deployments: int
    failed_changes: int
    change_failure_rate: float | None
    lead_time_median_seconds: float | None
    time_to_restore_median_seconds: float | None


class DoraReport(BaseModel):
    """The whole answer of `GET /v1/dora`; `buckets` states the level edges it applied."""

    benchmark: str = BENCHMARK
    benchmark_year: int = BENCHMARK_YEAR
    buckets: dict[str, Any] = Field(default_factory=lambda: dict(LEVELS_2024))
    window_start: datetime
    window_end: datetime
    window_days: float
    service: str | None = None
    team: str | None = None
    overall: Summary
    by_service: list[Summary]
    by_team: list[Summary]
    weekly: list[WeekPoint]


@dataclass(frozen=True)
class KpiTarget:
    name: str
    statistic: str
    target: float
    comparison: Literal["<=", ">="]
    unit: str


# The product spec's release KPIs.
KPI_TARGETS = (
    KpiTarget("deployment_success_rate", "ratio", 0.95, ">=", "ratio"),
    KpiTarget("deployment_duration", "median", 30 * MINUTE, "<=", "seconds"),
    KpiTarget("rollback_decision_time", "median", 10 * MINUTE, "<=", "seconds"),
    KpiTarget("mttr", "mean", 30 * MINUTE, "<=", "seconds"),
    KpiTarget("change_failure_rate", "ratio", 0.05, "<=", "ratio"),
)


def kpi_status(value: float | None, target: KpiTarget) -> KpiStatus:
    if value is None:
        return "no_data"
    met = value <= target.target if target.comparison == "<=" else value >= target.target
    return "pass" if met else "warn"


def derive(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the per-deployment figures every metric is an aggregate of (NaN where n/a)."""
    import numpy as np
    import pandas as pd

    outcome = frame["outcome"].to_numpy()
    promoted = outcome == OUTCOME_CODES[Outcome.PROMOTED]
    rolled_back = outcome == OUTCOME_CODES[Outcome.ROLLED_BACK]
    deployment = np.isin(outcome, [OUTCOME_CODES[o] for o in DEPLOYMENT_OUTCOMES])
    opened = frame["incident_opened"].to_numpy()
    incident = promoted & ~np.isnan(opened)
    started, finished = frame["started"].to_numpy(), frame["finished"].to_numpy()
    first_bad = frame["first_bad"].to_numpy()
    decided = frame["rollback_started"].to_numpy()
    detected = np.where(np.isnan(first_bad), decided, first_bad)
    restore = np.where(
        rolled_back,
        frame["rollback_verified"].to_numpy() - detected,
        np.where(incident, frame["incident_resolved"].to_numpy() - opened, np.nan),
    )
    nan = np.nan
    return pd.DataFrame(
        {
            "service": frame["service"],
            "team": frame["team"],
            "started": started,
            "deployment": deployment,
            "promoted": promoted & deployment,
            "failed": (rolled_back | incident) & deployment,
            "rework": frame["rework"].to_numpy() & deployment,
            "lead": np.where(promoted, finished - frame["commit"].to_numpy(), nan),
            "restore": restore,
            "duration": np.where(deployment, finished - started, nan),
            "decision": np.where(rolled_back, decided - first_bad, nan),
            "outcome": outcome,
        }
    )


def report(
    frame: pd.DataFrame,
    window: Window,
    *,
    service: str | None = None,
    team: str | None = None,
) -> DoraReport:
    """The DORA report of deployments started inside the window, optionally for one service or
    team; an empty window gives zero counts and no levels, never an error."""
    start, end = window.start.timestamp(), window.end.timestamp()
    started = frame["started"].to_numpy()
    mask = (started >= start) & (started < end)
    if service is not None:
        mask &= (frame["service"] == service).to_numpy()
    if team is not None:
        mask &= (frame["team"] == team).to_numpy()
    rows = derive(frame[mask])
    rows = rows[rows["deployment"].to_numpy()]
    days = window.days
    return DoraReport(
        window_start=window.start,
        window_end=window.end,
        window_days=days,
        service=service,
        team=team,
        overall=_summarise(rows, "all", "all", days),
        by_service=_grouped(rows, "service", days),
        by_team=_grouped(rows, "team", days),
        weekly=weekly(rows, window),
    )


def _grouped(rows: pd.DataFrame, key: Literal["service", "team"], days: float) -> list[Summary]:
    """One summary per group, aggregated in one groupby pass per statistic."""
    if rows.empty:
        return []
    grouped = rows.groupby(key, observed=True, sort=True)
    stats = _group_stats(grouped)
    return [
        _summary_from(_row(stats, name), key, str(name), days, _outcome_counts(part))
        for name, part in grouped
    ]


_SUMS = ("deployment", "promoted", "failed", "rework")
_DISTRIBUTIONS = ("lead", "restore", "duration", "decision")


def _row(stats: pd.DataFrame, name: Any) -> pd.Series:
    row: pd.Series = stats.loc[name]
    return row


def _group_stats(grouped: Any) -> pd.DataFrame:
    import pandas as pd

    sums = grouped[list(_SUMS)].sum()
    parts = [sums]
    for column in _DISTRIBUTIONS:
        series = grouped[column]
        parts.append(
            pd.DataFrame(
                {
                    f"{column}_count": series.count(),
                    f"{column}_median": series.median(),
                    f"{column}_p90": series.quantile(0.9),
                    f"{column}_mean": series.mean(),
                }
            )
        )
    stats: pd.DataFrame = pd.concat(parts, axis=1)
    return stats


def _summarise(rows: pd.DataFrame, scope: Literal["all"], group: str, days: float) -> Summary:
    import numpy as np
    import pandas as pd

    stats: dict[str, Any] = {name: int(rows[name].sum()) for name in _SUMS}
    for column in _DISTRIBUTIONS:
        values = rows[column].to_numpy()
        values = values[~np.isnan(values)]
        stats[f"{column}_count"] = len(values)
        has = len(values) > 0
        stats[f"{column}_median"] = float(np.median(values)) if has else math.nan
        stats[f"{column}_p90"] = float(np.percentile(values, 90)) if has else math.nan
        stats[f"{column}_mean"] = float(values.mean()) if has else math.nan
    return _summary_from(pd.Series(stats), scope, group, days, _outcome_counts(rows))


def _outcome_counts(rows: pd.DataFrame) -> dict[str, int]:
    import numpy as np

    codes = np.bincount(rows["outcome"].to_numpy().astype(np.int64), minlength=len(Outcome))
    return {o.value: int(codes[OUTCOME_CODES[o]]) for o in Outcome if o.is_deployment}


def _opt(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _distribution(stats: pd.Series, column: str) -> Distribution:
    return Distribution(
        count=int(stats[f"{column}_count"]),
        median=_opt(stats[f"{column}_median"]),
        p90=_opt(stats[f"{column}_p90"]),
        mean=_opt(stats[f"{column}_mean"]),
    )


def _summary_from(
    stats: pd.Series, scope: Any, group: str, days: float, outcomes: dict[str, int]
) -> Summary:
    deployments = int(stats["deployment"])
    failed = int(stats["failed"])
    rework = int(stats["rework"])
    cfr = failed / deployments if deployments else None
    per_day = deployments / days if days > 0 else 0.0
    lead = _distribution(stats, "lead")
    restore = _distribution(stats, "restore")
    kpi_values = {
        "deployment_success_rate": int(stats["promoted"]) / deployments if deployments else None,
        "deployment_duration": _opt(stats["duration_median"]),
        "rollback_decision_time": _opt(stats["decision_median"]),
        "mttr": restore.mean,
        "change_failure_rate": cfr,
    }
    return Summary(
        scope=scope,
        group=group,
        deployments=deployments,
        outcomes=outcomes,
        deployment_frequency_per_day=per_day,
        lead_time_seconds=lead,
        failed_changes=failed,
        change_failure_rate=cfr,
        time_to_restore_seconds=restore,
        rework_deployments=rework,
        rework_rate=rework / deployments if deployments else None,
        levels={
            "deployment_frequency": frequency_level(per_day, deployments),
            "lead_time": lead_time_level(lead.median),
            "change_failure_rate": change_failure_level(cfr),
            "time_to_restore": recovery_level(restore.median),
            "rework_rate": None,
        },
        kpis=[
            Kpi(
                name=t.name,
                statistic=t.statistic,
                value=kpi_values[t.name],
                target=t.target,
                comparison=t.comparison,
                unit=t.unit,
                status=kpi_status(kpi_values[t.name], t),
            )
            for t in KPI_TARGETS
        ],
    )


def weekly(rows: pd.DataFrame, window: Window) -> list[WeekPoint]:
    """Every week the window touches, empty weeks included, so a chart's x axis is honest."""
    import numpy as np

    first = _monday(window.start)
    origin = datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()
    count = math.ceil((window.end.timestamp() - origin) / WEEK)
    weeks = [first + timedelta(days=7 * i) for i in range(count)]
    index = np.floor((rows["started"].to_numpy() - origin) / WEEK).astype(np.int64)
    grouped = rows.assign(week=index).groupby("week")
    counts = grouped["deployment"].sum()
    failed = grouped["failed"].sum()
    lead = grouped["lead"].median()
    restore = grouped["restore"].median()
    points = []
    for i, week in enumerate(weeks):
        deployments = int(counts.get(i, 0))
        fails = int(failed.get(i, 0))
        points.append(
            WeekPoint(
                week_start=week,
                deployments=deployments,
                failed_changes=fails,
                change_failure_rate=fails / deployments if deployments else None,
                lead_time_median_seconds=_opt(lead.get(i, math.nan)),
                time_to_restore_median_seconds=_opt(restore.get(i, math.nan)),
            )
        )
    return points


def _monday(moment: datetime) -> date:
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


CSV_COLUMNS = (
    "scope",
    "group",
    "deployments",
    "deployment_frequency_per_day",
    "deployment_frequency_level",
    "lead_time_median_seconds",
    "lead_time_p90_seconds",
    "lead_time_level",
    "failed_changes",
    "change_failure_rate",
    "change_failure_rate_level",
    "time_to_restore_median_seconds",
    "time_to_restore_p90_seconds",
    "time_to_restore_level",
    "rework_rate",
    "benchmark_year",
)


def csv_rows(result: DoraReport) -> list[dict[str, Any]]:
    """One flat row per summary (all, then each service, then each team)."""
    rows = []
    for s in (result.overall, *result.by_service, *result.by_team):
        rows.append(
            {
                "scope": s.scope,
                "group": s.group,
                "deployments": s.deployments,
                "deployment_frequency_per_day": s.deployment_frequency_per_day,
                "deployment_frequency_level": s.levels["deployment_frequency"],
                "lead_time_median_seconds": s.lead_time_seconds.median,
                "lead_time_p90_seconds": s.lead_time_seconds.p90,
                "lead_time_level": s.levels["lead_time"],
                "failed_changes": s.failed_changes,
                "change_failure_rate": s.change_failure_rate,
                "change_failure_rate_level": s.levels["change_failure_rate"],
                "time_to_restore_median_seconds": s.time_to_restore_seconds.median,
                "time_to_restore_p90_seconds": s.time_to_restore_seconds.p90,
                "time_to_restore_level": s.levels["time_to_restore"],
                "rework_rate": s.rework_rate,
                "benchmark_year": result.benchmark_year,
            }
        )
    return rows
