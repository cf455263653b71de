"""Hand-offs that arrive together share one transaction, and each is answered exactly as a lone
`Store.submit` would answer it: created, replayed, refused or failed on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import guard.store
from guard.audit import AuditAction
from guard.db import insert_rows
from guard.handoff import Handoffs
from guard.models import RolloutRequest
from guard.store import Conflict, Store, Submission, Submitted

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def submission(deployment: str, key: str | None = None, **extra: Any) -> Submission:
    request = RolloutRequest(
        namespace="shop", deployment=deployment, images={"app": f"registry/app:{deployment}"}
    )
    return Submission(request, key, NOW, **({"actor": "ci"} | extra))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def counting_transactions(store: Store) -> list[int]:
    """How many submissions each `submit_many` call took."""
    calls: list[int] = []
    submit_many = store.submit_many

    def counted(submissions: Any) -> list[Submitted | Exception]:
        calls.append(len(submissions))
        return submit_many(submissions)

    store.submit_many = counted  # type: ignore[method-assign]
    return calls


def hand_off(store: Store, *submissions: Submission) -> list[Submitted | BaseException]:
    handoffs = Handoffs(store)

    async def burst() -> list[Submitted | BaseException]:
        return await asyncio.gather(
            *(handoffs.submit(s) for s in submissions), return_exceptions=True
        )

    return asyncio.run(burst())


def test_a_burst_of_hand_offs_on_sqlite_is_one_transaction(store: Store, db_url: str) -> None:
    transactions = counting_transactions(store)

    answers = hand_off(store, *(submission(f"svc-{i}", f"key-{i}") for i in range(5)))

    assert all(isinstance(a, tuple) and a[1] for a in answers)  # each created
    assert len({a[0].id for a in answers if isinstance(a, tuple)}) == 5
    # On PostgreSQL each is its own transaction: batches of two replicas could deadlock.
    assert transactions == ([5] if db_url.startswith("sqlite") else [1] * 5)
    assert {r.request.deployment for r in store.list_rollouts()} == {f"svc-{i}" for i in range(5)}


def test_each_hand_off_in_a_group_is_answered_as_if_alone(store: Store, db_url: str) -> None:
    transactions = counting_transactions(store)

    first, replay, busy, other = hand_off(
        store,
        submission("checkout", "key-1"),
        submission("checkout", "key-1"),  # the same request again: the same rollout
        submission("checkout", "key-2"),  # a second rollout of a busy Deployment
        submission("cart", "key-3"),
    )

    assert isinstance(first, tuple) and isinstance(replay, tuple) and isinstance(other, tuple)
    assert first[1] and not replay[1] and other[1]
    assert replay[0].id == first[0].id
    assert isinstance(busy, Conflict) and first[0].id in str(busy)
    assert sorted(r.request.deployment for r in store.list_rollouts()) == ["cart", "checkout"]
    # the refusal stayed in the group's one transaction: nothing was tried again alone
    assert transactions == ([4] if db_url.startswith("sqlite") else [1] * 4)


def test_an_unexpected_error_fails_only_its_own_hand_off(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit = store._submit

    def failing_for_cart(session: Any, s: Submission, held: Any) -> Submitted:
        if s.request.deployment == "cart":
            raise RuntimeError("disk full")
        return submit(session, s, held)

    monkeypatch.setattr(store, "_submit", failing_for_cart)

    checkout, cart, search = hand_off(
        store, submission("checkout"), submission("cart"), submission("search")
    )

    assert isinstance(checkout, tuple) and isinstance(search, tuple)
    assert isinstance(cart, RuntimeError)
    assert sorted(r.request.deployment for r in store.list_rollouts()) == ["checkout", "search"]


def test_on_sqlite_a_hand_off_is_leased_to_the_guard_that_took_it(
    store: Store, db_url: str
) -> None:
    (answer,) = hand_off(store, submission("checkout", leased_to="replica-a", lease_seconds=15))
    assert isinstance(answer, tuple)
    view = answer[0]

    if not db_url.startswith("sqlite"):  # replicas share new rollouts at their next ticks
        assert view.details["lease"] is None
        return
    assert view.details["lease"] == {
        "replica": "replica-a",
        "expires_at": "2026-12-01T12:00:15+00:00",
        "fencing_token": 1,
    }
    leases = store.lease("replica-a", 15, NOW)
    assert leases.fencing_tokens == {view.id: 1}  # held already: no takeover, same token
    assert [e["message"] for e in store.get(view.id).details["history"]] == ["submitted"]


def test_a_group_inserts_its_new_rows_once_per_table(
    store: Store, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[tuple[str, int]] = []

    def counted(session: Any, model: Any, rows: list[dict[str, Any]]) -> None:
        inserts.append((model.__tablename__, len(rows)))
        insert_rows(session, model, rows)

    monkeypatch.setattr(guard.store, "insert_rows", counted)

    answers = hand_off(store, *(submission(f"svc-{i}", f"key-{i}") for i in range(10)))

    assert all(isinstance(a, tuple) and a[1] for a in answers)
    # rollouts, their events, their audit entries (each submission has an actor); on
    # PostgreSQL each hand-off is a group of its own
    tables = ["rollouts", "events", "audit_log"]
    if db_url.startswith("sqlite"):
        assert inserts == [(table, 10) for table in tables]
    else:
        assert inserts == [(table, 1) for table in tables] * 10
    assert len(store.audit_entries()) == 10
    assert len(store.list_rollouts()) == 10


def test_a_hand_off_superseding_one_of_its_own_group_sees_it(store: Store) -> None:
    first, second = hand_off(
        store,
        submission("checkout", "key-1", actor="ci"),
        Submission(
            RolloutRequest(
                namespace="shop",
                deployment="checkout",
                images={"app": "registry/app:2"},
                supersede=True,
            ),
            "key-2",
            NOW,
            actor="ci",
        ),
    )

    assert isinstance(first, tuple) and isinstance(second, tuple)
    superseded = store.get(first[0].id)
    assert superseded.pending_commands == ["abort"]
    submitted = {e.target for e in store.audit_entries(action=AuditAction.SUBMIT)}
    assert submitted == {first[0].id, second[0].id}
