"""The `alerts:` config section: receivers validated per channel, routes, the log default."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.base import AlertKind
from guard.config import ConfigError, parse_config

from .conftest import long_hold, rollback_started

RECEIVERS = {
    "oncall": {"type": "pagerduty", "routing_key_env": "PD_KEY"},
    "chat": {"type": "slack", "url_file": "/run/secrets/slack"},
    "am": {"type": "alertmanager", "url": "http://alertmanager:9093"},
}


def _alerts(**section: Any) -> Any:
    return parse_config({"alerts": section}).alerts


def _problems(**section: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"alerts": section})
    return caught.value.problems


def test_without_receivers_every_event_goes_to_the_log() -> None:
    alerts = _alerts()
    assert alerts.route(rollback_started()) == ["log"]


def test_without_routes_every_event_goes_to_every_receiver() -> None:
    assert _alerts(receivers=RECEIVERS).route(rollback_started()) == ["oncall", "chat", "am"]


def test_routes_filter_by_event_service_and_severity() -> None:
    alerts = _alerts(
        receivers=RECEIVERS,
        routes=[
            {"receivers": ["oncall"], "events": ["rollback_started", "rollback_failed"],
             "severities": ["critical"]},
            {"receivers": ["chat", "oncall"], "services": ["checkout"]},
            {"receivers": ["am"], "services": ["search"]},
        ],
    )  # fmt: skip
    assert alerts.route(rollback_started()) == ["oncall", "chat"]
    hold = long_hold()
    assert hold.kind is AlertKind.HOLD
    assert alerts.route(hold) == ["chat", "oncall"]
    other = hold.model_copy(update={"service": "cart"})
    assert alerts.route(other) == []


def test_an_unknown_receiver_type_names_the_known_ones() -> None:
    [problem] = _problems(receivers={"x": {"type": "sms", "url": "http://x"}})
    assert problem.startswith("alerts.receivers.x: ")
    assert "'slack'" in problem and "'pagerduty'" in problem and "'webhook'" in problem


def test_a_receiver_missing_its_secret_source_or_with_a_typo_is_an_error() -> None:
    assert _problems(receivers={"x": {"type": "slack"}}) == [
        "alerts.receivers.x.slack: missing: give one of url_env, url_file"
    ]
    assert _problems(receivers={"x": {"type": "slack", "url_env": "A", "urll": "b"}}) == [
        "alerts.receivers.x.slack.urll: unknown key"
    ]


def test_a_route_to_an_unknown_receiver_is_an_error() -> None:
    [problem] = _problems(receivers=RECEIVERS, routes=[{"receivers": ["pager"]}])
    assert "unknown receiver 'pager'; known: am, chat, oncall" in problem


def test_an_unknown_event_kind_is_an_error() -> None:
    [problem] = _problems(routes=[{"receivers": ["log"], "events": ["rollback"]}])
    assert problem.startswith("alerts.routes.0.events.0:")


def test_the_config_repr_names_secret_sources_only() -> None:
    alerts = _alerts(
        receivers={"hook": {"type": "webhook", "url": "https://h.example/in?token=abc",
                            "hmac_key_env": "HOOK_KEY"}}
    )  # fmt: skip
    assert "HOOK_KEY" in repr(alerts)
    assert "token=abc" not in repr(alerts)
