"""The one place channels are registered; adding one is a module and a line here."""

from __future__ import annotations

from .alertmanager import AlertmanagerNotifier
from .base import Notifier
from .log import LogNotifier
from .pagerduty import PagerDutyNotifier
from .slack import SlackNotifier
from .webhook import WebhookNotifier

NOTIFIERS: dict[str, Notifier] = {
    notifier.type: notifier
    for notifier in (
        LogNotifier(),
        SlackNotifier(),
        PagerDutyNotifier(),
        AlertmanagerNotifier(),
        WebhookNotifier(),
    )
}


def get_notifier(type_: str) -> Notifier:
    """The channel for a receiver type; an unknown type names the known ones."""
    try:
        return NOTIFIERS[type_]
    except KeyError:
        known = ", ".join(sorted(NOTIFIERS))
        raise KeyError(f"unknown receiver type {type_!r}; known: {known}") from None
