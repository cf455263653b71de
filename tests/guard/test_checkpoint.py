"""A local SQLite store's commits never checkpoint the WAL (one in a hundred took 5-10 ms on the
event loop); a thread of the store does it, the WAL starts over even while writes never pause,
and closing the store empties the WAL."""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import guard.store
from guard import checkpoint
from guard.models import RolloutRequest
from guard.store import Store

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def submit(store: Store, count: int, first: int = 0) -> None:
    for index in range(first, first + count):
        request = RolloutRequest(
            namespace="shop", deployment=f"web-{index}", images={"web": f"web:{index}"}
        )
        store.submit(request, idempotency_key=None, now=NOW)


def wal_file(database: Path) -> Path:
    return database.with_name(database.name + "-wal")


def wal_starts(database: Path) -> int:
    """How many times SQLite has started the WAL over: its header's checkpoint sequence."""
    with wal_file(database).open("rb") as wal:
        return int(struct.unpack(">I", wal.read(16)[12:16])[0])


def wal_pages(database: Path) -> int:
    wal = wal_file(database)
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


def test_the_wal_starts_over_while_writes_never_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint copies the frames committed when it began; without a moment in which none
    came in, the WAL never started over and grew without end."""
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 0.02)
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 200)
    database = tmp_path / "guard.db"
    store = Store(f"sqlite:///{database}")
    submit(store, 1)
    started = wal_starts(database)
    stop = threading.Event()

    def write() -> None:
        written = 1
        while not stop.is_set():
            submit(store, 1, first=written)
            written += 1

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 20
    try:
        while wal_starts(database) < started + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        writer.join()

    assert wal_starts(database) >= started + 3
    assert store._checkpointer is not None and store._checkpointer.catch_ups >= 3
    store.close()


def test_a_wal_grown_by_a_burst_is_cut_back_when_it_starts_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "CHECKPOINT_SECONDS", 3600.0)
    monkeypatch.setattr(guard.store, "WAL_SIZE_LIMIT", 256 * 1024)
    database = tmp_path / "guard.db"
    store = Store(f"sqlite:///{database}")
    submit(store, 200)
    assert wal_pages(database) > 500
    checkpointer = store._checkpointer
    assert checkpointer is not None

    checkpointer._checkpoint()  # nothing writes meanwhile: it copies every frame
    submit(store, 1, first=200)  # this writer starts the WAL over

    assert wal_file(database).stat().st_size <= 256 * 1024
    assert len(store.list_rollouts(limit=1000)) == 201
    store.close()
