"""Outcomes of finished rollouts and window parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from guard.dora import Outcome, outcome_of, parse_window

NOW = datetime(2026, 11, 23, tzinfo=UTC)
T1 = datetime(2026, 11, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "reason", "started", "outcome"),
    [
        ("promoted", "promoted", T1, Outcome.PROMOTED),
        ("promoted", "unchanged", T1, Outcome.UNCHANGED),
        ("rolled_back", "analysis", T1, Outcome.ROLLED_BACK),
        ("aborted", "aborted", T1, Outcome.ABORTED),
        ("aborted", "aborted", None, Outcome.REFUSED),
        ("failed", "error", None, Outcome.REFUSED),
        ("failed", "error", T1, Outcome.FAILED),
    ],
)
def test_outcomes(state: str, reason: str, started: datetime | None, outcome: Outcome) -> None:
    assert outcome_of(state, reason, started) is outcome


def test_parse_window() -> None:
    assert parse_window("30d", now=NOW).days == 30
    assert parse_window("12h", now=NOW).days == 0.5
    assert parse_window("2w", now=NOW).start == NOW - timedelta(weeks=2)
    for bad in ("", "30", "0d", "d30", "99999w", "3y"):
        with pytest.raises(ValueError, match="window"):
            parse_window(bad, now=NOW)
