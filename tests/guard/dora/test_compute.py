"""DORA metrics on a fixed, hand-computed history: each metric, groups, KPIs, trends, CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guard.dora import (
    DeploymentRecord,
    DoraReport,
    IncidentRecord,
    Level,
    Outcome,
    Summary,
    Window,
    build_frame,
    csv_rows,
    report,
)

NOW = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday
WINDOW = Window(start=NOW - timedelta(days=30), end=NOW)
T1 = datetime(2026, 11, 2, 12, tzinfo=UTC)
T2 = datetime(2026, 11, 3, 12, tzinfo=UTC)
T3 = datetime(2026, 11, 10, 12, tzinfo=UTC)
T4 = datetime(2026, 11, 11, 12, tzinfo=UTC)
M = timedelta(minutes=1)
HOUR_DELTA = timedelta(hours=1)


def rec(rid: str, outcome: Outcome, started: datetime | None, **kw: object) -> DeploymentRecord:
    defaults: dict[str, object] = {
        "service": "checkout",
        "team": "payments",
        "submitted_at": (started or T1) - M,
        "started_at": started,
    }
    return DeploymentRecord(rollout_id=rid, outcome=outcome, **{**defaults, **kw})  # type: ignore[arg-type]


HISTORY = [
    # promoted: lead 70 min, duration 10 min
    rec("c1", Outcome.PROMOTED, T1, finished_at=T1 + 10 * M, commit_time=T1 - 60 * M),
    # rolled back: bad at +5, decided at +7, verified at +9 -> restore 4 min, decision 2 min
    rec(
        "c2",
        Outcome.ROLLED_BACK,
        T2,
        finished_at=T2 + 9 * M,
        first_bad_sample_at=T2 + 5 * M,
        rollback_started_at=T2 + 7 * M,
        rollback_verified_at=T2 + 9 * M,
        commit_time=T2 - 60 * M,
    ),
    # promoted, then an incident from +60 to +120 min: failed, restore 60 min; lead 200 min
    rec("c3", Outcome.PROMOTED, T3, finished_at=T3 + 20 * M, commit_time=T3 - 180 * M),
    # aborted after start: a deployment, not a failure; duration 5 min
    rec("c4", Outcome.ABORTED, T4, finished_at=T4 + 5 * M),
    # refused: nothing changed, not a deployment
    rec("c5", Outcome.REFUSED, None, submitted_at=T4 + 60 * M, finished_at=T4 + 61 * M),
    # fix deployed while c3's incident was open: rework; lead 41 min, duration 10 min
    rec(
        "c6",
        Outcome.PROMOTED,
        T3 + 91 * M,
        submitted_at=T3 + 90 * M,
        finished_at=T3 + 101 * M,
        commit_time=T3 + 60 * M,
    ),
    # outside the window
    rec("old", Outcome.ROLLED_BACK, NOW - timedelta(days=60), finished_at=NOW - timedelta(days=59)),
    # a service with no failures
    rec("s1", Outcome.PROMOTED, T1, service="search", team="discovery", finished_at=T1 + 4 * M),
    rec("s2", Outcome.PROMOTED, T3, service="search", team="discovery", finished_at=T3 + 6 * M),
]
INCIDENTS = [IncidentRecord("c3", opened_at=T3 + 60 * M, resolved_at=T3 + 120 * M)]


@pytest.fixture(scope="module")
def result() -> DoraReport:
    return report(build_frame(HISTORY, INCIDENTS), WINDOW)


def by_group(summaries: list[Summary], name: str) -> Summary:
    return next(s for s in summaries if s.group == name)


def test_deployments_and_frequency_count_changes_to_production_only(result: DoraReport) -> None:
    checkout = by_group(result.by_service, "checkout")
    assert checkout.deployments == 5  # c1 c2 c3 c4 c6; not refused c5, not the old one
    assert checkout.outcomes == {"promoted": 3, "rolled_back": 1, "aborted": 1, "failed": 0}
    assert checkout.deployment_frequency_per_day == pytest.approx(5 / 30)
    assert checkout.levels["deployment_frequency"] is Level.HIGH  # >= 1/week, < 1/day
    assert result.overall.deployments == 7


def test_lead_time_median_and_p90(result: DoraReport) -> None:
    lead = by_group(result.by_service, "checkout").lead_time_seconds
    # promoted with commit time: 4200 s, 12000 s, 2460 s
    assert lead.count == 3
    assert lead.median == 4200
    assert lead.p90 == pytest.approx(4200 + 0.8 * (12000 - 4200))  # linear interpolation
    assert by_group(result.by_service, "checkout").levels["lead_time"] is Level.ELITE


def test_change_failure_rate_counts_rollbacks_and_incidents_not_aborts(result: DoraReport) -> None:
    checkout = by_group(result.by_service, "checkout")
    assert checkout.failed_changes == 2  # c2 rolled back, c3 incident after promotion
    assert checkout.change_failure_rate == pytest.approx(0.4)
    assert checkout.levels["change_failure_rate"] is Level.LOW


def test_time_to_restore_is_detection_to_verified_recovery(result: DoraReport) -> None:
    restore = by_group(result.by_service, "checkout").time_to_restore_seconds
    assert restore.count == 2  # rollback 240 s, incident 3600 s
    assert restore.median == 1920
    assert restore.mean == 1920
    assert restore.p90 == pytest.approx(240 + 0.9 * 3360)
    assert by_group(result.by_service, "checkout").levels["time_to_restore"] is Level.ELITE


def test_rework_is_a_deployment_during_an_open_incident(result: DoraReport) -> None:
    checkout = by_group(result.by_service, "checkout")
    assert checkout.rework_deployments == 1
    assert checkout.rework_rate == pytest.approx(0.2)
    assert checkout.levels["rework_rate"] is None  # no 2024 buckets


def test_a_service_with_no_failures(result: DoraReport) -> None:
    search = by_group(result.by_service, "search")
    assert search.deployments == 2
    assert search.failed_changes == 0
    assert search.change_failure_rate == 0
    assert search.levels["change_failure_rate"] is Level.ELITE
    assert search.time_to_restore_seconds.count == 0
    assert search.time_to_restore_seconds.median is None
    assert search.levels["time_to_restore"] is None
    assert search.lead_time_seconds.count == 0  # no commit times given


def test_teams_group_their_services(result: DoraReport) -> None:
    assert [t.group for t in result.by_team] == ["discovery", "payments"]
    assert by_group(result.by_team, "payments").deployments == 5


def test_kpis_pass_or_warn(result: DoraReport) -> None:
    kpis = {k.name: k for k in by_group(result.by_service, "checkout").kpis}
    assert kpis["deployment_success_rate"].value == pytest.approx(3 / 5)
    assert kpis["deployment_success_rate"].status == "warn"
    assert kpis["deployment_duration"].value == 600  # 300 540 600 600 1200
    assert kpis["deployment_duration"].status == "pass"
    assert kpis["rollback_decision_time"].value == 120
    assert kpis["rollback_decision_time"].status == "pass"
    assert kpis["mttr"].value == 1920
    assert kpis["mttr"].status == "warn"  # 32 min > 30 min
    assert kpis["change_failure_rate"].status == "warn"
    search = {k.name: k for k in by_group(result.by_service, "search").kpis}
    assert search["deployment_success_rate"].status == "pass"
    assert search["mttr"].status == "no_data"


def test_filters_by_service_and_team() -> None:
    frame = build_frame(HISTORY, INCIDENTS)
    only = report(frame, WINDOW, service="search")
    assert only.overall.deployments == 2
    assert [s.group for s in only.by_service] == ["search"]
    assert report(frame, WINDOW, team="payments").overall.failed_changes == 2


def test_an_empty_window_has_zero_counts_and_no_levels() -> None:
    empty = Window(start=NOW - timedelta(days=400), end=NOW - timedelta(days=370))
    result = report(build_frame(HISTORY, INCIDENTS), empty)
    assert result.overall.deployments == 0
    assert result.overall.change_failure_rate is None
    assert set(result.overall.levels.values()) == {None}
    assert result.by_service == []
    assert all(k.status == "no_data" for k in result.overall.kpis)
    assert len(result.weekly) == 6  # 2025-10-18 (Sat) to 2025-11-18 (Tue)
    assert all(w.deployments == 0 for w in result.weekly)
    nothing = report(build_frame([], []), WINDOW)
    assert nothing.overall.deployments == 0


def test_weekly_trend_covers_every_week_of_the_window(result: DoraReport) -> None:
    weeks = {w.week_start.isoformat(): w for w in result.weekly}
    assert sorted(weeks)[0] == "2026-10-19" and sorted(weeks)[-1] == "2026-11-16"
    assert weeks["2026-11-02"].deployments == 3  # c1, c2, s1
    assert weeks["2026-11-02"].failed_changes == 1
    assert weeks["2026-11-09"].deployments == 4  # c3, c4, c6, s2
    assert weeks["2026-11-09"].lead_time_median_seconds == pytest.approx((12000 + 2460) / 2)
    assert weeks["2026-11-16"].deployments == 0


def test_csv_has_one_row_per_group(result: DoraReport) -> None:
    rows = csv_rows(result)
    assert [(r["scope"], r["group"]) for r in rows] == [
        ("all", "all"),
        ("service", "checkout"),
        ("service", "search"),
        ("team", "discovery"),
        ("team", "payments"),
    ]
    assert rows[1]["change_failure_rate"] == pytest.approx(0.4)
    assert rows[0]["benchmark_year"] == 2024


def test_incident_on_a_rolled_back_change_is_not_counted_twice() -> None:
    frame = build_frame(HISTORY, [*INCIDENTS, IncidentRecord("c2", T2 + 10 * M, T2 + 20 * M)])
    checkout = by_group(report(frame, WINDOW).by_service, "checkout")
    assert checkout.failed_changes == 2
    assert checkout.time_to_restore_seconds.count == 2


def test_a_rework_label_marks_a_fix() -> None:
    labelled = rec("r1", Outcome.PROMOTED, T4, finished_at=T4 + M, rework_label=True)
    assert report(build_frame([labelled]), WINDOW).overall.rework_rate == 1.0


def test_the_week_the_window_ends_in_is_charted_even_when_partial() -> None:
    wednesday = NOW + timedelta(days=2)
    today = rec("w1", Outcome.PROMOTED, wednesday - HOUR_DELTA, finished_at=wednesday)
    weeks = report(build_frame([today]), Window(wednesday - timedelta(days=14), wednesday)).weekly
    assert [w.week_start.isoformat() for w in weeks] == ["2026-11-09", "2026-11-16", "2026-11-23"]
    assert weeks[-1].deployments == 1
