"""The one place strategies are registered; adding one is a module and a line here."""

from __future__ import annotations

from .base import Strategy
from .rolling import RollingStrategy

STRATEGIES: dict[str, Strategy] = {strategy.name: strategy for strategy in (RollingStrategy(),)}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise KeyError(f"unknown strategy {name!r}; known: {known}") from None
