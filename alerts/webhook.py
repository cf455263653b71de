"""Generic webhook: a stable, versioned JSON schema, signed so the receiver can trust it.

Headers: `X-Deploy-Guard-Timestamp` (Unix seconds), `X-Deploy-Guard-Signature`
(`sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`) and `Idempotency-Key` (the delivery's dedup
key, identical on every retry). Receivers verify with `verify()`: recompute the HMAC over the
timestamp, a dot and the raw body, compare in constant time and reject old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import AlertEvent, HttpPost, ReceiverSettings, RenderContext, SecretRef, json_post
from .secrets import one_source

SCHEMA = "deploy-guard.alert.v1"
TIMESTAMP_HEADER = "X-Deploy-Guard-Timestamp"
SIGNATURE_HEADER = "X-Deploy-Guard-Signature"


class WebhookSettings(ReceiverSettings):
    type: Literal["webhook"] = "webhook"
    url: str | None = Field(
        default=None, repr=False, description="Only for URLs that hold no secret"
    )
    url_env: str | None = None
    url_file: str | None = None
    hmac_key_env: str | None = None
    hmac_key_file: str | None = None

    @model_validator(mode="after")
    def _sources(self) -> WebhookSettings:
        self.secret_refs()
        return self

    def secret_refs(self) -> dict[str, SecretRef]:
        url = one_source("url", literal=self.url, env=self.url_env, file=self.url_file)
        key = one_source("hmac_key", literal=None, env=self.hmac_key_env, file=self.hmac_key_file)
        assert url is not None and key is not None
        return {"url": url, "hmac_key": key}


class WebhookNotifier:
    type = "webhook"
    settings_model = WebhookSettings

    def render(self, event: AlertEvent, settings: WebhookSettings, ctx: RenderContext) -> HttpPost:
        post = json_post(ctx.secrets["url"], payload(event))
        timestamp = str(int(ctx.now.timestamp()))
        headers = {
            **post.headers,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(ctx.secrets["hmac_key"], timestamp, post.body),
            "Idempotency-Key": ctx.delivery_key,
        }
        return HttpPost(url=post.url, body=post.body, headers=headers)


def payload(event: AlertEvent) -> dict[str, Any]:
    """The schema receivers parse; fields are only ever added within one `schema` version."""
    return {
        "schema": SCHEMA,
        "status": event.status,
        **event.model_dump(mode="json"),
    }


def sign(key: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(key: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver runs (freshness of `timestamp` is the receiver's own policy)."""
    return hmac.compare_digest(sign(key, timestamp, body), signature)
