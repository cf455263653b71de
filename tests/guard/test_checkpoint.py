"""A local SQLite store's commits never checkpoint the WAL (one in a hundred took 5-10 ms on the
event loop); a thread of the store does it, and closing the store empties the WAL."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from guard import checkpoint
from guard.models import RolloutRequest
from guard.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def submit(store: Store, count: int) -> None:
    for index in range(count):
        request = RolloutRequest(
            namespace="shop", deployment=f"web-{index}", images={"web": f"web:{index}"}
        )
        store.submit(request, idempotency_key=None, now=NOW)


def wal_pages(database: Path) -> int:
    wal = database.with_name(database.name + "-wal")
    page_size = sqlite3.connect(database).execute("PRAGMA page_size").fetchone()[0]
    return wal.stat().st_size // page_size if wal.exists() else 0


def test_commits_leave_the_wal_to_the_checkpoint_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 3600.0)  # the thread never gets to it
    database = tmp_path / "guard.db"
    store = Store(f"sqlite:///{database}")

    submit(store, 400)

    # SQLite's own default checkpoints in the commit that takes the WAL past 1,000 pages.
    assert wal_pages(database) > 1500
    store.close()
    assert wal_pages(database) == 0  # SQLite checkpointed at the last close
    assert len(Store(f"sqlite:///{database}").list_rollouts(limit=1000)) == 400


def test_the_thread_checkpoints_while_the_store_is_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.05)
    database = tmp_path / "guard.db"
    store = Store(f"sqlite:///{database}")
    submit(store, 50)
    checkpointer = store._checkpointer
    assert checkpointer is not None

    deadline = time.monotonic() + 30
    while checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    assert checkpointer.checkpoints > 0
    with sqlite3.connect(database) as reader:  # everything committed is in the database file
        busy, wal_frames, copied = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, copied) == (0, wal_frames)
    store.close()
