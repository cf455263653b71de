"""The outbox on SQLite and on PostgreSQL: written with the transition, claimed once, final when
sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.base import AlertEvent
from alerts.events import Change, derive_events
from guard.models import RolloutRequest, RolloutState
from guard.outbox import Outbox, RoutedAlert
from guard.store import NotFound, Store
from strategies.base import Transition

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
REQUEST = RolloutRequest(
    namespace="shop", deployment="checkout", images={"checkout": "registry/checkout:1.4.3"}
)
ROLLING_BACK = Transition(
    state=RolloutState.ROLLING_BACK, step="rolling back", strategy_state={}, message="bad"
)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    yield s
    s.close()


def _event(rollout_id: str) -> AlertEvent:
    change = Change(
        rollout_id=rollout_id,
        request=REQUEST,
        previous_state=RolloutState.PROGRESSING,
        state=RolloutState.ROLLING_BACK,
        step="rolling back",
        message="bad",
        decision=None,
        strategy_state={},
        now=T0,
    )
    [event] = derive_events(change)
    return event


def _rolled_back(store: Store, receivers: tuple[str, ...] = ("pager", "chat")) -> AlertEvent:
    view, _ = store.submit(REQUEST, idempotency_key=None, now=T0)
    event = _event(view.id)
    store.apply(
        view.id,
        ROLLING_BACK,
        analysed_at=None,
        now=T0,
        alerts=[RoutedAlert(event, receivers)],
        alert_expiry_seconds=600,
    )
    return event


def _claim(outbox: Outbox, token: str, seconds: float = 0, lease: float = 30) -> list[str]:
    now = T0 + timedelta(seconds=seconds)
    claimed = outbox.claim(now=now, limit=10, lease_seconds=lease, token=token)
    return [c.dedup_key for c in claimed]


def test_alerts_are_written_with_the_transition_one_delivery_per_receiver(store: Store) -> None:
    event = _rolled_back(store)
    views = store.outbox.list()
    assert sorted(v.dedup_key for v in views) == [f"{event.id}/chat", f"{event.id}/pager"]
    assert {v.status for v in views} == {"pending"}
    assert store.active()[0].alert_history == [event]


def test_a_rollouts_alert_history_is_oldest_first(store: Store) -> None:
    first = _rolled_back(store)
    later = [first.model_copy(update={"id": f"{first.id}-{n}"}) for n in (2, 3)]
    for event in later:
        store.apply(
            first.rollout_id,
            ROLLING_BACK,
            analysed_at=None,
            now=T0,
            alerts=[RoutedAlert(event, ("pager",))],
            alert_expiry_seconds=600,
        )
    assert store.active()[0].alert_history == [first, *later]


def test_a_failed_transition_writes_no_alert(store: Store) -> None:
    with pytest.raises(NotFound):
        store.apply(
            "missing", ROLLING_BACK, analysed_at=None, now=T0,
            alerts=[RoutedAlert(_event("missing"), ["pager"])],
        )  # fmt: skip
    assert store.outbox.list() == []


def test_an_event_recorded_twice_is_kept_once(store: Store) -> None:
    event = _rolled_back(store, ("pager",))
    store.apply(
        event.rollout_id, ROLLING_BACK, analysed_at=None, now=T0,
        alerts=[RoutedAlert(event, ["pager"])],
    )  # fmt: skip
    assert len(store.outbox.list()) == 1


def test_two_senders_never_claim_the_same_delivery(store: Store) -> None:
    _rolled_back(store)
    first, second = _claim(store.outbox, "a"), _claim(store.outbox, "b")
    assert len(first) == 2 and second == []


def test_replicas_claiming_at_once_take_each_delivery_once(store: Store, db_url: str) -> None:
    """Two guard processes (two stores, own connections) racing over forty deliveries."""
    from concurrent.futures import ThreadPoolExecutor

    for index in range(20):
        request = REQUEST.model_copy(update={"deployment": f"app{index}"})
        view, _ = store.submit(request, idempotency_key=None, now=T0)
        routed = [RoutedAlert(_event(view.id), ("pager", "chat"))]
        store.apply(view.id, ROLLING_BACK, analysed_at=None, now=T0, alerts=routed)
    replicas = [Store(db_url), Store(db_url)]
    try:

        def drain(index: int) -> list[str]:
            outbox, taken = replicas[index % 2].outbox, []
            while batch := outbox.claim(now=T0, limit=3, lease_seconds=30, token=f"r{index}"):
                taken += [c.dedup_key for c in batch]
            return taken

        with ThreadPoolExecutor(4) as pool:
            claimed = [key for keys in pool.map(drain, range(4)) for key in keys]
    finally:
        for replica in replicas:
            replica.close()
    assert len(claimed) == 40
    assert len(set(claimed)) == 40


def test_a_sent_delivery_is_final(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    [claimed] = outbox.claim(now=T0, limit=10, lease_seconds=1, token="a")
    assert outbox.mark_sent(claimed, now=T0)
    assert _claim(outbox, "b", seconds=3600) == []
    [view] = outbox.list(status="sent")
    assert view.sent_at == T0 and view.attempts == 1


def test_a_lapsed_claim_is_taken_again_and_the_old_owner_cannot_ack(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    [stale] = outbox.claim(now=T0, limit=10, lease_seconds=5, token="dead")
    assert _claim(outbox, "b", seconds=4) == []
    [fresh] = outbox.claim(now=T0 + timedelta(seconds=6), limit=10, lease_seconds=5, token="b")
    assert fresh.attempts == 2
    assert not outbox.mark_sent(stale, now=T0)
    assert outbox.mark_sent(fresh, now=T0)


def test_retry_waits_for_its_time_and_keeps_the_error(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    [claimed] = outbox.claim(now=T0, limit=10, lease_seconds=5, token="a")
    outbox.mark_retry(claimed, error="HTTP 503: busy", next_attempt_at=T0 + timedelta(seconds=10))
    [view] = outbox.list()
    assert (view.status, view.last_error) == ("pending", "HTTP 503: busy")
    assert _claim(outbox, "b", seconds=9) == []
    assert len(_claim(outbox, "b", seconds=10)) == 1


def test_a_retry_past_the_expiry_fails_the_delivery(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    [claimed] = outbox.claim(now=T0, limit=10, lease_seconds=5, token="a")
    outbox.mark_retry(claimed, error="refused", next_attempt_at=T0 + timedelta(seconds=601))
    [view] = outbox.list()
    assert view.status == "failed"
    assert view.last_error == "expired after 1 attempt(s); last error: refused"


def test_pending_deliveries_expire(store: Store) -> None:
    _rolled_back(store, ("pager",))
    assert store.outbox.expire(now=T0 + timedelta(seconds=600)) == 1
    assert store.outbox.list()[0].status == "failed"


def test_a_lapsed_claim_past_the_expiry_fails_instead_of_being_sent_late(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    outbox.claim(now=T0, limit=10, lease_seconds=5, token="died")
    assert _claim(outbox, "b", seconds=700) == []
    [view] = outbox.list()
    assert view.status == "failed"


def test_permanent_failure(store: Store) -> None:
    _rolled_back(store, ("pager",))
    outbox = store.outbox
    [claimed] = outbox.claim(now=T0, limit=10, lease_seconds=5, token="a")
    assert outbox.mark_failed(claimed, error="HTTP 400: invalid routing key")
    assert _claim(outbox, "b", seconds=3600) == []
    assert outbox.list(status="failed")[0].last_error == "HTTP 400: invalid routing key"
