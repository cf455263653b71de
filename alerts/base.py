"""The notifier interface: one module per channel, registered in `alerts.registry`.

Notifiers receive an event that already carries the decision and its evidence, so every channel
tells on-call the same story: what broke, the evidence, and what the guard did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from guard.models import Decision, RolloutRequest, RolloutState


@dataclass(frozen=True)
class RolloutEvent:
    """A state change worth telling someone about."""

    rollout_id: str
    request: RolloutRequest
    state: RolloutState
    message: str
    decision: Decision | None = None


class Notifier(Protocol):
    name: str

    def notify(self, event: RolloutEvent) -> None:
        """Deliver or raise; the caller decides about retries."""
        ...
