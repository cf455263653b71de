"""DORA metrics and release KPIs from plain deployment records; no I/O.

The guard sees every deployment, its outcome and every rollback at the source, so it can report
delivery performance without reconstructing it from webhooks. Everything here is a pure function
of a columnar table of records (pandas/numpy), so one report over a million deployments stays
well under a second and the same code serves the API, the CSV export, the dashboard and the bench.

Definitions (DORA, and how the guard's records map onto them):

- A *deployment* is a rollout that changed production: promoted, rolled back, aborted after it
  started, or failed after it started. Refused rollouts (nothing changed) and "no change"
  rollouts (the Deployment already ran the images) are not deployments.
- *Deployment frequency*: deployments per day over the window.
- *Lead time for changes*: commit time to promotion, for promoted deployments that carry a
  commit time.
- *Change failure rate*: failed changes / deployments. A change failed when the guard rolled it
  back, or when an incident was recorded against it after promotion.
  An operator's abort is not counted as a failure: it is a choice, not evidence of degraded
  service; record an incident when it was one.
  A later automatic rollback of the *same service* does not count against the previously
  promoted change: the guard's rollback restores exactly that change (the last known good
  template), so it is evidence against the later change only, which is already counted; counting
  it twice would blame the version the guard judged healthy and inflate the rate. A failure of a
  promoted change that shows up later is what `POST /v1/rollouts/{id}/incident` records.
- *Failed deployment recovery time* (time to restore): from detection to verified recovery. For
  an automatic rollback: first bad sample (or, without one, the rollback decision) to the
  previous revision verified available again. For an incident: opened to resolved.
- *Rework rate*: deployments made to fix a failure in production / deployments. A deployment is
  rework when it was submitted while an incident on its service was open, or when its request is
  labelled `rework: "true"` (DORA 2024: "unplanned deployments made as a result of an incident").

Levels use the buckets of the DORA Accelerate State of DevOps Report 2024, the latest report
that publishes elite/high/medium/low clusters (the 2025 report replaced them with team
archetypes). See `LEVELS_2024` for the edges and how the report's odd spots are handled.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel

BENCHMARK_YEAR = 2024
BENCHMARK = f"DORA Accelerate State of DevOps Report {BENCHMARK_YEAR}"
DAY = 86_400.0
WEEK = 7 * DAY
MONTH = 30 * DAY
HOUR = 3_600.0
MINUTE = 60.0

FloatArray = npt.NDArray[np.float64]


class Outcome(enum.StrEnum):
    """How a rollout ended, as far as delivery performance is concerned."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"
    FAILED = "failed"
    REFUSED = "refused"
    UNCHANGED = "unchanged"

    @property
    def is_deployment(self) -> bool:
        return self in DEPLOYMENT_OUTCOMES


DEPLOYMENT_OUTCOMES = frozenset(
    {Outcome.PROMOTED, Outcome.ROLLED_BACK, Outcome.ABORTED, Outcome.FAILED}
)
OUTCOME_CODES = {outcome: code for code, outcome in enumerate(Outcome)}


def outcome_of(state: str, outcome_reason: str | None, started_at: datetime | None) -> Outcome:
    """Map a terminal rollout to its outcome; a rollout that changed nothing was refused."""
    if state == "promoted":
        return Outcome.UNCHANGED if outcome_reason == "unchanged" else Outcome.PROMOTED
    if state == "rolled_back":
        return Outcome.ROLLED_BACK
    if started_at is None:
        return Outcome.REFUSED
    return Outcome.ABORTED if state == "aborted" else Outcome.FAILED


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


@dataclass(frozen=True)
class DeploymentRecord:
    """One finished rollout as the store knows it."""

    rollout_id: str
    service: str
    team: str
    outcome: Outcome
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    commit_time: datetime | None = None
    first_bad_sample_at: datetime | None = None
    rollback_started_at: datetime | None = None
    rollback_verified_at: datetime | None = None
    rework_label: bool = False


