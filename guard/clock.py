"""The guard's clock: aware UTC, so a stored time never depends on the host's zone."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
