"""Fixtures shared by every test directory: a real PostgreSQL server for the store's backends.

The longest tests are collected first, so that xdist starts them first and the end of a run is
filled with short tests rather than waiting on one two-minute test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.sim.postgres import PostgresNotInstalledError, PostgresServer

LONGEST_FIRST = (
    "tests/e2e/test_crash.py",
    "tests/e2e/test_demo.py",
    "tests/helm/test_rbac_coverage.py",
    "tests/e2e/test_replicas.py",
    "tests/bench/test_speed_benches.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: every other test keeps its order


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server per xdist worker, started on first use; each test takes a fresh database."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresNotInstalledError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL on each backend: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'nested' / 'guard.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()