@dataclass(frozen=True)
class IncidentRecord:
    """A failure of a promoted change found after promotion."""

    rollout_id: str
    opened_at: datetime
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Window:
    """[start, end); `days` is what deployment frequency divides by."""

    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / DAY


_WINDOW = re.compile(r"^(\d{1,4})([hdw])$")


def parse_window(text: str, *, now: datetime) -> Window:
    """`30d`, `12h`, `4w`; at most 5 years, so a typo cannot scan all of history by accident."""
    match = _WINDOW.match(text.strip())
    if match is None:
        raise ValueError("window must be a number and a unit h, d or w, e.g. '30d'")
    amount, unit = int(match.group(1)), match.group(2)
    length = timedelta(**{{"h": "hours", "d": "days", "w": "weeks"}[unit]: amount})
    if amount == 0 or length > timedelta(days=5 * 366):
        raise ValueError("window must be more than 0 and at most 5 years")
    return Window(start=now - length, end=now)


COLUMNS = (
    "submitted",
    "started",
    "finished",
    "commit",
    "first_bad",
    "rollback_started",
    "rollback_verified",
    "incident_opened",
    "incident_resolved",
)


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else math.nan


def build_frame(
    deployments: Iterable[DeploymentRecord], incidents: Iterable[IncidentRecord] = ()
) -> pd.DataFrame:
    """Records to the columnar table `report` works on: times as float epoch seconds (NaN when
    absent), the first incident of each rollout joined in, and rework marked."""
    rows = list(deployments)
    by_rollout: dict[str, IncidentRecord] = {}
    for incident in sorted(incidents, key=lambda i: i.opened_at):
        by_rollout.setdefault(incident.rollout_id, incident)
    data: dict[str, Any] = {
        "rollout_id": [r.rollout_id for r in rows],
        "service": pd.Categorical([r.service for r in rows]),
        "team": pd.Categorical([r.team for r in rows]),
        "outcome": np.array([OUTCOME_CODES[r.outcome] for r in rows], dtype=np.int8),
        "rework": np.array([r.rework_label for r in rows], dtype=bool),
    }
    for name, attr in zip(COLUMNS[:7], _RECORD_TIMES, strict=True):
        data[name] = np.array([_epoch(getattr(r, attr)) for r in rows], dtype=np.float64)
    found = [by_rollout.get(r.rollout_id) for r in rows]
    data["incident_opened"] = np.array(
        [_epoch(i.opened_at if i else None) for i in found], np.float64
    )
    data["incident_resolved"] = np.array(
        [_epoch(i.resolved_at if i else None) for i in found], np.float64
    )
    frame = pd.DataFrame(data)
    frame["rework"] |= _during_open_incident(frame, by_rollout.values(), rows)
    return frame


_RECORD_TIMES = (
    "submitted_at",
    "started_at",
    "finished_at",
    "commit_time",
    "first_bad_sample_at",
    "rollback_started_at",
    "rollback_verified_at",
)


def _during_open_incident(
    frame: pd.DataFrame, incidents: Iterable[IncidentRecord], rows: Sequence[DeploymentRecord]
) -> npt.NDArray[np.bool_]:
    """Deployments of a service submitted while an incident on that service was open."""
    service_of = {r.rollout_id: r.service for r in rows}
    marked = np.zeros(len(frame), dtype=bool)
    services = frame["service"].astype(str).to_numpy()
    submitted = frame["submitted"].to_numpy()
    for incident in incidents:
        service = service_of.get(incident.rollout_id)
        opened = incident.opened_at.timestamp()
        resolved = _epoch(incident.resolved_at)
        end = math.inf if math.isnan(resolved) else resolved
        marked |= (services == service) & (submitted >= opened) & (submitted <= end)
    return marked


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
    benchmark: str = BENCHMARK
    benchmark_year: int = BENCHMARK_YEAR
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
