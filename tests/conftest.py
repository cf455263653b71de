"""Fixtures shared by every test directory: a real PostgreSQL server for the store's backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from guard.sim.postgres import PostgresNotInstalledError, PostgresServer


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
