"""Store on a real SQLite file and a real PostgreSQL database: idempotent submission, atomic
transitions, durability."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from guard.db import engine_url
from guard.models import (
    ControlCommand,
    Decision,
    Evidence,
    RolloutRequest,
    RolloutState,
    Severity,
    Verdict,
)
from guard.sim.postgres import PostgresServer
from guard.store import Applied, Conflict, Fence, LeaseLost, NotFound, Store
from strategies.base import Action, Transition

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
IMAGE = "registry.example.com/shop/checkout:1.4.2"


def request(
    deployment: str = "checkout", namespace: str = "shop", **extra: object
) -> RolloutRequest:
    return RolloutRequest(
        namespace=namespace,
        deployment=deployment,
        images={deployment.split(".")[0]: IMAGE},
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


SET_IMAGES = Action(
    "set_images",
    {"namespace": "shop", "name": "checkout", "images": {"checkout": IMAGE}, "rollout_id": "x"},
)


def decision(verdict: Verdict = Verdict.HOLD, at: datetime = T0) -> Decision:
    return Decision(
        at=at,
        verdict=verdict,
        severity=Severity.HIGH,
        summary="high: error rate 3.00% > 2.00% over 600 requests",
        action="none",
        step="analysing",
        evidence=[
            Evidence(
                metric="error_rate",
                query="q",
                value=0.03,
                threshold=0.02,
                sample_count=600,
                window_seconds=30,
                severity=Severity.HIGH,
            )
        ],
    )


# --- submit ---------------------------------------------------------------------------------


def test_submit_creates_a_pending_rollout(store: Store) -> None:
    view, created = store.submit(request(), idempotency_key="k1", now=T0)
    assert created is True
    assert view.state is RolloutState.PENDING
    assert view.request == request()
    assert view.timestamps.submitted_at == T0
    assert view.timestamps.started_at is None
    assert view.decisions == []
    assert store.get(view.id).id == view.id
    assert [a.id for a in store.active()] == [view.id]


def test_same_key_and_same_request_returns_the_same_rollout(store: Store) -> None:
    first, created_first = store.submit(request(), idempotency_key="k1", now=T0)
    second, created_second = store.submit(
        request(), idempotency_key="k1", now=T0 + timedelta(seconds=5)
    )
    assert created_first is True
    assert created_second is False
    assert second.id == first.id
    assert second.timestamps.submitted_at == T0
    assert len(store.list_rollouts()) == 1


def test_same_key_with_a_different_request_is_a_conflict(store: Store) -> None:
    first, _ = store.submit(request(), idempotency_key="k1", now=T0)
    other = RolloutRequest(
        namespace="shop", deployment="checkout", images={"checkout": IMAGE + "-rc1"}
    )
    with pytest.raises(Conflict, match="different request") as info:
        store.submit(other, idempotency_key="k1", now=T0)
    assert first.id in str(info.value)
    assert len(store.list_rollouts()) == 1


def test_second_active_rollout_of_the_same_deployment_is_a_conflict(store: Store) -> None:
    first, _ = store.submit(request(), idempotency_key="k1", now=T0)
    with pytest.raises(Conflict, match="still pending") as info:
        store.submit(request(commit_sha="abcdef1"), idempotency_key="k2", now=T0)
    assert first.id in str(info.value)
    # Another deployment, or the same name in another namespace, is fine.
    store.submit(request("payments"), idempotency_key="k3", now=T0)
    store.submit(request(namespace="staging"), idempotency_key=None, now=T0)
    assert len(store.list_rollouts()) == 3


def test_a_new_rollout_is_accepted_once_the_previous_one_ended(store: Store) -> None:
    first, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        first.id,
        Transition(state=RolloutState.PROMOTED, step="promoted", strategy_state={}),
        analysed_at=None,
        now=T0,
    )
    second, created = store.submit(request(), idempotency_key=None, now=T0)
    assert created is True
    assert second.id != first.id


# --- apply ----------------------------------------------------------------------------------


def test_apply_stores_the_whole_transition(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.command(view.id, ControlCommand.PAUSE)
    store.command(view.id, ControlCommand.PROMOTE)
    t1 = T0 + timedelta(seconds=10)
    store.apply(
        view.id,
        Transition(
            state=RolloutState.PROGRESSING,
            step="updating",
            strategy_state={"stable_revision": 3, "stable_hash": "6b7c8d9f5"},
            actions=[SET_IMAGES],
            decision=decision(at=t1),
            timestamps={"started_at": t1},
            message="updating shop/checkout from revision 3",
            consumed_commands=[ControlCommand.PAUSE],
        ),
        analysed_at=t1,
        now=t1,
    )
    stored = store.get(view.id)
    assert stored.state is RolloutState.PROGRESSING
    assert stored.step == "updating"
    assert stored.message == "updating shop/checkout from revision 3"
    assert stored.timestamps.started_at == t1
    assert stored.pending_commands == [ControlCommand.PROMOTE]
    assert stored.decisions == [decision(at=t1)]
    assert stored.details["stable_revision"] == 3
    assert stored.details["stable_hash"] == "6b7c8d9f5"
    history = [(h["state"], h["message"]) for h in stored.details["history"]]
    assert [state for state, _ in history] == ["pending", "pending", "pending", "progressing"]
    assert history[1][1] == "pause requested by an operator"
    [active] = store.active()
    assert active.pending_actions == [SET_IMAGES]
    assert active.strategy_state == {"stable_revision": 3, "stable_hash": "6b7c8d9f5"}
    assert active.last_analysis_at == t1
    assert active.commands == [ControlCommand.PROMOTE]


def test_a_rollout_reads_back_its_decisions_and_history_in_order(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    moments = [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    states = [RolloutState.PROGRESSING, RolloutState.PAUSED, RolloutState.PROGRESSING]
    for at, state in zip(moments, states, strict=True):
        moved = Transition(state, state.value, {}, decision=decision(at=at), message=state.value)
        store.apply(view.id, moved, analysed_at=at, now=at)
    stored = store.get(view.id)
    assert [d.at for d in stored.decisions] == moments
    history = [(h["at"], h["state"]) for h in stored.details["history"]]
    expected = [(at.isoformat(), state.value) for at, state in zip(moments, states, strict=True)]
    assert history == [(T0.isoformat(), "pending"), *expected]


def test_timestamps_are_set_only_once(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    first_bad = T0 + timedelta(seconds=20)
    later_bad = T0 + timedelta(seconds=30)
    for at in (first_bad, later_bad):
        store.apply(
            view.id,
            Transition(
                state=RolloutState.PROGRESSING,
                step="analysing",
                strategy_state={},
                decision=decision(at=at),
                timestamps={"first_bad_sample_at": at, "started_at": at},
            ),
            analysed_at=at,
            now=at,
        )
    stored = store.get(view.id)
    assert stored.timestamps.first_bad_sample_at == first_bad
    assert stored.timestamps.started_at == first_bad
    assert len(stored.decisions) == 2
    assert store.active()[0].last_analysis_at == later_bad


def test_a_transition_without_a_message_keeps_the_previous_one(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        view.id,
        Transition(RolloutState.PROGRESSING, "updating", {}, message="first"),
        analysed_at=None,
        now=T0,
    )
    store.apply(
        view.id, Transition(RolloutState.PROGRESSING, "analysing", {}), analysed_at=None, now=T0
    )
    stored = store.get(view.id)
    assert stored.message == "first"
    assert stored.step == "analysing"
    assert stored.decisions == []


def test_actions_done_clears_the_pending_actions(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        view.id,
        Transition(RolloutState.PROGRESSING, "updating", {}, actions=[SET_IMAGES]),
        analysed_at=None,
        now=T0,
    )
    assert store.active()[0].pending_actions == [SET_IMAGES]
    store.actions_done(view.id)
    assert store.active()[0].pending_actions == []
    assert store.active()[0].state is RolloutState.PROGRESSING


def test_apply_to_an_unknown_rollout_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.apply("nope", Transition(RolloutState.PROGRESSING, "x", {}), analysed_at=None, now=T0)
    with pytest.raises(NotFound):
        store.get("nope")


# --- commands -------------------------------------------------------------------------------


def test_commands_are_queued_once(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.command(view.id, ControlCommand.PAUSE)
    queued = store.command(view.id, ControlCommand.PAUSE)
    assert queued.pending_commands == [ControlCommand.PAUSE]


def test_a_command_to_a_finished_rollout_is_a_conflict(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        view.id,
        Transition(RolloutState.ROLLED_BACK, "rollback verified", {}, outcome_reason="analysis"),
        analysed_at=None,
        now=T0,
    )
    with pytest.raises(Conflict, match="already ended"):
        store.command(view.id, ControlCommand.ABORT)
    assert store.get(view.id).pending_commands == []
    assert store.get(view.id).outcome_reason == "analysis"
    assert store.active() == []


def test_a_command_to_an_unknown_rollout_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.command("nope", ControlCommand.ABORT)


# --- durability -----------------------------------------------------------------------------


def test_everything_survives_closing_and_reopening(db_url: str) -> None:
    first = Store(db_url)
    view, _ = first.submit(request(), idempotency_key="k1", now=T0)
    t1 = T0 + timedelta(seconds=10)
    first.apply(
        view.id,
        Transition(
            RolloutState.PROGRESSING,
            "updating",
            {"stable_revision": 3},
            actions=[SET_IMAGES],
            decision=decision(at=t1),
            timestamps={"started_at": t1},
        ),
        analysed_at=t1,
        now=t1,
    )
    first.command(view.id, ControlCommand.ABORT)
    first.close()

    reopened = Store(db_url)
    try:
        stored = reopened.get(view.id)
        assert stored.state is RolloutState.PROGRESSING
        assert stored.decisions == [decision(at=t1)]
        assert stored.timestamps.submitted_at == T0
        assert stored.timestamps.started_at == t1
        assert stored.timestamps.started_at.tzinfo is not None
        [active] = reopened.active()
        assert active.id == view.id
        assert active.pending_actions == [SET_IMAGES]
        assert active.commands == [ControlCommand.ABORT]
        assert active.strategy_state == {"stable_revision": 3}
        # The idempotency key is remembered too.
        again, created = reopened.submit(request(), idempotency_key="k1", now=t1)
        assert (again.id, created) == (view.id, False)
    finally:
        reopened.close()


# --- listing --------------------------------------------------------------------------------


def test_list_filters_by_state_namespace_and_deployment(store: Store) -> None:
    a, _ = store.submit(request("checkout"), idempotency_key=None, now=T0)
    b, _ = store.submit(request("payments"), idempotency_key=None, now=T0 + timedelta(seconds=1))
    c, _ = store.submit(
        request("checkout", namespace="staging"),
        idempotency_key=None,
        now=T0 + timedelta(seconds=2),
    )
    store.apply(b.id, Transition(RolloutState.PROMOTED, "promoted", {}), analysed_at=None, now=T0)

    def ids(**filters: str) -> list[str]:
        return [r.id for r in store.list_rollouts(**filters)]  # type: ignore[arg-type]

    assert ids() == [c.id, b.id, a.id]  # newest first
    assert ids(state="promoted") == [b.id]
    assert ids(state="pending") == [c.id, a.id]
    assert ids(namespace="shop") == [b.id, a.id]
    assert ids(deployment="checkout") == [c.id, a.id]
    assert ids(namespace="shop", deployment="checkout") == [a.id]
    assert ids(namespace="nowhere") == []
    assert [r.id for r in store.list_rollouts(limit=1)] == [c.id]


def test_concurrent_submissions_start_one_rollout_per_deployment(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def attempt(index: int) -> str:
        key = "same-key" if index % 2 else None
        try:
            view, _ = store.submit(request(), idempotency_key=key, now=T0)
        except Conflict:
            return "conflict"
        return view.id

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(40)))
    started = {o for o in outcomes if o != "conflict"}
    assert len(started) == 1
    assert len(store.list_rollouts()) == 1


def test_concurrent_commands_are_all_kept(store: Store) -> None:
    from concurrent.futures import ThreadPoolExecutor

    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    commands = [ControlCommand.PAUSE, ControlCommand.ABORT, ControlCommand.PROMOTE] * 5
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda c: store.command(view.id, c), commands))
    assert set(store.get(view.id).pending_commands) == set(commands)


def test_a_command_records_who_sent_it_and_why(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.command(view.id, ControlCommand.PROMOTE, note="alice: skip the soak", now=T0)

    active = store.active()[0]
    assert active.command_notes == {"promote": "alice: skip the soak"}
    messages = [h["message"] for h in store.get(view.id).details["history"]]
    assert "promote requested by alice: skip the soak" in messages


def test_supersede_queues_an_abort_on_the_rollout_in_flight(store: Store) -> None:
    first, _ = store.submit(request(), idempotency_key=None, now=T0)
    second, created = store.submit(
        request().model_copy(update={"supersede": True}), idempotency_key=None, now=T0
    )

    assert created and second.id != first.id
    superseded = store.get(first.id)
    assert superseded.pending_commands == [ControlCommand.ABORT]
    assert any(second.id in h["message"] for h in superseded.details["history"])


def test_apply_many_commits_every_transition_together_or_none(store: Store) -> None:
    a, _ = store.submit(request(deployment="a"), idempotency_key=None, now=T0)
    b, _ = store.submit(request(deployment="b"), idempotency_key=None, now=T0)
    moved = Transition(RolloutState.PROGRESSING, "analysing", {"k": 1}, decision=decision())
    with pytest.raises(NotFound):
        store.apply_many([Applied(a.id, moved, T0), Applied("nope", moved, T0)], now=T0)
    assert {r.state for r in store.active()} == {RolloutState.PENDING}
    store.apply_many([Applied(a.id, moved, T0), Applied(b.id, moved, T0)], now=T0)
    for view in (store.get(a.id), store.get(b.id)):
        assert view.state is RolloutState.PROGRESSING
        assert len(view.decisions) == 1
        assert [h["state"] for h in view.details["history"]] == ["pending", "progressing"]
    assert all(r.last_analysis_at == T0 for r in store.active())


def test_apply_many_writes_each_rollouts_own_columns(store: Store) -> None:
    a, _ = store.submit(request(deployment="a"), idempotency_key=None, now=T0)
    b, _ = store.submit(request(deployment="b"), idempotency_key=None, now=T0)
    finished = Transition(
        RolloutState.ROLLED_BACK,
        "rollback verified",
        {},
        message="error rate 8% > 5%",
        outcome_reason="analysis",
        timestamps={"finished_at": T0},
    )
    analysing = Transition(RolloutState.PROGRESSING, "analysing", {"k": 1})
    store.apply_many([Applied(a.id, finished, None), Applied(b.id, analysing, T0)], now=T0)
    rolled_back, progressing = store.get(a.id), store.get(b.id)
    assert (rolled_back.state, rolled_back.message) == (RolloutState.ROLLED_BACK, finished.message)
    assert rolled_back.outcome_reason == "analysis"
    assert rolled_back.timestamps.finished_at == T0
    assert (progressing.state, progressing.message) == (RolloutState.PROGRESSING, b.message)
    assert (progressing.outcome_reason, progressing.timestamps.finished_at) == (None, None)
    assert [(r.id, r.last_analysis_at) for r in store.active()] == [(b.id, T0)]


# --- leases (several replicas) ----------------------------------------------------------------


@pytest.fixture
def shared(postgres: PostgresServer) -> Iterator[Store]:
    """A store several replicas share: PostgreSQL only (SQLite serves one replica)."""
    s = Store(postgres.create_database())
    yield s
    s.close()


def test_a_claim_leases_each_rollout_to_one_replica(shared: Store) -> None:
    a, _ = shared.submit(request("checkout"), idempotency_key=None, now=T0)
    b, _ = shared.submit(request("payments"), idempotency_key=None, now=T0)

    first = shared.claim("r1", 15, T0)
    second = shared.claim("r2", 15, T0)

    assert {r.id for r in first} == {a.id, b.id}  # alone so far: r1 takes everything
    assert second == []
    assert [r.fence for r in first] == [Fence("r1", 1), Fence("r1", 1)]
    renewed = shared.claim("r1", 15, T0 + timedelta(seconds=5))
    assert [r.fence for r in renewed] == [Fence("r1", 1), Fence("r1", 1)]  # same owner: same token


def test_replicas_share_new_rollouts(shared: Store) -> None:
    shared.claim("r2", 15, T0)  # r2 is alive, with nothing to do yet
    for name in ("a", "b", "c", "d"):
        shared.submit(request(name), idempotency_key=None, now=T0)

    first = shared.claim("r1", 15, T0 + timedelta(seconds=1))
    second = shared.claim("r2", 15, T0 + timedelta(seconds=1))

    assert len(first) == 2 and len(second) == 2
    assert {r.id for r in first}.isdisjoint({r.id for r in second})


def test_an_expired_lease_is_taken_over_with_a_higher_token(shared: Store) -> None:
    view, _ = shared.submit(request(), idempotency_key=None, now=T0)
    [held] = shared.claim("r1", 15, T0)
    assert shared.claim("r2", 15, T0 + timedelta(seconds=14)) == []

    [taken] = shared.claim("r2", 15, T0 + timedelta(seconds=16))

    assert taken.id == view.id and taken.fence == Fence("r2", 2)
    assert held.fence is not None
    moved = Transition(RolloutState.PROGRESSING, "updating", {}, actions=[SET_IMAGES])
    with pytest.raises(LeaseLost):  # r1 comes back from a stall: refused, nothing written
        shared.apply(view.id, moved, analysed_at=None, now=T0, fence=held.fence)
    with pytest.raises(LeaseLost):
        shared.actions_done(view.id, held.fence)
    with pytest.raises(LeaseLost):
        shared.renew(view.id, held.fence, 15, T0 + timedelta(seconds=17))
    assert shared.get(view.id).state is RolloutState.PENDING
    shared.apply(view.id, moved, analysed_at=None, now=T0, fence=taken.fence)
    assert shared.get(view.id).state is RolloutState.PROGRESSING


def test_an_expired_lease_being_taken_over_is_not_handed_back(shared: Store) -> None:
    view, _ = shared.submit(request(), idempotency_key=None, now=T0)
    shared.claim("r1", 15, T0)
    with shared.engine.connect() as other_claim:  # r2's claim holds the row, not yet committed
        other_claim.execute(
            text("SELECT id FROM rollouts WHERE id = :id FOR UPDATE"), {"id": view.id}
        )
        assert shared.claim("r1", 15, T0 + timedelta(seconds=16)) == []
    [renewed] = shared.claim("r1", 15, T0 + timedelta(seconds=17))  # the row is free again
    assert renewed.fence == Fence("r1", 1)


def test_renewing_keeps_the_lease_past_its_first_expiry(shared: Store) -> None:
    shared.submit(request(), idempotency_key=None, now=T0)
    [held] = shared.claim("r1", 15, T0)
    assert held.fence is not None
    shared.renew(held.id, held.fence, 15, T0 + timedelta(seconds=10))
    assert shared.claim("r2", 15, T0 + timedelta(seconds=20)) == []


def test_a_tick_renews_a_held_lease_once_half_of_it_has_run(shared: Store) -> None:
    view, _ = shared.submit(request(), idempotency_key=None, now=T0)

    def expires() -> str:
        lease = shared.get(view.id).details["lease"]
        assert lease is not None
        return str(lease["expires_at"])

    shared.claim("r1", 15, T0)
    first = expires()
    [still_held] = shared.claim("r1", 15, T0 + timedelta(seconds=7))  # 8 s of 15 left
    assert expires() == first  # not rewritten, yet held with the token it was leased with
    assert still_held.fence == Fence("r1", 1)
    shared.claim("r1", 15, T0 + timedelta(seconds=8))
    assert expires() == (T0 + timedelta(seconds=23)).isoformat()
    for second in range(9, 30):  # a live replica ticking every second never loses it
        shared.claim("r1", 15, T0 + timedelta(seconds=second))
        assert shared.claim("r2", 15, T0 + timedelta(seconds=second)) == []


def test_released_leases_are_taken_at_once(store: Store) -> None:
    store.submit(request(), idempotency_key=None, now=T0)
    store.claim("r1", 15, T0)
    assert store.release("r1") == 1
    [taken] = store.claim("r2", 15, T0 + timedelta(seconds=1))
    assert taken.fence == Fence("r2", 2)


def test_finished_rollouts_are_not_claimed(store: Store) -> None:
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        view.id, Transition(RolloutState.PROMOTED, "promoted", {}), analysed_at=None, now=T0
    )
    assert store.claim("r1", 15, T0) == []


def test_a_tick_finds_unfinished_rollouts_without_reading_every_finished_one(
    tmp_path: Path,
) -> None:
    """The store keeps every rollout ever run; a tick must not scan them all to find the few
    still running (it did, twice a tick, with a NOT IN on the terminal states)."""
    store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    statements: list[str] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM rollouts" in statement:
            statements.append(statement)

    [claimed] = store.claim("r1", 15, T0)
    store.active()
    event.remove(store.engine, "before_cursor_execute", record)

    assert claimed.id == view.id and statements
    with store.engine.connect() as connection:
        for statement in statements:
            values = ["x"] * statement.count("?")
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", tuple(values))
            steps = [str(row[3]) for row in plan]
            assert not [s for s in steps if s.startswith("SCAN rollouts")], (statement, steps)
    store.close()


def test_a_superseded_rollout_blocks_its_successor_whoever_holds_it(shared: Store) -> None:
    first, _ = shared.submit(request(), idempotency_key=None, now=T0)
    shared.claim("r1", 15, T0)
    shared.claim("r2", 15, T0)
    second, _ = shared.submit(
        request().model_copy(update={"supersede": True}),
        idempotency_key=None,
        now=T0 + timedelta(seconds=1),
    )
    [successor] = shared.claim("r2", 15, T0 + timedelta(seconds=1))
    assert successor.id == second.id
    assert successor.blocked_by == first.id


def test_a_finished_rollout_blocks_no_later_one(store: Store) -> None:
    first, _ = store.submit(request(), idempotency_key=None, now=T0)
    store.apply(
        first.id, Transition(RolloutState.PROMOTED, "promoted", {}), analysed_at=None, now=T0
    )
    second, _ = store.submit(request(), idempotency_key=None, now=T0 + timedelta(seconds=1))
    [pending] = store.claim("r1", 15, T0 + timedelta(seconds=1))
    assert (pending.id, pending.blocked_by) == (second.id, None)


def test_concurrent_claims_never_lease_a_rollout_twice(postgres: PostgresServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = postgres.create_database()
    replicas = [Store(url) for _ in range(3)]
    for index in range(12):
        replicas[0].submit(request(f"app{index}"), idempotency_key=None, now=T0)
    try:
        with ThreadPoolExecutor(3) as pool:
            claims = list(
                pool.map(lambda i: replicas[i].claim(f"r{i}", 15, T0), range(len(replicas)))
            )
    finally:
        for replica in replicas:
            replica.close()
    ids = [r.id for claim in claims for r in claim]
    assert len(ids) == len(set(ids))


def test_a_store_from_before_leases_gains_their_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        for column in ("lease_owner", "lease_expires_at", "fencing_token"):
            conn.execute(f"ALTER TABLE rollouts DROP COLUMN {column}")
    store = Store(f"sqlite:///{path}")
    try:
        store.submit(request(), idempotency_key=None, now=T0)
        assert store.claim("r1", 15, T0)[0].fence == Fence("r1", 1)
    finally:
        store.close()


def test_a_submission_finds_its_deployment_by_index_in_an_older_store_too(
    tmp_path: Path,
) -> None:
    """The busy-Deployment check must not read every rollout of the namespace."""
    import sqlite3

    path = tmp_path / "old.db"
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP INDEX ix_rollouts_namespace_deployment")
    Store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM rollouts WHERE namespace = 'shop' "
            "AND deployment = 'checkout' AND state NOT IN ('promoted', 'refused')"
        ).fetchall()
    assert "ix_rollouts_namespace_deployment (namespace=? AND deployment=?)" in str(plan)


def test_on_sqlite_a_restarted_guard_resumes_at_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    try:
        view, _ = store.submit(request(), idempotency_key=None, now=T0)
        store.claim("before-restart", 15, T0)
        [resumed] = store.claim("after-restart", 15, T0 + timedelta(seconds=1))
        assert resumed.id == view.id and resumed.fence == Fence("after-restart", 2)
    finally:
        store.close()


def test_postgresql_urls_use_the_psycopg_driver() -> None:
    assert engine_url("postgresql://u@db:5432/guard") == "postgresql+psycopg://u@db:5432/guard"
    assert engine_url("postgres://u@db/guard") == "postgresql+psycopg://u@db/guard"
    assert engine_url("sqlite:///x.db") == "sqlite:///x.db"


def test_infinities_in_strategy_state_survive_the_round_trip(store: Store) -> None:
    """A histogram's +Inf bucket: PostgreSQL's JSON type refuses the bare token Infinity."""
    view, _ = store.submit(request(), idempotency_key=None, now=T0)
    buckets = [[1.0, 3.0], [float("inf"), 5.0]]
    state = {"buckets": buckets, "low": float("-inf")}
    store.apply(view.id, Transition(RolloutState.PROGRESSING, "x", state), analysed_at=None, now=T0)
    [active] = store.active()
    assert active.strategy_state == state


def test_a_hand_off_leased_at_submit_keeps_nothing_in_the_submitting_process(
    tmp_path: Path,
) -> None:
    """The API's process submits and never leases, so a request cached there for the engine's
    tick would never be pruned: one entry per hand-off, for the life of the process."""
    api_store = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    api_store.submit(
        request(), idempotency_key=None, now=T0, leased_to="engine-1", lease_seconds=30
    )

    assert api_store._requests == {}
    api_store.close()


def test_a_write_holds_sqlite_s_write_lock_from_its_first_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against writers outside the guard's writer lock too: a hand-off's "is this Deployment
    busy?" read and its insert must see the same database."""
    path = tmp_path / "guard.db"
    store = Store(f"sqlite:///{path}")
    outsider_could_write: list[bool] = []
    submit = Store._submit

    def submit_while_an_outsider_tries(self: Store, *args: Any) -> Any:
        outsider = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            outsider.execute("BEGIN IMMEDIATE")
            outsider.execute("ROLLBACK")
            outsider_could_write.append(True)
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc)
            outsider_could_write.append(False)
        finally:
            outsider.close()
        return submit(self, *args)

    monkeypatch.setattr(Store, "_submit", submit_while_an_outsider_tries)
    _, created = store.submit(request(), idempotency_key=None, now=T0)
    assert created and outsider_could_write == [False]
    store.close()
