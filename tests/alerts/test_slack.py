"""Slack: Block Kit payload with what broke, evidence, action, outcome, versions and links."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from alerts.slack import SlackNotifier, SlackSettings, payload

from .conftest import render_ctx, rollback_started, rollback_verified

HOOK = "https://hooks.slack.com/services/T000/B000/SECRETxyz"


def _text(message: dict[str, object]) -> str:
    return json.dumps(message)


def test_rollback_message_has_every_fact_on_call_needs() -> None:
    message = payload(rollback_started())
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"].startswith(":rotating_light: [critical] Automatic rollback")
    text = _text(message)
    for fact in (
        "shop/checkout",
        "checkout: registry/checkout:1.4.1 -> registry/checkout:1.4.3",
        "rolling / analysing",
        "error_rate 8.12% > 5.00% over 1234 requests in 30s (critical)",
        "started an automatic rollback to revision 3",
        "rollback in progress; not yet verified",
        "https://guard.example.com/v1/rollouts/",
        "http_requests_total",
    ):
        assert fact in text, fact
    assert message["text"].endswith("critical: error rate 8.12% > 5.00%")


def test_verified_message_is_green_and_says_how_long_the_rollback_took() -> None:
    message = payload(rollback_verified())
    assert message["blocks"][0]["text"]["text"].startswith(":white_check_mark:")
    assert "*Rollback took*\\n12.5s" in _text(message)


def test_render_posts_json_to_the_secret_url() -> None:
    post = SlackNotifier().render(
        rollback_started(), SlackSettings(url_env="SLACK_URL"), render_ctx(url=HOOK)
    )
    assert post.url == HOOK
    assert json.loads(post.body) == payload(rollback_started())
    assert post.headers["Content-Type"] == "application/json"
    assert HOOK not in repr(post)


def test_settings_need_exactly_one_url_source_and_no_literal_url() -> None:
    with pytest.raises(ValidationError, match="missing: give one of url_env, url_file"):
        SlackSettings()
    with pytest.raises(ValidationError, match="only one of"):
        SlackSettings(url_env="A", url_file="/run/secrets/slack")
    with pytest.raises(ValidationError, match="a Slack webhook URL is a credential"):
        SlackSettings.model_validate({"url": HOOK})
