"""The one place analyzers are registered; adding one is a module and a line here."""

from __future__ import annotations

from .base import Analyzer
from .baseline import BaselineAnalyzer
from .thresholds import ThresholdAnalyzer

ANALYZERS: dict[str, Analyzer] = {
    analyzer.name: analyzer for analyzer in (ThresholdAnalyzer(), BaselineAnalyzer())
}


def get_analyzer(name: str) -> Analyzer:
    try:
        return ANALYZERS[name]
    except KeyError:
        known = ", ".join(sorted(ANALYZERS))
        raise KeyError(f"unknown analyzer {name!r}; known: {known}") from None
