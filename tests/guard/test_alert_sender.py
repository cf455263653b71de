"""The outbox sender against local HTTP receivers: payload per channel, retries, outages."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.config import AlertsConfig
from alerts.events import Change, derive_events
from alerts.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from guard.alert_sender import AlertSender, backoff_seconds
from guard.models import Decision, RolloutRequest, RolloutState, Severity, Verdict
from guard.outbox import RoutedAlert
from guard.sim.receiver import AlertReceiver
from guard.store import Store
from strategies.base import Transition

T0 = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
ROUTING_KEY = "pd-routing-key-0123456789"
HMAC_KEY = "hmac-key-abcdef"
SLACK_PATH = "/services/T0/B0/slack-secret-path"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'guard.db'}")
    yield s
    s.close()


def _config(receiver: AlertReceiver, **delivery: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "receivers": {
                "chat": {"type": "slack", "url_env": "SLACK_URL"},
                "pager": {
                    "type": "pagerduty",
                    "routing_key_env": "PD_KEY",
                    "url": f"{receiver.url}/pagerduty",
                },
                "hook": {"type": "webhook", "url_env": "HOOK_URL", "hmac_key_env": "HOOK_KEY"},
            },
            "delivery": {"initial_backoff_seconds": 1, "max_backoff_seconds": 8, **delivery},
        }
    )


def _sender(store: Store, receiver: AlertReceiver, clock: Clock, **delivery: Any) -> AlertSender:
    environ = {
        "SLACK_URL": f"{receiver.url}{SLACK_PATH}",
        "PD_KEY": ROUTING_KEY,
        "HOOK_URL": f"{receiver.url}/hook",
        "HOOK_KEY": HMAC_KEY,
    }
    config = _config(receiver, **delivery)
    return AlertSender(store.outbox, config, clock=clock, environ=environ, jitter=lambda: 0.0)


def _rollback(store: Store, config: AlertsConfig, deployment: str = "checkout") -> str:
    request = RolloutRequest(
        namespace="shop", deployment=deployment, images={"checkout": "registry/checkout:1.4.3"}
    )
    view, _ = store.submit(request, idempotency_key=None, now=T0)
    decision = Decision(
        at=T0, verdict=Verdict.ROLLBACK, severity=Severity.CRITICAL, summary="critical: 8%"
    )
    change = Change(
        rollout_id=view.id, request=request, previous_state=RolloutState.PROGRESSING,
        state=RolloutState.ROLLING_BACK, step="rolling back", message="rolling back",
        decision=decision, strategy_state={}, now=T0,
    )  # fmt: skip
    routed = [RoutedAlert(e, config.route(e)) for e in derive_events(change)]
    transition = Transition(state=RolloutState.ROLLING_BACK, step="rolling back", strategy_state={})
    store.apply(view.id, transition, analysed_at=None, now=T0, alerts=routed)
    return view.id


def _by_path(receiver: AlertReceiver) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for request in receiver.requests():
        found.setdefault(request.path, []).append(request)
    return found


def test_each_channel_posts_its_payload_and_the_delivery_is_marked_sent(
    store: Store, receiver: AlertReceiver
) -> None:
    sender = _sender(store, receiver, Clock())
    rollout_id = _rollback(store, sender.config)
    assert asyncio.run(sender.run_once()) == 3

    got = _by_path(receiver)
    assert set(got) == {SLACK_PATH, "/pagerduty", "/hook"}
    assert json.loads(got[SLACK_PATH][0].body)["blocks"][0]["type"] == "header"
    pager = json.loads(got["/pagerduty"][0].body)
    assert (pager["routing_key"], pager["event_action"]) == (ROUTING_KEY, "trigger")
    assert pager["dedup_key"] == f"deploy-guard/{rollout_id}"
    hook = got["/hook"][0]
    headers = {k.lower(): v for k, v in hook.headers.items()}
    assert verify(
        HMAC_KEY, headers[TIMESTAMP_HEADER.lower()], hook.body, headers[SIGNATURE_HEADER.lower()]
    )
    assert headers["idempotency-key"] == f"{rollout_id}/rollback_started/1/hook"
    assert {v.status for v in store.outbox.list()} == {"sent"}


def test_a_receiver_down_then_up_gets_each_alert_exactly_once(
    store: Store, receiver: AlertReceiver
) -> None:
    clock = Clock()
    sender = _sender(store, receiver, clock)
    receiver.stop()
    first = _rollback(store, sender.config, "checkout")
    second = _rollback(store, sender.config, "cart")
    waits = []
    for _ in range(4):
        assert asyncio.run(sender.run_once()) == 6
        pending = store.outbox.list()
        assert {v.status for v in pending} == {"pending"}
        assert all("ConnectError" in (v.last_error or "") for v in pending)
        wait = min(v.next_attempt_at for v in pending if v.next_attempt_at) - clock.now
        waits.append(wait.total_seconds())
        assert asyncio.run(sender.run_once()) == 0  # nothing is due before its backoff
        clock.advance(wait.total_seconds())
    assert waits == [0.5, 1.0, 2.0, 4.0]  # exponential; jitter pinned to its minimum

    receiver.start()
    assert asyncio.run(sender.run_once()) == 6
    clock.advance(3600)
    assert asyncio.run(sender.run_once()) == 0
    keys = [r.headers.get("Idempotency-Key") for r in receiver.requests() if r.path == "/hook"]
    assert sorted(keys) == sorted(f"{r}/rollback_started/1/hook" for r in (first, second))
    assert len(receiver.requests()) == 6
    assert {v.status for v in store.outbox.list()} == {"sent"}
    assert {v.attempts for v in store.outbox.list()} == {5}


def test_a_4xx_is_final_and_a_5xx_is_retried(store: Store, receiver: AlertReceiver) -> None:
    clock = Clock()
    sender = _sender(store, receiver, clock)
    _rollback(store, sender.config)
    receiver.status = 400
    asyncio.run(sender.run_once())
    assert {v.status for v in store.outbox.list()} == {"failed"}
    assert all(v.last_error and v.last_error.startswith("HTTP 400") for v in store.outbox.list())

    _rollback(store, sender.config, "cart")
    receiver.status = 503
    asyncio.run(sender.run_once())
    assert sorted(v.status for v in store.outbox.list()) == ["failed"] * 3 + ["pending"] * 3


def test_errors_never_store_a_secret(store: Store, receiver: AlertReceiver) -> None:
    sender = _sender(store, receiver, Clock())
    _rollback(store, sender.config)
    receiver.status = 500  # the answer echoes the request path, secret included
    asyncio.run(sender.run_once())
    errors = " ".join(v.last_error or "" for v in store.outbox.list())
    assert "HTTP 500" in errors
    assert "***" in errors
    for secret in (SLACK_PATH, ROUTING_KEY, HMAC_KEY):
        assert secret not in errors


def test_a_missing_secret_is_a_retried_error_naming_the_variable(
    store: Store, receiver: AlertReceiver
) -> None:
    sender = _sender(store, receiver, Clock())
    sender.environ = {}
    _rollback(store, sender.config)
    asyncio.run(sender.run_once())
    errors = {v.receiver: v.last_error for v in store.outbox.list()}
    assert (
        errors["chat"] == "secret unavailable: environment variable SLACK_URL is not set or empty"
    )
    assert {v.status for v in store.outbox.list()} == {"pending"}
    assert receiver.requests() == []


def test_a_slow_receiver_does_not_block_the_event_loop(
    store: Store, receiver: AlertReceiver
) -> None:
    sender = _sender(store, receiver, Clock(), timeout_seconds=0.5)
    _rollback(store, sender.config)
    receiver.delay_seconds = 2.0

    async def ticks() -> list[float]:
        stamps = []
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            stamps.append(time.monotonic())
            await asyncio.sleep(0.01)
        return stamps

    async def both() -> list[float]:
        _, stamps = await asyncio.gather(sender.run_once(), ticks())
        return stamps

    stamps = asyncio.run(both())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 0.2
    assert all("ReadTimeout" in (v.last_error or "") for v in store.outbox.list())


def test_backoff_grows_exponentially_to_the_cap_with_jitter() -> None:
    plain = [backoff_seconds(n, initial=1, cap=30, jitter=0.999999) for n in range(1, 8)]
    assert [round(s) for s in plain] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_seconds(3, initial=1, cap=30, jitter=0.0) == 2.0


def test_http_client_logs_never_show_a_secret_url(
    store: Store, receiver: AlertReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    sender = _sender(store, receiver, Clock())
    _rollback(store, sender.config)
    with caplog.at_level(logging.INFO, logger="httpx"):
        asyncio.run(sender.run_once())
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert len(requests) == 3
    assert not any(SLACK_PATH in message for message in requests)
    assert sum("***" in message for message in requests) == 2  # Slack's and the webhook's


def test_two_replicas_sending_at_once_never_send_an_alert_twice(
    store: Store, receiver: AlertReceiver, tmp_path: Path
) -> None:
    config = _config(receiver)
    rollouts = [_rollback(store, config, f"app-{n}") for n in range(8)]
    replicas = [Store(f"sqlite:///{tmp_path / 'guard.db'}") for _ in range(2)]
    senders = [_sender(replica, receiver, Clock()) for replica in replicas]
    claimed: list[int] = []

    def run(sender: AlertSender) -> None:
        claimed.append(asyncio.run(sender.run_once()))

    threads = [threading.Thread(target=run, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for replica in replicas:
        replica.close()

    assert sum(claimed) == 24
    keys = [r.headers["Idempotency-Key"] for r in receiver.requests() if r.path == "/hook"]
    assert sorted(keys) == sorted(f"{r}/rollback_started/1/hook" for r in rollouts)
    assert len(receiver.requests()) == 24
    assert {v.status for v in store.outbox.list()} == {"sent"}
