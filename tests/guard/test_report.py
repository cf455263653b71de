"""Rollout report: plan vs actual from the events history, metric phases from decisions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guard.config import AnalysisConfig
from guard.models import RolloutState
from guard.report import build, markdown, metric_windows, phases, to_html
from guard.sim.history import finished_rollout
from guard.store import Store

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
CONFIG = AnalysisConfig(interval_seconds=10, healthy_intervals_to_promote=3)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    yield s
    s.close()


def test_plan_vs_actual_of_a_promoted_rollout(store: Store) -> None:
    rollout = store.get(finished_rollout(store, started=T0, state=RolloutState.PROMOTED, minutes=3))
    rows = phases(rollout, CONFIG, tick_seconds=1)
    assert [(p.state, p.planned_seconds, p.actual_seconds) for p in rows] == [
        ("pending", 1, 1),
        ("progressing", 30, 180),
        ("promoted", 0, 0),
    ]
    windows = {w.phase: w for w in metric_windows(rollout)}
    assert windows["before"].samples == 1  # no fault: everything is "before"
    assert windows["during"].samples == windows["after"].samples == 0


def test_rolled_back_report_times_and_renderings(store: Store) -> None:
    rollout = store.get(
        finished_rollout(store, started=T0, state=RolloutState.ROLLED_BACK, minutes=6, bad_after=2)
    )
    report = build(rollout, team="payments", config=CONFIG, tick_seconds=1, incidents=[], alerts=[])
    assert report.rolled_back is True
    assert report.rollback_decision_seconds == 60
    assert report.time_to_restore_seconds == 4 * 60
    assert report.duration_seconds == 6 * 60
    rolling_back = next(p for p in report.phases if p.state == "rolling_back")
    assert rolling_back.planned_seconds is None
    assert rolling_back.actual_seconds == timedelta(minutes=3).total_seconds()
    text = markdown(report)
    assert "| during | 1 | 8.00 % | 8.00 % |" in text
    assert "## Alerts sent\n\nNone recorded." in text
    page = to_html(report)
    assert page.startswith("<!doctype html>") and "<td>rolling_back</td>" in page
