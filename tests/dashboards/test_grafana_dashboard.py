"""The shipped Grafana dashboard charts metrics the guard exports, in PromQL Prometheus accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from guard.metrics import GuardMetrics
from guard.sim.prometheus import PrometheusServer

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "deploy-guard-dora.json"


def expressions() -> list[str]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for panel in board["panels"] for t in panel["targets"]]


def exported_names() -> set[str]:
    names = set()
    for family in GuardMetrics().registry.collect():
        names |= {sample.name for sample in family.samples}
        names.add(family.name)
    # Histograms and counters with no observation yet still expose their series names:
    return names | {n + s for n in names for s in ("_bucket", "_count", "_sum", "_total")}


def test_every_panel_uses_a_metric_the_guard_exports() -> None:
    exported = exported_names()
    used = {name for expr in expressions() for name in re.findall(r"\bguard_[a-z_]+", expr)}
    assert used, "the dashboard charts nothing"
    assert used <= exported, used - exported


def test_panels_have_unique_ids_and_the_datasource_variable() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "service"}
    assert all(p["datasource"]["uid"] == "${datasource}" for p in board["panels"])


def test_every_expression_parses_in_prometheus() -> None:
    grafana_variables = {"$__range_s": "2592000", "$__range": "30d", "$service": ".*"}
    with PrometheusServer([], scrape_interval_seconds=1.0) as prometheus:
        for expr in expressions():
            for variable, value in grafana_variables.items():
                expr = expr.replace(variable, value)
            # A syntax error raises PrometheusError; no guard is scraped here, so no data.
            assert prometheus.query(expr) == [], expr
