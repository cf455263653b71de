"""Delivery records read from the store: team precedence, outcomes, commit times, rework labels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from guard.config import parse_config
from guard.dora import Outcome
from guard.models import RolloutRequest, RolloutState
from guard.records import IncidentRequest, delivery_records, record_incident, team_of
from guard.sim.history import IMAGE, finished_rollout
from guard.store import Store

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)
CONFIG = parse_config({"services": {"checkout": {"team": "payments"}}})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    yield s
    s.close()


def test_team_comes_from_config_then_label_then_unassigned() -> None:
    assert team_of(CONFIG, "checkout", {"team": "other"}) == "payments"
    assert team_of(CONFIG, "search", {"team": "discovery"}) == "discovery"
    assert team_of(CONFIG, "search", {}) == "unassigned"


def test_records_carry_outcome_commit_time_rework_and_incidents(store: Store) -> None:
    promoted = finished_rollout(
        store,
        started=T0,
        state=RolloutState.PROMOTED,
        minutes=5,
        lead=timedelta(hours=1),
        labels={"rework": "true"},
    )
    rolled_back = finished_rollout(
        store,
        started=T0 + timedelta(hours=1),
        state=RolloutState.ROLLED_BACK,
        minutes=5,
        bad_after=1,
    )
    pending, _ = store.submit(
        RolloutRequest(namespace="shop", deployment="gone", images={"app": IMAGE}),
        idempotency_key=None,
        now=T0,
    )
    opened = T0 + timedelta(hours=2)
    record_incident(store, promoted, IncidentRequest(opened_at=opened))

    deployments, incidents = delivery_records(store, CONFIG, since=T0 - timedelta(days=1))

    by_id = {d.rollout_id: d for d in deployments}
    assert pending.id not in by_id  # still pending: not finished, not a record yet
    assert by_id[promoted].outcome is Outcome.PROMOTED
    assert by_id[promoted].commit_time == T0 - timedelta(hours=1)
    assert by_id[promoted].rework_label is True
    assert by_id[promoted].team == "payments"
    assert by_id[rolled_back].outcome is Outcome.ROLLED_BACK
    assert by_id[rolled_back].first_bad_sample_at == T0 + timedelta(hours=1, minutes=1)
    assert [(i.rollout_id, i.opened_at, i.resolved_at) for i in incidents] == [
        (promoted, opened, None)
    ]
    assert delivery_records(store, CONFIG, since=T0 + timedelta(days=1)) == ([], [])
