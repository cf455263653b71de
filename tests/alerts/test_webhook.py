"""Generic webhook: stable schema, HMAC-SHA256 over timestamp and body, dedup key header."""

from __future__ import annotations

import hashlib
import hmac
import json

from alerts.webhook import (
    SCHEMA,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    WebhookSettings,
    verify,
)

from .conftest import T0, render_ctx, rollback_started

SECRET = "hmac-signing-key-123"


def _render() -> tuple[bytes, dict[str, str]]:
    settings = WebhookSettings(url_env="HOOK_URL", hmac_key_env="HOOK_KEY")
    ctx = render_ctx(url="https://hooks.example.com/in/abc", hmac_key=SECRET)
    post = WebhookNotifier().render(rollback_started(), settings, ctx)
    return post.body, post.headers


def test_body_follows_the_versioned_schema() -> None:
    body, _ = _render()
    data = json.loads(body)
    assert data["schema"] == SCHEMA
    assert data["status"] == "firing"
    assert data["kind"] == "rollback_started"
    assert data["id"].endswith("/rollback_started/1")
    assert data["decision"]["evidence"][0]["query"].startswith("sum(rate(")
    assert data["decision"]["evidence"][0]["sample_count"] == 1234
    assert data["previous_images"] == {"checkout": "registry/checkout:1.4.1"}
    expected = {"schema", "status", "id", "kind", "at", "rollout_id", "namespace", "deployment",
                "service", "strategy", "step", "severity", "incident_key", "incident_severity",
                "summary", "action", "outcome", "message", "images", "previous_images",
                "commit_sha", "decision", "rollback_seconds", "links"}  # fmt: skip
    assert set(data) == expected


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body, headers = _render()
    timestamp = headers[TIMESTAMP_HEADER]
    assert timestamp == str(int(T0.timestamp()) + 1)
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert headers[SIGNATURE_HEADER] == f"sha256={mac.hexdigest()}"
    assert verify(SECRET, timestamp, body, headers[SIGNATURE_HEADER])
    assert not verify(SECRET, timestamp, body + b" ", headers[SIGNATURE_HEADER])
    assert not verify("other-key", timestamp, body, headers[SIGNATURE_HEADER])
    assert not verify(SECRET, str(int(timestamp) + 1), body, headers[SIGNATURE_HEADER])


def test_the_delivery_dedup_key_goes_in_idempotency_key() -> None:
    _, headers = _render()
    assert headers["Idempotency-Key"] == "key-1"
    assert SECRET not in json.dumps(headers)
