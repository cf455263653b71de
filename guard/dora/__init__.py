"""DORA metrics and release KPIs from plain deployment records; no I/O.

The guard sees every deployment, its outcome and every rollback at the source, so it can report
delivery performance without reconstructing it from webhooks. Everything here is a pure function
of a columnar table of records (pandas/numpy), so one report over a million deployments stays
well under a second and the same code serves the API, the CSV export, the dashboard and the bench.
pandas and numpy are imported inside the functions that compute, not at the top: the guard serves
and ticks without them, and they would take about 55 MB of every process's memory.

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

from guard.dora.compute import (
    CSV_COLUMNS,
    KPI_TARGETS,
    Distribution,
    DoraReport,
    Kpi,
    Summary,
    WeekPoint,
    csv_rows,
    derive,
    kpi_status,
    report,
    weekly,
)
from guard.dora.frame import (
    DEPLOYMENT_OUTCOMES,
    OUTCOME_CODES,
    DeploymentRecord,
    IncidentRecord,
    Outcome,
    Window,
    build_frame,
    outcome_of,
    parse_window,
)
from guard.dora.levels import (
    BENCHMARK,
    BENCHMARK_YEAR,
    DAY,
    HOUR,
    LEVELS_2024,
    MINUTE,
    WEEK,
    Level,
    change_failure_level,
    frequency_level,
    lead_time_level,
    recovery_level,
)

__all__ = [
    "BENCHMARK",
    "BENCHMARK_YEAR",
    "CSV_COLUMNS",
    "DAY",
    "DEPLOYMENT_OUTCOMES",
    "HOUR",
    "KPI_TARGETS",
    "LEVELS_2024",
    "MINUTE",
    "OUTCOME_CODES",
    "WEEK",
    "DeploymentRecord",
    "Distribution",
    "DoraReport",
    "IncidentRecord",
    "Kpi",
    "Level",
    "Outcome",
    "Summary",
    "WeekPoint",
    "Window",
    "build_frame",
    "change_failure_level",
    "csv_rows",
    "derive",
    "frequency_level",
    "kpi_status",
    "lead_time_level",
    "outcome_of",
    "parse_window",
    "recovery_level",
    "report",
    "weekly",
]
