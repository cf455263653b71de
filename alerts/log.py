"""The guard's own log as a channel: the default receiver when no other one is configured.

Kept (rather than dropped now that alerts go through the outbox) so that a guard with no
`alerts:` section still tells someone, and because it runs through the same outbox, its
deliveries show up in `GET /v1/alerts` like any other.
"""

from __future__ import annotations

from typing import Literal

from .base import AlertEvent, LogLine, ReceiverSettings, RenderContext
from .text import evidence_lines, title


class LogSettings(ReceiverSettings):
    type: Literal["log"] = "log"


class LogNotifier:
    type = "log"
    settings_model = LogSettings

    def render(self, event: AlertEvent, settings: LogSettings, ctx: RenderContext) -> LogLine:
        evidence = "; ".join(evidence_lines(event))
        text = (
            f"alert {event.id}: {title(event)}: {event.summary}; action: {event.action}; "
            f"outcome: {event.outcome}"
        )
        return LogLine(f"{text}; evidence: {evidence}" if evidence else text)
