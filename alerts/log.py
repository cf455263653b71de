"""A notifier that writes alerts to the guard's log; the fallback when no channel is set up."""

from __future__ import annotations

import logging

from .base import RolloutEvent

log = logging.getLogger("guard.alerts")


class LogNotifier:
    name = "log"

    def notify(self, event: RolloutEvent) -> None:
        target = f"{event.request.namespace}/{event.request.deployment}"
        evidence = ""
        if event.decision is not None:
            evidence = f" evidence: {event.decision.summary}"
        log.warning("rollout %s of %s %s: %s%s", event.rollout_id, target, event.state.value,
                    event.message, evidence)  # fmt: skip
