"""The outbox sender: claims due alert deliveries, renders them, sends them, acknowledges them.

Its own scheduler job, separate from the tick: a receiver that hangs costs this job a timeout,
never a decision or a rollback. Retries back off exponentially with jitter; 4xx answers other
than 408 and 429 are final (a retry would be rejected the same way). Every error text is
redacted of the receiver's secrets before it is stored or logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import httpx

from alerts.base import HttpPost, LogLine, Outbound, ReceiverSettings, RenderContext
from alerts.config import AlertsConfig
from alerts.registry import get_notifier
from alerts.secrets import SecretUnavailable, read_secret, redact
from guard.backoff import backoff_seconds
from guard.metrics import GuardMetrics
from guard.outbox import Claimed, Outbox

log = logging.getLogger("guard.alerts")
RETRYABLE_STATUS = frozenset({408, 425, 429})
REDACTED_LOGGERS = ("httpx", "httpcore")


class RedactingFilter(logging.Filter):
    """Scrubs secrets this sender has read from other libraries' log records (httpx logs
    every request URL at INFO, and a Slack webhook's URL is its credential)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            clean = redact(message, self.secrets)
            if clean != message:
                record.msg, record.args = clean, ()
        return True


class DeliveryError(Exception):
    """A failed send; `retry` says whether trying again later can help."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class AlertSender:
    """One sender per guard process; safe to run in several replicas against one store."""

    def __init__(
        self,
        outbox: Outbox,
        config: AlertsConfig,
        *,
        clock: Callable[[], datetime],
        client: httpx.AsyncClient | None = None,
        environ: Mapping[str, str] | None = None,
        jitter: Callable[[], float] = random.random,
        metrics: GuardMetrics | None = None,
    ) -> None:
        self.outbox = outbox
        self.config = config
        self.receivers = config.effective_receivers()
        self.clock = clock
        self.client = client or httpx.AsyncClient(follow_redirects=False)
        self.environ = environ
        self.jitter = jitter
        self.metrics = metrics
        self._redacting = RedactingFilter()
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._redacting)

    def reconfigure(self, config: AlertsConfig) -> None:
        """Receivers and delivery tuning from a reloaded config; a send in flight finishes with
        the receiver it started with."""
        self.config = config
        self.receivers = config.effective_receivers()

    async def close(self) -> None:
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).removeFilter(self._redacting)
        await self.client.aclose()

    async def run_once(self) -> int:
        """Send one batch of due deliveries concurrently; returns how many were claimed."""
        delivery = self.config.delivery
        claimed = await asyncio.to_thread(
            self.outbox.claim,
            now=self.clock(),
            limit=delivery.batch_size,
            lease_seconds=delivery.lease_seconds,
            token=uuid.uuid4().hex,
        )
        await asyncio.gather(*(self._deliver(item) for item in claimed))
        return len(claimed)

    async def _deliver(self, item: Claimed) -> None:
        settings = self.receivers.get(item.receiver)
        if settings is None:
            error = f"receiver {item.receiver!r} is no longer configured"
            await asyncio.to_thread(self.outbox.mark_failed, item, error=error)
            return
        secrets: dict[str, str] = {}
        try:
            secrets = self._secrets(settings)
            notifier = get_notifier(settings.type)
            ctx = RenderContext(secrets=secrets, delivery_key=item.dedup_key, now=self.clock())
            await self._send(notifier.render(item.event, settings, ctx))
        except DeliveryError as exc:
            await self._failed(item, redact(str(exc), secrets.values()), retry=exc.retry)
        except SecretUnavailable as exc:
            await self._failed(item, f"secret unavailable: {exc}", retry=True)
        except Exception as exc:
            text = redact(f"{type(exc).__name__}: {exc}", secrets.values())
            log.error("alert %s to %s: unexpected error: %s", item.event.id, item.receiver, text)
            await self._failed(item, text, retry=True)
        else:
            await asyncio.to_thread(self.outbox.mark_sent, item, now=self.clock())
            self._count(item, "sent")
            log.info("alert %s sent to %s", item.event.id, item.receiver)

    def _count(self, item: Claimed, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.alert_deliveries.labels(receiver=item.receiver, outcome=outcome).inc()

    def _secrets(self, settings: ReceiverSettings) -> dict[str, str]:
        refs = settings.secret_refs()
        secrets = {name: read_secret(ref, self.environ) for name, ref in refs.items()}
        self._redacting.secrets.update(
            value for name, value in secrets.items() if refs[name].literal is None
        )
        return secrets

    async def _send(self, outbound: Outbound) -> None:
        if isinstance(outbound, LogLine):
            log.warning("%s", outbound.text)
            return
        await self._post(outbound)

    async def _post(self, post: HttpPost) -> None:
        timeout = self.config.delivery.timeout_seconds
        try:
            response = await self.client.post(
                post.url, content=post.body, headers=post.headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retry=True) from None
        if response.is_success:
            return
        code = response.status_code
        retry = code >= 500 or code in RETRYABLE_STATUS
        raise DeliveryError(f"HTTP {code}: {response.text[:300]}", retry=retry)

    async def _failed(self, item: Claimed, error: str, *, retry: bool) -> None:
        self._count(item, "retry" if retry else "failed")
        if not retry:
            log.error("alert %s to %s rejected: %s", item.event.id, item.receiver, error)
            await asyncio.to_thread(self.outbox.mark_failed, item, error=error)
            return
        delivery = self.config.delivery
        delay = backoff_seconds(
            item.attempts,
            initial=delivery.initial_backoff_seconds,
            cap=delivery.max_backoff_seconds,
            jitter=self.jitter(),
        )
        log.warning(
            "alert %s to %s failed (attempt %d), retrying in %.1fs: %s",
            item.event.id, item.receiver, item.attempts, delay, error,
        )  # fmt: skip
        next_at = self.clock() + timedelta(seconds=delay)
        await asyncio.to_thread(self.outbox.mark_retry, item, error=error, next_attempt_at=next_at)
