"""The guard's API and engine are two processes on one SQLite file (guard.engine_process):
their store writes must take turns, and the first to open a new file must not trip the other."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from guard.models import RolloutRequest
from guard.store import Store

PROCESSES = 4
T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
FORK = multiprocessing.get_context("fork")


def _open(url: str, start: Barrier, answer: Connection) -> None:
    start.wait(10)
    try:
        Store(url).close()
        answer.send("ok")
    except Exception as exc:
        answer.send(f"{type(exc).__name__}: {exc}")


def _submit(url: str, start: Barrier, answer: Connection) -> None:
    store = Store(url)
    request = RolloutRequest(namespace="shop", deployment="checkout", images={"app": "app:2"})
    start.wait(10)
    try:
        view, created = store.submit(request, idempotency_key="pipeline-run-7", now=T0)
        answer.send((view.id, created))
    except Exception as exc:
        answer.send(f"{type(exc).__name__}: {exc}")
    finally:
        store.close()


def _run_at_once(target: Callable[[str, Barrier, Connection], None], url: str) -> list[Any]:
    start = FORK.Barrier(PROCESSES)
    pipes = [FORK.Pipe(duplex=False) for _ in range(PROCESSES)]
    processes = [FORK.Process(target=target, args=(url, start, sender)) for _, sender in pipes]
    for process in processes:
        process.start()
    answers = [receiver.recv() if receiver.poll(30) else "no answer" for receiver, _ in pipes]
    for process in processes:
        process.join(10)
    return answers


def test_processes_opening_a_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    answers = _run_at_once(_open, f"sqlite:///{tmp_path / 'guard.db'}")

    assert answers == ["ok"] * PROCESSES


def test_one_idempotency_key_submitted_by_processes_at_once_creates_one_rollout(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    Store(url).close()

    answers = _run_at_once(_submit, url)

    assert all(isinstance(a, tuple) for a in answers), answers
    assert len({rollout_id for rollout_id, _ in answers}) == 1
    assert sorted(created for _, created in answers) == [False] * (PROCESSES - 1) + [True]
