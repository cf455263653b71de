"""The store's JSON columns keep infinities whichever form the driver hands the text in, and
rows inserted through the driver read back as the ORM would have written them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from guard.db import dumps_json, insert_rows, loads_json
from guard.store import DecisionRow, RolloutRow, Store


def test_json_round_trips_infinities_from_text_and_bytes() -> None:
    value = {"buckets": [[0.5, 3.0], [math.inf, 7.0]], "floor": -math.inf, "name": "x"}
    text = dumps_json(value)
    assert loads_json(text) == value
    assert loads_json(text.encode()) == value


def test_json_without_infinities_reads_back_unchanged() -> None:
    value = {"images": {"app": "registry/app:1.1"}, "steps": [5, 25, 50], "labels": {}}
    assert loads_json(dumps_json(value)) == value
    assert loads_json(dumps_json(value).encode()) == value


def test_nan_tuples_and_none_survive_the_round_trip() -> None:
    value = {"nan": math.nan, "pair": (1.0, math.inf), "missing": None}
    back = loads_json(dumps_json(value))
    assert math.isnan(back["nan"])
    assert back["pair"] == [1.0, math.inf]
    assert back["missing"] is None


ROLLOUT = {
    "request_digest": "d" * 64,
    "namespace": "shop",
    "deployment": "checkout",
    "service": "checkout",
    "strategy": "canary",
    "request": {"images": {"app": "registry/app:2"}, "steps": [5, 25]},
    "state": "pending",
    "submitted_at": datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC),
    "lease_expires_at": datetime(2026, 12, 2, 9, 30, 30, tzinfo=UTC),
}


def test_inserted_rows_read_back_as_the_orm_writes_them(db_url: str) -> None:
    """Left-out columns take their defaults; times, JSON and generated ids are the ORM's."""
    store = Store(db_url)
    with Session(store.engine) as session, session.begin():
        session.add(RolloutRow(id="by-orm", idempotency_key="k1", **ROLLOUT))
        session.flush()
        insert_rows(session, RolloutRow, [{"id": "by-insert", "idempotency_key": "k2", **ROLLOUT}])
        body = {"bucket": math.inf, "values": [1.5, -math.inf]}
        insert_rows(
            session,
            DecisionRow,
            [{"rollout_id": "by-insert", "body": body}, {"rollout_id": "by-orm", "body": {}}],
        )
    with Session(store.engine) as session:
        by_orm, by_insert = (
            session.get_one(RolloutRow, "by-orm"),
            session.get_one(RolloutRow, "by-insert"),
        )
        columns = [
            c.key for c in RolloutRow.__table__.columns if c.key not in ("id", "idempotency_key")
        ]
        assert {c: getattr(by_insert, c) for c in columns} == {
            c: getattr(by_orm, c) for c in columns
        }
        assert by_insert.submitted_at == ROLLOUT["submitted_at"]
        assert (by_insert.step, by_insert.commands, by_insert.fencing_token) == ("", [], 0)
        decisions = session.scalars(select(DecisionRow).order_by(DecisionRow.id)).all()
        assert [(d.rollout_id, d.body) for d in decisions] == [("by-insert", body), ("by-orm", {})]
        assert decisions[0].id < decisions[1].id
    store.close()


def test_a_row_naming_no_column_or_missing_a_required_one_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    with Session(store.engine) as session, session.begin():
        with pytest.raises(KeyError, match="rollouts has no column colour"):
            insert_rows(session, RolloutRow, [{"id": "r1", "colour": "red", **ROLLOUT}])
        complete = {"id": "r1", "idempotency_key": None, **ROLLOUT}
        without_state = {k: v for k, v in complete.items() if k != "state"} | {"id": "r2"}
        with pytest.raises(KeyError, match=r"rollouts\.state"):
            insert_rows(session, RolloutRow, [complete, without_state])
    store.close()
