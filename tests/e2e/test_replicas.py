"""Two guard replicas on one PostgreSQL: they share the rollouts, and one takes over the other's
within a lease period when it dies (the scenario bench/failover.py measures)."""

from __future__ import annotations

from pathlib import Path

from bench.failover import GOOD, report, run_failover
from guard.sim.postgres import PostgresServer

LEASE_SECONDS = 3.0


def test_a_replica_killed_mid_rollout_is_taken_over_within_a_lease(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    result = run_failover(tmp_path, postgres.create_database(), lease_seconds=LEASE_SECONDS)
    print(report(result)[0])

    # Both replicas drove rollouts, each rollout held by exactly one of them.
    assert set(result.held_before_kill) == {result.victim, result.survivor}
    held = [r for rollouts in result.held_before_kill.values() for r in rollouts]
    assert len(held) == len(set(held)) == result.rollouts
    # The survivor took over every rollout of the dead replica, once, and none of its own.
    orphans = set(result.held_before_kill[result.victim])
    assert set(result.takeover_seconds) == orphans
    for rollout_id, events in result.takeovers.items():
        expected = 1 if rollout_id in orphans else 0
        assert len(events) == expected, (rollout_id, events)
    # ... within about one lease period of the kill (generous: CI machines are slow).
    for seconds in result.takeover_seconds.values():
        assert 0 < seconds <= LEASE_SECONDS + 10
    # Every rollout finished as it would have with one guard.
    assert set(result.states.values()) == {"promoted"}
    assert set(result.images.values()) == {GOOD}
    # Each alert (to the log receiver) was sent by one replica or the other, never by both: at
    # most once per claim (a retry only if its sender died mid-send).
    assert result.alerts
    for event_id, (status, attempts, sends) in result.alerts.items():
        assert status == "sent" and 1 <= sends <= attempts, (event_id, attempts, sends)
