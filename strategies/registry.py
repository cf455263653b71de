"""The one place strategies are registered; adding one is a module and a line here."""

from __future__ import annotations

from .base import Strategy
from .bluegreen import BlueGreenStrategy
from .canary import CanaryStrategy
from .rolling import RollingStrategy

STRATEGIES: dict[str, Strategy] = {
    s.name: s for s in (RollingStrategy(), CanaryStrategy(), BlueGreenStrategy())
}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise KeyError(f"unknown strategy {name!r}; known: {known}") from None
