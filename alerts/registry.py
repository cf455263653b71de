"""The one place notifiers are registered; adding one is a module and a line here."""

from __future__ import annotations

from .base import Notifier
from .log import LogNotifier

NOTIFIERS: dict[str, Notifier] = {notifier.name: notifier for notifier in (LogNotifier(),)}
